//! `netbar-collector` against a real mosquitto on an ephemeral port, with
//! the test playing the agent.

use std::path::Path;
use std::process::Command as Run;
use std::time::Duration;

use jiff::Timestamp;
use netbar_protocol::messages::*;
use netbar_protocol::{Envelope, Kind, Message, MessageId, Sender, StationKey, decode, encode};
use netbar_tests::{Client, Mosquitto, Process, TempDir, binary, free_port, wait_for};
use serde_json::Value;

const VENUE: &str = "v-test";
const STATION: &str = "st-1";
const WAIT: Duration = Duration::from_secs(20);
/// The station's key from enrollment, shared with the agent (the test).
const KEY: [u8; 32] = [0x5a; 32];

fn topic(channel: &str) -> String {
    format!("netbar/v1/{VENUE}/station/{STATION}/{channel}")
}

/// A collector with its own config, spool and lock-state file.
struct Collector {
    process: Process,
    dir: TempDir,
    config: std::path::PathBuf,
}

impl Collector {
    fn start(broker_port: u16, extra: &str, lock_works: bool) -> Collector {
        Collector::start_with(&format!("port = {broker_port}"), extra, lock_works)
    }

    /// A collector whose `[broker]` section holds `broker` (besides keep-alive and backoff).
    fn start_on(broker: &str, extra: &str) -> Collector {
        Collector::start_with(broker, extra, true)
    }

