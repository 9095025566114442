//! The regulator's side: real agents' feeds through mosquitto (TLS, a
//! persistent session) into a PostgreSQL of the test's own, written by
//! `netbar-agent regulator ingest`; the ingest killed -9 mid-run; forged and
//! broken messages beside them.

use std::path::Path;
use std::process::Command as Run;
use std::time::Duration;

use netbar_protocol::messages::LogHead;
use netbar_protocol::{Envelope, Kind, Message, encode, examples};
use netbar_tests::postgres::Postgres;
use netbar_tests::{Client, Mosquitto, Process, TempDir, binary, free_port, wait_for};

use super::agent::Venue;
use super::uplink::{add_uplink, nats_config, nats_server, tls_listener, uplink_section};

const WAIT: Duration = Duration::from_secs(60);

fn start_ingest(dir: &Path, url: &str, ca: &Path, database: &Postgres, log: &str) -> Process {
    start_ingest_as(dir, &["--broker", url, "--ca", ca.to_str().unwrap()], &[], database, log)
}

/// `regulator ingest` with these broker arguments and environment, once it
/// subscribed.
fn start_ingest_as(dir: &Path, broker: &[&str], env: &[(&str, &str)], database: &Postgres, log: &str) -> Process {
    let connection = database.connection();
    let mut args = vec!["regulator", "ingest"];
    args.extend_from_slice(broker);
    args.extend(["--region", "310104", "--database", &connection, "--session", "ingest-test"]);
    let ingest = Process::start_with(&binary("netbar-agent"), &args, dir.join(log), netbar_tests::Stdin::Null, env);
    wait_for("the ingest to subscribe", WAIT, || ingest.stderr().contains("subscribed to"));
    ingest
}

/// (last sequence, last acknowledged) of a venue's `uplink status`.
fn sequence_numbers(venue: &Venue) -> (i64, i64) {
    let output = Run::new(binary("netbar-agent")).args(["uplink", "--config", venue.config.to_str().unwrap(), "status"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let line = text.lines().find(|line| line.starts_with("last sequence:")).unwrap();
    let numbers: Vec<i64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|part| part.parse().ok()).collect();
    (numbers[0], numbers[1])
}

fn check_in(venue: &Venue, token: &str, n: usize) {
    // Every fourth one a child: refused, a record all the same.
    let birth_date = if n % 4 == 3 { "2020-01-01" } else { "1990-01-01" };
    let body = serde_json::json!({"document_type": "other", "number": format!("R{n:06}"), "birth_date": birth_date});
    let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(token), Some(&body));
    assert!(status == 200 || status == 201, "{status} {answer}");
}

/// A message of the hand-made venue `venue-x`, numbered `seq`.
fn forged(kind: Kind, seq: u64, change: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut envelope: Envelope = examples::envelope(kind);
    envelope.venue = "venue-x".parse().unwrap();
    envelope.seq = seq;
    change(&mut envelope.message);
    encode(&envelope).into_bytes()
}

/// The feed's sequence of `venue` in the database: (expected, received, missing, duplicates).
fn feed_of(database: &Postgres, venue: &str) -> Vec<String> {
    let rows = database.rows(&format!("SELECT expected, received, missing, duplicates FROM netbar.venue_feed WHERE venue = '{venue}'"));
    rows.into_iter().next().unwrap_or_default()
}

