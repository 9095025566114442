//! The law as netbar keeps it, seen from outside: what a Korean venue's
//! folder, exports and feed hold of a person (개인정보 보호법 제24조의2
//! forbids it resident registration numbers), the clean-up of a database an
//! earlier release wrote, and the rules table's tests.

use std::path::Path;
use std::process::Command as Run;
use std::time::Duration;

use netbar_protocol::{Message, decode};
use netbar_tests::{Client, Mosquitto, binary};
use serde_json::json;

use super::agent::Venue;

const WAIT: Duration = Duration::from_secs(30);

/// A Korean database written by netbar-agent at 41c5959, the release before
/// the redaction: four check-ins (three resident registration numbers, one
/// passport; two names) and a check-out, four records waiting for the
/// regulator with the full numbers in them (tests/fixtures/README.md).
const PREVIOUS_RELEASE_KR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/netbar-41c5959-kr.sqlite");

/// What must be found nowhere: each whole number, with and without its
/// hyphen, and its last seven digits (the sex digit and the six after it,
/// which a venue may not keep); a passport number; names.
fn secrets(numbers: &[&str], others: &[&str]) -> Vec<String> {
    let mut secrets: Vec<String> =
        numbers.iter().flat_map(|number| [number.to_string(), number.replace('-', ""), number[7..].to_owned()]).collect();
    secrets.extend(others.iter().map(|other| other.to_string()));
    secrets
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Every file under `dir`, as (path, bytes).
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

/// The secrets found in `what`, named.
fn found_in<'a>(what: impl IntoIterator<Item = (String, &'a [u8])>, secrets: &[String]) -> Vec<String> {
    what.into_iter()
        .flat_map(|(name, bytes)| {
            secrets.iter().filter(|secret| contains(bytes, secret)).map(move |secret| format!("{secret:?} in {name}"))
        })
        .collect()
}

fn folder_findings(dir: &Path, secrets: &[String]) -> Vec<String> {
    let files = files(dir);
    found_in(files.iter().map(|(path, bytes)| (path.display().to_string(), bytes.as_slice())), secrets)
}

/// A Korean venue with a regulator feed in clear to `broker`, records
/// disclosed in full: what the regulator would get of a person.
fn korean_with_feed(name: &str, broker: &Mosquitto) -> Venue {
    let venue = Venue::korean(name);
    let section = format!(
        "\n[uplink]\nbroker = \"mqtt://127.0.0.1:{}\"\ninsecure = true\nregion = \"110000\"\nsummary_period = 1\nheartbeat_period = 1\nmax_backoff = 1\ndisclosure = \"full\"\n",
        broker.port
    );
    let mut text = std::fs::read_to_string(&venue.config).unwrap();
    text.push_str(&section);
    std::fs::write(&venue.config, text).unwrap();
    venue
}

/// The payloads of the records the regulator receives, until `count` of them.
fn records(regulator: &Client, count: usize) -> Vec<(netbar_protocol::messages::RegistrationRecord, Vec<u8>)> {
    let mut received = std::collections::BTreeMap::new();
    regulator.expect("the records", WAIT, |_, payload| {
        let envelope = decode(payload).expect("the feed decodes");
        if let Message::Record(record) = envelope.message {
            received.insert(envelope.seq, (record, payload.to_vec()));
        }
        (received.len() >= count).then_some(())
    });
    received.into_values().collect()
}

