//! Who may connect to the embedded bus, and what each identity may publish
//! and read. The rules are the ones deploy/mosquitto/netbar.acl gives an
//! external broker, plus one it cannot express: a station publishes only
//! the readings of the sensors enrolled to it.

use std::collections::HashMap;
use std::sync::RwLock;

use netbar_protocol::{StationChannel, StationKey};

use crate::config::AGENT;

/// The supervisor's identity on the bus.
pub(crate) const CANARY: &str = "netbar-canary";

/// Who a connection is, established by its login. The bus keys its
/// sessions by identity, never by the client id a client claims: one
/// connection per identity, and nobody takes over another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Identity {
    /// The agent (a password made at each start, never written down).
    Agent,
    /// The bus's supervisor, round-tripping a message (same).
    Canary,
    /// An enrolled station, by its id.
    Station(String),
}

impl Identity {
    /// The name the identity logs in with.
    pub(crate) fn name(&self) -> &str {
        match self {
            Identity::Agent => AGENT,
            Identity::Canary => CANARY,
            Identity::Station(id) => id,
        }
    }
}

/// The enrolled stations' logins and the sensors enrolled to each.
#[derive(Debug, Default)]
struct Enrolled {
    /// Station id → its broker password.
    passwords: HashMap<String, String>,
    /// Sensor id → the station that bridges it.
    sensors: HashMap<String, String>,
}

/// The bus's rules for one venue.
#[derive(Debug)]
pub(crate) struct Gate {
    venue: String,
    agent_password: String,
    canary_password: String,
    enrolled: RwLock<Enrolled>,
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Gate {
    pub(crate) fn new(venue: &str, agent_password: String, canary_password: String) -> Gate {
        Gate { venue: venue.to_owned(), agent_password, canary_password, enrolled: RwLock::default() }
    }

    /// Takes up the enrollments as they are now; the stations no longer
    /// enrolled are returned (their connections are to be closed).
    pub(crate) fn enroll(&self, stations: &HashMap<String, StationKey>, sensors: &HashMap<String, String>) -> Vec<String> {
        let passwords: HashMap<String, String> = stations.iter().map(|(id, key)| (id.clone(), key.broker_password())).collect();
        let mut enrolled = self.enrolled.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let revoked = enrolled.passwords.keys().filter(|id| !passwords.contains_key(*id)).cloned().collect();
        *enrolled = Enrolled { passwords, sensors: sensors.clone() };
        revoked
    }

    /// The identity a login proves, if it proves one.
    pub(crate) fn login(&self, user: &str, password: &str) -> Option<Identity> {
        match user {
            AGENT => same(password, &self.agent_password).then_some(Identity::Agent),
            CANARY => same(password, &self.canary_password).then_some(Identity::Canary),
            station => {
                let enrolled = self.enrolled.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                let expected = enrolled.passwords.get(station)?;
                same(password, expected).then(|| Identity::Station(station.to_owned()))
            }
        }
    }

    pub(crate) fn canary_password(&self) -> &str {
        &self.canary_password
    }

    /// The topic the canary round-trips on.
    pub(crate) fn canary_topic(&self) -> String {
        format!("netbar/v1/{}/agent/canary", self.venue)
    }

    fn in_venue<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix("netbar/v1/")?.strip_prefix(self.venue.as_str())?.strip_prefix('/')
    }

    /// The channel of station `id`'s own topic `topic` in this venue, if
    /// it is one (without parsing into owned names: this runs for every
    /// message a station sends). Station ids hold no `/`, `+` or `#`, so a
    /// wildcard never matches.
    fn own_channel(&self, id: &str, topic: &str) -> Option<StationChannel> {
        let rest = self.in_venue(topic)?.strip_prefix("station/")?.strip_prefix(id)?.strip_prefix('/')?;
        StationChannel::from_level(rest)
    }

    /// Whether `who` may publish on `topic`.
    pub(crate) fn may_publish(&self, who: &Identity, topic: &str) -> bool {
        match who {
            Identity::Agent => self.in_venue(topic).is_some(),
            Identity::Canary => topic == self.canary_topic(),
            Identity::Station(id) => match self.own_channel(id, topic) {
                Some(channel) => {
                    matches!(channel, StationChannel::Status | StationChannel::Telemetry | StationChannel::Event | StationChannel::Ack)
                }
                None => {
                    let sensor = self.in_venue(topic).and_then(|rest| rest.strip_prefix("sensor/")?.strip_suffix("/reading"));
                    sensor.is_some_and(|sensor| {
                        let enrolled = self.enrolled.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                        enrolled.sensors.get(sensor).is_some_and(|bridge| bridge == id)
                    })
                }
            },
        }
    }

