//! The agent under a venue's load, through the real bus: N simulated
//! stations (`netbar-collector simulate`, the real station logic) sending
//! telemetry every second, logging in and out, against the agent with its
//! embedded bus, then against an external mosquitto, side by side.
//!
//! Measured in a window once every station is online at the agent:
//! - the agent's CPU (share of one core) and peak RSS (targets: ≤ 10 %,
//!   ≤ 64 MiB); with mosquitto, mosquitto's own CPU and RSS beside it;
//! - enforcement latency: a probe station reports activity without a session
//!   every 100 ms and times the lock command that comes back (target p99 ≤ 10 ms);
//!   the first and second halves of the window are compared, so a growing
//!   backlog shows;
//! - check-in latency through the HTTP API with its durable commit (target
//!   p99 ≤ 5 ms).
//!
//! Figures are printed, never asserted; a run that hits a limit (stations
//! that do not all come online, a probe or API that stops answering, an
//! agent that exits) says which, with the figures up to there.
//! `NETBAR_BENCH_STATIONS` (default 1000; a list such as
//! `1000,2000,5000,10000` runs each in turn and says where each target stops
//! holding) and `NETBAR_BENCH_SECS` (default 30) change the load and the
//! window; `NETBAR_BENCH_BROKERS=embedded` leaves mosquitto out.
//! Run with `cargo bench -p netbar-tests --bench venue`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use netbar_protocol::messages::{Activity, Evidence};
use netbar_protocol::{Envelope, Message, MessageId, Sender, StationKey, decode, encode};
use netbar_tests::{Mosquitto, Process, Stdin, TempDir, binary, cpu_seconds, free_port, http, peak_rss_kib, wait_for};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The targets.
const CPU_TARGET: f64 = 10.0;
const RSS_TARGET: f64 = 64.0;
const ENFORCEMENT_TARGET: f64 = 10.0;
const CHECK_IN_TARGET: f64 = 5.0;

struct Figures {
    broker: &'static str,
    stations: u64,
    cpu_percent: f64,
    rss_mib: f64,
    /// mosquitto's own CPU and RSS, when it carried the bus.
    peer: Option<(f64, f64)>,
    enforcement: Vec<f64>,
    enforcement_halves: (f64, f64),
    check_in: Vec<f64>,
    lost_probes: usize,
    /// The limit this run hit, if it hit one.
    limit: Option<String>,
}

impl Figures {
    fn enforcement_p99(&self) -> f64 {
        percentile(&self.enforcement, 0.99)
    }

    fn check_in_p99(&self) -> f64 {
        percentile(&self.check_in, 0.99)
    }

    /// The targets this run misses, each with its figure.
    fn missed(&self) -> Vec<String> {
        let mut missed = Vec::new();
        if self.cpu_percent > CPU_TARGET {
            missed.push(format!("CPU {:.1}% > {CPU_TARGET}%", self.cpu_percent));
        }
        if self.rss_mib > RSS_TARGET {
            missed.push(format!("RSS {:.1} MiB > {RSS_TARGET} MiB", self.rss_mib));
        }
        if self.enforcement_p99() > ENFORCEMENT_TARGET || self.enforcement_p99().is_nan() {
            missed.push(format!("enforcement p99 {:.2} ms > {ENFORCEMENT_TARGET} ms", self.enforcement_p99()));
        }
        if self.check_in_p99() > CHECK_IN_TARGET || self.check_in_p99().is_nan() {
            missed.push(format!("check-in p99 {:.2} ms > {CHECK_IN_TARGET} ms", self.check_in_p99()));
        }
        missed
    }
}

/// A venue's database with every station enrolled once, copied for each run.
struct Enrolled {
    dir: TempDir,
    keys: PathBuf,
    probe_key: StationKey,
}

