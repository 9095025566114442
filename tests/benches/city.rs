//! A city's venues reconnecting after an outage of their uplinks, and the
//! ingest writing their backlog into PostgreSQL, through each of the
//! regulator's brokers in turn: mosquitto (one node, the baseline), the
//! three-node NATS JetStream cluster and the three-node RabbitMQ cluster of
//! deploy/regulator.
//!
//! For each broker: the broker and `regulator ingest` start, the ingest's
//! session is made. `regulator city` runs N venues (the agent's real store
//! and sender each; one generator process per 3,000 venues, each process
//! holding four files a venue) for an hour of a busy venue's feed at a
//! compressed time scale — 60 check-ins and a summary every 5 minutes of
//! venue time, here a check-in a second and a summary every 5 s — queued in
//! their outboxes while their uplinks are held down. Then every uplink
//! starts at once, spread over the cluster's nodes, and the run times:
//! every venue connected, and every venue's records in PostgreSQL with
//! nothing missing. It prints the messages committed a second, the
//! broker's (all nodes) and the ingest's CPU and peak memory, and each
//! cluster's drain rate as a ratio to mosquitto's.
//!
//! Figures are printed, never asserted. `NETBAR_BENCH_VENUES` (default
//! 1000) sets N, `NETBAR_BENCH_BROKERS` which brokers (default
//! `mosquitto,nats,rabbitmq`), `NETBAR_BENCH_PROTOCOL` (3.1.1 or 5) the
//! ingest's MQTT towards mosquitto (the clusters speak 3.1.1 only), and
//! `NETBAR_BENCH_VENUES_DIR` where the venues' databases go (a tmpfs such
//! as /dev/shm takes their fsyncs off the disk the database writes to).
//! Run with `cargo bench -p netbar-tests --bench city`.

