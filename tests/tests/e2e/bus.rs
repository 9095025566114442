//! The station bus under attack by a customer holding one station's key
//! (its key file and certificate sit on the station's disk), against the
//! agent's embedded bus and against mosquitto run with exactly the deploy/
//! configuration (TLS, client certificates, the ACL): every attack refused,
//! real stations served meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use netbar_protocol::messages::{Action, Activity, Command, Delivery, Evidence, LoginRequest, Reading, SensorKind, SensorReading};
use netbar_protocol::{Envelope, Message, MessageId, Sender, StationKey, decode, encode};
use netbar_tests::{Process, binary, wait_for};
use std::process::Command as Run;

use super::agent::{Venue, collector};
use super::deploy::{enroll_with_certificate, on_the_deploy_broker, tls_client};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bus {
    Embedded,
    Mosquitto,
}

/// A venue on one kind of bus, its stations enrolled as that bus wants them.
struct Setup {
    venue: Venue,
    bus: Bus,
    ca: PathBuf,
    _broker: Option<Process>,
}

impl Setup {
    fn new(name: &str, bus: Bus) -> Setup {
        let mut venue = Venue::new(name);
        let ca = venue.dir.path().join("data").join("pki").join("ca.pem");
        let mut broker = None;
        if bus == Bus::Mosquitto {
            broker = Some(on_the_deploy_broker(&mut venue).1);
        }
        Setup { venue, bus, ca, _broker: broker }
    }

    /// Enrolls a station; its folder (key, collector config, certificate).
    fn enroll(&self, station: &str) -> PathBuf {
        match self.bus {
            Bus::Embedded => self.venue.enroll(station),
            Bus::Mosquitto => enroll_with_certificate(&self.venue, station),
        }
    }

    /// An MQTT client logged in with a station's credentials, under any
    /// client id it likes.
    fn client(&self, station: &Path, client_id: &str) -> (rumqttc::Client, rumqttc::Connection) {
        match self.bus {
            Bus::Embedded => {
                let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.venue.port);
                options.set_credentials(station.file_name().unwrap().to_str().unwrap(), key(station).broker_password());
                options.set_max_packet_size(1024 * 1024, 1024 * 1024);
                rumqttc::Client::new(options, 256)
            }
            Bus::Mosquitto => {
                let identity = (station.join("station.pem"), station.join("tls.key"));
                let (client, connection) = tls_client(self.venue.port, &self.ca, &identity, client_id);
                (client, connection)
            }
        }
    }
}

fn key(station: &Path) -> StationKey {
    StationKey::from_hex(&std::fs::read_to_string(station.join("station.key")).unwrap()).unwrap()
}

fn topic(station: &str, channel: &str) -> String {
    format!("netbar/v1/venue-1/station/{station}/{channel}")
}

/// A message id no other message has.
fn fresh_id() -> MessageId {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ u64::from(std::process::id()) << 40;
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    MessageId::from_parts(Timestamp::now(), bytes)
}

/// Connects to `port`, sends `bytes` and resets the connection (SO_LINGER
/// 0), or, with `hold`, leaves it open and silent (a half-open connect).
fn connect_and_reset(port: u16, bytes: &[u8], hold: bool) -> Option<std::net::TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    runtime.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        tokio::io::AsyncWriteExt::write_all(&mut stream, bytes).await.ok()?;
        if hold {
            return stream.into_std().ok();
        }
        #[allow(deprecated)] // blocks on drop only with a non-zero linger
        let _ = stream.set_linger(Some(Duration::ZERO));
        None
    })
}

/// A message as `station`'s collector would send it, sealed with its key.
fn sealed(key: &StationKey, topic: &str, station: &str, seq: u64, ts: Timestamp, message: impl Into<Message>) -> Vec<u8> {
    let id = fresh_id();
    let mut envelope = Envelope::new(id, ts, "venue-1".parse().unwrap(), Sender::station(&station.parse().unwrap()), seq, message);
    key.sign(topic, &mut envelope);
    encode(&envelope).into_bytes()
}