    /// Whether `who` may subscribe to `filter`: the agent to anything of
    /// its venue, a station to exactly its own commands and receipts and
    /// the agent's status (no wildcards).
    pub(crate) fn may_subscribe(&self, who: &Identity, filter: &str) -> bool {
        match who {
            Identity::Agent => self.in_venue(filter).is_some(),
            Identity::Canary => filter == self.canary_topic(),
            Identity::Station(id) => {
                self.own_channel(id, filter).is_some_and(|channel| matches!(channel, StationChannel::Command | StationChannel::Delivery))
                    || self.in_venue(filter) == Some("agent/status")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        let gate = Gate::new("venue-1", "agent-secret".into(), "canary-secret".into());
        let stations =
            HashMap::from([("st-1".to_owned(), StationKey::from_bytes([1; 32])), ("st-2".to_owned(), StationKey::from_bytes([2; 32]))]);
        gate.enroll(&stations, &HashMap::from([("smoke-1".to_owned(), "st-1".to_owned())]));
        gate
    }

    fn st(id: &str) -> Identity {
        Identity::Station(id.to_owned())
    }

    #[test]
    fn logins_prove_exactly_one_identity() {
        let gate = gate();
        let password = StationKey::from_bytes([1; 32]).broker_password();
        assert_eq!(gate.login("st-1", &password), Some(st("st-1")));
        assert_eq!(gate.login("st-2", &password), None, "a station's password is its own");
        assert_eq!(gate.login("st-9", &password), None, "not enrolled");
        assert_eq!(gate.login(AGENT, &password), None, "a station's password does not make it the agent");
        assert_eq!(gate.login(AGENT, "agent-secret"), Some(Identity::Agent));
        assert_eq!(gate.login(CANARY, "agent-secret"), None);
        assert_eq!(gate.login(CANARY, "canary-secret"), Some(Identity::Canary));
    }

    #[test]
    fn a_station_publishes_under_its_own_topics_and_its_sensors_only() {
        let gate = gate();
        for channel in ["status", "telemetry", "event", "ack"] {
            assert!(gate.may_publish(&st("st-1"), &format!("netbar/v1/venue-1/station/st-1/{channel}")), "{channel}");
            assert!(!gate.may_publish(&st("st-1"), &format!("netbar/v1/venue-1/station/st-2/{channel}")), "another's {channel}");
            assert!(!gate.may_publish(&st("st-1"), &format!("netbar/v1/venue-2/station/st-1/{channel}")), "another venue's {channel}");
        }
        for channel in ["command", "delivery"] {
            assert!(!gate.may_publish(&st("st-1"), &format!("netbar/v1/venue-1/station/st-1/{channel}")), "the agent's {channel}");
        }
        assert!(gate.may_publish(&st("st-1"), "netbar/v1/venue-1/sensor/smoke-1/reading"));
        assert!(!gate.may_publish(&st("st-2"), "netbar/v1/venue-1/sensor/smoke-1/reading"), "a sensor enrolled to another station");
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/sensor/smoke-9/reading"), "a sensor enrolled to none");
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/agent/status"));
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/agent/canary"));
        assert!(!gate.may_publish(&st("st-1"), "anything/else"));
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/station/st-1/event/more"), "a level more");
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/station/st-10/event"), "a station whose id begins with st-1's");
        assert!(!gate.may_publish(&st("st-1"), "netbar/v1/venue-1/sensor/smoke-1/reading/more"));
        assert!(gate.may_publish(&Identity::Agent, "netbar/v1/venue-1/station/st-1/command"));
        assert!(!gate.may_publish(&Identity::Agent, "netbar/v1/venue-2/station/st-1/command"));
        assert!(gate.may_publish(&Identity::Canary, "netbar/v1/venue-1/agent/canary"));
        assert!(!gate.may_publish(&Identity::Canary, "netbar/v1/venue-1/station/st-1/command"));
    }

    #[test]
    fn a_station_reads_its_own_commands_and_receipts_and_the_agents_status_only() {
        let gate = gate();
        assert!(gate.may_subscribe(&st("st-1"), "netbar/v1/venue-1/station/st-1/command"));
        assert!(gate.may_subscribe(&st("st-1"), "netbar/v1/venue-1/station/st-1/delivery"));
        assert!(gate.may_subscribe(&st("st-1"), "netbar/v1/venue-1/agent/status"));
        for filter in [
            "#",
            "netbar/#",
            "netbar/v1/venue-1/#",
            "netbar/v1/venue-1/station/+/command",
            "netbar/v1/venue-1/station/st-2/command",
            "netbar/v1/venue-1/station/st-2/event",
            "netbar/v1/venue-1/station/st-1/event",
            "netbar/v1/venue-1/sensor/+/reading",
            "netbar/v1/venue-1/agent/canary",
            "netbar/v1/venue-1/station/st-1/#",
            "netbar/v1/venue-1/station/st-1/+",
            "netbar/v1/venue-1/agent/+",
            "$SYS/#",
        ] {
            assert!(!gate.may_subscribe(&st("st-1"), filter), "{filter}");
        }
        assert!(gate.may_subscribe(&Identity::Agent, "netbar/v1/venue-1/station/+/event"));
        assert!(!gate.may_subscribe(&Identity::Agent, "#"));
    }

    #[test]
    fn a_revoked_station_is_named_and_logs_in_no_more() {
        let gate = gate();
        let revoked = gate.enroll(&HashMap::from([("st-2".to_owned(), StationKey::from_bytes([2; 32]))]), &HashMap::new());
        assert_eq!(revoked, vec!["st-1".to_owned()]);
        assert_eq!(gate.login("st-1", &StationKey::from_bytes([1; 32]).broker_password()), None);
    }
}