/// Stops `venue` once its broker acknowledged all it queued, then waits
/// for all of it in the database: contiguous from 1, no gap left open, and
/// `check_ins` records (every fourth refused), each once.
fn stop_and_check_whole(database: &Postgres, venue: &mut Venue, name: &str, check_ins: usize) {
    let (last, _) = sequence_numbers(venue);
    wait_for(&format!("{name}'s broker to acknowledge its feed"), WAIT, || sequence_numbers(venue).1 >= last);
    venue.agent.as_mut().unwrap().terminate();
    let (_, acknowledged) = sequence_numbers(venue);
    // A broker sends again what an ingest that died had not acknowledged
    // when its session resumes, or (NATS) after its ack_wait of 30 s.
    wait_for(&format!("{name}'s feed up to #{acknowledged} in the database, nothing missing"), WAIT, || {
        let feed = feed_of(database, name);
        feed.first().is_some_and(|expected| expected.parse::<i64>().unwrap() >= acknowledged) && feed[2] == "0"
    });
    let feed = feed_of(database, name);
    let of_venue = format!("JOIN netbar.venues v ON v.id = venue_id WHERE v.venue = '{name}'");
    let gaps = database.rows(&format!("SELECT first_seq, last_seq, closed_at IS NULL FROM netbar.gaps {of_venue}"));
    assert_eq!(feed[2], "0", "{name}: the sequence in the database is contiguous from 1: {feed:?}, gaps {gaps:?}");
    assert_eq!(database.value(&format!("SELECT min(seq) FROM netbar.feed {of_venue}")), "1");
    assert_eq!(database.value(&format!("SELECT count(*) FROM netbar.gaps {of_venue} AND closed_at IS NULL")), "0", "{name}: a gap open");
    let records = database
        .value(&format!("SELECT count(*), count(DISTINCT log_index), count(*) FILTER (WHERE NOT allowed) FROM netbar.records {of_venue}"));
    let refused = (0..check_ins).filter(|n| n % 4 == 3).count();
    assert_eq!(records, format!("{check_ins}|{check_ins}|{refused}"), "{name}: records, distinct positions, refusals");
}

/// The regulator's side over mosquitto: a CA (the returned path), a
/// persistent mosquitto with a TLS listener signed by it, a PostgreSQL of
/// the test's own, and the listener's URL.
fn regulator_over_mosquitto(dir: &Path, name: &str) -> (std::path::PathBuf, Mosquitto, Postgres, String) {
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir, name, "venue-1");
    let tls_port = free_port();
    let broker = Mosquitto::start_persistent(&tls_listener(tls_port, &ca, &cert, &key, false));
    (ca, broker, Postgres::start(dir), format!("mqtts://127.0.0.1:{tls_port}"))
}