/// Everything a client receives, on a channel, its connection polled on
/// its own thread: (topic, payload), or the SUBACK codes as a topic "suback".
fn receive(connection: rumqttc::Connection) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    let (sender, received) = std::sync::mpsc::channel();
    let mut connection = connection;
    std::thread::spawn(move || {
        for event in connection.iter() {
            let item = match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => (publish.topic.clone(), publish.payload.to_vec()),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack))) => {
                    ("suback".to_owned(), format!("{:?}", ack.return_codes).into_bytes())
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => ("connack".to_owned(), Vec::new()),
                Ok(_) => continue,
                Err(error) => {
                    let _ = sender.send((format!("error: {error}"), Vec::new()));
                    return;
                }
            };
            if sender.send(item).is_err() {
                return;
            }
        }
    });
    received
}

/// The next item received that `pick` takes, within the deadline; the
/// others received before it are returned too.
fn until<T>(
    received: &std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    what: &str,
    mut pick: impl FnMut(&str, &[u8]) -> Option<T>,
) -> (T, Vec<String>) {
    let end = Instant::now() + DEADLINE;
    let mut before = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let (topic, payload) = received.recv_timeout(left).unwrap_or_else(|_| panic!("timed out waiting for {what}; received {before:?}"));
        if let Some(found) = pick(&topic, &payload) {
            return (found, before);
        }
        before.push(topic);
    }
}

/// A real customer served meanwhile: checked in at the desk, logged in at
/// the real collector of `station` with the ticket, the station unlocked.
fn serve_a_customer(setup: &Setup, token: &str, station: &Path, number: &str) {
    let adult = serde_json::json!({"document_type": "other", "number": number, "birth_date": "1990-01-01"});
    let (status, body) = netbar_tests::http(setup.venue.http, "POST", "/api/v1/checkins", Some(token), Some(&adult));
    assert_eq!(status, 201, "{body}");
    let ticket = body["result"]["ticket"].as_str().unwrap().to_owned();
    let config = station.join("run.toml");
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &ticket]).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert_eq!(answer["status"], "unlocked", "{answer}");
    wait_for("the station unlocked", DEADLINE, || std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "no");
    let logout = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "logout"]).output().unwrap();
    assert!(logout.status.success());
    wait_for("the station locked again", DEADLINE, || std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "yes");
}

/// The venue with a real station st-1 online, the attacker's key st-2.
fn venue_under_attack(name: &str, bus: Bus) -> (Setup, PathBuf, PathBuf, Process, String) {
    let mut setup = Setup::new(name, bus);
    let real = setup.enroll("st-1");
    let attacker = setup.enroll("st-2");
    setup.venue.start();
    let token = setup.venue.sign_in("li", "cashier");
    let collector = collector(&real, "", "yes\n");
    wait_for("st-1 online", DEADLINE, || {
        let (_, floor) = netbar_tests::http(setup.venue.http, "GET", "/api/v1/stations", Some(&token), None);
        floor["stations"].as_array().is_some_and(|tiles| tiles.iter().any(|tile| tile["id"] == "st-1" && tile["online"] == true))
    });
    (setup, real, attacker, collector, token)
}

