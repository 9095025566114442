//! The regulator feed against real brokers: mosquitto with TLS and client
//! certificates generated here, and NATS's MQTT listener.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command as Run;
use std::time::Duration;

use netbar_protocol::{Message, decode};
use netbar_tests::{Client, Mosquitto, Process, binary, free_port, wait_for};

use super::agent::Venue;

const WAIT: Duration = Duration::from_secs(30);

/// The `[uplink]` section for a broker at `url`.
pub(super) fn uplink_section(url: &str, ca: &Path, client: Option<(&Path, &Path)>, protocol: &str) -> String {
    let mut text = format!(
        "\n[uplink]\nbroker = \"{url}\"\nca_file = \"{}\"\nregion = \"310104\"\nprotocol = \"{protocol}\"\nsummary_period = 1\nheartbeat_period = 1\nmax_backoff = 1\n",
        ca.display()
    );
    if let Some((cert, key)) = client {
        text.push_str(&format!("client_cert = \"{}\"\nclient_key = \"{}\"\n", cert.display(), key.display()));
    }
    text
}

pub(super) fn add_uplink(venue: &Venue, section: &str) {
    let mut text = std::fs::read_to_string(&venue.config).unwrap();
    text.push_str(section);
    std::fs::write(&venue.config, text).unwrap();
}