    fn start_with(broker: &str, extra: &str, lock_works: bool) -> Collector {
        let dir = TempDir::new("collector");
        let state = dir.path().join("locked");
        std::fs::write(&state, "yes\n").unwrap();
        let state = state.display().to_string();
        let lock = if lock_works { format!("echo yes > {state}") } else { "echo 'lock screen crashed' >&2; exit 1".to_owned() };
        let key_file = dir.path().join("station.key");
        std::fs::write(&key_file, StationKey::from_bytes(KEY).to_hex()).unwrap();
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[station]
venue = "{VENUE}"
id = "{STATION}"
key_file = "{key_file}"
[broker]
{broker}
keep_alive = 5
max_backoff = 1
[telemetry]
interval = 0.2
[spool]
dir = "{spool}"
[local]
listen = "127.0.0.1:{local}"
[actions]
lock = ["sh", "-c", "{lock}"]
unlock = ["sh", "-c", "echo no > {state}"]
notify = ["sh", "-c", "echo \"$0: $1\" >> {notices}", "{{level}}", "{{text}}"]
lock_state = ["cat", "{state}"]
{extra}
"#,
                spool = dir.path().join("spool").display(),
                local = free_port(),
                key_file = key_file.display(),
                notices = dir.path().join("notices").display(),
            ),
        )
        .unwrap();
        let process =
            Process::start(&binary("netbar-collector"), &["--config", config.to_str().unwrap(), "run"], dir.path().join("stderr"));
        Collector { process, dir, config }
    }

    /// Messages of a class waiting in the spool: "e" events, "a" alarms,
    /// "t" telemetry recorded during an outage.
    fn spooled(&self, class: &str) -> usize {
        let suffix = format!("-{class}.msg");
        std::fs::read_dir(self.dir.path().join("spool"))
            .map(|entries| entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(&suffix)).count())
            .unwrap_or(0)
    }

    fn login(&self, ticket: &str) -> Value {
        let output =
            Run::new(binary("netbar-collector")).args(["--config", self.config.to_str().unwrap(), "login", ticket]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// A message from the agent for `channel`, signed with the station's key.
fn agent_message(channel: &str, seq: u64, message: impl Into<Message>) -> String {
    let id = MessageId::from_parts(Timestamp::now(), rand_bytes(seq));
    let mut envelope = Envelope::new(id, Timestamp::now(), VENUE.parse().unwrap(), Sender::agent("agent"), seq, message);
    StationKey::from_bytes(KEY).sign(&topic(channel), &mut envelope);
    encode(&envelope)
}

fn rand_bytes(seed: u64) -> [u8; 10] {
    let nanos = u64::from(Timestamp::now().subsec_nanosecond().unsigned_abs());
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&(seed ^ nanos.rotate_left(17)).to_le_bytes());
    bytes
}

fn schema_validator(kind: Kind) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../protocol/schemas/{kind}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn acknowledge(client: &Client, envelopes: &[Envelope]) {
    let entries = envelopes.iter().map(|e| DeliveryEntry { id: e.id, seq: e.seq, delivery: Delivery::Stored }).collect();
    client.publish(&topic("delivery"), agent_message("delivery", 0, DeliveryAck { entries }));
}

#[test]
fn reports_valid_status_and_telemetry_and_its_last_will_after_kill_9() {
    let broker = Mosquitto::start();
    let watcher = Client::connect(broker.port, &[&format!("netbar/v1/{VENUE}/#")]);
    let sensors = format!(
        r#"
[[sensors]]
id = "door-exit-1"
kind = "door"
source = {{ type = "zigbee2mqtt", host = "127.0.0.1", port = {}, topic = "zigbee2mqtt/exit_door" }}
[[sensors]]
id = "smoke-broken"
kind = "smoke"
silent_after = 1
source = {{ type = "command", argv = ["sh", "-c", "exit 1"], interval = 0.2 }}
"#,
        broker.port
    );
    let mut collector = Collector::start(broker.port, &sensors, true);

    let status_payload = watcher.expect("the station's status", WAIT, |t, p| (t == topic("status")).then(|| p.to_vec()));
    let status = decode(&status_payload).unwrap();
    let Message::StationStatus(body) = &status.message else { unreachable!() };
    assert!(body.online);
    assert_eq!(body.version, env!("CARGO_PKG_VERSION"));
    assert!(body.capabilities.contains(&"lock".to_owned()));
    assert_eq!(status.sender.id, STATION);
    assert_eq!(StationKey::from_bytes(KEY).verify(&topic("status"), &status_payload), Ok(()), "signed with the station's key");

    let telemetry_schema = schema_validator(Kind::Telemetry);
    // A sample taken before the connection was up is spooled and sequenced;
    // once connected, samples go out live, outside the sequence.
    let mut live = 0;
    while live < 3 {
        let payload = watcher.expect("telemetry", WAIT, |t, p| (t == topic("telemetry")).then(|| p.to_vec()));
        let envelope = decode(&payload).expect("telemetry decodes");
        let value: Value = serde_json::from_slice(&payload).unwrap();
        let errors: Vec<String> = telemetry_schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "telemetry violates its schema: {errors:?}");
        let Message::Telemetry(telemetry) = envelope.message else { unreachable!() };
        assert!(telemetry.memory_total_bytes > 0);
        assert_eq!(telemetry.lock_state, LockState::Locked, "read from the lock_state program");
        live += usize::from(envelope.seq == 0);
    }
    // A zigbee2mqtt door contact reports a locked emergency exit.
    let door_topic = format!("netbar/v1/{VENUE}/sensor/door-exit-1/reading");
    let z2m = Client::connect(broker.port, &[]);
    z2m.publish("zigbee2mqtt/exit_door", r#"{"contact":true,"lock_state":"locked","battery":80,"linkquality":97}"#);
    let door = watcher.expect_message(&door_topic, Kind::SensorReading, WAIT);
    let Message::SensorReading(reading) = &door.message else { unreachable!() };
    assert_eq!(reading.reading, Reading::Door { open: false, locked: true });
    assert_eq!((reading.sensor_kind, reading.battery_percent), (SensorKind::Door, Some(80)));
    assert!(door.seq > 0, "an alarm is sequenced, spooled and acknowledged");
    // A sensor whose source fails is reported silent.
    let silent = watcher.expect_message(&format!("netbar/v1/{VENUE}/sensor/smoke-broken/reading"), Kind::SensorReading, WAIT);
    assert!(matches!(&silent.message, Message::SensorReading(SensorReading { reading: Reading::Silent { .. }, .. })), "{silent:?}");

    // A late subscriber sees the retained online status.
    let late = Client::connect(broker.port, &[&topic("status")]);
    let retained = late.expect_message(&topic("status"), Kind::StationStatus, WAIT);
    assert!(matches!(retained.message, Message::StationStatus(StationStatus { online: true, .. })));

    collector.process.kill();
    let (will, will_payload) = watcher.expect("the last will", WAIT, |t, p| {
        (t == topic("status"))
            .then(|| decode(p).ok())
            .flatten()
            .filter(|e| matches!(e.message, Message::StationStatus(StationStatus { online: false, .. })))
            .map(|envelope| (envelope, p.to_vec()))
    });
    assert_eq!(will.sender.id, STATION);
    assert_eq!(StationKey::from_bytes(KEY).verify(&topic("status"), &will_payload), Ok(()), "the will is signed too");
    let late = Client::connect(broker.port, &[&topic("status")]);
    let retained = late.expect_message(&topic("status"), Kind::StationStatus, WAIT);
    assert!(matches!(retained.message, Message::StationStatus(StationStatus { online: false, .. })), "the will is retained");
}

#[test]
fn an_outage_loses_no_login_and_delivers_them_in_order() {
    let mut broker = Mosquitto::start();
    let smoke_file = TempDir::new("smoke");
    let smoke = smoke_file.path().join("smoke");
    std::fs::write(&smoke, "0\n").unwrap();
    let sensor = format!(
        "[[sensors]]\nid = \"smoke-1\"\nkind = \"smoke\"\nsource = {{ type = \"file\", path = \"{}\", interval = 0.1 }}\n",
        smoke.display()
    );
    let smoke_topic = format!("netbar/v1/{VENUE}/sensor/smoke-1/reading");
    let agent = Client::connect(broker.port, &[&topic("status"), &topic("event"), &smoke_topic]);
    let collector = Collector::start(broker.port, &sensor, true);
    agent.expect_message(&topic("status"), Kind::StationStatus, WAIT);
    let quiet = agent.expect_message(&smoke_topic, Kind::SensorReading, WAIT);
    acknowledge(&agent, &[quiet]);
    wait_for("the first smoke reading to be acknowledged", WAIT, || collector.spooled("a") == 0);
    drop(agent);

    broker.stop();
    wait_for("the collector to notice the outage", WAIT, || collector.process.stderr().contains("connection to the broker lost"));
    for ticket in ["T-1", "T-2"] {
        let answer = collector.login(ticket);
        assert_eq!(answer["status"], "queued", "{answer}");
    }
    std::fs::write(&smoke, "1\n").unwrap();
    wait_for("the smoke alarm to be spooled", WAIT, || collector.spooled("a") >= 1);
    let answer = collector.login("T-3");
    assert_eq!(answer["status"], "queued", "{answer}");
    assert_eq!(collector.spooled("e"), 3, "three logins wait on disk");

    broker.restart();
    let agent = Client::connect(broker.port, &[&topic("event"), &smoke_topic]);
    // Collect what arrives until the three logins and the alarm are in.
    let mut received: Vec<Envelope> = Vec::new();
    let is_alarm = |e: &Envelope| matches!(&e.message, Message::SensorReading(r) if r.reading == Reading::Alarm { active: true });
    while received.iter().filter(|e| e.kind() == Kind::LoginRequest).count() < 3 || !received.iter().any(is_alarm) {
        let envelope = agent.expect("spooled messages after the outage", WAIT, |_, payload| decode(payload).ok().filter(|e| e.seq > 0));
        if !received.iter().any(|e| e.id == envelope.id) {
            received.push(envelope);
        }
    }
    received.sort_by_key(|e| e.seq);
    let order: Vec<String> = received
        .iter()
        .filter_map(|e| match &e.message {
            Message::LoginRequest(login) => Some(login.ticket.clone()),
            Message::SensorReading(r) if r.reading == (Reading::Alarm { active: true }) => Some("smoke".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["T-1", "T-2", "smoke", "T-3"], "in the order they happened");
    assert_eq!(collector.spooled("e"), 3, "a PUBACK is not a receipt: still spooled");

    acknowledge(&agent, &received);
    wait_for("the spool to empty after the agent's receipt", WAIT, || collector.spooled("e") + collector.spooled("a") == 0);
}

#[test]
fn commands_run_and_are_acknowledged_with_the_real_state() {
    let broker = Mosquitto::start();
    let agent = Client::connect(broker.port, &[&topic("ack"), &topic("event"), &topic("status")]);
    let collector = Collector::start(broker.port, "", true);
    agent.expect_message(&topic("status"), Kind::StationStatus, WAIT);

    // A login answered by the agent: the lock screen hears "unlocked".
    let login = std::thread::spawn({
        let config = collector.config.clone();
        move || Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", "K7Q"]).output().unwrap()
    });
    let request = agent.expect_message(&topic("event"), Kind::LoginRequest, WAIT);
    let Message::LoginRequest(LoginRequest { request_id, ticket }) = &request.message else { unreachable!() };
    assert_eq!(ticket, "K7Q");
    acknowledge(&agent, std::slice::from_ref(&request));
    let until = Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let unlock = Command {
        command_id: "c-1".into(),
        action: Action::Unlock { session_id: "s-1".into(), request_id: Some(request_id.clone()), until: Some(until) },
    };
    agent.publish(&topic("command"), agent_message("command", 1, unlock.clone()));
    // The session starts, then the command is acknowledged, in that order.
    let started = agent.expect_message(&topic("event"), Kind::SessionEvent, WAIT);
    assert_eq!(started.message, Message::SessionEvent(SessionEvent::Started { session_id: "s-1".into() }));
    let ack = agent.expect_message(&topic("ack"), Kind::CommandAck, WAIT);
    assert_eq!(
        ack.message,
        Message::CommandAck(CommandAck { command_id: "c-1".into(), result: Outcome::Done, lock_state: LockState::Unlocked })
    );
    let answer = login.join().unwrap();
    let answer: Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(answer["status"], "unlocked");
    assert_eq!(answer["session_id"], "s-1");
    assert_eq!(collector.read("locked").trim(), "no");

    // The paid time ends: the station locks on its own and says why.
    let ended = agent.expect_message(&topic("event"), Kind::SessionEvent, WAIT);
    assert_eq!(ended.message, Message::SessionEvent(SessionEvent::Ended { session_id: "s-1".into(), reason: EndReason::TimeUp }));
    assert_eq!(collector.read("locked").trim(), "yes");

    // A notice is shown; a repeated command is acknowledged again, not run twice.
    let notify = Command {
        command_id: "c-2".into(),
        action: Action::Notify { level: NoticeLevel::Warning, text: "curfew at 22:00".into(), ends: None, incident: None },
    };
    for seq in [2, 3] {
        agent.publish(&topic("command"), agent_message("command", seq, notify.clone()));
        let ack = agent.expect("the notice's acknowledgement", WAIT, |t, p| {
            (t == topic("ack"))
                .then(|| decode(p).ok())
                .flatten()
                .filter(|e| matches!(&e.message, Message::CommandAck(a) if a.command_id == "c-2"))
        });
        assert!(matches!(ack.message, Message::CommandAck(CommandAck { result: Outcome::Done, .. })));
    }
    assert_eq!(collector.read("notices"), "warning: curfew at 22:00\n");

    // The customer logs out at the lock screen: the station locks and says why.
    let unlock = Command { command_id: "c-3".into(), action: Action::Unlock { session_id: "s-2".into(), request_id: None, until: None } };
    agent.publish(&topic("command"), agent_message("command", 4, unlock));
    let started = agent.expect_message(&topic("event"), Kind::SessionEvent, WAIT);
    assert_eq!(started.message, Message::SessionEvent(SessionEvent::Started { session_id: "s-2".into() }));
    let output = Run::new(binary("netbar-collector")).args(["--config", collector.config.to_str().unwrap(), "logout"]).output().unwrap();
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["status"], "logging_out", "{answer}");
    let ended = agent.expect_message(&topic("event"), Kind::SessionEvent, WAIT);
    assert_eq!(ended.message, Message::SessionEvent(SessionEvent::Ended { session_id: "s-2".into(), reason: EndReason::Logout }));
    assert_eq!(collector.read("locked").trim(), "yes");
}

#[test]
fn bad_commands_are_refused_with_a_reason_and_failures_report_the_real_state() {
    let broker = Mosquitto::start();
    let agent = Client::connect(broker.port, &[&topic("ack"), &topic("status")]);
    let mut collector = Collector::start(broker.port, "", false);
    agent.expect_message(&topic("status"), Kind::StationStatus, WAIT);

    agent.publish(&topic("command"), "not json at all");
    agent.publish(&topic("command"), vec![b'{'; 200_000]);
    let unlock =
        Command { command_id: "c-forged".into(), action: Action::Unlock { session_id: "s-x".into(), request_id: None, until: None } };
    // Another station claiming to be the agent, without the key: unsigned,
    // then signed with its own key.
    let mut forged = Envelope::new(
        MessageId::from_parts(Timestamp::now(), [7; 10]),
        Timestamp::now(),
        VENUE.parse().unwrap(),
        Sender::agent("agent"),
        1,
        unlock,
    );
    agent.publish(&topic("command"), encode(&forged));
    StationKey::from_bytes([0x01; 32]).sign(&topic("command"), &mut forged);
    agent.publish(&topic("command"), encode(&forged));
    wait_for("four refusals in the log", WAIT, || collector.process.stderr().matches("message refused").count() >= 4);
    let log = collector.process.stderr();
    assert!(log.contains("not well-formed JSON"), "{log}");
    assert!(log.contains("at most 65536 allowed"), "{log}");
    assert!(log.contains("the message is not authenticated"), "{log}");
    assert!(log.contains("mac does not match"), "{log}");
    assert!(collector.process.running());
    assert_eq!(collector.read("locked").trim(), "yes", "the forged unlock did nothing");

    // The station is unlocked, then the lock program fails: the ack says so
    // and reports the station as it really is, still unlocked.
    agent.publish(
        &topic("command"),
        agent_message(
            "command",
            1,
            Command { command_id: "c-u".into(), action: Action::Unlock { session_id: "s-2".into(), request_id: None, until: None } },
        ),
    );
    agent.expect_message(&topic("ack"), Kind::CommandAck, WAIT);
    agent.publish(
        &topic("command"),
        agent_message("command", 2, Command { command_id: "c-l".into(), action: Action::Lock { reason: "staff".into() } }),
    );
    let ack = agent.expect("the failed lock's acknowledgement", WAIT, |t, p| {
        (t == topic("ack"))
            .then(|| decode(p).ok())
            .flatten()
            .filter(|e| matches!(&e.message, Message::CommandAck(a) if a.command_id == "c-l"))
    });
    let Message::CommandAck(CommandAck { result: Outcome::Failed { error }, lock_state, .. }) = ack.message else { panic!("{ack:?}") };
    assert!(error.contains("lock screen crashed"), "{error}");
    assert_eq!(lock_state, LockState::Unlocked);
    collector.process.kill();
}

#[test]
fn a_config_with_an_unknown_key_is_refused_at_start() {
    let dir = TempDir::new("bad-config");
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "[station]\nvenue = \"v\"\nid = \"s\"\n[telemetry]\nintervall = 5\n").unwrap();
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: key `telemetry.intervall`: unknown field `intervall`", config.display())), "{stderr}");

    let printed = Run::new(binary("netbar-collector")).arg("print-config").output().unwrap();
    std::fs::write(&config, &printed.stdout).unwrap();
    let check = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "check-config"]).output().unwrap();
    assert!(check.status.success(), "the printed defaults are a valid config: {}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn simulate_runs_a_venue_of_signed_stations_with_a_smoke_alarm_on_demand() {
    let broker = Mosquitto::start();
    let dir = TempDir::new("simulate");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = |n: usize| StationKey::from_bytes([n as u8; 32]);
    for n in 1..=12 {
        std::fs::write(keys.join(format!("sim-{n:03}.key")), key(n).to_hex()).unwrap();
    }
    let watcher = Client::connect(broker.port, &["netbar/v1/sim-venue/#"]);
    let port = broker.port.to_string();
    let spool = dir.path().join("spool");
    let args = [
        "simulate",
        "--stations",
        "12",
        "--venue",
        "sim-venue",
        "--port",
        &port,
        "--pace",
        "0.01",
        "--interval",
        "0.5",
        "--keys-dir",
        keys.to_str().unwrap(),
        "--spool-root",
        spool.to_str().unwrap(),
    ];
    let mut simulation =
        netbar_tests::Process::start_with(&binary("netbar-collector"), &args, dir.path().join("stderr"), netbar_tests::Stdin::Piped, &[]);

    // Every station comes online, signed with its own key; customers log in.
    let mut online = std::collections::BTreeSet::new();
    let mut logins = 0;
    watcher.expect("12 stations online and some logins", WAIT, |topic, payload| {
        let envelope = decode(payload).ok()?;
        let n: usize = envelope.sender.id.strip_prefix("sim-")?.parse().ok()?;
        assert_eq!(key(n).verify(topic, payload), Ok(()), "{topic} is signed by {}", envelope.sender.id);
        match envelope.message {
            Message::StationStatus(StationStatus { online: true, .. }) => {
                online.insert(n);
            }
            Message::LoginRequest(_) => logins += 1,
            _ => {}
        }
        (online.len() == 12 && logins >= 3).then_some(())
    });

    simulation.write("smoke 11\n");
    let alarm = watcher.expect("the smoke alarm of station 11", WAIT, |topic, payload| {
        (topic == "netbar/v1/sim-venue/sensor/smoke-sim-011/reading")
            .then(|| decode(payload).ok())
            .flatten()
            .filter(|e| matches!(&e.message, Message::SensorReading(SensorReading { reading: Reading::Alarm { active: true }, .. })))
    });
    assert!(alarm.seq > 0, "the alarm is sequenced and spooled");
    assert!(simulation.running(), "{}", simulation.stderr());
}

