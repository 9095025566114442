//! The one envelope every message travels in.
//!
//! Whoever receives a message must be able to tell which version of the
//! contract it follows, whether it has seen it before (message id), whether it
//! missed one (a per-sender sequence number without gaps), who claims to have
//! sent it and when. The body's kind is named in the envelope, so a receiver
//! knows what to expect before it reads the body.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{StationId, VenueId, check_id};
use crate::messages::*;

/// The version of the contract this crate speaks. A receiver refuses any other.
pub const SCHEMA_VERSION: u32 = 1;

/// A message id: a UUID of version 7, so ids sort by creation time and a
/// receiver can deduplicate by id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MessageId(uuid::Uuid);

impl MessageId {
    /// Builds a version 7 id from its creation time and ten random bytes; the
    /// caller supplies both, since this crate neither reads the clock nor owns
    /// a random number generator.
    pub fn from_parts(created: Timestamp, random: [u8; 10]) -> MessageId {
        let millis = u64::try_from(created.as_millisecond()).unwrap_or(0);
        MessageId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// Accepts a UUID only if it is of version 7.
    pub fn from_uuid(uuid: uuid::Uuid) -> Result<MessageId, String> {
        match uuid.get_version_num() {
            7 => Ok(MessageId(uuid)),
            other => Err(format!("message id {uuid} is a version {other} UUID, version 7 required")),
        }
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MessageId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let uuid = uuid::Uuid::parse_str(text).map_err(|error| format!("message id {text:?} is not a UUID: {error}"))?;
        MessageId::from_uuid(uuid)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for MessageId {
    fn schema_name() -> Cow<'static, str> {
        "MessageId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "uuid",
            "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            "description": "UUID version 7: sortable by creation time, unique per message."
        })
    }
}

/// What kind of party sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SenderRole {
    /// A station's collector, speaking for the station and the sensors it bridges.
    Station,
    /// The venue's agent on the cashier PC.
    Agent,
}

/// Who claims to have sent a message. The claim is checked against the topic
/// and the sender's credentials by the receiver; the envelope alone proves
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    /// The kind of party.
    pub role: SenderRole,
    /// Its enrolled name: the station id, or the agent's name.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub id: String,
}

impl Sender {
    /// The sender for a station's collector.
    pub fn station(station: &StationId) -> Sender {
        Sender { role: SenderRole::Station, id: station.to_string() }
    }

    /// The sender for a venue's agent.
    pub fn agent(name: &str) -> Sender {
        Sender { role: SenderRole::Agent, id: name.to_owned() }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        check_id("sender id", &self.id).map_err(|error| error.to_string())
    }
}

/// A message as it crosses a wire: the header and a typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Always [`SCHEMA_VERSION`] when built by this crate; decoding refuses others.
    pub schema: u32,
    /// Unique per message; receivers deduplicate by it.
    pub id: MessageId,
    /// When the sender created the message, by the sender's clock.
    pub ts: Timestamp,
    /// The venue the message belongs to.
    pub venue: VenueId,
    /// Who claims to have sent it.
    pub sender: Sender,
    /// Per-sender sequence number, increasing by one per message of that
    /// sender that needs delivery (a station with no record of its numbers
    /// starts from its clock in microseconds), so a receiver sees gaps,
    /// duplicates and replays; the agent's commands carry the agent's own
    /// command number, never reused. 0 for messages outside the sequence
    /// (telemetry sent live, retained status, last will, receipts), which
    /// count only within a window around the receiver's clock.
    pub seq: u64,
    /// The typed body; its kind is written next to it on the wire.
    pub message: Message,
    /// The sender's authentication of topic and envelope, see [`crate::auth`].
    pub mac: Option<crate::auth::MacTag>,
}

/// The sequence number a sender with no record of its numbers (a new or
/// wiped disk, a new database) counts on from: `now` in microseconds since
/// 1970, above any number it could have used before as long as it sent
/// fewer than a million numbered messages a second and its clock did not go
/// back by more than the time since.
pub fn sequence_from_clock(now: jiff::Timestamp) -> u64 {
    u64::try_from(now.as_microsecond()).unwrap_or(0)
}

