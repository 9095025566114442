//! The venue across restarts: the real agent and real collectors, each
//! stopped (kill -9 and SIGTERM) and started again in the middle of a
//! venue with sessions, tickets and an open critical incident; a curfew
//! that passed while the agent was down; the regulator link's state after a
//! crash; a full outbox; a log whose tail was removed from the file.

use std::path::{Path, PathBuf};
use std::process::Command as Run;
use std::time::Duration;

use netbar_protocol::{Message, decode};
use netbar_tests::{Client, Mosquitto, Process, binary, free_port, http, wait_for};
use serde_json::{Value, json};

use super::agent::{Venue, collector};
use super::uplink::{add_uplink, tls_listener, uplink_section};

const WAIT: Duration = Duration::from_secs(30);

/// How an agent or a collector is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Terminate,
}

fn stop(process: &mut Process, how: Stop) {
    match how {
        Stop::Kill => process.kill(),
        Stop::Terminate => process.terminate(),
    }
}

fn get(venue: &Venue, token: &str, path: &str) -> Value {
    let (status, body) = http(venue.http, "GET", path, Some(token), None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn floor_state(venue: &Venue, token: &str, station: &str) -> String {
    let floor = get(venue, token, "/api/v1/floor");
    let tile = floor["stations"].as_array().and_then(|tiles| tiles.iter().find(|tile| tile["id"] == station).cloned());
    tile.and_then(|tile| tile["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

fn locked(station: &Path) -> bool {
    std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "yes"
}

/// Starts the station's collector again with its lock state as it is now.
fn restart_collector(station: &Path, extra: &str) -> Process {
    let state = std::fs::read_to_string(station.join("locked")).unwrap();
    collector(station, extra, &state)
}

fn exported(venue: &Venue) -> String {
    String::from_utf8(venue.records("export").stdout).unwrap()
}

fn check_in(venue: &Venue, token: &str, number: &str, birth_date: &str) -> (u16, Value) {
    let body = json!({"document_type": "other", "number": number, "birth_date": birth_date});
    http(venue.http, "POST", "/api/v1/checkins", Some(token), Some(&body))
}

fn login(station: &Path, ticket: &str) -> Value {
    let config = station.join("run.toml");
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", ticket]).output().unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

/// Enrolls `sensor`, a smoke detector bridged by `station`, read from a
/// file in the station's directory; its `[[sensors]]` section and file.
fn smoke_detector(venue: &Venue, station: &str, sensor: &str) -> (String, PathBuf) {
    let enrolled = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", venue.config.to_str().unwrap(), "sensor", sensor, "--station", station, "--kind", "smoke"])
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let file = venue.dir.path().join(format!("{sensor}.value"));
    std::fs::write(&file, "0\n").unwrap();
    let section = format!(
        "[[sensors]]\nid = \"{sensor}\"\nkind = \"smoke\"\nsource = {{ type = \"file\", path = \"{}\", interval = 0.1 }}\n",
        file.display()
    );
    (section, file)
}

/// Waits until the agent has heard station `id` well after `since` (its
/// telemetry comes every 0.2 s): by then it has compared several reports
/// with what it holds.
fn heard_since(venue: &Venue, token: &str, id: &str, since: jiff::Timestamp) {
    let after = since + jiff::SignedDuration::from_secs(1);
    wait_for(&format!("{id} heard from after {after}"), WAIT, || {
        let stations = get(venue, token, "/api/v1/stations");
        stations["stations"].as_array().unwrap().iter().any(|station| {
            station["id"] == id
                && station["online"] == true
                && station["last_seen"].as_str().and_then(|at| at.parse::<jiff::Timestamp>().ok()).is_some_and(|at| at > after)
        })
    });
}

/// The whole venue across restarts of the agent (each of `restarts`) and
/// of each collector, and stations brought in line after an outage.
fn the_venue_survives_restarts(mut venue: Venue, restarts: &[Stop]) {
    let st1 = venue.enroll("st-1");
    let st2 = venue.enroll("st-2");
    let (smoke, smoke_file) = smoke_detector(&venue, "st-2", "smoke-1");
    venue.start();
    let cashier = venue.sign_in("li", "cashier");
    let mut c1 = collector(&st1, "", "yes\n");
    let mut c2 = collector(&st2, &smoke, "yes\n");
    wait_for("both stations online", WAIT, || {
        floor_state(&venue, &cashier, "st-1") == "free" && floor_state(&venue, &cashier, "st-2") == "free"
    });

    // Customer A plays at st-1; customer B is checked in, not yet seated.
    let (status, a) = check_in(&venue, &cashier, "A0000001", "1990-01-01");
    assert_eq!(status, 201, "{a}");
    let ticket_a = a["result"]["ticket"].as_str().unwrap().to_owned();
    let (status, b) = check_in(&venue, &cashier, "B0000002", "1985-06-30");
    assert_eq!(status, 201, "{b}");
    let ticket_b = b["result"]["ticket"].as_str().unwrap().to_owned();
    let answer = login(&st1, &ticket_a);
    assert_eq!(answer["status"], "unlocked", "{answer}");
    let session = answer["session_id"].as_str().unwrap().to_owned();
    wait_for("st-1 unlocked", WAIT, || !locked(&st1));
    // Smoke at st-2's detector: a critical incident nobody acknowledged yet.
    std::fs::write(&smoke_file, "1\n").unwrap();
    let fire = {
        let mut id = String::new();
        wait_for("the fire incident", WAIT, || {
            let incidents = get(&venue, &cashier, "/api/v1/incidents");
            id = incidents["incidents"][0]["id"].as_str().unwrap_or_default().to_owned();
            incidents["incidents"][0]["kind"] == "fire"
        });
        id
    };
    std::fs::write(&smoke_file, "0\n").unwrap();

    for &how in restarts {
        let mut agent = venue.agent.take().unwrap();
        stop(&mut agent, how);
        venue.start();
        let cashier = venue.sign_in("li", "cashier");
        // At once, from the log: the session, the tickets, the incident.
        let sessions = get(&venue, &cashier, "/api/v1/sessions");
        assert_eq!(
            (sessions["sessions"][0]["station"].as_str(), sessions["sessions"][0]["id"].as_str()),
            (Some("st-1"), Some(session.as_str())),
            "after {how:?}: {sessions}"
        );
        let incidents = get(&venue, &cashier, "/api/v1/incidents");
        let incident = incidents["incidents"].as_array().unwrap().iter().find(|incident| incident["id"] == fire.as_str()).cloned();
        let incident = incident.unwrap_or_else(|| panic!("after {how:?} the fire incident is gone: {incidents}"));
        assert_eq!((incident["severity"].as_str(), incident["acknowledged"].is_null()), (Some("critical"), true), "{incident}");
        let (_, again) = check_in(&venue, &cashier, "A0000001", "1990-01-01");
        assert_eq!(again["result"]["reasons"], json!(["already_checked_in"]), "after {how:?}: {again}");
        // And from the stations, within a telemetry period of their return.
        wait_for("st-1 in session on the floor", WAIT, || floor_state(&venue, &cashier, "st-1") == "in_session");
        assert!(!locked(&st1), "after {how:?} the customer's station was locked");
    }
    let cashier = venue.sign_in("li", "cashier");
    let manager = venue.sign_in("wang", "manager");

    // The collector of st-1 killed and started again: its session holds.
    stop(&mut c1, Stop::Kill);
    let restarted = jiff::Timestamp::now();
    c1 = restart_collector(&st1, "");
    heard_since(&venue, &cashier, "st-1", restarted);
    let sessions = get(&venue, &cashier, "/api/v1/sessions");
    assert_eq!(
        sessions["sessions"][0]["id"],
        session.as_str(),
        "{sessions}\n{}\n{}",
        exported(&venue),
        std::fs::read_to_string(st1.join("stderr")).unwrap_or_default()
    );
    assert!(!locked(&st1));
    // st-2's collector stopped the orderly way and started again: still free.
    stop(&mut c2, Stop::Terminate);
    let restarted = jiff::Timestamp::now();
    c2 = restart_collector(&st2, &smoke);
    heard_since(&venue, &cashier, "st-2", restarted);
    assert!(locked(&st2));
    let log = exported(&venue);
    assert_eq!(log.matches("\"session_start\"").count(), 1, "one session, never started again: {log}");
    assert!(!log.contains("\"session_end\""), "no restart ended the session: {log}");

    // The incident goes on as if nothing had happened.
    let path = |step: &str| format!("/api/v1/incidents/{fire}/{step}");
    assert_eq!(http(venue.http, "POST", &path("acknowledge"), Some(&cashier), None).0, 200);
    let note = json!({"note": "toaster in the back room; aired"});
    assert_eq!(http(venue.http, "POST", &path("resolve"), Some(&manager), Some(&note)).0, 200);

    // While st-1 is away, the desk checks its customer out: the station is
    // locked when it comes back.
    stop(&mut c1, Stop::Kill);
    assert_eq!(http(venue.http, "DELETE", &format!("/api/v1/checkins/{ticket_a}"), Some(&cashier), None).0, 200);
    assert!(!locked(&st1), "nobody could tell it yet");
    c1 = restart_collector(&st1, "");
    wait_for("st-1 locked on its return", WAIT, || locked(&st1));
    wait_for("st-1 free on the floor", WAIT, || floor_state(&venue, &cashier, "st-1") == "free");

    // st-2 comes back unlocked with no session: unregistered use.
    stop(&mut c2, Stop::Kill);
    std::fs::write(st2.join("locked"), "no\n").unwrap();
    c2 = restart_collector(&st2, &smoke);
    wait_for("st-2 locked", WAIT, || locked(&st2));
    wait_for("the unregistered-use incident", WAIT, || {
        get(&venue, &cashier, "/api/v1/incidents")["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|incident| incident["kind"] == "unregistered_use" && incident["station"] == "st-2")
    });
    // Customer B's ticket still checks out; everything is in the log, intact.
    assert_eq!(http(venue.http, "DELETE", &format!("/api/v1/checkins/{ticket_b}"), Some(&cashier), None).0, 200);
    let verify = venue.records("verify");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    drop((c1, c2));
}

#[test]
fn the_venue_survives_kill_9_and_sigterm_of_the_agent_and_of_each_collector() {
    the_venue_survives_restarts(Venue::new("restarts"), &[Stop::Kill, Stop::Terminate]);
}

#[test]
fn the_venue_survives_restarts_over_mosquitto() {
    let broker = Mosquitto::start();
    // With an external broker the stations stay connected while the agent
    // is away: it learns what they hold from their retained status.
    the_venue_survives_restarts(Venue::external("restarts-mosquitto", &broker), &[Stop::Kill]);
}

/// A youth's curfew passes while the agent is down: the session ends at
/// start-up with the policy as its reason, and the station, back on the
/// bus, is locked.
#[test]
fn a_curfew_that_passed_while_the_agent_was_down_ends_the_session_at_start() {
    let mut venue = Venue::korean("restart-curfew");
    let station = venue.enroll("st-1");
    venue.start_at(Some("2026-11-22T21:50:00+09:00"));
    let token = venue.sign_in("kim", "cashier");
    let youth = json!({"document_type": "kr_rrn", "number": "120601-3000004"});
    let (status, body) = http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&youth));
    assert_eq!(status, 201, "{body}");
    let _collector = collector(&station, "", "yes\n");
    wait_for("the station online", WAIT, || get(&venue, &token, "/api/v1/stations")["stations"][0]["online"] == true);
    let answer = login(&station, body["result"]["ticket"].as_str().unwrap());
    assert_eq!(answer["status"], "unlocked", "{answer}");
    wait_for("the station unlocked", WAIT, || !locked(&station));

    // Down at about 21:50; back at 22:05 in Seoul.
    venue.agent.take().unwrap().kill();
    venue.start_at(Some("2026-11-22T22:05:00+09:00"));
    let token = venue.sign_in("kim", "cashier");
    assert_eq!(get(&venue, &token, "/api/v1/sessions")["sessions"], json!([]), "ended at start-up");
    wait_for("the curfew's end in the log", WAIT, || exported(&venue).contains("\"reason\":\"policy\""));
    wait_for("the station locked", WAIT, || locked(&station));
}

/// The regulator link after a crash while connected, restarted during the
/// regulator's outage: never "connected" until it is.
#[test]
fn after_a_crash_while_connected_the_link_says_what_it_is() {
    let dir = netbar_tests::TempDir::new("restart-uplink");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let mut broker = Mosquitto::start_with(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let mut venue = Venue::new("restart-uplink");
    add_uplink(&venue, &uplink_section(&format!("mqtts://127.0.0.1:{tls_port}"), &ca, None, "3.1.1"));
    venue.start();
    let config = venue.config.clone();
    let status = || {
        let output = Run::new(binary("netbar-agent")).args(["uplink", "--config", config.to_str().unwrap(), "status"]).output().unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    wait_for("the agent connected to the regulator", WAIT, || status().contains("connected: yes"));
    venue.agent.take().unwrap().kill();
    broker.stop();
    let crashed = status();
    assert!(crashed.contains("connected: no (the agent is not running)"), "{crashed}");
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let running = status();
    assert!(running.contains("connected: no (since "), "{running}");
    let uplink = get(&venue, &token, "/api/v1/uplink");
    assert_eq!(uplink["connected"], false, "{uplink}");
    assert_eq!(get(&venue, &token, "/api/v1/floor")["uplink"]["connected"], false);
    let (_, metrics) = netbar_tests::http_text(venue.http, "GET", "/metrics", Some(&token), None);
    assert!(metrics.contains("netbar_uplink_connected 0") && metrics.contains("netbar_store_up 1"), "{metrics}");
    // A second agent on the same data is refused before it touches anything.
    let second = Run::new(binary("netbar-agent")).args(["run", "--config", venue.config.to_str().unwrap()]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another netbar-agent is running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    broker.restart();
    wait_for("connected again", WAIT, || status().contains("connected: yes"));
}

/// The outbox past its bound while the regulator is away (and the agent
/// killed meanwhile): every check-in is admitted and its record kept,
/// summaries carry their periods over, and when the regulator is back every
/// number arrives and the summaries add up to every admission.
#[test]
fn a_full_outbox_drops_nothing_and_summaries_carry_over() {
    let dir = netbar_tests::TempDir::new("restart-outbox");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let mut venue = Venue::new("restart-outbox");
    add_uplink(&venue, &(uplink_section(&format!("mqtts://127.0.0.1:{tls_port}"), &ca, None, "3.1.1") + "outbox_max = 100\n"));
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let admissions = 130;
    for n in 0..admissions {
        let (status, body) = check_in(&venue, &token, &format!("F{n:07}"), "1990-01-01");
        assert_eq!(status, 201, "check-in {n} past the bound: {body}");
    }
    wait_for("a summary carried over", WAIT, || venue.log().contains("this period's summary carries over into the next"));
    // The agent crashes meanwhile: the period's counts come back from the log.
    venue.agent.take().unwrap().kill();
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let more = 10;
    for n in admissions..admissions + more {
        assert_eq!(check_in(&venue, &token, &format!("F{n:07}"), "1990-01-01").0, 201);
    }
    let admissions = admissions + more;
    let uplink = get(&venue, &token, "/api/v1/uplink");
    assert!(uplink["backlog"].as_u64().unwrap() >= admissions, "{uplink}");
    let warning = uplink["warning"].as_str().unwrap();
    assert!(warning.contains("Nothing is dropped") && warning.contains("Summaries are now merged"), "{warning}");

    let broker = Mosquitto::start_with(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let regulator = Client::connect(broker.port, &["netbar/feed/#"]);
    let mut by_seq = std::collections::BTreeMap::new();
    let counts = |by_seq: &std::collections::BTreeMap<u64, Message>| {
        let records = by_seq.values().filter(|message| matches!(message, Message::Record(_))).count();
        let registered: u32 =
            by_seq.values().filter_map(|message| if let Message::Summary(s) = message { Some(s.registrations) } else { None }).sum();
        (records, registered)
    };
    let arrived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        regulator.expect("every record, and summaries adding up to every admission", WAIT, |_, payload| {
            let envelope = decode(payload).unwrap();
            if envelope.seq > 0 {
                by_seq.insert(envelope.seq, envelope.message);
            }
            (counts(&by_seq) == (admissions as usize, admissions as u32)).then_some(())
        })
    }));
    if arrived.is_err() {
        let summaries: Vec<String> = by_seq
            .iter()
            .filter_map(|(seq, message)| {
                if let Message::Summary(s) = message { Some(format!("#{seq} {}..{} {}", s.from, s.to, s.registrations)) } else { None }
            })
            .collect();
        panic!("(records, registered) {:?} of {admissions}; summaries {summaries:#?}\n{}", counts(&by_seq), venue.log());
    }
    let last = *by_seq.keys().last().unwrap();
    assert_eq!(by_seq.keys().copied().collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>(), "contiguous from 1");
    let summaries: Vec<&netbar_protocol::messages::Summary> =
        by_seq.values().filter_map(|message| if let Message::Summary(s) = message { Some(s) } else { None }).collect();
    for pair in summaries.windows(2) {
        assert_eq!(pair[1].from, pair[0].to, "each summary starts where the one before ended: no period lost");
    }
    assert!(
        summaries.iter().any(|summary| summary.to.duration_since(summary.from) > jiff::SignedDuration::from_millis(1500)),
        "one summary covers the periods carried over"
    );
}

/// A log whose tail was removed from the file (the triggers put back) is
/// caught by `records verify`; the agent gives no position out twice and
/// raises a critical incident the regulator receives. An intruder who also
/// moves the anchor back is caught by the regulator's heads: the tail
/// flags the rewritten positions and `records verify --heads` names them.
#[test]
fn a_truncated_log_is_caught_at_the_venue_and_by_the_regulator() {
    let dir = netbar_tests::TempDir::new("restart-truncated");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let _broker = Mosquitto::start_with(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let heads = dir.path().join("heads.jsonl");
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let tail = Process::start(
        &binary("netbar-agent"),
        &["regulator", "tail", "--broker", &url, "--ca", ca.to_str().unwrap(), "--heads", heads.to_str().unwrap(), "--heartbeats"],
        dir.path().join("tail.out"),
    );
    wait_for("the tail to subscribe", WAIT, || tail.stderr().contains("following netbar/feed/+/+/+"));
    let mut venue = Venue::new("restart-truncated");
    add_uplink(&venue, &uplink_section(&url, &ca, None, "3.1.1"));
    venue.start();
    let token = venue.sign_in("li", "cashier");
    for n in 1..=5 {
        assert_eq!(check_in(&venue, &token, &format!("T{n:07}"), "1990-01-01").0, 201);
    }
    wait_for("the fifth entry at the regulator", WAIT, || tail.stderr().contains("record log #5 "));
    let db = venue.dir.path().join("data").join("netbar.sqlite");
    let verify = |extra: &[&str]| {
        let mut args = vec!["records", "verify", "--db", db.to_str().unwrap()];
        args.extend_from_slice(extra);
        let output = Run::new(binary("netbar-agent")).args(&args).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
    };
    let truncate = |sql: &str| {
        let connection = rusqlite::Connection::open(&db).unwrap();
        connection.execute_batch(&format!("BEGIN; DROP TRIGGER log_keep_young; {sql}; COMMIT;")).unwrap();
        // The guard is put back, as a careful intruder would.
        connection
            .execute_batch(
                "CREATE TRIGGER log_keep_young BEFORE DELETE ON log
                 WHEN OLD.at_unix > CAST(strftime('%s', 'now') AS INTEGER) - (SELECT days FROM retention WHERE id = 1) * 86400
                 BEGIN SELECT RAISE(ABORT, 'registration records younger than the retention period cannot be deleted'); END;",
            )
            .unwrap();
    };

    // An intruder removes the last two entries: the anchor says so.
    venue.agent.take().unwrap().terminate();
    truncate("DELETE FROM log WHERE seq > 3");
    let (code, report) = verify(&[]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("ends at entry 3 but entry 5 was committed") && report.contains("entries 4..5 were removed"), "{report}");
    let (code, report) = verify(&["--heads", heads.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("NOT AS RECEIVED: the regulator received entry 5 (hash")
            && report.contains("but the log ends at entry 3: the log was truncated"),
        "{report}"
    );
    // The agent starts, raises it to the regulator, and chains on after 5.
    venue.start();
    let token = venue.sign_in("li", "cashier");
    assert_eq!(check_in(&venue, &token, "T0000006", "1990-01-01").0, 201);
    wait_for("the incident and the next record at the regulator", WAIT, || {
        let seen = tail.stderr();
        seen.contains("CRITICAL records_tampered") && seen.contains("record log #7 ")
    });
    assert!(!tail.stderr().contains("REWRITTEN"), "no position was given out twice:\n{}", tail.stderr());

    // A thorough intruder also moves the anchor back: the venue's own
    // checks pass, and the agent gives positions out again...
    venue.agent.take().unwrap().terminate();
    truncate(
        "DROP TRIGGER anchor_never_back; DELETE FROM log WHERE seq > 2; UPDATE anchor SET seq = 2, hash = (SELECT hash FROM log WHERE seq = 2)",
    );
    venue.start();
    let token = venue.sign_in("li", "cashier");
    assert_eq!(check_in(&venue, &token, "T0000008", "1990-01-01").0, 201);
    // ...which the regulator sees.
    wait_for("the tail to flag the rewritten log", WAIT, || {
        let seen = tail.stderr();
        seen.contains("venue-1 REWRITTEN: log #3 came back") && seen.contains("venue-1 HEAD BACKWARDS")
    });
    venue.agent.take().unwrap().terminate();
    let (code, report) = verify(&["--heads", heads.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("NOT AS RECEIVED: entry 3 has hash") && report.contains("the log was rewritten"), "{report}");
}

/// Another program holds the database's write lock (a tool left with a
/// transaction open): the check-in is refused as not recorded, and the
/// console, /metrics and the regulator's heartbeats say the store fails and
/// why, instead of figures; once the lock goes, the next check-in is
/// recorded and the failure is over.
#[test]
fn a_store_that_cannot_write_is_reported_as_failing_not_as_zeros() {
    let dir = netbar_tests::TempDir::new("restart-store");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&tls_listener(tls_port, &ca, &server_cert, &server_key, false));
    let regulator = Client::connect(broker.port, &["netbar/feed/310104/venue-1/heartbeat"]);
    let mut venue = Venue::new("restart-store");
    add_uplink(&venue, &uplink_section(&format!("mqtts://127.0.0.1:{tls_port}"), &ca, None, "3.1.1"));
    venue.start();
    let token = venue.sign_in("li", "cashier");
    assert_eq!(check_in(&venue, &token, "S0000001", "1990-01-01").0, 201);

    let holder = rusqlite::Connection::open(venue.dir.path().join("data").join("netbar.sqlite")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = check_in(&venue, &token, "S0000002", "1990-01-01");
    assert_eq!((status, body["code"].as_str()), (503, Some("not_recorded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("database is locked"), "{body}");
    let store = get(&venue, &token, "/api/v1/floor")["store"].clone();
    assert_eq!(store["ok"], false, "{store}");
    assert!(store["error"].as_str().unwrap().contains("cannot be written"), "{store}");
    let (_, metrics) = netbar_tests::http_text(venue.http, "GET", "/metrics", Some(&token), None);
    assert!(metrics.contains("netbar_store_up 0"), "{metrics}");
    regulator.expect("a heartbeat saying the store fails", WAIT, |_, payload| {
        let Message::Heartbeat(beat) = decode(payload).ok()?.message else { return None };
        beat.store_error.filter(|error| error.contains("database is locked")).map(|_| assert!(beat.log_head.is_some()))
    });

    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(check_in(&venue, &token, "S0000002", "1990-01-01").0, 201, "the customer was never admitted, so not twice");
    wait_for("the failure to be over", WAIT, || get(&venue, &token, "/api/v1/floor")["store"]["ok"] == true);
    let (_, metrics) = netbar_tests::http_text(venue.http, "GET", "/metrics", Some(&token), None);
    assert!(metrics.contains("netbar_store_up 1"), "{metrics}");
}
