//! MQTT topic names, built and parsed here and nowhere else.
//!
//! Inside a venue:
//!
//! ```text
//! netbar/v1/{venue}/station/{station}/{status|telemetry|event|ack|command|delivery}
//! netbar/v1/{venue}/sensor/{sensor}/reading
//! netbar/v1/{venue}/agent/status
//! ```
//!
//! Towards the regulator, under a prefix the regulator chooses (one or more
//! levels):
//!
//! ```text
//! {prefix}/{region}/{venue}/{summary|incident|record|heartbeat}
//! ```
//!
//! Each topic carries a fixed set of message kinds ([`Topic::carries`]), so a
//! receiver refuses a telemetry body published on a command topic.

use std::fmt;

use crate::envelope::Kind;
use crate::ids::{IdError, RegionCode, SensorId, StationId, VenueId, check_id};

const ROOT: &str = "netbar/v1";

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not have the shape of any netbar topic.
    #[error("topic {topic:?} is not a netbar topic: {reason}")]
    Shape {
        /// The topic, shortened to 200 characters.
        topic: String,
        /// What does not fit.
        reason: &'static str,
    },
    /// A level that holds a name is not a valid name.
    #[error("topic {topic:?}: {error}")]
    Name {
        /// The topic, shortened to 200 characters.
        topic: String,
        /// Why the name is refused.
        error: IdError,
    },
}

fn shape(topic: &str, reason: &'static str) -> TopicError {
    TopicError::Shape { topic: topic.chars().take(200).collect(), reason }
}

fn name<T>(topic: &str, parsed: Result<T, IdError>) -> Result<T, TopicError> {
    parsed.map_err(|error| TopicError::Name { topic: topic.chars().take(200).collect(), error })
}

macro_rules! channels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal => [$($kind:ident),*];)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every channel.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The last topic level.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)* }
            }

            /// The channel named by a topic level (its wire name).
            pub fn from_level(level: &str) -> Option<$name> {
                match level { $($wire => Some($name::$variant),)* _ => None }
            }

            /// The message kinds published on this channel.
            pub fn kinds(self) -> &'static [Kind] {
                match self { $($name::$variant => &[$(Kind::$kind),*],)* }
            }

            /// The channel that carries `kind`, if one of these does.
            pub fn for_kind(kind: Kind) -> Option<$name> {
                $name::ALL.iter().copied().find(|channel| channel.kinds().contains(&kind))
            }
        }
    };
}

channels! {
    /// The topics of one station.
    StationChannel {
        /// Retained online status; offline as the last will.
        Status = "status" => [StationStatus];
        /// Periodic telemetry.
        Telemetry = "telemetry" => [Telemetry];
        /// Login requests, session events, activity without a session,
        /// tampering with the lock screen.
        Event = "event" => [LoginRequest, SessionEvent, Activity, Tamper];
        /// Command acknowledgements from the station.
        Ack = "ack" => [CommandAck];
        /// Commands to the station.
        Command = "command" => [Command];
        /// Delivery acknowledgements to the station.
        Delivery = "delivery" => [DeliveryAck];
    }
}

channels! {
    /// The topics of one venue on the regulator's broker.
    RegulatorChannel {
        /// Periodic summaries.
        Summary = "summary" => [Summary];
        /// Incident transitions.
        Incident = "incident" => [Incident];
        /// Registration records.
        Record = "record" => [Record];
        /// Proof of life.
        Heartbeat = "heartbeat" => [Heartbeat];
    }
}

