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
use super::uplink::{add_uplink, tls_listener, uplink_section};

const WAIT: Duration = Duration::from_secs(60);

fn start_ingest(dir: &Path, url: &str, ca: &Path, database: &Postgres, log: &str) -> Process {
    let ingest = Process::start(
        &binary("netbar-agent"),
        &[
            "regulator",
            "ingest",
            "--broker",
            url,
            "--ca",
            ca.to_str().unwrap(),
            "--region",
            "310104",
            "--database",
            &database.connection(),
            "--session",
            "ingest-test",
        ],
        dir.join(log),
    );
    wait_for("the ingest to connect", WAIT, || ingest.stderr().contains("connected to"));
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

#[test]
fn the_feed_lands_in_postgres_once_with_its_gaps_through_a_killed_ingest() {
    let dir = TempDir::new("ingest");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let broker = Mosquitto::start_persistent(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let database = Postgres::start(dir.path());
    let url = format!("mqtts://127.0.0.1:{tls_port}");
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
    for venue in [&mut one, &mut two] {
        let (last, _) = sequence_numbers(venue);
        wait_for("the broker to acknowledge the venue's feed", WAIT, || sequence_numbers(venue).1 >= last);
        venue.agent.as_mut().unwrap().terminate();
    }
    for (venue, name) in [(&one, "venue-1"), (&two, "venue-2")] {
        let (_, acknowledged) = sequence_numbers(venue);
        wait_for(&format!("{name}'s feed up to #{acknowledged} in the database"), WAIT, || {
            let feed = feed_of(&database, name);
            feed.first().is_some_and(|expected| expected.parse::<i64>().unwrap() >= acknowledged)
        });
        let feed = feed_of(&database, name);
        assert_eq!(feed[2], "0", "{name}: the sequence in the database is contiguous from 1: {feed:?}");
        assert_eq!(
            database.value(&format!("SELECT min(seq) FROM netbar.feed JOIN netbar.venues v ON v.id = venue_id WHERE v.venue = '{name}'")),
            "1"
        );
        let open = format!(
            "SELECT count(*) FROM netbar.gaps g JOIN netbar.venues v ON v.id = g.venue_id WHERE v.venue = '{name}' AND closed_at IS NULL"
        );
        assert_eq!(database.value(&open), "0", "{name}: no gap left open");
        // 30 check-ins, 30 records, each once.
        let records = database.value(&format!(
            "SELECT count(*), count(DISTINCT log_index), sum(CASE WHEN allowed THEN 0 ELSE 1 END) FROM netbar.records r JOIN netbar.venues v ON v.id = r.venue_id WHERE v.venue = '{name}'"
        ));
        assert_eq!(records, "30|30|7", "{name}: records, distinct positions, refusals");
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