impl Enrolled {
    /// The probe enrolled by `netbar-agent enroll` (which makes the
    /// database); the simulated stations written in one transaction beside
    /// it, as enroll writes them, which takes seconds for ten thousand
    /// instead of a process each.
    fn new(stations: u64) -> Enrolled {
        let dir = TempDir::new("bench-enrolled");
        let config = agent_config(dir.path(), free_port(), free_port(), None);
        let keys = dir.path().join("keys");
        let status = Command::new(binary("netbar-agent"))
            .args(["enroll", "--config", config.to_str().expect("UTF-8"), "station", "probe", "--out", keys.to_str().expect("UTF-8")])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("enroll");
        assert!(status.success(), "enrolling the probe");
        let mut database = rusqlite::Connection::open(dir.path().join("data/netbar.sqlite")).expect("database");
        let transaction = database.transaction().expect("transaction");
        let now = Timestamp::now().to_string();
        for n in 1..=stations {
            let id = format!("sim-{n:03}");
            let mut bytes = [0u8; 32];
            for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                let word = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9))
                    ^ Timestamp::now().as_nanosecond() as u64;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let key = StationKey::from_bytes(bytes);
            transaction
                .execute("INSERT INTO stations (id, key, enrolled_at) VALUES (?1, ?2, ?3)", rusqlite::params![id, key.to_hex(), now])
                .expect("station row");
            std::fs::create_dir_all(keys.join(&id)).expect("key directory");
            std::fs::write(keys.join(&id).join("station.key"), format!("{}\n", key.to_hex())).expect("key file");
        }
        transaction.commit().expect("commit");
        let probe_key = StationKey::from_hex(&std::fs::read_to_string(keys.join("probe/station.key")).expect("probe key")).expect("key");
        Enrolled { dir, keys, probe_key }
    }

    /// A fresh data directory in `dir` holding the enrolled database.
    fn copy_into(&self, dir: &Path) {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data directory");
        std::fs::copy(self.dir.path().join("data/netbar.sqlite"), data.join("netbar.sqlite")).expect("database copy");
    }
}

fn agent_config(dir: &Path, broker_port: u16, http_port: u16, external: Option<u16>) -> PathBuf {
    let printed = Command::new(binary("netbar-agent")).arg("print-config").output().expect("print-config");
    let mut text = String::from_utf8_lossy(&printed.stdout)
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.join("data").display()))
        .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{broker_port}\""))
        .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{}\"", external.unwrap_or(broker_port)))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("max_connections = 2000", "max_connections = 20000")
        .replace("licensed_stations = 100", "licensed_stations = 20000")
        // Simulated stations only report while they run: no silence findings.
        .replace("station_silent_after = 120", "station_silent_after = 3600");
    if let Some(port) = external {
        text = text
            .replace("mode = \"embedded\"", "mode = \"external\"")
            .replace("# host = \"127.0.0.1\"", "host = \"127.0.0.1\"")
            .replace("# port = 1883", &format!("port = {port}"));
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("agent config");
    path
}

/// How many stations the agent has online, if its API answers.
fn online(http_port: u16, token: &str) -> Option<usize> {
    let (_, body) = netbar_tests::try_http_text(http_port, "GET", "/api/v1/stations", Some(token), None).ok()?;
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(body["stations"].as_array()?.iter().filter(|station| station["online"] == true).count())
}

