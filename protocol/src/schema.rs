//! JSON Schemas and the AsyncAPI document, generated from the Rust types.
//!
//! The generated files live in `protocol/schemas/` and `protocol/asyncapi.json`
//! so that people and other languages can read the contract without Rust. A
//! test regenerates them and fails when the checked-in copies are stale; run
//! it with `NETBAR_BLESS=1` to rewrite them.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use crate::envelope::{Kind, MessageId, SCHEMA_VERSION, Sender};
use crate::ids::VenueId;
use crate::topic::{RegulatorChannel, StationChannel};

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// The envelope's schema for a message of `kind`, with `body` referring to
/// the body's schema; definitions go to `generator`.
fn envelope_schema(kind: Kind, generator: &mut SchemaGenerator) -> Schema {
    let id = generator.subschema_for::<MessageId>();
    let ts = generator.subschema_for::<jiff::Timestamp>();
    let venue = generator.subschema_for::<VenueId>();
    let sender = generator.subschema_for::<Sender>();
    let body = kind.body_schema(generator);
    let mac = generator.subschema_for::<crate::auth::MacTag>();
    json_schema!({
        "type": "object",
        "additionalProperties": false,
        "required": ["schema", "id", "ts", "venue", "sender", "seq", "kind", "body"],
        "properties": {
            "schema": { "const": SCHEMA_VERSION, "description": "Version of the contract." },
            "id": id,
            "ts": ts,
            "venue": venue,
            "sender": sender,
            "seq": { "type": "integer", "minimum": 0, "description": "Per-sender sequence number, never reused: a receiver refuses one it accepted before; the agent's commands carry its own command number. 0 for messages outside the sequence (live telemetry, retained status, last will, receipts), which count only within a window around the receiver's clock." },
            "kind": { "const": kind.as_str() },
            "body": body,
            "mac": mac,
        }
    })
}

/// The stand-alone JSON Schema of a message of `kind`.
pub fn kind_schema(kind: Kind) -> Value {
    let mut generator = generator();
    let mut schema = envelope_schema(kind, &mut generator).to_value();
    if let Value::Object(object) = &mut schema {
        object.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        object.insert("$id".into(), json!(format!("https://netbar.example/schemas/v{SCHEMA_VERSION}/{}.json", kind.as_str())));
        object.insert("title".into(), json!(kind.body_type_name()));
        let definitions = generator.take_definitions(true);
        if !definitions.is_empty() {
            object.insert("$defs".into(), Value::Object(definitions));
        }
    }
    schema
}

fn channel_entry(address: &str, kinds: &[Kind], parameters: &[(&str, &str)], description: &str) -> Value {
    let messages: Map<String, Value> = kinds
        .iter()
        .map(|kind| (kind.as_str().to_owned(), json!({ "$ref": format!("#/components/messages/{}", kind.as_str()) })))
        .collect();
    let parameters: Map<String, Value> =
        parameters.iter().map(|(name, description)| ((*name).to_owned(), json!({ "description": description }))).collect();
    json!({ "address": address, "description": description, "messages": messages, "parameters": parameters })
}

/// What a regulator reads about one channel of the feed.
fn regulator_description(channel: RegulatorChannel) -> &'static str {
    match channel {
        RegulatorChannel::Summary => {
            "A venue's summary every period (default 5 minutes): stations, customers present, check-ins admitted and refused by reason, unregistered use, incidents opened, acknowledged, resolved and open by severity, sensor health, the compliance level (red: an open critical incident or one nobody acknowledged; yellow: an open acknowledged incident, a silent sensor or station, the outbox half full or more, or a store failure; green otherwise), the head of the registration log's hash chain, and store_error when the venue's store failed. While the outbox holds outbox_max messages or more (the regulator unreachable for long), a period's summary is not queued: the next one that is covers every period since the last one queued (its from is earlier, its counts add up), so no count is lost and no sequence number is skipped. QoS 1, numbered in the venue's feed sequence."
        }
        RegulatorChannel::Incident => {
            "Each incident transition (opened, acknowledged, resolved) as it happens; incident_id ties them together. QoS 1, numbered in the venue's feed sequence."
        }
        RegulatorChannel::Record => {
            "One entry of the registration log per check-in attempt, admitted or refused with its reasons, with the person as the jurisdiction requires (none, pseudonymised by a key kept at the venue, or in full) and the entry's place in the hash chain. QoS 1, numbered in the venue's feed sequence."
        }
        RegulatorChannel::Heartbeat => {
            "Proof of life every heartbeat period: the messages waiting in the venue's outbox and the log's head; when the venue's store cannot answer, those are absent and store_error says why. seq 0: outside the sequence."
        }
    }
}

