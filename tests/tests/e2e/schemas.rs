//! The generated JSON Schemas describe what the decoder accepts: every golden
//! example is valid under its kind's schema, and a broken one is not.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn golden_examples_satisfy_their_schemas() {
    for &kind in netbar_protocol::Kind::ALL {
        let schema = read_json(&protocol_dir().join(format!("schemas/{kind}.json")));
        let validator = jsonschema::validator_for(&schema).unwrap_or_else(|error| panic!("schema of {kind}: {error}"));
        let golden = read_json(&protocol_dir().join(format!("golden/{kind}.json")));
        let errors: Vec<String> = validator.iter_errors(&golden).map(|error| format!("{} at {}", error, error.instance_path())).collect();
        assert!(errors.is_empty(), "golden {kind} does not satisfy its schema: {errors:?}");

        let mut unknown = golden.clone();
        unknown["body"]["surprise"] = Value::Bool(true);
        assert!(!validator.is_valid(&unknown), "{kind}: the schema accepts an unknown body field");
        let mut wrong_kind = golden.clone();
        wrong_kind["kind"] = Value::String("something_else".into());
        assert!(!validator.is_valid(&wrong_kind), "{kind}: the schema accepts another kind");
        let mut old_id = golden;
        old_id["id"] = Value::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into());
        assert!(!validator.is_valid(&old_id), "{kind}: the schema accepts a UUIDv4 id");
    }
}

#[test]
fn asyncapi_document_references_resolve() {
    let document = read_json(&protocol_dir().join("asyncapi.json"));
    assert_eq!(document["asyncapi"], "3.0.0");
    let mut pending = vec![&document];
    let mut references = 0;
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("external reference {reference}"));
                    assert!(document.pointer(pointer).is_some(), "dangling reference {reference}");
                    references += 1;
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    assert!(references > netbar_protocol::Kind::ALL.len(), "only {references} references checked");
}
