//! How long the agent takes to start on a venue's real history (target:
//! under 2 s from the process's start until its API answers, with the
//! venue rebuilt).
//!
//! `netbar-agent records synthesize` writes 60 days × 2,000 check-in
//! attempts a day (one in twenty refused), each admitted customer's session
//! and check-out, about twenty incidents a day with their acknowledgement
//! and resolution, and the state of a busy evening (customers checked in,
//! sessions open, stations held, incidents open) into a database through
//! the real store. The agent then starts on it several times: the time
//! from spawning the process to `/healthz` answering and to the agent
//! listening to the stations, and the time the agent itself reports for
//! opening the log and rebuilding the venue. The same run on an empty
//! database is the baseline; the ratio shows what history costs. `records
//! verify` (the whole chain and a replay of the log) is timed too. Last,
//! the same history at a Korean venue (policy `kr`), as an earlier release
//! wrote it with every document's number: the first start is the upgrade
//! that cuts them all out (every check-in, the chain made again, the file
//! vacuumed), the starts after it read only what is new.
//!
//! Figures are printed, never asserted. `NETBAR_BENCH_DAYS` and
//! `NETBAR_BENCH_PER_DAY` change the history. Run with `cargo bench -p
//! netbar-tests --bench startup`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netbar_tests::{Process, Stdin, TempDir, binary, free_port, wait_for};

fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The log without its colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A whole number that follows `key=` in `log`.
fn field(log: &str, key: &str) -> Option<u64> {
    let start = log.find(&format!("{key}="))? + key.len() + 1;
    log[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// One start of the agent: seconds to /healthz, seconds to listening to the
/// stations, milliseconds the agent reports for rebuilding the venue,
/// entries replayed.
type Start = (f64, f64, u64, u64);

/// One start of the agent on `dir`.
fn start_once(config: &Path, dir: &Path, http_port: u16) -> Start {
    let started = Instant::now();
    let mut agent = Process::start_with(
        &binary("netbar-agent"),
        &["run", "--config", config.to_str().expect("UTF-8 path")],
        dir.join("agent.log"),
        Stdin::Null,
        &[],
    );
    let mut healthy = None;
    wait_for("the agent listening to the stations", Duration::from_secs(60), || {
        if healthy.is_none()
            && std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
            && netbar_tests::http_text(http_port, "GET", "/healthz", None, None).0 == 200
        {
            healthy = Some(started.elapsed().as_secs_f64());
        }
        agent.stderr().contains("listening to the stations")
    });
    let listening = started.elapsed().as_secs_f64();
    let log = plain(&agent.stderr());
    agent.terminate();
    let restored = field(&log, "venue restored elapsed_ms").unwrap_or(0);
    let replayed = field(&log, "replayed").unwrap_or(0);
    (healthy.unwrap_or(listening), listening, restored, replayed)
}

/// Starts the agent `runs` times on the database at `db`, under `policy`;
/// the first start, and the median of all.
fn measure(name: &str, db: Option<&Path>, policy: &str, runs: usize) -> (Start, Start) {
    let dir = TempDir::new(name);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    if let Some(db) = db {
        std::fs::copy(db, data.join("netbar.sqlite")).expect("the synthetic database");
    }
    let (mqtt_port, http_port) = (free_port(), free_port());
    let printed = Command::new(binary("netbar-agent")).arg("print-config").output().expect("print-config");
    let text = String::from_utf8_lossy(&printed.stdout)
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", data.display()))
        .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{mqtt_port}\""))
        .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{mqtt_port}\""))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("policy = \"cn\"", &format!("policy = \"{policy}\""));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).expect("agent config");
    let mut results: Vec<Start> = (0..runs).map(|_| start_once(&config, dir.path(), http_port)).collect();
    let first = results[0];
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    (first, results[runs / 2])
}

fn main() {
    let (days, per_day) = (setting("NETBAR_BENCH_DAYS", 60), setting("NETBAR_BENCH_PER_DAY", 2000));
    let dir = TempDir::new("bench-startup");
    let db = dir.path().join("history.sqlite");
    let agent = binary("netbar-agent");
    let started = Instant::now();
    let synthesized = Command::new(&agent)
        .args([
            "records",
            "synthesize",
            "--db",
            db.to_str().expect("UTF-8 path"),
            "--days",
            &days.to_string(),
            "--per-day",
            &per_day.to_string(),
        ])
        .output()
        .expect("records synthesize");
    assert!(synthesized.status.success(), "{}", String::from_utf8_lossy(&synthesized.stderr));
    let written = String::from_utf8_lossy(&synthesized.stderr).split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "history: {days} days x {per_day} check-in attempts = {written} log entries, {:.0} MiB, written in {:.1} s",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let verify_started = Instant::now();
    let verified = Command::new(binary("netbar-agent")).args(["records", "verify", "--db", db.to_str().expect("UTF-8")]).output();
    let verify_secs = verify_started.elapsed().as_secs_f64();
    assert!(verified.expect("records verify").status.success(), "the synthetic log verifies");

    let runs = 5;
    let (_, (empty_healthy, empty_listening, empty_restored, _)) = measure("bench-startup-empty", None, "cn", runs);
    let ((first_healthy, ..), (healthy, listening, restored, replayed)) = measure("bench-startup-full", Some(&db), "cn", runs);
    let ((upgrade_healthy, ..), (korean_healthy, ..)) = measure("bench-startup-kr", Some(&db), "kr", runs);
    println!("agent start-up, median of {runs} (release build, embedded broker):");
    println!(
        "  empty database:       /healthz after {:.0} ms, listening after {:.0} ms, venue rebuilt in {empty_restored} ms",
        empty_healthy * 1000.0,
        empty_listening * 1000.0
    );
    println!(
        "  {days} days of history:  /healthz after {:.0} ms, listening after {:.0} ms, venue rebuilt in {restored} ms ({replayed} entries replayed)",
        healthy * 1000.0,
        listening * 1000.0
    );
    println!("  target 2000 ms: {:.1}x under it; ratio history / empty: {:.2}", 2.0 / healthy, healthy / empty_healthy);
    println!(
        "  the first start on it (the upgrade reading every check-in once for resident registration numbers): /healthz after {:.0} ms",
        first_healthy * 1000.0
    );
    println!("records verify of the whole history (chain, anchor, replay of open matters): {verify_secs:.2} s");
    println!(
        "a Korean venue on the same history with whole document numbers: the first start (the upgrade cutting every check-in, the chain made again, the file vacuumed) /healthz after {:.0} ms; median of {runs} starts {:.0} ms",
        upgrade_healthy * 1000.0,
        korean_healthy * 1000.0
    );
}