#[test]
fn the_feed_lands_in_postgres_once_with_its_gaps_through_a_killed_ingest() {
    let dir = TempDir::new("ingest");
    let (ca, broker, database, url) = regulator_over_mosquitto(dir.path(), "regulator");
    let mut ingest = start_ingest(dir.path(), &url, &ca, &database, "ingest-1.log");
    // The schema was made by the ingest itself.
    assert_eq!(database.value("SELECT max(version) FROM netbar.migrations"), "1");

    // Two real agents, one with its GA 557-2005 code.
    let section = uplink_section(&url, &ca, None, "3.1.1");
    let mut one = Venue::new("ingest-one");
    add_uplink(&one, &format!("{section}ga_code = \"31010410000001\"\n"));
    let mut two = Venue::new("ingest-two");
    let text = std::fs::read_to_string(&two.config).unwrap().replace("id = \"venue-1\"", "id = \"venue-2\"");
    std::fs::write(&two.config, text).unwrap();
    add_uplink(&two, &section);
    one.start();
    two.start();
    let tokens = [one.sign_in("desk", "cashier"), two.sign_in("desk", "cashier")];
    for n in 0..10 {
        check_in(&one, &tokens[0], n);
        check_in(&two, &tokens[1], n);
    }
    wait_for("venue-1's feed in the database", WAIT, || {
        feed_of(&database, "venue-1").first().is_some_and(|expected| expected.parse::<i64>().unwrap() >= 10)
    });

    // The ingest dies without a word; the venues go on; it comes back.
    ingest.kill();
    for n in 10..25 {
        check_in(&one, &tokens[0], n);
        check_in(&two, &tokens[1], n);
    }
    let ingest = start_ingest(dir.path(), &url, &ca, &database, "ingest-2.log");
    // The database goes down at once and comes back: the ingest waits for it.
    let mut database = database;
    database.kill();
    for n in 25..30 {
        check_in(&one, &tokens[0], n);
        check_in(&two, &tokens[1], n);
    }
    database.restart();

    // The venues stop once their broker has everything; all of it must
    // arrive, once.
    for (venue, name) in [(&mut one, "venue-1"), (&mut two, "venue-2")] {
        stop_and_check_whole(&database, venue, name, 30);
    }
    // The outage was seen, waited out, and cost nothing (above).
    let said = ingest.stderr();
    assert!(said.contains("the batch was not committed") || said.contains("the database is unreachable"), "{said}");
    // venue-1 is keyed by its GA code; venue-2 has none.
    assert_eq!(database.value("SELECT venue_key FROM netbar.venue_feed WHERE venue = 'venue-1'"), "31010410000001");
    assert_eq!(database.value("SELECT venue_key FROM netbar.venue_feed WHERE venue = 'venue-2'"), "310104/venue-2");
    assert!(
        database
            .value("SELECT count(*) FROM netbar.summaries s JOIN netbar.venues v ON v.id = s.venue_id WHERE v.venue = 'venue-1'")
            .parse::<i64>()
            .unwrap()
            >= 1
    );
    assert_ne!(database.value("SELECT heartbeat_at IS NOT NULL FROM netbar.venues WHERE venue = 'venue-2'"), "f", "heartbeats are written");

    // An inspection: the heads the database kept check venue-1's own log.
    let heads = dir.path().join("heads.jsonl");
    let lines = database.rows("SELECT line FROM netbar.inspection_heads WHERE venue = 'venue-1' ORDER BY log_index");
    assert!(lines.len() >= 30, "a head for each record at least: {}", lines.len());
    std::fs::write(&heads, lines.iter().map(|row| format!("{}\n", row[0])).collect::<String>()).unwrap();
    let db = one.dir.path().join("data").join("netbar.sqlite");
    let verified = Run::new(binary("netbar-agent"))
        .args(["records", "verify", "--db", db.to_str().unwrap(), "--heads", heads.to_str().unwrap(), "--venue", "venue-1"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{said}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(said.contains(&format!("{} match the log", lines.len())), "{said}");

    // A hand-made venue: numbers out of order, one twice, one never; a
    // head that comes back with another hash; a GA code another venue holds.
    let publisher = Client::connect(broker.port, &[]);
    let topic = |channel: &str| format!("netbar/feed/310104/venue-x/{channel}");
    for seq in [1, 2, 4, 5] {
        publisher.publish(&topic("record"), forged(Kind::Record, seq, |_| {}));
    }
    publisher.publish(&topic("record"), forged(Kind::Record, 2, |_| {}));
    wait_for("venue-x's gap", WAIT, || {
        database.value("SELECT count(*) FROM netbar.gaps g JOIN netbar.venues v ON v.id = g.venue_id WHERE v.venue = 'venue-x'") == "1"
    });
    assert_eq!(database.value("SELECT first_seq, last_seq, missing FROM netbar.open_gaps WHERE venue_key = '310104/venue-x'"), "3|3|1");
    publisher.publish(&topic("record"), forged(Kind::Record, 3, |_| {}));
    publisher.publish(&topic("incident"), forged(Kind::Incident, 6, |_| {}));
    publisher.publish(
        &topic("summary"),
        forged(Kind::Summary, 7, |message| {
            if let Message::Summary(summary) = message {
                summary.ga_code = Some("31010410000001".parse().unwrap());
                summary.compliance = netbar_protocol::messages::Compliance::Green;
            }
        }),
    );
    publisher.publish(
        &topic("heartbeat"),
        forged(Kind::Heartbeat, 0, |message| {
            if let Message::Heartbeat(beat) = message {
                beat.ga_code = None;
                beat.log_head = Some(LogHead { index: 5821, hash: "0".repeat(64) });
            }
        }),
    );
    // What no one can read, and a venue writing under another's name.
    publisher.publish(&topic("record"), b"{\"kind\": \"record\"".to_vec());
    let mut impostor = examples::envelope(Kind::Record);
    impostor.venue = "venue-1".parse().unwrap();
    impostor.seq = 999;
    publisher.publish(&topic("record"), encode(&impostor).into_bytes());
    wait_for("venue-x's findings and the rejected messages", WAIT, || {
        database.value("SELECT count(*) FROM netbar.rejected") == "2"
            && database.value("SELECT count(*) FROM netbar.findings f JOIN netbar.venues v ON v.id = f.venue_id WHERE v.venue = 'venue-x'")
                == "2"
    });
    assert_eq!(feed_of(&database, "venue-x"), ["7", "7", "0", "1"], "every number, the duplicate absorbed");
    assert_eq!(database.value("SELECT count(*) FROM netbar.gaps g JOIN netbar.venues v ON v.id = g.venue_id WHERE v.venue = 'venue-x' AND closed_at IS NOT NULL"), "1", "the gap closed when #3 came late");
    let kinds = database.rows("SELECT kind FROM netbar.findings ORDER BY kind");
    assert_eq!(kinds, [["ga_code_taken"], ["head_rewritten"]]);
    let rejected = database.rows("SELECT error FROM netbar.rejected ORDER BY id");
    assert!(rejected[0][0].starts_with("unreadable message"), "{rejected:?}");
    assert_eq!(rejected[1][0], "a message of venue venue-1 on venue venue-x's topic");
    assert_eq!(
        database.value("SELECT incident_id, severity FROM netbar.open_incidents WHERE venue_key = '310104/venue-x'"),
        "i-0192|critical"
    );

    // The grades, as the database computes them.
    let grade = |venue: &str| {
        database.rows(&format!(
            "SELECT grade, serious, minor FROM netbar.venue_grades g JOIN netbar.venues v ON v.id = g.venue_id WHERE v.venue = '{venue}'"
        ))
    };
    let x = grade("venue-x");
    assert_eq!(x[0][0], "red", "{x:?}");
    assert!(x[0][1].contains("critical incident open") && x[0][1].contains("2 uncleared finding(s)"), "{x:?}");
    let two_grade = grade("venue-2");
    assert_eq!(two_grade[0][0], "green", "venue-2 sent everything, nothing open: {two_grade:?}");
}

/// One node of a three-node NATS cluster, made from
/// deploy/regulator/jetstream-cluster.conf with only its names, addresses
/// and files replaced.
struct NatsNode {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    mqtt_port: u16,
    process: Option<Process>,
}

impl Node for NatsNode {
    fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    fn start(&mut self) {
        let process = Process::start(&nats_server(), &["-c", self.config.to_str().unwrap()], self.log.clone());
        let port = self.mqtt_port;
        wait_for("a NATS node's MQTT listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        self.process = Some(process);
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

fn nats_cluster(dir: &Path, cert: &Path, key: &Path) -> Vec<NatsNode> {
    let deployed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/jetstream-cluster.conf")).unwrap();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route = |port: u16| format!("nats-route://127.0.0.1:{port}");
    (0..3)
        .map(|n| {
            let (client_port, mqtt_port) = (free_port(), free_port());
            let node = dir.join(format!("nats-{}", n + 1));
            std::fs::create_dir_all(&node).unwrap();
            let deployed = deployed
                .replace("server_name: netbar_feed_1", &format!("server_name: netbar_feed_{}", n + 1))
                .replace("listen: 0.0.0.0:6222", &format!("listen: 127.0.0.1:{}", routes[n]))
                .replace("nats-route://feed-2.regulator.example:6222", &format!("{}\n    {}", route(routes[0]), route(routes[1])))
                .replace("nats-route://feed-3.regulator.example:6222", &route(routes[2]));
            let config = nats_config(&deployed, client_port, mqtt_port, &node, cert, key);
            let path = node.join("nats.conf");
            std::fs::write(&path, config).unwrap();
            NatsNode { config: path, log: node.join("nats.log"), mqtt_port, process: None }
        })
        .collect()
}

/// A node of a three-node cluster of the regulator's, killed and started
/// again by the test.
trait Node {
    /// Its MQTT listener (TLS) on 127.0.0.1.
    fn mqtt_port(&self) -> u16;
    /// Dies at once (SIGKILL).
    fn kill(&mut self);
    fn start(&mut self);
}

fn url(node: &impl Node) -> String {
    format!("mqtts://127.0.0.1:{}", node.mqtt_port())
}

/// The feed through a cluster into PostgreSQL: the ingest on node 1 (as
/// `regulator`), a venue on node 2 (as `venue-1`, with `password`); node 3
/// killed and back mid-run, then the ingest killed -9 and back, then the
/// venue's own node gone for a while (its uplink cut). Afterwards the
/// venue's sequence in the database is contiguous from 1, every record once.
fn the_feed_crosses(cluster: &mut [impl Node], dir: &Path, ca: &Path, regulator_password: &str, venue_password: &str) {
    let database = Postgres::start(dir);
    let ingest_url = url(&cluster[0]);
    let broker = ["--broker", &ingest_url, "--ca", ca.to_str().unwrap(), "--username", "regulator"];
    let password = [("NETBAR_REGULATOR_PASSWORD", regulator_password)];
    let mut ingest = start_ingest_as(dir, &broker, &password, &database, "ingest-1.log");

    let mut venue = Venue::new("ingest-cluster-venue");
    let section = uplink_section(&url(&cluster[1]), ca, None, "3.1.1");
    add_uplink(&venue, &format!("{section}username = \"venue-1\"\npassword = \"{venue_password}\"\n"));
    venue.start();
    let token = venue.sign_in("desk", "cashier");
    let mut n = 0;
    let mut check_ins = |count: usize| {
        for _ in 0..count {
            check_in(&venue, &token, n);
            n += 1;
        }
    };
    check_ins(10);
    wait_for("the venue's first records in the database", WAIT, || {
        feed_of(&database, "venue-1").first().is_some_and(|expected| expected.parse::<i64>().unwrap() >= 10)
    });
    // A node of the cluster dies and comes back: two of three keep quorum.
    cluster[2].kill();
    check_ins(10);
    cluster[2].start();
    // The ingest dies and comes back to its session.
    ingest.kill();
    check_ins(10);
    let _ingest = start_ingest_as(dir, &broker, &password, &database, "ingest-2.log");
    // The venue's node goes away: the venue keeps its outbox until it is back.
    cluster[1].kill();
    check_ins(10);
    cluster[1].start();
    stop_and_check_whole(&database, &mut venue, "venue-1", 40);
}

/// Through a three-node NATS JetStream cluster (R3).
#[test]
fn the_feed_crosses_a_nats_cluster_losing_a_node_into_postgres_whole() {
    let dir = TempDir::new("ingest-nats");
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "nats", "venue-1");
    let mut nodes = nats_cluster(dir.path(), &cert, &key);
    for node in &mut nodes {
        node.start();
    }
    // JetStream keeps QoS 1 messages only for a subscription that exists:
    // the ingest subscribes before the venue publishes.
    the_feed_crosses(&mut nodes, dir.path(), &ca, "change-me-regulator", "change-me-venue-1");
}

/// One node of a three-node RabbitMQ cluster, made from
/// deploy/regulator/rabbitmq.conf with only its names, addresses and files
/// replaced; the nodes share the test's Erlang cookie.
struct RabbitNode {
    name: String,
    dir: std::path::PathBuf,
    home: std::path::PathBuf,
    dist_port: u16,
    mqtt_port: u16,
    process: Option<Process>,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl RabbitNode {
    fn env(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
        vec![
            ("HOME".into(), self.home.to_str().unwrap().to_owned()),
            ("RABBITMQ_NODENAME".into(), self.name.clone()),
            ("RABBITMQ_DIST_PORT".into(), self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), path("enabled_plugins")),
            ("RABBITMQ_PID_FILE".into(), path("rabbitmq.pid")),
        ]
    }

    /// A rabbitmqctl (or rabbitmq-queues) command against this node; what it printed.
    fn ctl(&self, tool: &str, args: &[&str]) -> String {
        let env = self.env();
        let output = Run::new(Path::new(RABBITMQ_BIN).join(tool))
            .args(["-n", &self.name])
            .args(args)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{tool} {args:?}: {said}{}", String::from_utf8_lossy(&output.stderr));
        said
    }

    /// The JSON a `--formatter json` command printed.
    fn ctl_json(&self, tool: &str, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["--formatter", "json"]);
        let said = self.ctl(tool, &args);
        let start = said.find(['[', '{']).unwrap_or(0);
        serde_json::from_str(said[start..].trim()).unwrap_or_else(|error| panic!("{tool} {args:?} printed {said:?}: {error}"))
    }
}

impl Node for RabbitNode {
    fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    fn start(&mut self) {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        let program = netbar_tests::installed(&["/usr/lib/rabbitmq/bin/rabbitmq-server"], "rabbitmq-server");
        self.process = Some(Process::start_with(&program, &[], self.dir.join("out.log"), netbar_tests::Stdin::Null, &env));
        let port = self.mqtt_port;
        wait_for("a RabbitMQ node's MQTT listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// The Erlang VM itself gets SIGKILL.
    fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("rabbitmq.pid")) {
            let _ = Run::new("kill").args(["-KILL", pid.trim()]).status();
        }
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        let _ = std::fs::remove_file(self.dir.join("rabbitmq.pid"));
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rabbitmq_cluster(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Vec<RabbitNode> {
    let deployed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/rabbitmq.conf")).unwrap();
    let home = dir.join("erlang");
    std::fs::create_dir_all(&home).unwrap();
    let cookie = home.join(".erlang.cookie");
    std::fs::write(&cookie, format!("netbar-test-{}", std::process::id())).unwrap();
    std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let names: Vec<String> = (1..=3).map(|n| format!("netbar-feed-{n}-{}@localhost", std::process::id())).collect();
    (0..3)
        .map(|n| {
            let node = dir.join(format!("rabbitmq-{}", n + 1));
            std::fs::create_dir_all(&node).unwrap();
            let mqtt_port = free_port();
            let config = deployed
                .replace("mqtt.listeners.ssl.default = 8883", &format!("mqtt.listeners.ssl.default = 127.0.0.1:{mqtt_port}"))
                .replace("/etc/rabbitmq/feed-ca.pem", ca.to_str().unwrap())
                .replace("/etc/rabbitmq/feed-broker.pem", cert.to_str().unwrap())
                .replace("/etc/rabbitmq/feed-broker.key", key.to_str().unwrap())
                .replace("rabbit@feed-1", &names[0])
                .replace("rabbit@feed-2", &names[1])
                .replace("rabbit@feed-3", &names[2]);
            assert!(!config.lines().any(|line| !line.trim_start().starts_with('#') && line.contains("/etc/")), "{config}");
            std::fs::write(node.join("rabbitmq.conf"), config).unwrap();
            std::fs::write(node.join("enabled_plugins"), "[rabbitmq_mqtt].\n").unwrap();
            RabbitNode { name: names[n].clone(), dir: node, home: home.clone(), dist_port: free_port(), mqtt_port, process: None }
        })
        .collect()
}

/// Through a three-node RabbitMQ cluster, the regulator's quorum queue
/// declared (deploy/regulator/rabbitmq-definitions.json) before any venue
/// publishes, its users set up as rabbitmq.conf says.
#[test]
fn the_feed_crosses_a_rabbitmq_cluster_losing_a_node_into_postgres_whole() {
    let dir = TempDir::new("ingest-rabbitmq");
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "rabbitmq", "venue-1");
    let mut nodes = rabbitmq_cluster(dir.path(), &ca, &cert, &key);
    for node in &mut nodes {
        node.start();
    }
    wait_for("the three nodes to form one cluster", WAIT, || {
        nodes[0].ctl_json("rabbitmqctl", &["cluster_status"])["running_nodes"].as_array().is_some_and(|nodes| nodes.len() == 3)
    });
    let definitions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/rabbitmq-definitions.json");
    nodes[0].ctl("rabbitmqctl", &["import_definitions", definitions.to_str().unwrap()]);
    let members = nodes[0].ctl_json("rabbitmq-queues", &["quorum_status", "mqtt-subscription-netbar-ingestqos1"]);
    assert_eq!(members.as_array().map(Vec::len), Some(3), "the regulator's queue on every node: {members}");
    // The users, exactly as rabbitmq.conf says to make them.
    let conf = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/rabbitmq.conf")).unwrap();
    for line in conf.lines().filter_map(|line| line.strip_prefix("#   rabbitmqctl ")) {
        let words: Vec<String> = line.split(' ').map(|word| word.trim_matches('\'').replace("'...'", "")).collect();
        let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
        if args[0] == "add_user" {
            args[2] = if args[1] == "regulator" { "regulator-password" } else { "venue-1-password" };
        }
        nodes[0].ctl("rabbitmqctl", &args);
    }
    the_feed_crosses(&mut nodes, dir.path(), &ca, "regulator-password", "venue-1-password");
}

/// The city load generator: 50 venues, each with the agent's real store and
/// sender, through mosquitto into PostgreSQL by the ingest (MQTT 5): every venue's
/// ten records, each once, its GA code, its sequence contiguous from 1.
#[test]
fn a_city_of_generated_venues_lands_whole() {
    let dir = TempDir::new("ingest-city");
    let (ca, _broker, database, url) = regulator_over_mosquitto(dir.path(), "city");
    // The ingest over MQTT 5 here (3.1.1 in the other tests).
    let broker = ["--broker", &url, "--ca", ca.to_str().unwrap(), "--protocol", "5"];
    let _ingest = start_ingest_as(dir.path(), &broker, &[], &database, "ingest.log");
    let venues_dir = dir.path().join("venues");
    let args =
        ["regulator", "city", "--venues", "50", "--broker", &url, "--ca", ca.to_str().unwrap(), "--dir", venues_dir.to_str().unwrap()];
    let pace = ["--pace", "240", "--summary-period", "2", "--heartbeat-period", "2", "--check-ins", "10"];
    let city = Process::start(&binary("netbar-agent"), &[&args[..], &pace[..]].concat(), dir.path().join("city.log"));
    let whole = "SELECT count(*) FROM netbar.venue_feed f WHERE f.missing = 0 AND f.ga_code IS NOT NULL \
                 AND (SELECT count(*) FROM netbar.records r WHERE r.venue_id = f.venue_id) = 10";
    wait_for("fifty venues' ten records each, nothing missing", WAIT, || database.value(whole) == "50");
    assert!(city.stderr().contains("50 venues running"), "{}", city.stderr());
    assert_eq!(database.value("SELECT count(*) FROM netbar.records"), "500");
    assert_eq!(database.value("SELECT count(*) FROM netbar.records WHERE NOT allowed"), "100");
    assert_eq!(database.value("SELECT venue_key FROM netbar.venue_feed WHERE venue = 'v00007'"), "31010410000007");
    assert_eq!(database.value("SELECT count(*) FROM netbar.rejected"), "0");
}