/// A TLS listener, asking for client certificates signed by `ca` when `require_certificate`.
pub(super) fn tls_listener(port: u16, ca: &Path, cert: &Path, key: &Path, require_certificate: bool) -> String {
    format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

fn uplink_status(venue: &Venue) -> String {
    let output = Run::new(binary("netbar-agent")).args(["uplink", "--config", venue.config.to_str().unwrap(), "status"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// "last sequence: N, last acknowledged: M" of `uplink status`.
fn sequence_numbers(status: &str) -> (u64, u64) {
    let line = status.lines().find(|line| line.starts_with("last sequence:")).unwrap();
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty()).map(|part| part.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

fn check_in(venue: &Venue, token: &str, number: &str, birth_date: &str) -> serde_json::Value {
    let body = serde_json::json!({"document_type": "other", "number": number, "birth_date": birth_date});
    let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(token), Some(&body));
    assert!(status == 201 || status == 200, "{status} {answer}");
    answer
}

/// What the regulator received, by sequence number (duplicates collapse).
#[derive(Default)]
struct Received {
    by_seq: BTreeMap<u64, Message>,
}

impl Received {
    /// Takes messages until `done` holds of what was received.
    fn until(&mut self, regulator: &Client, what: &str, mut done: impl FnMut(&BTreeMap<u64, Message>) -> bool) {
        if done(&self.by_seq) {
            return;
        }
        regulator.expect(what, WAIT, |_topic, payload| {
            let envelope = decode(payload).expect("the feed decodes");
            assert_eq!(envelope.venue.to_string(), "venue-1");
            if envelope.seq > 0 {
                self.by_seq.insert(envelope.seq, envelope.message);
            }
            done(&self.by_seq).then_some(())
        });
    }

    fn records(&self) -> Vec<&netbar_protocol::messages::RegistrationRecord> {
        self.by_seq.values().filter_map(|message| if let Message::Record(record) = message { Some(record) } else { None }).collect()
    }
}

/// The feed over TLS with a client certificate: records, summaries and an
/// incident; the regulator's broker stopped while check-ins go on; the
/// agent killed with -9 with a backlog and restarted; then the broker back:
/// every number from 1 to the last delivered, contiguous, and the tail
/// saw no gap.
#[test]
fn the_feed_survives_a_broker_outage_and_a_killed_agent_and_arrives_whole() {
    let dir = netbar_tests::TempDir::new("uplink-certs");
    let (ca, [server_cert, server_key, client_cert, client_key]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let mut broker = Mosquitto::start_persistent(&tls_listener(tls_port, &ca, &server_cert, &server_key, true));
    let regulator = Client::connect_as(broker.port, "regulator-test", true, &["netbar/feed/#"]);
    let tail = Process::start(
        &binary("netbar-agent"),
        &[
            "regulator",
            "tail",
            "--broker",
            &format!("mqtts://127.0.0.1:{tls_port}"),
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            client_cert.to_str().unwrap(),
            "--key",
            client_key.to_str().unwrap(),
            "--region",
            "310104",
            "--session",
            "regulator-tail",
        ],
        dir.path().join("tail.out"),
    );
    wait_for("the tail to subscribe", WAIT, || tail.stderr().contains("following netbar/feed/310104/+/+"));

    let mut venue = Venue::new("uplink");
    let station = venue.enroll("st-1");
    add_uplink(&venue, &uplink_section(&format!("mqtts://127.0.0.1:{tls_port}"), &ca, Some((&client_cert, &client_key)), "5"));
    venue.start();
    let token = venue.sign_in("li", "cashier");
    check_in(&venue, &token, "U0000001", "1990-01-01");
    check_in(&venue, &token, "U0000002", "1985-06-30");
    let minor = check_in(&venue, &token, "U0000003", "2015-03-01");
    assert_eq!(minor["result"]["outcome"], "refused", "{minor}");

    let mut received = Received::default();
    received.until(&regulator, "three records and a summary", |by_seq| {
        let records = by_seq.values().filter(|m| matches!(m, Message::Record(_))).count();
        records == 3 && by_seq.values().any(|m| matches!(m, Message::Summary(_)))
    });
    let records = received.records();
    assert_eq!(records.iter().filter(|record| record.allowed).count(), 2);
    let refused = records.iter().find(|record| !record.allowed).unwrap();
    assert_eq!(refused.reasons, ["under_age"]);
    match &refused.person {
        netbar_protocol::messages::Person::Pseudonymised { person_hash, birth_year } => {
            assert_eq!((person_hash.len(), *birth_year), (64, 2015));
        }
        other => panic!("records are pseudonymised by default, not {other:?}"),
    }
    let status = uplink_status(&venue);
    assert!(status.contains("connected: yes"), "{status}");

    // Someone plays at a station nobody registered: an incident, at once.
    let mut game = super::agent::play(&station);
    let _collector = super::agent::collector(&station, "", "no\n");
    received.until(&regulator, "the unregistered-use incident", |by_seq| {
        by_seq.values().any(|m| {
            matches!(m, Message::Incident(event) if matches!(&event.transition,
                netbar_protocol::messages::IncidentTransition::Opened { incident_kind, .. }
                    if *incident_kind == netbar_protocol::messages::IncidentKind::UnregisteredUse))
        })
    });
    let _ = game.kill();
    let _ = game.wait();

    // The regulator's broker goes away; the desk keeps working.
    broker.shut_down();
    for n in 4..=6 {
        check_in(&venue, &token, &format!("U000000{n}"), "1990-01-01");
    }
    wait_for("the agent to see the broker gone and keep a backlog", WAIT, || {
        let status = uplink_status(&venue);
        status.contains("connected: no") && !status.contains("backlog: 0 ")
    });

    // Killed with -9, backlog and all; started again, still without a broker.
    venue.agent.take().unwrap().kill();
    venue.start();
    let token = venue.sign_in("li", "cashier");
    check_in(&venue, &token, "U0000007", "1990-01-01");
    let (last_seq, _) = sequence_numbers(&uplink_status(&venue));

    broker.restart();
    let whole = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        received
            .until(&regulator, "every number from 1 to the last one queued", |by_seq| (1..=last_seq).all(|seq| by_seq.contains_key(&seq)))
    }));
    if whole.is_err() {
        let missing: Vec<u64> = (1..=last_seq).filter(|seq| !received.by_seq.contains_key(seq)).collect();
        panic!(
            "missing {missing:?} of 1..={last_seq}\n{}\nagent:\n{}\nbroker:\n{}\ntail:\n{}",
            uplink_status(&venue),
            venue.log(),
            broker.log(),
            tail.stderr()
        );
    }
    assert_eq!(received.records().len(), 7, "every check-in's record");
    wait_for("the tail to see the last number", WAIT, || tail.stderr().contains(&format!("310104/venue-1 #{last_seq} ")));
    let seen = tail.stderr();
    assert!(!seen.contains("GAP"), "{seen}");
    assert!(seen.contains("OPENED") && seen.contains("unregistered_use"), "{seen}");
    assert!(seen.contains("summary ") && seen.contains("record log #"), "{seen}");
    wait_for("the agent to have its backlog acknowledged", WAIT, || sequence_numbers(&uplink_status(&venue)).1 >= last_seq);
}

/// A broker whose certificate the configured CA did not sign: no
/// connection, the reason in the log, nothing sent, everything kept.
#[test]
fn a_broker_with_a_certificate_from_another_ca_is_refused_and_nothing_is_sent() {
    let dir = netbar_tests::TempDir::new("uplink-wrong-ca");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let (other_ca, _) = netbar_tests::certificates(dir.path(), "impostor", "venue-1");
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let regulator = Client::connect(broker.port, &["netbar/feed/#"]);
    let mut venue = Venue::new("uplink-wrong-ca");
    let section = uplink_section(&format!("mqtts://127.0.0.1:{tls_port}"), &other_ca, None, "3.1.1") + "outbox_max = 100\n";
    add_uplink(&venue, &section);
    venue.start();
    let token = venue.sign_in("li", "cashier");
    for n in 1..=50 {
        check_in(&venue, &token, &format!("W{n:07}"), "1990-01-01");
    }
    wait_for("the refusal in the agent's log", WAIT, || venue.log().contains("certificate"));
    let log = venue.log();
    assert!(log.contains("the regulator's broker is unreachable") && log.contains("UnknownIssuer"), "{log}");
    let status = uplink_status(&venue);
    assert!(status.contains("connected: no (since never)"), "{status}");
    let (last_seq, last_acked) = sequence_numbers(&status);
    assert!(last_seq >= 1 && last_acked == 0, "{status}");

    // Half full: the log and the console say so.
    assert!(log.contains("the regulator outbox is filling up"), "{log}");
    let (status, answer) = netbar_tests::http(venue.http, "GET", "/api/v1/uplink", Some(&token), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["connected"].as_bool(), answer["outbox_max"].as_u64()), (Some(false), Some(100)), "{answer}");
    assert!(answer["backlog"].as_u64().unwrap() >= 50, "{answer}");
    let warning = answer["warning"].as_str().unwrap();
    assert!(warning.contains("% of its bound of 100") && warning.contains("Nothing is dropped"), "{answer}");
    let (_, metrics) = netbar_tests::http_text(venue.http, "GET", "/metrics", Some(&token), None);
    assert!(metrics.contains("netbar_uplink_connected 0") && metrics.contains("netbar_uplink_last_acknowledged 0"), "{metrics}");

    // The regulator's own tool with the wrong CA says so and stops.
    let tail = Run::new(binary("netbar-agent"))
        .args(["regulator", "tail", "--broker", &format!("mqtts://127.0.0.1:{tls_port}"), "--ca", other_ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(tail.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&tail.stderr).contains("UnknownIssuer"), "{}", String::from_utf8_lossy(&tail.stderr));

    // Nothing went out: the broker never saw the agent's client.
    assert!(!broker.log().contains("as netbar-venue-1"), "{}", broker.log());

    // With the right CA the same backlog goes out, from number 1.
    venue.agent.take().unwrap().terminate();
    let text = std::fs::read_to_string(&venue.config).unwrap().replace(other_ca.to_str().unwrap(), ca.to_str().unwrap());
    std::fs::write(&venue.config, text).unwrap();
    venue.start();
    let first = regulator.expect("the first message of the feed", WAIT, |_, payload| decode(payload).ok().filter(|e| e.seq > 0));
    assert_eq!(first.seq, 1);
    assert!(matches!(first.message, Message::Record(_) | Message::Summary(_)), "{first:?}");
    assert!(broker.log().contains("as netbar-venue-1"), "{}", broker.log());
}

/// NATS server with JetStream and its MQTT listener (3.1.1 only), TLS:
/// exactly deploy/regulator/jetstream.conf, only its addresses and files
/// replaced.
struct Nats {
    _process: Process,
    mqtt_port: u16,
}

impl Nats {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Nats {
        let (client_port, mqtt_port) = (free_port(), free_port());
        let deployed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/jetstream.conf")).unwrap();
        let config = netbar_tests::cluster::nats_config(&deployed, client_port, mqtt_port, dir, cert, key);
        let path = dir.join("jetstream.conf");
        std::fs::write(&path, config).unwrap();
        let process = Process::start(&netbar_tests::cluster::nats_server(), &["-c", path.to_str().unwrap()], dir.join("nats.log"));
        wait_for("NATS's MQTT listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_ok());
        Nats { _process: process, mqtt_port }
    }
}

/// The same feed through NATS's MQTT listener, followed by the tail.
#[test]
fn the_feed_goes_through_nats_mqtt() {
    let dir = netbar_tests::TempDir::new("uplink-nats");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "nats", "venue-1");
    let nats = Nats::start(dir.path(), &server_cert, &server_key);
    let url = format!("mqtts://127.0.0.1:{}", nats.mqtt_port);
    // The regulator and venue-1 log in as the deploy config's users.
    let tail = Process::start_with(
        &binary("netbar-agent"),
        &["regulator", "tail", "--broker", &url, "--ca", ca.to_str().unwrap(), "--username", "regulator", "--session", "regulator-tail"],
        dir.path().join("tail.out"),
        netbar_tests::Stdin::Null,
        &[("NETBAR_REGULATOR_PASSWORD", "change-me-regulator")],
    );
    wait_for("the tail to subscribe", WAIT, || tail.stderr().contains("following netbar/feed/+/+/+"));
    let mut venue = Venue::new("uplink-nats");
    let credentials = "username = \"venue-1\"\npassword = \"change-me-venue-1\"\n";
    add_uplink(&venue, &(uplink_section(&url, &ca, None, "3.1.1") + credentials));
    venue.start();
    let token = venue.sign_in("li", "cashier");
    for n in 1..=3 {
        check_in(&venue, &token, &format!("N000000{n}"), "1990-01-01");
    }
    wait_for("three records and a summary at the tail", WAIT, || {
        let seen = tail.stderr();
        seen.matches("record log #").count() >= 3 && seen.contains(" summary ")
    });
    wait_for("the agent to have them acknowledged", WAIT, || {
        let (last_seq, last_acked) = sequence_numbers(&uplink_status(&venue));
        last_seq >= 4 && last_acked >= 4
    });
    assert!(!tail.stderr().contains("GAP"), "{}", tail.stderr());

    // venue-1's login cannot write under venue-2's name: jetstream.conf's
    // permissions drop it, while the same client's write under its own name
    // (not a feed message, so the tail calls it unreadable) gets through.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = rumqttc::MqttOptions::new("impostor", "127.0.0.1", nats.mqtt_port);
    options.set_credentials("venue-1", "change-me-venue-1");
    options.set_transport(rumqttc::Transport::tls(std::fs::read(&ca).unwrap(), None, None));
    let (impostor, mut connection) = rumqttc::Client::new(options, 8);
    impostor.publish("netbar/feed/310104/venue-2/incident", rumqttc::QoS::AtMostOnce, false, b"forged".to_vec()).unwrap();
    impostor.publish("netbar/feed/310104/venue-1/heartbeat", rumqttc::QoS::AtMostOnce, false, b"marker".to_vec()).unwrap();
    std::thread::spawn(move || for _ in connection.iter().take(20) {});
    wait_for("the impostor's own write at the tail", WAIT, || tail.stderr().contains("310104/venue-1 UNREADABLE"));
    assert!(!tail.stderr().contains("venue-2"), "venue-1 wrote under venue-2's name:\n{}", tail.stderr());
}