impl Envelope {
    /// An envelope of the current schema version.
    pub fn new(id: MessageId, ts: Timestamp, venue: VenueId, sender: Sender, seq: u64, message: impl Into<Message>) -> Envelope {
        Envelope { schema: SCHEMA_VERSION, id, ts, venue, sender, seq, message: message.into(), mac: None }
    }

    /// The kind of the body.
    pub fn kind(&self) -> Kind {
        self.message.kind()
    }
}

/// Declares every message kind once: the [`Message`] enum, the [`Kind`] enum
/// with its wire names, and the per-kind dispatch used for decoding and
/// encoding. A kind added here is added everywhere, schemas included.
macro_rules! message_kinds {
    ($($(#[$doc:meta])* $variant:ident($body:ty) = $wire:literal;)*) => {
        /// The body of a message, one variant per kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Message {
            $($(#[$doc])* $variant($body),)*
        }

        /// The kind of a message, as named in the envelope's `kind` field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum Kind {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name written in the envelope.
            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $wire,)* }
            }

            /// Parses a wire name.
            pub fn from_wire(name: &str) -> Option<Kind> {
                match name { $($wire => Some(Kind::$variant),)* _ => None }
            }

            /// The JSON Schema of this kind's body.
            pub fn body_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(Kind::$variant => generator.subschema_for::<$body>(),)* }
            }

            /// The Rust type name of this kind's body, for documentation.
            pub fn body_type_name(self) -> &'static str {
                match self { $(Kind::$variant => stringify!($body),)* }
            }
        }

        impl Message {
            /// The kind of this body.
            pub fn kind(&self) -> Kind {
                match self { $(Message::$variant(_) => Kind::$variant,)* }
            }

            /// Checks the value ranges that the JSON types cannot express.
            pub fn validate(&self) -> Result<(), crate::decode::Violation> {
                match self { $(Message::$variant(body) => body.validate(),)* }
            }

            pub(crate) fn serialize_body<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $(Message::$variant(body) => body.serialize(serializer),)* }
            }

            pub(crate) fn deserialize_body<'de, D: serde::Deserializer<'de>>(kind: Kind, deserializer: D) -> Result<Message, D::Error> {
                match kind { $(Kind::$variant => <$body>::deserialize(deserializer).map(Message::$variant),)* }
            }
        }

        $(impl From<$body> for Message {
            fn from(body: $body) -> Message { Message::$variant(body) }
        })*
    };
}

message_kinds! {
    /// A station came online (retained) or went offline (its last will).
    StationStatus(StationStatus) = "station_status";
    /// Periodic hardware and activity report of a station.
    Telemetry(Telemetry) = "telemetry";
    /// A customer typed a ticket at a station.
    LoginRequest(LoginRequest) = "login_request";
    /// A session started or ended at a station.
    SessionEvent(SessionEvent) = "session_event";
    /// Signs of use at a station that has no open session.
    Activity(Activity) = "activity";
    /// A station's lock screen was killed or hung.
    Tamper(Tamper) = "tamper";
    /// A reading of a safety sensor bridged by a station.
    SensorReading(SensorReading) = "sensor_reading";
    /// An order from the agent to a station.
    Command(Command) = "command";
    /// A station's report of how a command really ended.
    CommandAck(CommandAck) = "command_ack";
    /// The agent's application-level receipt for messages it has stored.
    DeliveryAck(DeliveryAck) = "delivery_ack";
    /// The agent's own state, retained for stations and tools.
    AgentStatus(AgentStatus) = "agent_status";
    /// The periodic venue summary for the regulator.
    Summary(Summary) = "summary";
    /// An incident opened, acknowledged or resolved, for the regulator.
    Incident(IncidentEvent) = "incident";
    /// One entry of the registration log, for the regulator.
    Record(RegistrationRecord) = "record";
    /// Proof of life of a venue's uplink, for the regulator.
    Heartbeat(Heartbeat) = "heartbeat";
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