/// The regulator's topic prefix: one or more levels of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Checks every level of `prefix`.
    pub fn new(prefix: &str) -> Result<Prefix, TopicError> {
        if prefix.is_empty() {
            return Err(shape(prefix, "the regulator prefix is empty"));
        }
        for level in prefix.split('/') {
            name(prefix, check_id("prefix level", level))?;
        }
        Ok(Prefix(prefix.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn levels(&self) -> usize {
        self.0.split('/').count()
    }
}

/// A netbar topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A station's channel.
    Station {
        /// The venue.
        venue: VenueId,
        /// The station.
        station: StationId,
        /// Which of its topics.
        channel: StationChannel,
    },
    /// A sensor's readings.
    Sensor {
        /// The venue.
        venue: VenueId,
        /// The sensor.
        sensor: SensorId,
    },
    /// The agent's retained status.
    Agent {
        /// The venue.
        venue: VenueId,
    },
    /// A venue's channel on the regulator's broker.
    Regulator {
        /// The regulator's prefix.
        prefix: Prefix,
        /// The regulator's district.
        region: RegionCode,
        /// The venue.
        venue: VenueId,
        /// Which of its topics.
        channel: RegulatorChannel,
    },
}

impl Topic {
    /// The message kinds this topic carries.
    pub fn carries(&self) -> &'static [Kind] {
        match self {
            Topic::Station { channel, .. } => channel.kinds(),
            Topic::Sensor { .. } => &[Kind::SensorReading],
            Topic::Agent { .. } => &[Kind::AgentStatus],
            Topic::Regulator { channel, .. } => channel.kinds(),
        }
    }

    /// The venue the topic belongs to.
    pub fn venue(&self) -> &VenueId {
        match self {
            Topic::Station { venue, .. } | Topic::Sensor { venue, .. } | Topic::Agent { venue } | Topic::Regulator { venue, .. } => venue,
        }
    }

    /// Parses a topic inside a venue (`netbar/v1/…`).
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| shape(topic, "it does not start with netbar/v1/"))?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            [venue, "station", station, channel] => Ok(Topic::Station {
                venue: name(topic, venue.parse())?,
                station: name(topic, station.parse())?,
                channel: StationChannel::from_level(channel).ok_or_else(|| shape(topic, "unknown station channel"))?,
            }),
            [venue, "sensor", sensor, "reading"] => {
                Ok(Topic::Sensor { venue: name(topic, venue.parse())?, sensor: name(topic, sensor.parse())? })
            }
            [venue, "agent", "status"] => Ok(Topic::Agent { venue: name(topic, venue.parse())? }),
            _ => Err(shape(
                topic,
                "expected {venue}/station/{station}/{channel}, {venue}/sensor/{sensor}/reading or {venue}/agent/status after netbar/v1/",
            )),
        }
    }

    /// Parses a topic on the regulator's broker under `prefix`.
    pub fn parse_regulator(prefix: &Prefix, topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| shape(topic, "it does not start with the regulator prefix"))?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [region, venue, channel] => Ok(Topic::Regulator {
                prefix: prefix.clone(),
                region: name(topic, region.parse())?,
                venue: name(topic, venue.parse())?,
                channel: RegulatorChannel::from_level(channel).ok_or_else(|| shape(topic, "unknown regulator channel"))?,
            }),
            _ => Err(shape(topic, "expected {region}/{venue}/{channel} after the prefix")),
        }
    }

    /// A filter matching every topic of a venue.
    pub fn venue_filter(venue: &VenueId) -> String {
        format!("{ROOT}/{venue}/#")
    }

    /// A filter matching one channel of every station of a venue.
    pub fn stations_filter(venue: &VenueId, channel: StationChannel) -> String {
        format!("{ROOT}/{venue}/station/+/{}", channel.as_str())
    }

    /// A filter matching the readings of every sensor of a venue.
    pub fn sensors_filter(venue: &VenueId) -> String {
        format!("{ROOT}/{venue}/sensor/+/reading")
    }

    /// A filter matching every venue's topics under a regulator prefix.
    pub fn regulator_filter(prefix: &Prefix) -> String {
        format!("{}/+/+/+", prefix.as_str())
    }

    /// How many topic levels this topic has; used by tests and by receivers
    /// that bound the topics they accept.
    pub fn depth(&self) -> usize {
        match self {
            Topic::Station { .. } | Topic::Sensor { .. } => 6,
            Topic::Agent { .. } => 5,
            Topic::Regulator { prefix, .. } => prefix.levels() + 3,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Station { venue, station, channel } => write!(f, "{ROOT}/{venue}/station/{station}/{}", channel.as_str()),
            Topic::Sensor { venue, sensor } => write!(f, "{ROOT}/{venue}/sensor/{sensor}/reading"),
            Topic::Agent { venue } => write!(f, "{ROOT}/{venue}/agent/status"),
            Topic::Regulator { prefix, region, venue, channel } => write!(f, "{}/{region}/{venue}/{}", prefix.as_str(), channel.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue() -> VenueId {
        "sh-0042".parse().unwrap()
    }

    #[test]
    fn every_topic_round_trips() {
        let mut topics = vec![Topic::Sensor { venue: venue(), sensor: "smoke-1".parse().unwrap() }, Topic::Agent { venue: venue() }];
        for &channel in StationChannel::ALL {
            topics.push(Topic::Station { venue: venue(), station: "st-017".parse().unwrap(), channel });
        }
        let prefix = Prefix::new("gov/culture").unwrap();
        for &channel in RegulatorChannel::ALL {
            topics.push(Topic::Regulator { prefix: prefix.clone(), region: "310104".parse().unwrap(), venue: venue(), channel });
        }
        for topic in topics {
            let text = topic.to_string();
            assert_eq!(text.split('/').count(), topic.depth(), "{text}");
            let parsed = match topic {
                Topic::Regulator { .. } => Topic::parse_regulator(&prefix, &text),
                _ => Topic::parse(&text),
            };
            assert_eq!(parsed.as_ref(), Ok(&topic), "{text}");
            assert!(!topic.carries().is_empty());
        }
    }

    #[test]
    fn station_topic_text() {
        let topic = Topic::Station { venue: venue(), station: "st-017".parse().unwrap(), channel: StationChannel::Telemetry };
        assert_eq!(topic.to_string(), "netbar/v1/sh-0042/station/st-017/telemetry");
        assert_eq!(Topic::stations_filter(&venue(), StationChannel::Event), "netbar/v1/sh-0042/station/+/event");
        assert_eq!(Topic::sensors_filter(&venue()), "netbar/v1/sh-0042/sensor/+/reading");
        assert_eq!(Topic::venue_filter(&venue()), "netbar/v1/sh-0042/#");
        assert_eq!(Topic::regulator_filter(&Prefix::new("gov").unwrap()), "gov/+/+/+");
    }

    #[test]
    fn every_kind_has_exactly_one_home() {
        let mut homes: Vec<Kind> = StationChannel::ALL.iter().flat_map(|c| c.kinds().iter().copied()).collect();
        homes.extend(RegulatorChannel::ALL.iter().flat_map(|c| c.kinds().iter().copied()));
        homes.push(Kind::SensorReading);
        homes.push(Kind::AgentStatus);
        homes.sort();
        for &kind in Kind::ALL {
            let station = StationChannel::for_kind(kind).map(|channel| channel.kinds().contains(&kind));
            let regulator = RegulatorChannel::for_kind(kind).map(|channel| channel.kinds().contains(&kind));
            assert!(station.is_some() != regulator.is_some() || matches!(kind, Kind::SensorReading | Kind::AgentStatus), "{kind}");
        }
        let mut all = Kind::ALL.to_vec();
        all.sort();
        assert_eq!(homes, all);
    }

    #[test]
    fn refuses_malformed_topics() {
        let cases = [
            ("netbar/v2/sh/agent/status", "does not start with netbar/v1/"),
            ("netbar/v1/sh/station/st-1/bogus", "unknown station channel"),
            ("netbar/v1/sh/station/st-1", "expected {venue}"),
            ("netbar/v1/sh/station/st-1/status/extra", "expected {venue}"),
            ("netbar/v1/sh/station/+/status", "station id holds '+'"),
            ("netbar/v1//agent/status", "venue id is empty"),
            ("netbar/v1/sh/sensor/s 1/reading", "sensor id holds ' '"),
        ];
        for (topic, expected) in cases {
            let error = Topic::parse(topic).unwrap_err().to_string();
            assert!(error.contains(expected), "{topic}: {error}");
        }
        let prefix = Prefix::new("gov").unwrap();
        let error = Topic::parse_regulator(&prefix, "other/310104/sh/summary").unwrap_err().to_string();
        assert!(error.contains("regulator prefix"), "{error}");
        let error = Topic::parse_regulator(&prefix, "gov/310104/sh/bogus").unwrap_err().to_string();
        assert!(error.contains("unknown regulator channel"), "{error}");
        assert!(Prefix::new("").is_err());
        assert!(Prefix::new("gov//x").is_err());
        assert!(Prefix::new("gov/#").is_err());
    }
}