fn metric(setup: &Setup, token: &str, reason: &str) -> u64 {
    let metrics = netbar_tests::http_text(setup.venue.http, "GET", "/metrics", Some(token), None).1;
    let line = format!("netbar_messages_refused_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Resets, take-overs, a pile of connections under one key, half-open and
/// malformed connects, a flood of junk: the bus stays up, the agent keeps
/// its place on it, the log grows by a line a minute, and a real customer
/// is served meanwhile.
fn one_key_cannot_stop_the_bus(bus: Bus) {
    let (setup, real, attacker, _collector, token) = venue_under_attack(&format!("bus-stop-{bus:?}"), bus);
    let port = setup.venue.port;
    // Three hundred logins under st-2's key, half of them claiming the
    // agent's client id and half st-1's: each replaces the one before.
    let clients: Vec<_> =
        (0..300).map(|n| setup.client(&attacker, if n % 2 == 0 { "netbar-agent" } else { "netbar-venue-1-st-1" })).collect();
    let attacks = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for (client, connection) in clients {
            kept.push((client, receive(connection)));
        }
        // Each has had its answer (so none logs in later than the junk
        // client below, which would replace it).
        for (_, received) in &kept {
            let _ = received.recv_timeout(DEADLINE);
        }
        // Logins reset at once, half-open connects held, malformed and
        // oversized packets.
        let mut held = Vec::new();
        for _ in 0..50 {
            for (bytes, hold) in
                [(&b""[..], true), (&[0x10, 0x7f][..], false), (&[0xff; 16][..], false), (&[0x30, 0xff, 0xff, 0xff, 0x7f][..], false)]
            {
                held.extend(connect_and_reset(port, bytes, hold));
            }
        }
        (kept, held)
    });
    // A customer served while they go on.
    let log_before = setup.venue.log().len();
    serve_a_customer(&setup, &token, &real, "UNDER-ATTACK-1");
    let (kept, held) = attacks.join().unwrap();
    assert_eq!((kept.len(), held.len()), (300, 50));
    drop((kept, held));
    // Junk under the attacker's own topic: counted, a line a minute.
    let (junk, junk_connection) = setup.client(&attacker, "junk");
    let junk_received = receive(junk_connection);
    until(&junk_received, "the junk client's login", |topic, _| (topic == "connack").then_some(()));
    for n in 0..5_000 {
        if junk.publish(topic("st-2", "event"), rumqttc::QoS::AtMostOnce, false, b"{not json".to_vec()).is_err() {
            let said: Vec<String> = junk_received.try_iter().map(|(topic, _)| topic).collect();
            panic!("the junk client's connection ended after {n} messages: {said:?}");
        }
    }
    wait_for("the junk counted", DEADLINE, || metric(&setup, &token, "decode") >= 1_000);
    serve_a_customer(&setup, &token, &real, "UNDER-ATTACK-2");
    let log = setup.venue.log();
    assert!(!log.contains("bus connection lost"), "the agent was never knocked off the bus: {log}");
    let grown = log.len() - log_before;
    assert!(grown < 16 * 1024, "{grown} bytes of log for a flood: {}", &log[log_before..]);
    if bus == Bus::Embedded {
        let (status, health) = netbar_tests::http(setup.venue.http, "GET", "/healthz", None, None);
        assert_eq!((status, health["bus"]["restarts"].as_u64()), (200, Some(0)), "{health}");
    }
}

#[test]
fn one_key_cannot_stop_the_embedded_bus() {
    one_key_cannot_stop_the_bus(Bus::Embedded);
}

#[test]
fn one_key_cannot_stop_the_bus_over_mosquitto() {
    one_key_cannot_stop_the_bus(Bus::Mosquitto);
}