#[cfg(unix)]
fn main() {
    let venues: u32 = std::env::var("NETBAR_BENCH_VENUES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let brokers = std::env::var("NETBAR_BENCH_BROKERS").unwrap_or_else(|_| "mosquitto,nats,rabbitmq".into());
    let mut baseline = None;
    for broker in brokers.split(',').map(str::trim) {
        let Some(rate) = city::run(broker, venues) else { continue };
        match baseline {
            None if broker == "mosquitto" => baseline = Some(rate),
            Some(mosquitto) => println!("  {broker}'s drain against mosquitto's: {:.2}", rate / mosquitto),
            None => {}
        }
    }
}

#[cfg(unix)]
mod city {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use netbar_tests::cluster::{NatsNode, Node, RabbitNode, nats_cluster, rabbitmq_cluster, url};
    use netbar_tests::postgres::Postgres;
    use netbar_tests::{Mosquitto, Process, TempDir, binary, cpu_seconds, free_port, peak_rss_kib, wait_for};

    const CHECK_INS: u32 = 60;
    /// Venues a generator process holds: four files each (its database, the
    /// write-ahead log and its index, the connection) under the 20,000 a
    /// process may open here.
    const PER_PROCESS: u32 = 3000;

    enum Brokers {
        /// The broker and its TLS port.
        Mosquitto(Mosquitto, u16),
        Nats(Vec<NatsNode>),
        Rabbit(Vec<RabbitNode>),
    }

    impl Brokers {
        fn pids(&self) -> Vec<u32> {
            match self {
                Brokers::Mosquitto(broker, _) => broker.pid().into_iter().collect(),
                Brokers::Nats(nodes) => nodes.iter().filter_map(Node::pid).collect(),
                Brokers::Rabbit(nodes) => nodes.iter().filter_map(Node::pid).collect(),
            }
        }

        /// The URLs the venues are spread over.
        fn venue_urls(&self) -> Vec<String> {
            match self {
                Brokers::Mosquitto(_, port) => vec![format!("mqtts://127.0.0.1:{port}")],
                Brokers::Nats(nodes) => nodes.iter().map(url).collect(),
                Brokers::Rabbit(nodes) => nodes.iter().map(url).collect(),
            }
        }
    }

    /// The last number after `marker` in a generator's log.
    fn last_figure(log: &str, marker: &str) -> Option<u64> {
        log.lines().rev().find_map(|line| line.split(marker).nth(1)).and_then(|rest| {
            let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    }

    /// One broker's run; its drain rate in messages a second.
    pub(super) fn run(broker: &str, venues: u32) -> Option<f64> {
        let dir = TempDir::new(&format!("bench-city-{broker}"));
        let (ca, [cert, key, ..]) = netbar_tests::certificates(dir.path(), "city", "venue-1");
        let ca_arg = ca.to_str().expect("UTF-8");
        let mut protocol = "3.1.1".to_owned();
        // (the brokers, the ingest's login, the venues' login)
        let (brokers, regulator, venue_login) = match broker {
            "mosquitto" => {
                let tls_port = free_port();
                let listener = format!(
                    "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                    ca.display(),
                    cert.display(),
                    key.display()
                );
                // Every venue's backlog waits in the ingest's session while it drains.
                let mosquitto = Mosquitto::start_persistent(&format!("{listener}max_queued_messages 0\n"));
                // NETBAR_BENCH_PROTOCOL=5: the ingest speaks MQTT 5 and lets the
                // broker send 1,000 unacknowledged messages (3.1.1: mosquitto's 20).
                protocol = std::env::var("NETBAR_BENCH_PROTOCOL").unwrap_or(protocol);
                (Brokers::Mosquitto(mosquitto, tls_port), None, None)
            }
            "nats" => {
                let user = "    { user: \"city\", password: \"city-password\",\n      permissions: { publish: { allow: \
                            [\"netbar.feed.310104.*.*\", \"$MQTT.>\"] }, subscribe: { allow: [\"$MQTT.>\"] } } }\n";
                let nodes = nats_cluster(dir.path(), &cert, &key, user);
                (Brokers::Nats(nodes), Some("change-me-regulator"), Some("city-password"))
            }
            "rabbitmq" => {
                let nodes = rabbitmq_cluster(dir.path(), &ca, &cert, &key, "regulator-password", "venue-password");
                nodes[0].ctl("rabbitmqctl", &["add_user", "city", "city-password"]);
                nodes[0].ctl("rabbitmqctl", &["set_permissions", "city", "^$", "^amq\\.topic$", "^$"]);
                let topics = "^netbar\\.feed\\.310104\\.[^.]+\\.[^.]+$";
                nodes[0].ctl("rabbitmqctl", &["set_topic_permissions", "city", "amq.topic", topics, "^$"]);
                (Brokers::Rabbit(nodes), Some("regulator-password"), Some("city-password"))
            }
            other => {
                eprintln!("NETBAR_BENCH_BROKERS: no broker {other:?} (mosquitto, nats, rabbitmq)");
                return None;
            }
        };
        let urls = brokers.venue_urls();
        let database = Postgres::start(dir.path());
        let connection = database.connection();
        let mut ingest_args =
            vec!["regulator", "ingest", "--broker", &urls[0], "--ca", ca_arg, "--database", &connection, "--protocol", &protocol];
        let mut ingest_env = Vec::new();
        if let Some(password) = regulator {
            ingest_args.extend(["--username", "regulator"]);
            ingest_env.push(("NETBAR_REGULATOR_PASSWORD", password));
        }
        let ingest = Process::start_with(
            &binary("netbar-agent"),
            &ingest_args,
            dir.path().join("ingest.log"),
            netbar_tests::Stdin::Null,
            &ingest_env,
        );
        wait_for("the ingest's subscription", Duration::from_secs(60), || ingest.stderr().contains("subscribed to"));

        // The outage: the venues queue an hour of their feed, their uplinks held.
        let venues_dir = match std::env::var_os("NETBAR_BENCH_VENUES_DIR") {
            Some(base) => Path::new(&base).join(format!("netbar-bench-city-{}-{broker}", std::process::id())),
            None => dir.path().join("venues"),
        };
        let go = dir.path().join("go");
        let check_ins = CHECK_INS.to_string();
        let mut args: Vec<&str> = vec!["regulator", "city", "--ca", ca_arg, "--dir", venues_dir.to_str().expect("UTF-8")];
        args.extend(["--pace", "60", "--summary-period", "5", "--heartbeat-period", "60", "--check-ins", &check_ins]);
        args.extend(["--hold-until", go.to_str().expect("UTF-8")]);
        for url in &urls {
            args.extend(["--broker", url]);
        }
        let mut venue_env = Vec::new();
        if let Some(password) = venue_login {
            args.extend(["--username", "city"]);
            venue_env.push(("NETBAR_VENUE_PASSWORD", password));
        }
        let fill_start = Instant::now();
        let generators: Vec<Process> = (0..venues.div_ceil(PER_PROCESS))
            .map(|n| {
                let (first, many) = (n * PER_PROCESS, PER_PROCESS.min(venues - n * PER_PROCESS));
                let (first, many) = (first.to_string(), many.to_string());
                let mut args = args.clone();
                args.extend(["--first", &first, "--venues", &many]);
                let log = dir.path().join(format!("city-{n}.log"));
                Process::start_with(&binary("netbar-agent"), &args, log, netbar_tests::Stdin::Null, &venue_env)
            })
            .collect();
        let total = |marker: &str| generators.iter().map(|city| last_figure(&city.stderr(), marker).unwrap_or(0)).sum::<u64>();
        // The records, and the twelve summaries of the hour.
        let expected_backlog = u64::from(venues) * u64::from(CHECK_INS + 12);
        wait_for("the venues' backlog", Duration::from_secs(3600), || total("waiting in the outboxes: ") >= expected_backlog);
        let fill_secs = fill_start.elapsed().as_secs_f64();

        // The uplinks are back: every venue connects and drains.
        let broker_pids = brokers.pids();
        let broker_cpu: f64 = broker_pids.iter().map(|&pid| cpu_seconds(pid)).sum();
        let ingest_cpu = cpu_seconds(ingest.id());
        let city_cpu: f64 = generators.iter().map(|city| cpu_seconds(city.id())).sum();
        std::fs::write(&go, "").expect("the go file");
        let start = Instant::now();
        let mut connected = None;
        let whole = format!(
            "SELECT count(*) FROM netbar.venue_feed f WHERE f.missing = 0 \
             AND (SELECT count(*) FROM netbar.records r WHERE r.venue_id = f.venue_id) = {CHECK_INS}"
        );
        let mut most_connected = 0;
        wait_for("every venue's records in the database", Duration::from_secs(7200), || {
            let now = total("connected ");
            most_connected = most_connected.max(now);
            if connected.is_none() && now >= u64::from(venues) {
                connected = Some(start.elapsed().as_secs_f64());
            }
            database.value(&whole) == venues.to_string()
        });
        let drain_secs = start.elapsed().as_secs_f64();
        let committed: u64 = database.value("SELECT coalesce(sum(received), 0) FROM netbar.venue_feed").parse().unwrap_or(0);
        let duplicates: u64 = database.value("SELECT coalesce(sum(duplicates), 0) FROM netbar.venue_feed").parse().unwrap_or(0);
        let gaps = database.value("SELECT count(*) FROM netbar.gaps WHERE closed_at IS NULL");
        let broker_cpu = broker_pids.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>() - broker_cpu;
        let broker_rss: f64 = broker_pids.iter().map(|&pid| peak_rss_kib(pid)).sum::<f64>() / 1024.0;
        let ingest_cpu = cpu_seconds(ingest.id()) - ingest_cpu;
        let city_cpu = generators.iter().map(|city| cpu_seconds(city.id())).sum::<f64>() - city_cpu;
        let city_rss: f64 = generators.iter().map(|city| peak_rss_kib(city.id())).sum::<f64>() / 1024.0;
        let rate = committed as f64 / drain_secs;
        let nodes = broker_pids.len();

        println!(
            "city through {broker} ({nodes} node(s)): {venues} venues (the agent's real store and sender each, {} process(es)) over TLS, \
             `regulator ingest` (MQTT {protocol}) into PostgreSQL",
            generators.len()
        );
        println!(
            "  backlog: {expected_backlog} messages ({CHECK_INS} records and 12 summaries a venue) queued in {fill_secs:.0} s with the uplinks held, \
             the venues' databases under {}",
            venues_dir.parent().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
        );
        match connected {
            Some(secs) => println!("  every venue connected within {secs:.1} s of the uplinks' start (to the second)"),
            None => println!("  at most {most_connected} venues seen connected at once (each generator reports every second)"),
        }
        println!(
            "  drained and committed: {committed} messages in {drain_secs:.1} s = {rate:.0} msg/s; {duplicates} duplicates absorbed; {gaps} gaps open"
        );
        println!(
            "  during the drain: {broker} {broker_cpu:.1} CPU-s, peak {broker_rss:.0} MiB; ingest {ingest_cpu:.1} CPU-s, peak {:.0} MiB; \
             the venues {city_cpu:.1} CPU-s, peak {city_rss:.0} MiB",
            peak_rss_kib(ingest.id()) / 1024.0,
        );
        drop(generators);
        let _ = std::fs::remove_dir_all(&venues_dir);
        Some(rate)
    }
}

#[cfg(not(unix))]
fn main() {
    println!("the city benchmark runs on Linux (PostgreSQL and the brokers of its own)");
}
