//! A city's venues reconnecting after an outage of the regulator's broker,
//! and the ingest writing their backlog into PostgreSQL.
//!
//! mosquitto (TLS, persistence) and `regulator ingest` start, the ingest's
//! session is made, then the broker stops. `regulator city` runs N venues
//! (the agent's real store and sender each) for an hour of a busy venue's
//! feed at a compressed time scale — 60 check-ins and a summary every 5
//! minutes of venue time, here a check-in a second and a summary every 5 s
//! — queued in their outboxes while the broker is away. Then the broker
//! comes back and the run times: every venue reconnected, and every
//! venue's records in PostgreSQL with nothing missing. It prints the
//! messages committed a second and the broker's and the ingest's CPU and
//! peak memory.
//!
//! Figures are printed, never asserted. `NETBAR_BENCH_VENUES` (default
//! 1000) sets N, `NETBAR_BENCH_PROTOCOL` (3.1.1 or 5) the ingest's MQTT.
//! Run with `cargo bench -p netbar-tests --bench city`.

#[cfg(unix)]
fn main() {
    use std::time::{Duration, Instant};

    use netbar_tests::postgres::Postgres;
    use netbar_tests::{Mosquitto, Process, TempDir, binary, cpu_seconds, free_port, peak_rss_kib, wait_for};

    let venues: u32 = std::env::var("NETBAR_BENCH_VENUES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    const CHECK_INS: u32 = 60;
    let dir = TempDir::new("bench-city");
    let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "city", "venue-1");
    let tls_port = free_port();
    let listener =
        format!("listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n", ca.display(), cert.display(), key.display());
    // Every venue's backlog waits in the ingest's session while it drains.
    let mut broker = Mosquitto::start_persistent(&format!("{listener}max_queued_messages 0\n"));
    let database = Postgres::start(dir.path());
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let connection = database.connection();
    // NETBAR_BENCH_PROTOCOL=5: the ingest speaks MQTT 5 and lets the broker
    // send 1,000 unacknowledged messages (3.1.1: mosquitto's 20).
    let protocol = std::env::var("NETBAR_BENCH_PROTOCOL").unwrap_or_else(|_| "3.1.1".into());
    let ca_arg = ca.to_str().expect("UTF-8");
    let ingest_args =
        ["regulator", "ingest", "--broker", &url, "--ca", ca_arg, "--database", &connection, "--session", "bench", "--protocol", &protocol];
    let ingest = Process::start(&binary("netbar-agent"), &ingest_args, dir.path().join("ingest.log"));
    wait_for("the ingest's subscription", Duration::from_secs(60), || ingest.stderr().contains("subscribed to"));
    broker.shut_down();

    // The outage: the venues queue an hour of their feed.
    let venues_dir = dir.path().join("venues");
    let count = venues.to_string();
    let check_ins = CHECK_INS.to_string();
    let city_args = [
        "regulator",
        "city",
        "--venues",
        &count,
        "--broker",
        &url,
        "--ca",
        ca.to_str().expect("UTF-8"),
        "--dir",
        venues_dir.to_str().expect("UTF-8"),
        "--pace",
        "60",
        "--summary-period",
        "5",
        "--heartbeat-period",
        "60",
        "--check-ins",
        &check_ins,
    ];
    let fill_start = Instant::now();
    let city = Process::start(&binary("netbar-agent"), &city_args, dir.path().join("city.log"));
    // The records, and the twelve summaries of the hour.
    let expected_backlog = u64::from(venues) * u64::from(CHECK_INS + 12);
    wait_for("the venues' backlog", Duration::from_secs(1800), || {
        let log = city.stderr();
        let pending =
            log.lines().rev().find_map(|line| line.split("waiting in the outboxes: ").nth(1)).and_then(|n| n.trim().parse::<u64>().ok());
        pending.is_some_and(|pending| pending >= expected_backlog)
    });
    let fill_secs = fill_start.elapsed().as_secs_f64();

    // The broker is back: every venue reconnects and drains.
    let (ingest_cpu, city_cpu) = (cpu_seconds(ingest.id()), cpu_seconds(city.id()));
    broker.restart();
    let broker_pid = broker.pid().expect("the broker runs");
    let start = Instant::now();
    let mut reconnected = None;
    let whole = format!(
        "SELECT count(*) FROM netbar.venue_feed f WHERE f.missing = 0 \
         AND (SELECT count(*) FROM netbar.records r WHERE r.venue_id = f.venue_id) = {CHECK_INS}"
    );
    wait_for("every venue's records in the database", Duration::from_secs(3600), || {
        if reconnected.is_none() && city.stderr().lines().next_back().is_some_and(|line| line.starts_with(&format!("connected {venues}/")))
        {
            reconnected = Some(start.elapsed().as_secs_f64());
        }
        database.value(&whole) == venues.to_string()
    });
    let drain_secs = start.elapsed().as_secs_f64();
    let committed: u64 = database.value("SELECT coalesce(sum(received), 0) FROM netbar.venue_feed").parse().unwrap_or(0);
    let duplicates: u64 = database.value("SELECT coalesce(sum(duplicates), 0) FROM netbar.venue_feed").parse().unwrap_or(0);
    let gaps = database.value("SELECT count(*) FROM netbar.gaps WHERE closed_at IS NULL");
    let broker_cpu = cpu_seconds(broker_pid);
    let ingest_cpu = cpu_seconds(ingest.id()) - ingest_cpu;
    let city_cpu = cpu_seconds(city.id()) - city_cpu;
    let city_rss = peak_rss_kib(city.id()) / 1024.0;

    println!(
        "city: {venues} venues (the agent's real store and sender each) over TLS to mosquitto, `regulator ingest` (MQTT {protocol}) into PostgreSQL"
    );
    println!(
        "  backlog: {expected_backlog} messages ({CHECK_INS} records and 12 summaries a venue) queued in {fill_secs:.0} s with the broker away"
    );
    match reconnected {
        Some(secs) => println!("  every venue reconnected within {secs:.1} s of the broker's return (to the second)"),
        None => println!("  every venue reconnected (the generator's report every second did not catch the moment)"),
    }
    println!(
        "  drained and committed: {committed} messages in {drain_secs:.1} s = {:.0} msg/s; {duplicates} duplicates absorbed; {gaps} gaps open",
        committed as f64 / drain_secs
    );
    println!(
        "  during the drain: mosquitto {broker_cpu:.1} CPU-s, peak {:.1} MiB; ingest {ingest_cpu:.1} CPU-s, peak {:.1} MiB; the {venues} venues {city_cpu:.1} CPU-s, peak {city_rss:.0} MiB",
        peak_rss_kib(broker_pid) / 1024.0,
        peak_rss_kib(ingest.id()) / 1024.0,
    );
}

#[cfg(not(unix))]
fn main() {
    println!("the city benchmark runs on Linux (PostgreSQL and mosquitto of its own)");
}