/// 개인정보 보호법 제24조의2: three Korean customers checked in through the
/// API with their whole numbers typed (and a name, which is not kept), a
/// passport too, a mistyped number, `check-id` at the command line: the
/// venue's folder (database, write-ahead log, logs), its exports, what the
/// API answered, its metrics and the feed the regulator received hold none
/// of the digits a venue may not keep, while the agent runs and after it
/// stopped. What the log keeps proves the check: kind, birth date,
/// decision, cashier, time.
#[test]
fn a_korean_venue_keeps_no_resident_number_in_its_folder_exports_or_feed() {
    let broker = Mosquitto::start();
    let regulator = Client::connect(broker.port, &["netbar/feed/#"]);
    let mut venue = korean_with_feed("law-kr", &broker);
    // 23:00 in Seoul: the youth is refused, the others admitted.
    venue.start_at(Some("2026-12-15T23:00:00+09:00"));
    let token = venue.sign_in("park", "cashier");
    let (adult, youth, born_2007) = ("900101-1234568", "1105053123452", "070315-4123454");
    let mut answers = Vec::new();
    for (body, expected) in [
        (json!({"document_type": "kr_rrn", "number": adult, "name": "김철수"}), 201),
        (json!({"document_type": "kr_rrn", "number": youth}), 200),
        (json!({"document_type": "kr_rrn", "number": born_2007}), 201),
        (json!({"document_type": "other", "number": "M12345678", "birth_date": "1985-06-30", "name": "John Smith"}), 201),
        (json!({"document_type": "kr_rrn", "number": "900101-12345x8"}), 422),
        (json!({"document_type": "kr_rrn", "number": adult}), 201),
    ] {
        let (status, text) = netbar_tests::http_text(venue.http, "POST", "/api/v1/checkins/questions", Some(&token), Some(&body));
        answers.push(text);
        let (status_in, answer) = netbar_tests::http_text(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
        assert_eq!(status_in, expected, "{body}: {answer}");
        assert!(status == 200 || expected == 422, "{body}: {status}");
        answers.push(answer);
    }
    // A number sent as a JSON number is refused without being repeated.
    let (status, refused) = netbar_tests::http_text(
        venue.http,
        "POST",
        "/api/v1/checkins",
        Some(&token),
        Some(&json!({"document_type": "kr_rrn", "number": 9001011234568u64})),
    );
    assert_eq!(status, 422, "{refused}");
    answers.push(refused);
    let (_, metrics) = netbar_tests::http_text(venue.http, "GET", "/metrics", None, None);
    let check_id = Run::new(binary("netbar-agent"))
        .args(["check-id", "--jurisdiction", "kr", "--at", "2026-12-15T23:00:00+09:00", adult, "900101-12345x8"])
        .output()
        .unwrap();
    assert!(check_id.status.success(), "{}", String::from_utf8_lossy(&check_id.stderr));
    let feed = records(&regulator, 4);
    let secrets = secrets(&[adult, "110505-3123452", born_2007], &["M12345678", "김철수", "John Smith", "12345x8"]);

    let running = folder_findings(venue.dir.path(), &secrets);
    assert!(running.is_empty(), "while the agent runs: {running:?}");
    let mut elsewhere: Vec<(String, &[u8])> = answers.iter().map(|answer| ("an API answer".to_owned(), answer.as_bytes())).collect();
    elsewhere.push(("/metrics".into(), metrics.as_bytes()));
    elsewhere.push(("check-id".into(), &check_id.stdout));
    elsewhere.extend(feed.iter().map(|(_, payload)| ("the feed".to_owned(), payload.as_slice())));
    let found = found_in(elsewhere, &secrets);
    assert!(found.is_empty(), "{found:?}");
    // What a record carries instead: the birth date's seven digits.
    let people: Vec<&netbar_protocol::messages::Person> = feed.iter().map(|(record, _)| &record.person).collect();
    assert!(
        matches!(people[0], netbar_protocol::messages::Person::Full { number, name, .. } if number == "900101-1" && name.is_empty()),
        "{people:?}"
    );

    venue.agent.as_mut().unwrap().terminate();
    let stopped = folder_findings(venue.dir.path(), &secrets);
    assert!(stopped.is_empty(), "after the agent stopped: {stopped:?}");
    for format in ["jsonl", "csv"] {
        let db = venue.dir.path().join("data").join("netbar.sqlite");
        let export = Run::new(binary("netbar-agent"))
            .args(["records", "export", "--db", db.to_str().unwrap(), "--from", "2026-01-01", "--to", "2027-12-31", "--format", format])
            .output()
            .unwrap();
        let found = found_in([(format!("records export --format {format}"), export.stdout.as_slice())], &secrets);
        assert!(found.is_empty(), "{found:?}");
        let text = String::from_utf8(export.stdout).unwrap();
        assert!(text.contains("900101-1") && text.contains("kr_resident_registration"), "the check is shown: {text}");
    }
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    let check_ins: Vec<serde_json::Value> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["kind"] == "check_in")
        .collect();
    assert_eq!(check_ins.len(), 5, "every attempt is logged: {export}");
    for entry in &check_ins {
        let body = &entry["body"];
        assert_eq!(body["by"], "park", "{body}");
        assert!(body["birth_date"].is_string() && body["outcome"].is_string() && body.get("name").is_none(), "{body}");
    }
    // Without numbers no document can be held to one check-in: the same
    // first seven digits again were admitted (no Korean rule asks otherwise).
    assert_eq!(check_ins[4]["body"]["outcome"], "admitted", "{}", check_ins[4]);
}