/// One station's key reads nothing addressed to another and writes nothing
/// in its name: st-2 subscribes to everything while a customer is served at
/// st-1, then asks for a login itself; the answer to its own request is all
/// it ever receives. What it publishes on st-1's topics never reaches the
/// agent: st-1's session goes on.
fn one_key_reads_and_writes_only_its_own(bus: Bus) {
    let (setup, real, attacker, _collector, token) = venue_under_attack(&format!("bus-own-{bus:?}"), bus);
    let (spy, connection) = setup.client(&attacker, "spy");
    let received = receive(connection);
    let filters = [
        "#",
        "netbar/v1/#",
        &topic("st-1", "command"),
        &topic("st-1", "delivery"),
        "netbar/v1/venue-1/station/+/event",
        &topic("st-2", "command"),
    ];
    for filter in filters {
        spy.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
    }
    // Everything the spy receives from here on is kept and looked at.
    let mut seen = Vec::new();
    for _ in filters {
        let (codes, before) =
            until(&received, "a SUBACK", |topic, codes| (topic == "suback").then(|| String::from_utf8_lossy(codes).into_owned()));
        seen.extend(before);
        seen.push(format!("suback {codes}"));
    }
    serve_a_customer(&setup, &token, &real, "SPIED-ON-1");
    // A customer at st-1 again, left in session.
    let adult = serde_json::json!({"document_type": "other", "number": "SPIED-ON-2", "birth_date": "1990-01-01"});
    let (_, body) = netbar_tests::http(setup.venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&adult));
    let ticket = body["result"]["ticket"].as_str().unwrap().to_owned();
    let config = real.join("run.toml");
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &ticket]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("unlocked"));

    // Forgeries in st-1's name, sealed with st-2's key or as st-2 would.
    let key = key(&attacker);
    let now = Timestamp::now();
    let activity = || Activity { evidence: vec![Evidence::Input], since: Timestamp::now() };
    let ended =
        netbar_protocol::messages::SessionEvent::Ended { session_id: "any".into(), reason: netbar_protocol::messages::EndReason::Logout };
    spy.publish(topic("st-1", "event"), rumqttc::QoS::AtLeastOnce, false, sealed(&key, &topic("st-1", "event"), "st-1", 1, now, ended))
        .unwrap();
    spy.publish(
        topic("st-1", "event"),
        rumqttc::QoS::AtLeastOnce,
        false,
        sealed(&key, &topic("st-1", "event"), "st-2", 2, now, activity()),
    )
    .unwrap();
    // Then its own login request: the agent's refusal to st-2 comes after
    // whatever the agent would have sent st-1 for the forgeries.
    let request = LoginRequest { request_id: "r-spy".into(), ticket: "NOPE42".into() };
    spy.publish(topic("st-2", "event"), rumqttc::QoS::AtLeastOnce, false, sealed(&key, &topic("st-2", "event"), "st-2", 3, now, request))
        .unwrap();
    let (_, before) = until(&received, "the agent's answer to st-2", |topic, payload| {
        (topic == self::topic("st-2", "command")
            && decode(payload).is_ok_and(|e| matches!(e.message, Message::Command(Command { action: Action::RefuseLogin { .. }, .. }))))
        .then_some(())
    });
    seen.extend(before);
    // The agent's status is every station's to read.
    let public = ["connack", "netbar/v1/venue-1/agent/status"];
    let foreign: Vec<&String> = seen.iter().filter(|topic| !topic.starts_with("suback") && !public.contains(&topic.as_str())).collect();
    assert!(foreign.is_empty(), "st-2 read {foreign:?}");
    if bus == Bus::Embedded {
        assert_eq!(seen.iter().filter(|item| item.contains("Failure")).count(), 5, "{seen:?}");
    }
    // st-1's customer plays on: the forged end of session reached nobody.
    let (_, floor) = netbar_tests::http(setup.venue.http, "GET", "/api/v1/stations", Some(&token), None);
    let tile = floor["stations"].as_array().unwrap().iter().find(|tile| tile["id"] == "st-1").unwrap().clone();
    assert_eq!(tile["session"]["ticket"], ticket.as_str(), "{tile}");
    assert_eq!(std::fs::read_to_string(real.join("locked")).unwrap().trim(), "no");
    if bus == Bus::Embedded {
        assert!(metric(&setup, &token, "not_its_topic") >= 7, "five subscriptions and two publications refused at the bus");
    }
}

#[test]
fn one_key_reads_and_writes_only_its_own_on_the_embedded_bus() {
    one_key_reads_and_writes_only_its_own(Bus::Embedded);
}

#[test]
fn one_key_reads_and_writes_only_its_own_over_mosquitto() {
    one_key_reads_and_writes_only_its_own(Bus::Mosquitto);
}