/// The AsyncAPI 3 document of the whole contract: every topic, who sends on
/// it, and the schema of every message.
pub fn asyncapi() -> Value {
    const VENUE: (&str, &str) = ("venue", "The venue's id.");
    const STATION: (&str, &str) = ("station", "The station's enrolled id.");
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut operation = |name: String, action: &str, channel: &str, kinds: &[Kind]| {
        let messages: Vec<Value> =
            kinds.iter().map(|kind| json!({ "$ref": format!("#/channels/{channel}/messages/{}", kind.as_str()) })).collect();
        operations.insert(name, json!({ "action": action, "channel": { "$ref": format!("#/channels/{channel}") }, "messages": messages }));
    };
    for &channel in StationChannel::ALL {
        let name = format!("station_{}", channel.as_str());
        let address = format!("netbar/v1/{{venue}}/station/{{station}}/{}", channel.as_str());
        channels.insert(name.clone(), channel_entry(&address, channel.kinds(), &[VENUE, STATION], "A station's topic inside the venue."));
        // Actions are from the agent's point of view.
        let action = match channel {
            StationChannel::Command | StationChannel::Delivery => "send",
            _ => "receive",
        };
        operation(format!("{action}_{name}"), action, &name, channel.kinds());
    }
    channels.insert(
        "sensor_reading".into(),
        channel_entry(
            "netbar/v1/{venue}/sensor/{sensor}/reading",
            &[Kind::SensorReading],
            &[VENUE, ("sensor", "The sensor's enrolled id.")],
            "A safety sensor's readings, bridged by a station.",
        ),
    );
    operation("receive_sensor_reading".into(), "receive", "sensor_reading", &[Kind::SensorReading]);
    channels.insert(
        "agent_status".into(),
        channel_entry("netbar/v1/{venue}/agent/status", &[Kind::AgentStatus], &[VENUE], "The agent's retained status."),
    );
    operation("send_agent_status".into(), "send", "agent_status", &[Kind::AgentStatus]);
    for &channel in RegulatorChannel::ALL {
        let name = format!("regulator_{}", channel.as_str());
        let address = format!("{{prefix}}/{{region}}/{{venue}}/{}", channel.as_str());
        channels.insert(
            name.clone(),
            channel_entry(
                &address,
                channel.kinds(),
                &[("prefix", "The regulator's topic prefix, one or more levels."), ("region", "The regulator's district code."), VENUE],
                regulator_description(channel),
            ),
        );
        operation(format!("send_{name}"), "send", &name, channel.kinds());
    }

    let mut generator = generator();
    let mut messages = Map::new();
    for &kind in Kind::ALL {
        let payload = envelope_schema(kind, &mut generator).to_value();
        messages.insert(
            kind.as_str().to_owned(),
            json!({ "name": kind.as_str(), "title": kind.body_type_name(), "contentType": "application/json", "payload": payload }),
        );
    }
    let schemas = Value::Object(generator.take_definitions(true));
    // schemars refers to definitions as #/$defs/…; AsyncAPI keeps them under
    // #/components/schemas/.
    let text = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "netbar",
            "version": format!("{SCHEMA_VERSION}"),
            "description": "The MQTT contract between netbar's station collectors, the venue agent and the regulator's broker. On the regulator's broker, summaries, incidents and records of a venue share one sequence (seq), contiguous from 1 across restarts of the agent; a message leaves the venue's outbox only when the broker acknowledged it, and everything unacknowledged is sent again after a reconnect, so a message may arrive twice: deduplicate by id, and a gap in seq is a lost message. Records and incidents are never dropped at the venue (its disk is the bound; check-ins are refused when it is full). The log head (index and hash) in summaries, heartbeats and records lets the regulator catch a log truncated or re-chained at the venue: a head that goes backwards, or an index that comes back with another hash. Generated from netbar-protocol; do not edit by hand."
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages, "schemas": schemas }
    })
    .to_string()
    .replace("\"#/$defs/", "\"#/components/schemas/");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every generated file: its path relative to `protocol/` and its content.
pub fn files() -> Vec<(String, String)> {
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    let mut files: Vec<(String, String)> =
        Kind::ALL.iter().map(|&kind| (format!("schemas/{}.json", kind.as_str()), pretty(&kind_schema(kind)))).collect();
    files.push(("asyncapi.json".to_owned(), pretty(&asyncapi())));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_fresh() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let bless = std::env::var_os("NETBAR_BLESS").is_some();
        let mut stale = Vec::new();
        for (path, content) in files() {
            let full = root.join(&path);
            if bless {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, &content).unwrap();
            } else if std::fs::read_to_string(&full).ok().as_deref() != Some(content.as_str()) {
                stale.push(path);
            }
        }
        assert!(stale.is_empty(), "stale generated files {stale:?}; regenerate with NETBAR_BLESS=1 cargo test -p netbar-protocol");
    }

    #[test]
    fn every_kind_has_a_schema_naming_it() {
        for &kind in Kind::ALL {
            let schema = kind_schema(kind);
            assert_eq!(schema["properties"]["kind"]["const"], kind.as_str());
            assert_eq!(schema["additionalProperties"], false);
        }
        let document = asyncapi();
        assert_eq!(document["asyncapi"], "3.0.0");
        assert_eq!(document["components"]["messages"].as_object().unwrap().len(), Kind::ALL.len());
        assert!(!document.to_string().contains("#/$defs/"));
    }
}
