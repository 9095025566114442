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
use netbar_tests::cluster::{Node, nats_cluster, rabbitmq_cluster, url};

use super::deploy::{deploy_config, deploy_start};
use super::uplink::{add_uplink, tls_listener, uplink_section};

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
    // The deployed session name (RabbitMQ's queue for it is declared beforehand).
    args.extend(["--region", "310104", "--database", &connection]);
    let ingest = Process::start_with(&binary("netbar-agent"), &args, dir.join(log), netbar_tests::Stdin::Null, env);
    wait_for("the ingest to subscribe", WAIT, || ingest.stderr().contains("subscribed to"));
    ingest
}

/// A venue whose agent is configured as venue `id` (Venue::new makes venue-1).
fn venue_as(name: &str, id: &str) -> Venue {
    let venue = Venue::new(name);
    let text = std::fs::read_to_string(&venue.config).unwrap().replace("id = \"venue-1\"", &format!("id = \"{id}\""));
    std::fs::write(&venue.config, text).unwrap();
    venue
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
    let mut two = venue_as("ingest-two", "venue-2");
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

/// The feed through a cluster into PostgreSQL: the ingest on node 1 (as
/// `regulator`), a venue on node 2 (as `venue-1`, with `password`); node 3
/// killed and back mid-run, then the ingest killed -9 and back, then the
/// venue's own node gone for a while (its uplink cut). Afterwards the
/// venue's sequence in the database is contiguous from 1, every record once.
fn the_feed_crosses(cluster: &mut [impl Node], dir: &Path, ca: &Path, regulator_password: &str, venue_password: &str) -> Postgres {
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
    database
}

/// Through a three-node NATS JetStream cluster (R3).
#[test]
fn the_feed_crosses_a_nats_cluster_losing_a_node_into_postgres_whole() {
    let dir = TempDir::new("ingest-nats");
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "nats", "venue-1");
    let mut nodes = nats_cluster(dir.path(), &cert, &key, "");
    // JetStream keeps QoS 1 messages only for a subscription that exists:
    // the ingest subscribes before the venue publishes.
    the_feed_crosses(&mut nodes, dir.path(), &ca, "change-me-regulator", "change-me-venue-1");
}

/// Through a three-node RabbitMQ cluster, the regulator's quorum queue
/// declared (deploy/regulator/rabbitmq-definitions.json) before any venue
/// publishes, its users set up as rabbitmq.conf says.
#[test]
fn the_feed_crosses_a_rabbitmq_cluster_losing_a_node_into_postgres_whole() {
    let dir = TempDir::new("ingest-rabbitmq");
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "rabbitmq", "venue-1");
    let mut nodes = rabbitmq_cluster(dir.path(), &ca, &cert, &key, "regulator-password", "venue-1-password");
    let database = the_feed_crosses(&mut nodes, dir.path(), &ca, "regulator-password", "venue-1-password");

    // venue-1's login writing as venue-2: the cluster refuses it, and
    // nothing of venue-2 reaches the database.
    let mut rival = venue_as("ingest-rabbitmq-rival", "venue-2");
    let section = uplink_section(&url(&nodes[1]), &ca, None, "3.1.1");
    add_uplink(&rival, &format!("{section}username = \"venue-1\"\npassword = \"venue-1-password\"\n"));
    rival.start();
    let token = rival.sign_in("desk", "cashier");
    check_in(&rival, &token, 0);
    wait_for("the cluster to refuse venue-1 writing as venue-2", WAIT, || {
        let log = nodes[1].log();
        log.contains("venue-1") && log.contains("netbar.feed.310104.venue-2") && log.contains("refused")
    });
    assert_eq!(sequence_numbers(&rival).1, 0, "nothing of the rival's acknowledged");
    assert_eq!(database.value("SELECT count(*) FROM netbar.venues WHERE venue = 'venue-2'"), "0");
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