/// A Korean database written by the previous release holds whole numbers,
/// names and a passport number in its log and its outbox. `records redact`
/// cuts them, chains the log again from the first entry cut and records
/// that; `records verify` passes and names the entries cut. Started on such
/// a database, the agent does the same (the upgrade), and the records it
/// then sends the regulator carry the cut numbers and the new hashes.
#[test]
fn a_korean_database_of_the_previous_release_is_cleaned_and_its_chain_proves_it() {
    let secrets = secrets(&["900101-1234568", "110505-3123452", "070315-4123454"], &["M12345678", "김철수", "John Smith"]);
    // The search finds what is there: each number as stored (hyphenated),
    // its last seven digits, the passport and both names.
    let fixture = std::fs::read(PREVIOUS_RELEASE_KR).unwrap();
    let unhyphenated: Vec<String> = ["9001011234568", "1105053123452", "0703154123454"].map(str::to_owned).to_vec();
    let there: Vec<String> = secrets.iter().filter(|secret| !unhyphenated.contains(secret)).cloned().collect();
    assert_eq!(found_in([("the fixture".to_owned(), fixture.as_slice())], &there).len(), there.len());

    // By the command, the agent stopped.
    let venue = Venue::korean("law-redact");
    let data = venue.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(PREVIOUS_RELEASE_KR, data.join("netbar.sqlite")).unwrap();
    let verify = venue.records("verify");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let redact = Run::new(binary("netbar-agent")).args(["records", "redact", "--config", venue.config.to_str().unwrap()]).output().unwrap();
    let said = String::from_utf8_lossy(&redact.stdout);
    assert!(redact.status.success(), "{said}{}", String::from_utf8_lossy(&redact.stderr));
    assert!(
        said.contains("cut to what policy kr keeps: entries 1, 2, 3, 4 cut, entries 1 to 5 chained again, 4 messages for the regulator cut; recorded as entry 6"),
        "{said}"
    );
    let findings = folder_findings(venue.dir.path(), &secrets);
    assert!(findings.is_empty(), "{findings:?}");
    let verify = venue.records("verify");
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
    assert!(
        // The redaction, then the incident that tells the regulator, opened and resolved.
        said.contains("registration log intact: 8 entries")
            && said.contains("by records redact, policy kr): entries 1, 2, 3, 4 cut, entries 1 to 5 chained again"),
        "{said}"
    );
    let again = Run::new(binary("netbar-agent")).args(["records", "redact", "--config", venue.config.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to cut"), "{}", String::from_utf8_lossy(&again.stdout));

    // By the upgrade: the agent started on the old file, its waiting
    // records then delivered.
    let broker = Mosquitto::start();
    let regulator = Client::connect(broker.port, &["netbar/feed/#"]);
    let mut venue = korean_with_feed("law-upgrade", &broker);
    let data = venue.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(PREVIOUS_RELEASE_KR, data.join("netbar.sqlite")).unwrap();
    // The agent's clock near the fixture's, so that nothing of it is past
    // its retention whatever day the test runs.
    venue.start_at(Some("2026-12-01T12:00:00+09:00"));
    let mut told = None;
    let mut received = std::collections::BTreeMap::new();
    regulator.expect("the records and the redaction's incident", WAIT, |_, payload| {
        let envelope = decode(payload).expect("the feed decodes");
        match envelope.message {
            Message::Record(record) => {
                received.insert(envelope.seq, (record, payload.to_vec()));
            }
            Message::Incident(incident) => {
                if let netbar_protocol::messages::IncidentTransition::Opened { incident_kind, detail, .. } = incident.transition
                    && incident_kind == netbar_protocol::messages::IncidentKind::RecordsRedacted
                {
                    told = Some(detail);
                }
            }
            _ => {}
        }
        (received.len() >= 4 && told.is_some()).then_some(())
    });
    let feed: Vec<_> = received.into_values().collect();
    let told = told.unwrap();
    assert!(told.contains("entries 1, 2, 3, 4 cut, entries 1 to 5 chained again"), "{told}");
    assert!(
        venue.log().contains("document numbers or names the policy may not keep were cut out of the registration log"),
        "{}",
        venue.log()
    );
    venue.agent.as_mut().unwrap().terminate();
    let found = found_in(feed.iter().map(|(_, payload)| ("the feed".to_owned(), payload.as_slice())), &secrets);
    assert!(found.is_empty(), "{found:?}");
    let findings = folder_findings(venue.dir.path(), &secrets);
    assert!(findings.is_empty(), "{findings:?}");
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    let hashes: std::collections::BTreeMap<u64, String> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|entry| (entry["seq"].as_u64().unwrap(), entry["hash"].as_str().unwrap().to_owned()))
        .collect();
    for (record, _) in &feed {
        assert_eq!(Some(&record.hash), hashes.get(&record.index), "record {} carries its entry's new hash", record.index);
    }
    let verify = venue.records("verify");
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.contains("by netbar-agent at start, policy kr): entries 1, 2, 3, 4 cut"), "{said}");
    // The log holds the incident too, for the console and an inspection.
    assert!(export.contains("\"incident_kind\":\"records_redacted\""), "{export}");
}