fn run(name: &'static str, enrolled: &Enrolled, stations: u64, window: Duration, external: Option<&Mosquitto>) -> Figures {
    let mut figures = Figures {
        broker: name,
        stations,
        cpu_percent: f64::NAN,
        rss_mib: f64::NAN,
        peer: None,
        enforcement: Vec::new(),
        enforcement_halves: (f64::NAN, f64::NAN),
        check_in: Vec::new(),
        lost_probes: 0,
        limit: None,
    };
    let dir = TempDir::new(&format!("bench-{}", name.replace(' ', "-")));
    let (broker_port, http_port) = (free_port(), free_port());
    let bus_port = external.map_or(broker_port, |m| m.port);
    let config = agent_config(dir.path(), broker_port, http_port, external.map(|m| m.port));
    enrolled.copy_into(dir.path());

    let mut agent =
        Process::start(&binary("netbar-agent"), &["run", "--config", config.to_str().expect("UTF-8")], dir.path().join("agent.stderr"));
    wait_for("the agent", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok());
    let mut add = Command::new(binary("netbar-agent"))
        .args(["user", "--config", config.to_str().expect("UTF-8"), "add", "bench", "--role", "cashier"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("user add");
    std::io::Write::write_all(&mut add.stdin.take().expect("stdin"), b"bench-password\n").expect("password");
    assert!(add.wait().expect("user add").success());
    let (_, login) =
        http(http_port, "POST", "/api/v1/login", None, Some(&serde_json::json!({"name": "bench", "password": "bench-password"})));
    let token = login["token"].as_str().expect("token").to_owned();

    let port_text = bus_port.to_string();
    let stations_text = stations.to_string();
    let _simulation = Process::start_with(
        &binary("netbar-collector"),
        &[
            "simulate",
            "--stations",
            &stations_text,
            "--venue",
            "venue-1",
            "--port",
            &port_text,
            "--pace",
            "0.2",
            "--interval",
            "1",
            "--keys-dir",
            enrolled.keys.to_str().expect("UTF-8"),
            "--spool-root",
            dir.path().join("spool").to_str().expect("UTF-8"),
        ],
        dir.path().join("simulate.stderr"),
        Stdin::Null,
        &[("NETBAR_LOG", "error")],
    );
    // Every station online at the agent, or the limit says how many made it.
    let deadline = Instant::now() + Duration::from_secs(60 + stations / 50);
    let mut last = 0;
    loop {
        match online(http_port, &token) {
            Some(count) if count as u64 >= stations => break,
            Some(count) => last = count,
            None => {}
        }
        if Instant::now() > deadline {
            figures.limit = Some(format!("only {last} of {stations} stations came online within {} s", 60 + stations / 50));
            return figures;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // The probe: activity without a session, timed until its lock arrives.
    let mut options = rumqttc::MqttOptions::new("probe-bench", "127.0.0.1", bus_port);
    options.set_credentials("probe", enrolled.probe_key.broker_password());
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    let (locks, locked) = std::sync::mpsc::channel::<Instant>();
    let (subscribed, acknowledged) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = subscribed.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    let is_lock = decode(&publish.payload)
                        .is_ok_and(|e| matches!(e.message, Message::Command(ref c) if matches!(c.action, netbar_protocol::messages::Action::Lock { .. })));
                    if is_lock && locks.send(Instant::now()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    if client.subscribe("netbar/v1/venue-1/station/probe/command", rumqttc::QoS::AtLeastOnce).is_err()
        || acknowledged.recv_timeout(Duration::from_secs(10)).is_err()
    {
        figures.limit = Some("the probe station could not log in and subscribe within 10 s".into());
        return figures;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let check_ins = {
        let (stop, token) = (stop.clone(), token.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = serde_json::json!({"document_type": "other", "number": format!("B{n:07}"), "birth_date": "1990-01-01"});
                let started = Instant::now();
                match netbar_tests::try_http_text(http_port, "POST", "/api/v1/checkins", Some(&token), Some(&body)) {
                    Ok((201, _)) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                    Ok((status, body)) => return (latencies, Some(format!("a check-in was answered {status}: {body:.200}"))),
                    Err(error) => return (latencies, Some(format!("the API stopped answering check-ins: {error}"))),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (latencies, None)
        })
    };

    let peer_pid = external.and_then(Mosquitto::pid);
    let cpu_start = cpu_seconds(agent.id());
    let peer_start = peer_pid.map(cpu_seconds);
    let started = Instant::now();
    let topic = "netbar/v1/venue-1/station/probe/event";
    let (mut halves, mut lost_in_a_row) = ((Vec::new(), Vec::new()), 0);
    let mut seq = 0;
    while started.elapsed() < window {
        seq += 1;
        let message = Activity { evidence: vec![Evidence::Input], since: Timestamp::now() };
        let mut envelope = Envelope::new(
            MessageId::from_parts(Timestamp::now(), rand_bytes(seq)),
            Timestamp::now(),
            "venue-1".parse().expect("venue"),
            Sender::station(&"probe".parse().expect("id")),
            seq,
            message,
        );
        enrolled.probe_key.sign(topic, &mut envelope);
        while locked.try_recv().is_ok() {}
        let sent = Instant::now();
        if let Err(error) = client.publish(topic, rumqttc::QoS::AtMostOnce, false, encode(&envelope)) {
            figures.limit = Some(format!("the probe station's connection failed: {error}"));
            break;
        }
        match locked.recv_timeout(Duration::from_secs(2)) {
            Ok(at) => {
                lost_in_a_row = 0;
                let ms = at.duration_since(sent).as_secs_f64() * 1000.0;
                figures.enforcement.push(ms);
                if started.elapsed() < window / 2 { halves.0.push(ms) } else { halves.1.push(ms) }
            }
            Err(_) => {
                figures.lost_probes += 1;
                lost_in_a_row += 1;
                if lost_in_a_row == 10 {
                    figures.limit = Some("ten probes in a row got no lock within 2 s each".into());
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed().as_secs_f64();
    figures.cpu_percent = (cpu_seconds(agent.id()) - cpu_start) / elapsed * 100.0;
    if let (Some(pid), Some(start)) = (peer_pid, peer_start) {
        figures.peer = Some(((cpu_seconds(pid) - start) / elapsed * 100.0, peak_rss_kib(pid) / 1024.0));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut check_in, failed) = check_ins.join().unwrap_or_default();
    if figures.limit.is_none() {
        figures.limit = failed;
    }
    figures.rss_mib = peak_rss_kib(agent.id()) / 1024.0;
    if !agent.running() && figures.limit.is_none() {
        figures.limit = Some(format!("the agent exited: {}", agent.stderr().lines().last().unwrap_or("")));
    }
    figures.enforcement.sort_by(f64::total_cmp);
    check_in.sort_by(f64::total_cmp);
    figures.check_in = check_in;
    for half in [&mut halves.0, &mut halves.1] {
        half.sort_by(f64::total_cmp);
    }
    figures.enforcement_halves = (percentile(&halves.0, 0.5), percentile(&halves.1, 0.5));
    figures
}

fn rand_bytes(seed: u64) -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ Timestamp::now().as_nanosecond() as u64).to_le_bytes());
    bytes
}

fn print(rows: &[Figures]) {
    println!(
        "{:<10} {:<10} {:>10} {:>12} {:>18} {:>10} {:>10} {:>12} {:>10} {:>10} {:>6}",
        "stations", "bus", "agent CPU", "agent RSS", "broker CPU/RSS", "enf p50", "enf p99", "p50 1st/2nd", "chk p50", "chk p99", "lost"
    );
    for f in rows {
        let peer = f.peer.map_or("-".to_owned(), |(cpu, rss)| format!("{cpu:.1}%/{rss:.1} MiB"));
        println!(
            "{:<10} {:<10} {:>9.1}% {:>8.1} MiB {:>18} {:>7.2} ms {:>7.2} ms {:>5.1}/{:<5.1} {:>7.2} ms {:>7.2} ms {:>6}",
            f.stations,
            f.broker,
            f.cpu_percent,
            f.rss_mib,
            peer,
            percentile(&f.enforcement, 0.5),
            f.enforcement_p99(),
            f.enforcement_halves.0,
            f.enforcement_halves.1,
            percentile(&f.check_in, 0.5),
            f.check_in_p99(),
            f.lost_probes
        );
        if let Some(limit) = &f.limit {
            println!("           limit hit: {limit}");
        }
    }
}

fn main() {
    let counts: Vec<u64> = std::env::var("NETBAR_BENCH_STATIONS")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|count| count.trim().parse().ok())
        .collect();
    let window = Duration::from_secs(env_number("NETBAR_BENCH_SECS", 30));
    let with_mosquitto = std::env::var("NETBAR_BENCH_BROKERS").map_or(true, |brokers| brokers.contains("mosquitto"));
    let mosquitto = with_mosquitto.then(Mosquitto::start);
    let mut rows = Vec::new();
    for &stations in &counts {
        // Exactly the stations simulated are enrolled (and the probe).
        let enrolled = Enrolled::new(stations);
        let embedded = run("embedded", &enrolled, stations, window, None);
        let stop = embedded.limit.is_some();
        rows.push(embedded);
        if let Some(mosquitto) = &mosquitto {
            rows.push(run("mosquitto", &enrolled, stations, window, Some(mosquitto)));
        }
        if stop {
            break;
        }
    }
    println!("venue load: simulated stations, telemetry 1/s each, logins and sessions; window {} s", window.as_secs());
    print(&rows);
    println!(
        "targets (the agent with its bus): CPU <= {CPU_TARGET}% of one core, RSS <= {RSS_TARGET} MiB, enforcement p99 <= {ENFORCEMENT_TARGET} ms, check-in p99 <= {CHECK_IN_TARGET} ms"
    );
    for pair in rows.chunks(2).filter(|pair| pair.len() == 2) {
        let (embedded, external) = (&pair[0], &pair[1]);
        let (peer_cpu, peer_rss) = external.peer.unwrap_or((0.0, 0.0));
        println!(
            "{} stations, embedded / (agent + mosquitto): CPU {:.2}x, RSS {:.2}x, enforcement p99 {:.2}x, check-in p99 {:.2}x",
            embedded.stations,
            embedded.cpu_percent / (external.cpu_percent + peer_cpu).max(0.001),
            embedded.rss_mib / (external.rss_mib + peer_rss).max(0.001),
            embedded.enforcement_p99() / external.enforcement_p99().max(0.001),
            embedded.check_in_p99() / external.check_in_p99().max(0.001),
        );
    }
    // Where each target stops holding, for the agent with its embedded bus.
    for f in rows.iter().filter(|f| f.broker == "embedded") {
        let missed = f.missed();
        match (&f.limit, missed.is_empty()) {
            (Some(limit), _) => println!("{} stations: a limit was hit ({limit})", f.stations),
            (None, true) => println!("{} stations: every target holds", f.stations),
            (None, false) => println!("{} stations: misses {}", f.stations, missed.join(", ")),
        }
    }
}