/// A minimal Modbus TCP device: answers "read holding registers" (function 3)
/// with `value` for every register, and exception 1 for anything else.
fn modbus_device(value: std::sync::Arc<std::sync::atomic::AtomicU16>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let value = value.clone();
            std::thread::spawn(move || {
                let mut header = [0u8; 7];
                while stream.read_exact(&mut header).is_ok() {
                    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
                    let mut pdu = vec![0u8; length.saturating_sub(1)];
                    if stream.read_exact(&mut pdu).is_err() {
                        return;
                    }
                    let answer: Vec<u8> = match pdu.as_slice() {
                        [0x03, _, _, count_hi, count_lo] => {
                            let count = u16::from_be_bytes([*count_hi, *count_lo]);
                            let word = value.load(std::sync::atomic::Ordering::SeqCst).to_be_bytes();
                            let mut answer = vec![0x03, (count * 2) as u8];
                            for _ in 0..count {
                                answer.extend_from_slice(&word);
                            }
                            answer
                        }
                        [function, ..] => vec![function | 0x80, 0x01],
                        [] => return,
                    };
                    let mut frame = vec![header[0], header[1], 0, 0];
                    frame.extend_from_slice(&((answer.len() + 1) as u16).to_be_bytes());
                    frame.push(header[6]);
                    frame.extend_from_slice(&answer);
                    if stream.write_all(&frame).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_modbus_tcp_sensor_is_read_and_scaled() {
    let broker = Mosquitto::start();
    let value = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(350));
    let device = modbus_device(value.clone());
    let sensors = format!(
        "[[sensors]]\nid = \"co-1\"\nkind = \"carbon_monoxide\"\nsource = {{ type = \"modbus\", host = \"127.0.0.1\", port = {device}, unit = 7, address = 3, scale = 0.1, interval = 0.1 }}\n"
    );
    let topic = format!("netbar/v1/{VENUE}/sensor/co-1/reading");
    let watcher = Client::connect(broker.port, &[&topic]);
    let _collector = Collector::start(broker.port, &sensors, true);
    let reading = |expected: f64| {
        watcher.expect(&format!("{expected} ppm from the Modbus device"), WAIT, |_, payload| {
            let envelope = decode(payload).ok()?;
            match envelope.message {
                Message::SensorReading(SensorReading { reading: Reading::Ppm { value }, .. }) if (value - expected).abs() < 1e-9 => {
                    Some(())
                }
                _ => None,
            }
        })
    };
    reading(35.0);
    value.store(12, std::sync::atomic::Ordering::SeqCst);
    reading(1.2);
}

#[test]
fn tls_with_a_client_certificate_and_a_refused_wrong_ca() {
    let dir = TempDir::new("tls");
    let (ca, [server_cert, server_key, client_cert, client_key]) = netbar_tests::certificates(dir.path(), "venue", STATION);
    let (other_ca, _) = netbar_tests::certificates(dir.path(), "other", STATION);
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        ca.display(),
        server_cert.display(),
        server_key.display()
    ));
    wait_for("the TLS listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok());
    let watcher = Client::connect(broker.port, &[&topic("status")]);
    let tls = |ca: &Path| {
        format!(
            "[broker.tls]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            ca.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    let tls_port_text = format!("port = {tls_port}\nhost = \"127.0.0.1\"");
    let _collector = Collector::start_on(&tls_port_text, &tls(&ca));
    let status = watcher.expect_message(&topic("status"), Kind::StationStatus, WAIT);
    assert!(matches!(status.message, Message::StationStatus(StationStatus { online: true, .. })), "connected over TLS");

    // A collector that trusts another CA refuses the broker and says why.
    let wrong = Collector::start_on(&tls_port_text, &tls(&other_ca));
    wait_for("the TLS refusal in the log", WAIT, || wrong.process.stderr().contains("cannot connect to the broker"));
    let log = wrong.process.stderr();
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}