/// A smoke alarm sent again after the agent restarted opens nothing; old
/// telemetry is refused as stale; a fresh message still counts.
fn replays_are_refused_after_a_restart(bus: Bus) {
    let mut setup = Setup::new(&format!("bus-replay-{bus:?}"), bus);
    let station = setup.enroll("st-3");
    let sensor = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", setup.venue.config.to_str().unwrap(), "sensor", "smoke-3", "--station", "st-3", "--kind", "smoke"])
        .output()
        .unwrap();
    assert!(sensor.status.success(), "{}", String::from_utf8_lossy(&sensor.stderr));
    setup.venue.start();
    let manager = setup.venue.sign_in("wang", "manager");
    let (client, connection) = setup.client(&station, "netbar-venue-1-st-3");
    let received = receive(connection);
    until(&received, "st-3's login", |topic, _| (topic == "connack").then_some(()));
    client.subscribe(topic("st-3", "delivery"), rumqttc::QoS::AtLeastOnce).unwrap();
    client.subscribe(topic("st-3", "command"), rumqttc::QoS::AtLeastOnce).unwrap();
    until(&received, "the subscriptions", |topic, _| (topic == "suback").then_some(()));
    until(&received, "the subscriptions", |topic, _| (topic == "suback").then_some(()));

    let key = key(&station);
    let reading_topic = "netbar/v1/venue-1/sensor/smoke-3/reading";
    let seq = u64::try_from(Timestamp::now().as_microsecond()).unwrap();
    let alarm = SensorReading {
        sensor: "smoke-3".parse().unwrap(),
        sensor_kind: SensorKind::Smoke,
        reading: Reading::Alarm { active: true },
        battery_percent: None,
        tamper: false,
    };
    let captured = sealed(&key, reading_topic, "st-3", seq, Timestamp::now(), alarm);
    client.publish(reading_topic, rumqttc::QoS::AtLeastOnce, false, captured.clone()).unwrap();
    let receipt = |wanted: u64, received: &std::sync::mpsc::Receiver<(String, Vec<u8>)>| {
        until(received, &format!("the receipt of {wanted}"), |topic, payload| {
            if topic != self::topic("st-3", "delivery") {
                return None;
            }
            match decode(payload).ok()?.message {
                Message::DeliveryAck(ack) => ack.entries.into_iter().find(|entry| entry.seq == wanted).map(|entry| entry.delivery),
                _ => None,
            }
        })
        .0
    };
    assert_eq!(receipt(seq, &received), Delivery::Stored);
    let (_, incidents) = netbar_tests::http(setup.venue.http, "GET", "/api/v1/incidents", Some(&manager), None);
    let id = incidents["incidents"][0]["id"].as_str().unwrap().to_owned();
    let note = serde_json::json!({"note": "a drill"});
    assert_eq!(
        netbar_tests::http(setup.venue.http, "POST", &format!("/api/v1/incidents/{id}/resolve"), Some(&manager), Some(&note)).0,
        200
    );

    // The agent killed and started again; the captured alarm sent again.
    setup.venue.agent.as_mut().unwrap().kill();
    setup.venue.start();
    let manager = setup.venue.sign_in("wang", "manager");
    let (client, connection) = setup.client(&station, "netbar-venue-1-st-3-again");
    let received = receive(connection);
    until(&received, "st-3's login", |topic, _| (topic == "connack").then_some(()));
    client.subscribe(topic("st-3", "delivery"), rumqttc::QoS::AtLeastOnce).unwrap();
    until(&received, "the subscription", |topic, _| (topic == "suback").then_some(()));
    client.publish(reading_topic, rumqttc::QoS::AtLeastOnce, false, captured).unwrap();
    assert_eq!(receipt(seq, &received), Delivery::Duplicate, "accepted once, across the restart");
    // Old telemetry (unnumbered) is refused; the refusal is counted.
    let mut telemetry = netbar_protocol::examples::body(netbar_protocol::Kind::Telemetry);
    if let Message::Telemetry(t) = &mut telemetry {
        t.session = None;
    }
    let old = Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let stale = sealed(&key, &topic("st-3", "telemetry"), "st-3", 0, old, telemetry);
    client.publish(topic("st-3", "telemetry"), rumqttc::QoS::AtLeastOnce, false, stale).unwrap();
    wait_for("the stale telemetry counted", DEADLINE, || metric(&setup, &manager, "stale") == 1);
    // A fresh message is taken: the next number, the next receipt.
    let activity = Activity { evidence: vec![Evidence::Input], since: Timestamp::now() };
    client
        .publish(
            topic("st-3", "event"),
            rumqttc::QoS::AtLeastOnce,
            false,
            sealed(&key, &topic("st-3", "event"), "st-3", seq + 1, Timestamp::now(), activity),
        )
        .unwrap();
    assert_eq!(receipt(seq + 1, &received), Delivery::Stored);
    let (_, incidents) = netbar_tests::http(setup.venue.http, "GET", "/api/v1/incidents", Some(&manager), None);
    let open: Vec<&serde_json::Value> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|incident| incident["kind"] == "fire" && incident["resolved"].is_null())
        .collect();
    assert!(open.is_empty(), "the replayed alarm opened {open:?}");
}