/// The district topology: venues → their district's mosquitto (exactly
/// deploy/regulator/district.conf, district.acl and bridge-cluster.conf,
/// persistent as Debian's mosquitto.conf makes it) → its bridge → the
/// three-node NATS cluster → the ingest → PostgreSQL. The node the bridge
/// uses is killed and comes back, the ingest is killed -9 and comes back,
/// then the district broker stops for a while: every venue's uplink cut.
/// Meanwhile two of venue-2's messages are taken out of its outbox before
/// they were sent. Afterwards venue-1 is contiguous from 1, venue-2 has
/// exactly those two reported as an open gap, and every record is there once.
#[test]
fn a_district_bridged_to_the_cluster_lands_whole_and_a_real_gap_shows() {
    let dir = TempDir::new("ingest-district");
    let (central_ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "nats", "venue-1");
    let mut nodes = nats_cluster(dir.path(), &cert, &key, "");
    let database = Postgres::start(dir.path());
    let ingest_url = url(&nodes[2]);
    let broker = ["--broker", &ingest_url, "--ca", central_ca.to_str().unwrap(), "--username", "regulator"];
    let password = [("NETBAR_REGULATOR_PASSWORD", "change-me-regulator")];
    let mut ingest = start_ingest_as(dir.path(), &broker, &password, &database, "ingest-1.log");

    // The district broker, its bridge to the three nodes in the deployed order.
    let (district_ca, server, clients) = netbar_tests::certificates_for(dir.path(), "district", &["venue-1", "venue-2"]);
    let files = [
        ("ca.pem", district_ca.as_path()),
        ("broker.pem", server.0.as_path()),
        ("broker.key", server.1.as_path()),
        ("central-ca.pem", central_ca.as_path()),
    ];
    let names: Vec<String> = (1..=3).map(|n| format!("feed-{n}.regulator.example:8883")).collect();
    let addresses: Vec<(&str, String)> =
        names.iter().zip(&nodes).map(|(name, node)| (name.as_str(), format!("127.0.0.1:{}", node.mqtt_port()))).collect();
    let confs = ["district.conf", "bridge-cluster.conf"];
    let (config, port) = deploy_config(&dir, "regulator", &confs, "/etc/mosquitto/netbar-feed", &files, &addresses);
    let store = dir.path().join("district-store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("persistence true\npersistence_location {}/\n", store.display()));
    std::fs::write(&config, text).unwrap();
    let mut district = deploy_start(&config, port);

    // Two real agents at the district, each with its certificate.
    let district_url = format!("mqtts://127.0.0.1:{port}");
    let mut venues: Vec<Venue> = clients
        .iter()
        .enumerate()
        .map(|(n, (cert, key))| {
            let venue = venue_as(&format!("district-venue-{}", n + 1), &format!("venue-{}", n + 1));
            add_uplink(&venue, &uplink_section(&district_url, &district_ca, Some((cert.as_path(), key.as_path())), "3.1.1"));
            venue
        })
        .collect();
    let mut tokens = Vec::new();
    for venue in &mut venues {
        venue.start();
        tokens.push(venue.sign_in("desk", "cashier"));
    }
    let mut made = [0, 0];
    let mut check_ins = |venues: &[Venue], tokens: &[String], count: usize| {
        for (v, venue) in venues.iter().enumerate() {
            for _ in 0..count {
                check_in(venue, &tokens[v], made[v]);
                made[v] += 1;
            }
        }
    };
    check_ins(&venues, &tokens, 10);
    wait_for("both venues' first records through the bridge", WAIT, || {
        ["venue-1", "venue-2"].iter().all(|name| feed_of(&database, name).first().is_some_and(|expected| expected != "0"))
    });
    // The node the bridge uses dies; the bridge goes on to the next.
    nodes[0].kill();
    check_ins(&venues, &tokens, 10);
    nodes[0].start();
    // The ingest dies and comes back to its session.
    ingest.kill();
    check_ins(&venues, &tokens, 10);
    let _ingest = start_ingest_as(dir.path(), &broker, &password, &database, "ingest-2.log");
    // The district broker stops: every venue's uplink is cut and the
    // venues keep their feed in their outboxes.
    district.terminate();
    check_ins(&venues, &tokens, 10);
    // Two of venue-2's waiting messages are lost before they were sent.
    venues[1].agent.take().unwrap().terminate();
    let outbox = rusqlite::Connection::open(venues[1].dir.path().join("data").join("netbar.sqlite")).unwrap();
    let waiting: Vec<(i64, String)> = outbox
        .prepare("SELECT seq, channel FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(waiting.len() >= 4, "venue-2's outbox while its district is away: {waiting:?}");
    let dropped = &waiting[1..3];
    outbox.execute("DELETE FROM outbox WHERE seq IN (?1, ?2)", [dropped[0].0, dropped[1].0]).unwrap();
    drop(outbox);
    let dropped_records = dropped.iter().filter(|(_, channel)| channel == "record").count();
    venues[1].start();
    let _district = deploy_start(&config, port);

    let [one, two] = &mut venues[..] else { unreachable!() };
    stop_and_check_whole(&database, one, "venue-1", made[0]);
    // venue-2: everything it still had arrives, and the two never will.
    let (last, _) = sequence_numbers(two);
    wait_for("venue-2's broker to acknowledge its feed", WAIT, || sequence_numbers(two).1 >= last);
    two.agent.as_mut().unwrap().terminate();
    let (_, acknowledged) = sequence_numbers(two);
    wait_for("venue-2's feed up to its last acknowledged message in the database, two missing", WAIT, || {
        let feed = feed_of(&database, "venue-2");
        feed.first().is_some_and(|expected| expected.parse::<i64>().unwrap() >= acknowledged) && feed[2] == "2"
    });
    let of_venue = "JOIN netbar.venues v ON v.id = venue_id WHERE v.venue = 'venue-2'";
    let gaps = database.rows(&format!("SELECT first_seq, last_seq, closed_at IS NULL FROM netbar.gaps {of_venue}"));
    let open = vec![dropped[0].0.to_string(), dropped[1].0.to_string(), "t".to_owned()];
    assert_eq!(gaps, vec![open], "venue-2's one real gap, open");
    let records = database.value(&format!("SELECT count(*), count(DISTINCT log_index) FROM netbar.records {of_venue}"));
    let expected = made[1] - dropped_records;
    assert_eq!(records, format!("{expected}|{expected}"), "venue-2's records, each once, but the dropped");
}
