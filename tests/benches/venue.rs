//! The agent under a venue's load, through the real broker: N simulated
//! stations (`netbar-collector simulate`, the real station logic) sending
//! telemetry every second, logging in and out, against the agent with its
//! embedded rumqttd, then against an external mosquitto, side by side.
//!
//! Measured in a window after the stations have connected:
//! - the agent's CPU (share of one core) and peak RSS (targets: ≤ 25 %, ≤ 128 MiB);
//! - enforcement latency: a probe station reports activity without a session
//!   every 100 ms and times the lock command that comes back (target p99 ≤ 50 ms);
//!   the first and second halves of the window are compared, so a growing
//!   backlog shows;
//! - check-in latency through the HTTP API with its durable commit (target
//!   p99 ≤ 15 ms).
//!
//! Figures are printed, never asserted. `NETBAR_BENCH_STATIONS` (default
//! 1000) and `NETBAR_BENCH_SECS` (default 30) change the load and the window.
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

struct Figures {
    broker: &'static str,
    cpu_percent: f64,
    rss_mib: f64,
    enforcement: Vec<f64>,
    enforcement_halves: (f64, f64),
    check_in: Vec<f64>,
    lost_probes: usize,
}

fn agent_config(dir: &Path, broker_port: u16, http_port: u16, external: Option<u16>) -> PathBuf {
    let printed = Command::new(binary("netbar-agent")).arg("print-config").output().expect("print-config");
    let mut text = String::from_utf8_lossy(&printed.stdout)
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.join("data").display()))
        .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{broker_port}\""))
        .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{}\"", external.unwrap_or(broker_port)))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("max_connections = 2000", "max_connections = 5000")
        .replace("licensed_stations = 100", "licensed_stations = 5000")
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

fn run(name: &'static str, stations: u64, window: Duration, external: Option<&Mosquitto>) -> Figures {
    let dir = TempDir::new(&format!("bench-{name}"));
    let (broker_port, http_port) = (free_port(), free_port());
    let bus_port = external.map_or(broker_port, |m| m.port);
    let config = agent_config(dir.path(), broker_port, http_port, external.map(|m| m.port));
    let keys = dir.path().join("keys");
    let enroll = |id: &str| {
        let status = Command::new(binary("netbar-agent"))
            .args(["enroll", "--config", config.to_str().expect("UTF-8"), "station", id, "--out", keys.to_str().expect("UTF-8")])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("enroll");
        assert!(status.success(), "enrolling {id}");
    };
    for n in 1..=stations {
        enroll(&format!("sim-{n:03}"));
    }
    enroll("probe");
    let probe_key = StationKey::from_hex(&std::fs::read_to_string(keys.join("probe/station.key")).expect("probe key")).expect("key");

    let agent =
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
            keys.to_str().expect("UTF-8"),
            "--spool-root",
            dir.path().join("spool").to_str().expect("UTF-8"),
        ],
        dir.path().join("simulate.stderr"),
        Stdin::Null,
        &[("NETBAR_LOG", "error")],
    );
    // Let every station connect and settle.
    std::thread::sleep(Duration::from_secs(10));

    // The probe: activity without a session, timed until its lock arrives.
    let mut options = rumqttc::MqttOptions::new("probe-bench", "127.0.0.1", bus_port);
    options.set_credentials("probe", probe_key.broker_password());
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    client.subscribe("netbar/v1/venue-1/station/probe/command", rumqttc::QoS::AtLeastOnce).expect("subscribe");
    let (locks, locked) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
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
    std::thread::sleep(Duration::from_millis(500));

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
                let (status, _) = http(http_port, "POST", "/api/v1/checkins", Some(&token), Some(&body));
                if status == 201 {
                    latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            latencies
        })
    };

    let cpu_start = cpu_seconds(agent.id());
    let started = Instant::now();
    let topic = "netbar/v1/venue-1/station/probe/event";
    let (mut enforcement, mut halves, mut lost) = (Vec::new(), (Vec::new(), Vec::new()), 0);
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
        probe_key.sign(topic, &mut envelope);
        while locked.try_recv().is_ok() {}
        let sent = Instant::now();
        client.publish(topic, rumqttc::QoS::AtMostOnce, false, encode(&envelope)).expect("publish");
        match locked.recv_timeout(Duration::from_secs(2)) {
            Ok(at) => {
                let ms = at.duration_since(sent).as_secs_f64() * 1000.0;
                enforcement.push(ms);
                if started.elapsed() < window / 2 { halves.0.push(ms) } else { halves.1.push(ms) }
            }
            Err(_) => lost += 1,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_seconds(agent.id()) - cpu_start;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut check_in = check_ins.join().unwrap_or_default();
    let rss = peak_rss_kib(agent.id()) / 1024.0;
    enforcement.sort_by(f64::total_cmp);
    check_in.sort_by(f64::total_cmp);
    for half in [&mut halves.0, &mut halves.1] {
        half.sort_by(f64::total_cmp);
    }
    Figures {
        broker: name,
        cpu_percent: cpu / elapsed * 100.0,
        rss_mib: rss,
        enforcement_halves: (percentile(&halves.0, 0.5), percentile(&halves.1, 0.5)),
        enforcement,
        check_in,
        lost_probes: lost,
    }
}

fn rand_bytes(seed: u64) -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ Timestamp::now().as_nanosecond() as u64).to_le_bytes());
    bytes
}

fn main() {
    let stations = env_number("NETBAR_BENCH_STATIONS", 1000);
    let window = Duration::from_secs(env_number("NETBAR_BENCH_SECS", 30));
    let embedded = run("embedded rumqttd", stations, window, None);
    let mosquitto = Mosquitto::start();
    let external = run("mosquitto", stations, window, Some(&mosquitto));
    println!("venue load: {stations} simulated stations, telemetry 1/s each, logins and sessions; window {} s", window.as_secs());
    println!(
        "{:<18} {:>10} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8}",
        "broker", "agent CPU", "agent RSS", "enf p50", "enf p99", "p50 1st/2nd", "chk p50", "chk p99", "lost"
    );
    for f in [&embedded, &external] {
        println!(
            "{:<18} {:>9.1}% {:>8.1} MiB {:>7.2} ms {:>7.2} ms {:>5.1}/{:<5.1} {:>7.2} ms {:>7.2} ms {:>8}",
            f.broker,
            f.cpu_percent,
            f.rss_mib,
            percentile(&f.enforcement, 0.5),
            percentile(&f.enforcement, 0.99),
            f.enforcement_halves.0,
            f.enforcement_halves.1,
            percentile(&f.check_in, 0.5),
            percentile(&f.check_in, 0.99),
            f.lost_probes
        );
    }
    println!("targets: agent CPU <= 25% of one core, RSS <= 128 MiB, enforcement p99 <= 50 ms, check-in p99 <= 15 ms");
    println!(
        "ratios embedded/mosquitto: CPU {:.2}x, enforcement p99 {:.2}x",
        embedded.cpu_percent / external.cpu_percent.max(0.001),
        percentile(&embedded.enforcement, 0.99) / percentile(&external.enforcement, 0.99).max(0.001)
    );
}