#[test]
fn replays_are_refused_after_a_restart_of_the_agent_with_its_embedded_bus() {
    replays_are_refused_after_a_restart(Bus::Embedded);
}

#[test]
fn replays_are_refused_after_a_restart_of_the_agent_over_mosquitto() {
    replays_are_refused_after_a_restart(Bus::Mosquitto);
}

/// A customer who points his station's collector at a broker of his own
/// and sends it an unlock captured earlier: refused after the collector
/// restarts (its last command's number is on disk), and after its disk is
/// wiped too (the command is older than `broker.command_window`).
#[test]
fn a_captured_unlock_sent_again_is_refused_by_the_collector_after_any_restart() {
    let rogue = netbar_tests::Mosquitto::start();
    let venue = Venue::new("bus-rogue");
    let station = venue.enroll("st-1");
    let toml = station.join("collector.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(&format!("port = {}", venue.port), &format!("port = {}", rogue.port));
    std::fs::write(&toml, text).unwrap();
    let key = key(&station);
    let command_topic = topic("st-1", "command");
    let command = |seq: u64, ts: Timestamp, action: Action| {
        let id = fresh_id();
        let command = Command { command_id: format!("c-{seq:016x}"), action };
        let mut envelope = Envelope::new(id, ts, "venue-1".parse().unwrap(), Sender::agent("netbar-agent"), seq, command);
        key.sign(&command_topic, &mut envelope);
        encode(&envelope).into_bytes()
    };
    let bus = netbar_tests::Client::connect(rogue.port, &[&topic("st-1", "status")]);
    let locked = || std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "yes";
    // The collector online (it subscribes to its commands before it says so).
    let status = |online: bool| {
        bus.expect(if online { "the collector online" } else { "its last will" }, DEADLINE, |_, payload| {
            decode(payload).ok().filter(|e| matches!(&e.message, Message::StationStatus(status) if status.online == online)).map(drop)
        })
    };
    let online = || status(true);
    // Killed: its last will comes after every status it told before.
    let gone = || status(false);
    let seq = u64::try_from(Timestamp::now().as_microsecond()).unwrap();
    // Made half a minute ago, as a captured command would be.
    let unlock = Action::Unlock { session_id: "s-1".into(), request_id: None, until: None };
    let captured = command(seq, Timestamp::now() - jiff::SignedDuration::from_secs(30), unlock);
    let window = |seconds: u32| {
        let text = std::fs::read_to_string(&toml).unwrap();
        let text = match text.find("command_window = ") {
            Some(at) => format!("{}command_window = {seconds}\n{}", &text[..at], &text[at..].split_once('\n').unwrap().1),
            None => text.replace("[broker]\n", &format!("[broker]\ncommand_window = {seconds}\n")),
        };
        std::fs::write(&toml, text).unwrap();
    };
    window(60);
    let mut running = collector(&station, "", "yes\n");
    online();
    bus.publish(&command_topic, captured.clone());
    wait_for("the genuine unlock carried out", DEADLINE, || !locked());
    bus.publish(&command_topic, command(seq + 1, Timestamp::now(), Action::Lock { reason: "logout".into() }));
    wait_for("the lock carried out", DEADLINE, locked);

    running.kill();
    gone();
    let mut running = collector(&station, "", "yes\n");
    online();
    bus.publish(&command_topic, captured.clone());
    wait_for("the replay refused after a restart", DEADLINE, || running.stderr().contains("command refused: numbered"));
    assert!(locked(), "the station stayed locked");

    running.kill();
    gone();
    std::fs::remove_file(station.join("spool").join("last-command")).unwrap();
    window(10);
    let running = collector(&station, "", "yes\n");
    online();
    bus.publish(&command_topic, captured);
    wait_for("the replay refused with no record on disk", DEADLINE, || running.stderr().contains("s away from this clock"));
    assert!(locked(), "the station stayed locked");
    drop(running);
}
