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
    #[serde(default)]
    mac: Option<crate::auth::MacTag>,
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
    Ok(Envelope {
        schema: SCHEMA_VERSION,
        id: wire.id,
        ts: wire.ts,
        venue: wire.venue,
        sender: wire.sender,
        seq: wire.seq,
        message,
        mac: wire.mac,
    })
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
        mac: envelope.mac.as_ref(),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<&'a crate::auth::MacTag>,
}

struct Body<'a>(&'a Message);

impl Serialize for Body<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_body(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::examples;

    fn golden_path(kind: Kind) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(format!("{}.json", kind.as_str()))
    }

    #[test]
    fn golden_examples_round_trip() {
        let bless = std::env::var_os("NETBAR_BLESS").is_some();
        for &kind in Kind::ALL {
            let example = examples::envelope(kind);
            let encoded: Value = serde_json::from_str(&encode(&example)).unwrap();
            let path = golden_path(kind);
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, serde_json::to_string_pretty(&encoded).unwrap() + "\n").unwrap();
            }
            let golden = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let decoded = decode(&golden).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            assert_eq!(decoded, example, "{} decodes to something else than the example", path.display());
            let golden: Value = serde_json::from_slice(&golden).unwrap();
            assert_eq!(encoded, golden, "{} is stale; regenerate with NETBAR_BLESS=1", path.display());
            assert_eq!(decode(encode(&decoded).as_bytes()).unwrap(), decoded);
        }
    }

    /// The telemetry example as JSON, for tests to break.
    fn telemetry() -> Value {
        serde_json::from_str(&encode(&examples::envelope(Kind::Telemetry))).unwrap()
    }

    type Breaker = fn(&mut Value);
    type Expectation = Box<dyn Fn(&DecodeError) -> bool>;

    fn decode_value(value: &Value) -> Result<Envelope, DecodeError> {
        decode(value.to_string().as_bytes())
    }

    fn field(path: &str, message: &str) -> impl Fn(&DecodeError) -> bool {
        let (path, message) = (path.to_owned(), message.to_owned());
        move |error| matches!(error, DecodeError::Field { path: p, message: m } if *p == path && m.contains(&message))
    }

    #[test]
    fn each_failure_is_typed_and_located() {
        let too_large = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode(&too_large), Err(DecodeError::TooLarge { size: MAX_MESSAGE_BYTES + 1 }));
        assert_eq!(decode(b"{\"a\":\"\xff\"}"), Err(DecodeError::NotText { offset: 6 }));
        match decode(b"{\n  \"schema\": 1,\n  \"id\": }") {
            Err(DecodeError::Syntax { line: 3, column: 9, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(b"{\"schema\": 1"), Err(DecodeError::Syntax { .. })));
        assert!(matches!(decode(b""), Err(DecodeError::Syntax { .. })));

        let mut value = telemetry();
        value.as_object_mut().unwrap().remove("schema");
        assert_eq!(decode_value(&value), Err(DecodeError::MissingVersion));
        value["schema"] = json!(2);
        value["unheard_of"] = json!(true);
        assert_eq!(decode_value(&value), Err(DecodeError::UnsupportedVersion { found: "2".into() }));
        value["schema"] = json!("1");
        assert_eq!(decode_value(&value), Err(DecodeError::UnsupportedVersion { found: "\"1\"".into() }));

        let cases: Vec<(Breaker, Expectation)> = vec![
            (|v| v["kind"] = json!("teleportation"), Box::new(|e| *e == DecodeError::UnknownKind { found: "teleportation".into() })),
            (|v| v["unheard_of"] = json!(1), Box::new(field("unheard_of", "unknown field `unheard_of`"))),
            (
                |v| {
                    v.as_object_mut().unwrap().remove("seq");
                },
                Box::new(field("(message)", "missing field `seq`")),
            ),
            (|v| v["seq"] = json!(-1), Box::new(field("seq", "invalid value"))),
            (|v| v["id"] = json!("not-a-uuid"), Box::new(field("id", "is not a UUID"))),
            (|v| v["id"] = json!("67e55044-10b1-426f-9247-bb680e5fe0c8"), Box::new(field("id", "version 4 UUID"))),
            (|v| v["ts"] = json!("yesterday"), Box::new(field("ts", ""))),
            (|v| v["venue"] = json!("sh/0042"), Box::new(field("venue", "venue id holds '/'"))),
            (|v| v["sender"]["id"] = json!(""), Box::new(field("sender.id", "is empty"))),
            (|v| v["sender"]["role"] = json!("regulator"), Box::new(field("sender.role", "unknown variant `regulator`"))),
            (
                |v| {
                    v["body"].as_object_mut().unwrap().remove("cpu_percent");
                },
                Box::new(field("body", "missing field `cpu_percent`")),
            ),
            (|v| v["body"]["cpu_percent"] = json!("high"), Box::new(field("body.cpu_percent", "invalid type"))),
            (|v| v["body"]["fan_rpm"] = json!(1200), Box::new(field("body.fan_rpm", "unknown field `fan_rpm`"))),
            (|v| v["body"]["disks"][0]["free_bytes"] = json!(-5), Box::new(field("body.disks[0].free_bytes", "invalid value"))),
            (|v| v["body"]["lock_state"] = json!("ajar"), Box::new(field("body.lock_state", "unknown variant `ajar`"))),
            (
                |v| v["body"]["cpu_percent"] = json!(100.5),
                Box::new(|e| matches!(e, DecodeError::Range(v) if v.field == "cpu_percent" && v.reason.contains("between 0 and 100"))),
            ),
            (
                |v| v["body"]["disks"][0]["free_bytes"] = json!(600_000_000_000u64),
                Box::new(|e| matches!(e, DecodeError::Range(v) if v.field == "disks[0].free_bytes")),
            ),
            (
                |v| v["body"]["temperatures"][1]["celsius"] = json!(400),
                Box::new(|e| matches!(e, DecodeError::Range(v) if v.field == "temperatures[1].celsius")),
            ),
            (
                |v| v["body"]["memory_used_bytes"] = json!(u64::MAX),
                Box::new(|e| matches!(e, DecodeError::Range(v) if v.field == "memory_used_bytes")),
            ),
        ];
        for (index, (break_it, expect)) in cases.into_iter().enumerate() {
            let mut value = telemetry();
            break_it(&mut value);
            let result = decode_value(&value);
            match result {
                Err(error) if expect(&error) => assert!(!error.to_string().is_empty()),
                other => panic!("case {index}: unexpected {other:?}"),
            }
        }
    }

    /// Regression: texts were limited in bytes, so a notice of 400 Chinese
    /// characters (1,200 bytes) was refused where 1,024 English ones passed.
    #[test]
    fn texts_are_limited_in_characters_in_every_script() {
        let notice = |text: String| {
            let mut value: Value = serde_json::from_str(&encode(&examples::envelope(Kind::Command))).unwrap();
            value["body"]["action"] = json!({ "action": "notify", "level": "info", "text": text });
            decode_value(&value)
        };
        for script in ["a", "网", "한", "é", "🔥"] {
            assert!(notice(script.repeat(crate::messages::MAX_TEXT)).is_ok(), "{script}");
            let error = notice(script.repeat(crate::messages::MAX_TEXT + 1)).unwrap_err().to_string();
            assert!(error.contains("is 1025 characters long, at most 1024 allowed"), "{script}: {error}");
        }
    }

    #[test]
    fn range_errors_name_the_body_field() {
        let mut value = telemetry();
        value["body"]["cpu_percent"] = json!(101);
        let error = decode_value(&value).unwrap_err();
        assert_eq!(error.code(), "range");
        assert_eq!(error.to_string(), "field `body.cpu_percent` is 101, must be between 0 and 100");
    }

    #[test]
    fn bodies_check_their_ranges() {
        let breakers: Vec<(Kind, Breaker, &str)> = vec![
            (Kind::StationStatus, |v| v["body"]["capabilities"][0] = json!("lock screen"), "capabilities[0]"),
            (Kind::StationStatus, |v| v["body"]["session"] = json!("s 1"), "session"),
            (Kind::Activity, |v| v["body"]["evidence"] = json!([]), "evidence"),
            (Kind::SensorReading, |v| v["body"]["battery_percent"] = json!(101), "battery_percent"),
            (Kind::SensorReading, |v| v["body"]["reading"] = json!({"unit": "persons", "value": 3}), "reading.unit"),
            (Kind::Command, |v| v["body"]["action"]["session_id"] = json!("a b"), "action.session_id"),
            (Kind::CommandAck, |v| v["body"]["command_id"] = json!(""), "command_id"),
            (Kind::DeliveryAck, |v| v["body"]["entries"] = json!([]), "entries"),
            (Kind::Summary, |v| v["body"]["to"] = v["body"]["from"].clone(), "to"),
            (Kind::Summary, |v| v["body"]["stations_online"] = json!(121), "stations_online"),
            (Kind::Summary, |v| v["body"]["log_head"]["hash"] = json!("ABC"), "log_head.hash"),
            (Kind::Incident, |v| v["body"]["transition"]["detail"] = json!("x".repeat(2000)), "transition.detail"),
            (Kind::Record, |v| v["body"]["index"] = json!(0), "index"),
            (Kind::Heartbeat, |v| v["body"]["log_head"]["hash"] = json!(""), "log_head.hash"),
            (Kind::Heartbeat, |v| v["body"]["store_error"] = json!("x".repeat(2000)), "store_error"),
            (Kind::Summary, |v| v["body"]["store_error"] = json!("x".repeat(2000)), "store_error"),
        ];
        for (kind, break_it, field) in breakers {
            let mut value: Value = serde_json::from_str(&encode(&examples::envelope(kind))).unwrap();
            break_it(&mut value);
            match decode_value(&value) {
                Err(DecodeError::Range(violation)) => assert_eq!(violation.field, field, "{kind}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn deeply_nested_input_is_refused_without_overflow() {
        let deep = format!("{{\"schema\":1,\"body\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn never_panics_on_mutated_examples() {
        for envelope in examples::all() {
            let bytes = encode(&envelope).into_bytes();
            for cut in 0..bytes.len() {
                let _ = decode(&bytes[..cut]);
            }
            for index in 0..bytes.len() {
                for replacement in [b'"', b'{', b'}', b'0', b'-', b'\\', 0xff, b' '] {
                    let mut mutated = bytes.clone();
                    mutated[index] = replacement;
                    let _ = decode(&mutated);
                }
            }
        }
    }
}
