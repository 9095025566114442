//! The wire contract of netbar and the rules every part of it shares.
//!
//! This crate is pure: it holds types, topic names, validation, identity
//! documents and policy evaluation, and nothing here touches the outside world.
//! There is no async runtime, no socket, no file and no clock: the current
//! instant always comes in as an argument. That keeps every rule testable with
//! a table of inputs and lets the agent, the collector and the regulator's tools
//! agree on one definition of each message.
//!
//! It is also the only crate that knows the JSON shape of a message: everyone
//! else builds [`Envelope`]s with typed bodies and calls [`encode`] and
//! [`decode`].

pub mod auth;
pub mod countries;
pub mod decode;
pub mod envelope;
pub mod examples;
pub mod identity;
pub mod ids;
pub mod local;
pub mod messages;
pub mod policy;
pub mod schema;
pub mod settings;
pub mod topic;

pub use auth::{AuthError, MacTag, StationKey};
pub use decode::{DecodeError, MAX_MESSAGE_BYTES, decode, encode};
pub use envelope::{Envelope, Kind, Message, MessageId, SCHEMA_VERSION, Sender, SenderRole, sequence_from_clock};
pub use ids::{GaCode, Id, IdKind, RegionCode, SensorId, StationId, VenueId};
pub use topic::{Prefix, RegulatorChannel, StationChannel, Topic, TopicError};