/// Every test the rules table names (protocol/policies/rules.md, what
/// `check-id --explain` prints) exists in the workspace: the table cannot
/// cite a test that is gone.
#[test]
fn every_test_the_rules_table_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let table = std::fs::read_to_string(root.join("protocol/policies/rules.md")).unwrap();
    // The names in backticks of each row's last column (its tests), and of
    // the text around the tables that reads like a test's name.
    let backticked = |text: &str| -> Vec<String> { text.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let named: std::collections::BTreeSet<String> = table
        .lines()
        .flat_map(|line| match line.strip_prefix('|') {
            Some(row) => backticked(row.trim_end().trim_end_matches('|').rsplit('|').next().unwrap_or_default()),
            None => backticked(line).into_iter().filter(|name| name.matches('_').count() >= 4).collect(),
        })
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .collect();
    assert!(named.len() >= 20, "the table names its tests: {named:?}");
    let mut sources = String::new();
    for folder in ["protocol", "agent", "collector", "tests"] {
        for (path, bytes) in files(&root.join(folder)) {
            if path.extension().is_some_and(|ext| ext == "rs") && !path.components().any(|part| part.as_os_str() == "target") {
                sources.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let missing: Vec<&String> = named.iter().filter(|name| !sources.contains(&format!("fn {name}("))).collect();
    assert!(missing.is_empty(), "the rules table names tests that do not exist: {missing:?}");
    // And `check-id --explain` prints the table's section of each jurisdiction.
    for (jurisdiction, article) in [("kr", "제24조의2"), ("cn", "第二十三条")] {
        let output = Run::new(binary("netbar-agent")).args(["check-id", "--explain", "--jurisdiction", jurisdiction]).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success() && text.contains(article), "{jurisdiction}: {text}");
    }
}
