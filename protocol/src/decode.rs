//! Turning bytes into an [`Envelope`] and back.
//!
//! Decoding is strict and bounded, and each step has its own error:
//!
//! 1. the size limit, before a byte is parsed;
//! 2. the schema version, before anything else is believed;
//! 3. the header and the kind, with unknown fields refused;
//! 4. the body, parsed as the type its kind names, unknown fields refused;
//! 5. the value ranges JSON types cannot express.
//!
//! Every error names the field it is about as a path (`body.disks[1].free_bytes`).
//! Nothing here panics, whatever the input: serde_json bounds the nesting
//! depth, and every conversion that could fail returns an error instead.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{Envelope, Kind, Message, MessageId, SCHEMA_VERSION, Sender};
use crate::ids::VenueId;

/// Largest message accepted, in bytes. A station's telemetry is well under
/// 4 KiB; a full delivery acknowledgement under 40 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A value outside what its field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path within the body.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: &str, reason: String) -> Violation {
        Violation { field: field.to_owned(), reason }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.reason)
    }
}

/// Why bytes are not a message of this contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("message is {size} bytes long, at most {MAX_MESSAGE_BYTES} allowed")]
    TooLarge {
        /// Its length.
        size: usize,
    },
    /// Not UTF-8 text.
    #[error("message is not UTF-8 text: invalid byte at offset {offset}")]
    NotText {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Not well-formed JSON.
    #[error("message is not well-formed JSON: {message} (line {line}, column {column})")]
    Syntax {
        /// What the parser says.
        message: String,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
    },
    /// The `schema` field is missing.
    #[error("message has no schema version; this receiver speaks version {SCHEMA_VERSION}")]
    MissingVersion,
    /// The `schema` field names another version.
    #[error("schema version {found} is not supported; this receiver speaks version {SCHEMA_VERSION}")]
    UnsupportedVersion {
        /// The version written in the message.
        found: String,
    },
    /// The `kind` field names no known kind.
    #[error("message kind {found:?} is unknown")]
    UnknownKind {
        /// The kind written in the message.
        found: String,
    },
    /// A field is missing, unknown or of the wrong type or format.
    #[error("field `{path}`: {message}")]
    Field {
        /// Path of the field (`body.temperatures[0].celsius`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A field's value is outside its range.
    #[error("field `body.{}` {}", .0.field, .0.reason)]
    Range(Violation),
}

impl DecodeError {
    /// A short, stable code for counters and logs.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotText { .. } => "not_text",
            DecodeError::Syntax { .. } => "syntax",
            DecodeError::MissingVersion => "missing_version",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::UnknownKind { .. } => "unknown_kind",
            DecodeError::Field { .. } => "field",
            DecodeError::Range(_) => "range",
        }
    }
}

/// Reads only the version, so that a message of another version is refused
/// as such and not for fields this version does not know.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn<'a> {
    #[allow(dead_code)]
    schema: u32,
    id: MessageId,
    ts: Timestamp,
    venue: VenueId,
    sender: Sender,
    seq: u64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

fn field_error<E: fmt::Display>(prefix: &str, error: serde_path_to_error::Error<E>) -> DecodeError {
    let path = error.path().to_string();
    let path = match (prefix, path.as_str()) {
        ("", ".") => "(message)".to_owned(),
        (prefix, ".") => prefix.to_owned(),
        ("", path) => path.to_owned(),
        (prefix, path) => format!("{prefix}.{path}"),
    };
    let message = error.into_inner().to_string();
    // serde_json appends " at line L column C" to data errors; the path says where.
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message,
    };
    DecodeError::Field { path, message }
}

fn syntax_error(error: &serde_json::Error) -> Option<DecodeError> {
    if error.is_syntax() || error.is_eof() {
        let message = error.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        Some(DecodeError::Syntax { message, line: error.line(), column: error.column() })
    } else {
        None
    }
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { size: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|error| DecodeError::NotText { offset: error.valid_up_to() })?;

    let probe: Probe<'_> = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
        .map_err(|error| syntax_error(error.inner()).unwrap_or_else(|| field_error("", error)))?;
    let version = probe.schema.ok_or(DecodeError::MissingVersion)?.get();
    if version != SCHEMA_VERSION.to_string() {
        return Err(DecodeError::UnsupportedVersion { found: version.chars().take(40).collect() });
    }

    let wire: WireIn<'_> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(|error| field_error("", error))?;
    wire.sender.check().map_err(|message| DecodeError::Field { path: "sender.id".to_owned(), message })?;
    let kind = Kind::from_wire(&wire.kind).ok_or_else(|| DecodeError::UnknownKind { found: wire.kind.chars().take(64).collect() })?;
    let message = decode_body(kind, wire.body.get())?;
    message.validate().map_err(DecodeError::Range)?;
    Ok(Envelope { schema: SCHEMA_VERSION, id: wire.id, ts: wire.ts, venue: wire.venue, sender: wire.sender, seq: wire.seq, message })
}

fn decode_body(kind: Kind, body: &str) -> Result<Message, DecodeError> {
    let mut track = serde_path_to_error::Track::new();
    let mut json = serde_json::Deserializer::from_str(body);
    let result = Message::deserialize_body(kind, serde_path_to_error::Deserializer::new(&mut json, &mut track))
        .and_then(|message| json.end().map(|()| message));
    result.map_err(|error| field_error("body", serde_path_to_error::Error::new(track.path(), error)))
}

/// Writes one message as compact JSON: the header fields, then `kind`, then
/// `body`.
pub fn encode(envelope: &Envelope) -> String {
    let wire = WireOut {
        schema: envelope.schema,
        id: envelope.id,
        ts: envelope.ts,
        venue: &envelope.venue,
        sender: &envelope.sender,
        seq: envelope.seq,
        kind: envelope.kind(),
        body: Body(&envelope.message),
    };
    // Cannot fail: every map in a message has string keys, and serde_json
    // writes any float (even a non-finite one, as null) without error.
    #[allow(clippy::expect_used)]
    serde_json::to_string(&wire).expect("an envelope always serializes to JSON")
}

#[derive(Serialize)]
struct WireOut<'a> {
    schema: u32,
    id: MessageId,
    ts: Timestamp,
    venue: &'a VenueId,
    sender: &'a Sender,
    seq: u64,
    kind: Kind,
    body: Body<'a>,
}

struct Body<'a>(&'a Message);

impl Serialize for Body<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_body(serializer)
    }
}
