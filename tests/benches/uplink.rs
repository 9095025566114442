//! How fast the agent drains a backlog of the regulator feed to a local
//! mosquitto over TLS (target: at least 5,000 messages per second).
//!
//! The agent runs with its regulator's broker absent while N check-ins go
//! through its API (each queues one registration record in the outbox).
//! Then mosquitto starts with a TLS listener; a subscriber counts every
//! sequence number. The drain rate is measured from the first message the
//! subscriber sees to the last; the agent's outbox must end empty. Beside
//! it, in the same run, a bare rumqttc publisher sends the same number of
//! messages of the same size over the same TLS listener at QoS 1: the
//! ratio shows what the durable outbox costs.
//!
//! Figures are printed, never asserted. `NETBAR_BENCH_MESSAGES` (default
//! 20000) changes the backlog. Run with `cargo bench -p netbar-tests --bench uplink`.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netbar_tests::{Client, Mosquitto, Process, Stdin, TempDir, binary, free_port, http, wait_for};

fn messages() -> u64 {
    std::env::var("NETBAR_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn tls_listener(port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    format!("listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n", ca.display(), cert.display(), key.display())
}

/// "last sequence: N, last acknowledged: M" of `uplink status`.
fn sequence_numbers(config: &Path) -> (u64, u64) {
    let output = Command::new(binary("netbar-agent")).args(["uplink", "--config", config.to_str().expect("UTF-8"), "status"]).output();
    let text = String::from_utf8(output.expect("uplink status").stdout).unwrap_or_default();
    let line = text.lines().find(|line| line.starts_with("last sequence:")).unwrap_or_default();
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|part| part.parse().ok()).collect();
    (numbers.first().copied().unwrap_or(0), numbers.get(1).copied().unwrap_or(0))
}

/// Fills the outbox through the API: `count` check-ins from four clients.
fn fill(http_port: u16, token: &str, count: u64) -> usize {
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let token = token.to_owned();
            std::thread::spawn(move || {
                let mut payload_size = 0;
                for n in (thread..count).step_by(4) {
                    let body = serde_json::json!({"document_type": "other", "number": format!("Q{n:08}"), "birth_date": "1990-01-01"});
                    let (status, answer) = http(http_port, "POST", "/api/v1/checkins", Some(&token), Some(&body));
                    assert!(status == 200 || status == 201, "{status} {answer}");
                    payload_size = answer.to_string().len();
                }
                payload_size
            })
        })
        .collect();
    threads.into_iter().map(|thread| thread.join().expect("filler")).max().unwrap_or(0)
}

/// A bare rumqttc publisher: `count` messages of `size` bytes at QoS 1 over
/// TLS, 100 in flight; seconds until the last PUBACK.
fn bare_publisher(port: u16, ca: &Path, count: u64, size: usize) -> f64 {
    let mut options = rumqttc::MqttOptions::new("bench-bare", "127.0.0.1", port);
    options.set_transport(rumqttc::Transport::tls(std::fs::read(ca).expect("CA"), None, None));
    options.set_inflight(100).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = rumqttc::Client::new(options, 200);
    let payload = vec![b'x'; size];
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        for _ in 0..count {
            client.publish("bench/bare", rumqttc::QoS::AtLeastOnce, false, payload.clone()).expect("publish");
        }
        client
    });
    let mut acked = 0;
    for event in connection.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
            acked += 1;
            if acked == count {
                break;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(sender.join());
    elapsed
}

fn main() {
    // The bare publisher's TLS uses the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let count = messages();
    let dir = TempDir::new("bench-uplink");
    let (ca, [server_cert, server_key, ..]) = netbar_tests::certificates(dir.path(), "regulator", "venue-1");
    let (mqtt_port, http_port, tls_port) = (free_port(), free_port(), free_port());
    let printed = Command::new(binary("netbar-agent")).arg("print-config").output().expect("print-config");
    let mut text = String::from_utf8_lossy(&printed.stdout)
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.path().join("data").display()))
        .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{mqtt_port}\""))
        .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{mqtt_port}\""))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""));
    text.push_str(&format!(
        "\n[uplink]\nbroker = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{}\"\nregion = \"310104\"\nsummary_period = 3600\nheartbeat_period = 3600\nmax_backoff = 1\noutbox_max = {}\n",
        ca.display(),
        count * 2 + 1000,
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).expect("agent config");
    let config_arg = config.to_str().expect("UTF-8 path");

    let mut user = Command::new(binary("netbar-agent"))
        .args(["user", "--config", config_arg, "add", "bench", "--role", "cashier"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("user add");
    std::io::Write::write_all(&mut user.stdin.take().expect("stdin"), b"correct horse battery\n").expect("password");
    assert!(user.wait().expect("user add").success());
    let agent =
        Process::start_with(&binary("netbar-agent"), &["run", "--config", config_arg], dir.path().join("agent.log"), Stdin::Null, &[]);
    wait_for("the agent's API", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok());
    let login = serde_json::json!({"name": "bench", "password": "correct horse battery"});
    let (_, answer) = http(http_port, "POST", "/api/v1/login", None, Some(&login));
    let token = answer["token"].as_str().expect("a token").to_owned();

    let fill_start = Instant::now();
    let size = fill(http_port, &token, count);
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let (queued, _) = sequence_numbers(&config);
    println!("backlog: {queued} messages queued by {count} check-ins in {fill_secs:.1} s ({:.0} check-ins/s)", count as f64 / fill_secs);

    // The subscriber counting the drain must see every message: mosquitto's
    // default queue for a client (1,000 messages) drops the rest when the
    // subscriber falls behind, and the count would never complete.
    let broker = Mosquitto::start_with(&format!("max_queued_messages 0\n{}", tls_listener(tls_port, &ca, &server_cert, &server_key)));
    let regulator = Client::connect(broker.port, &["netbar/feed/#"]);
    let mut seen = HashSet::new();
    let mut first: Option<Instant> = None;
    let mut sample_size = 0;
    regulator.expect("the whole backlog at the regulator", Duration::from_secs(600), |_, payload| {
        let envelope = netbar_protocol::decode(payload).ok()?;
        if envelope.seq == 0 {
            return None;
        }
        first.get_or_insert_with(Instant::now);
        sample_size = payload.len();
        seen.insert(envelope.seq);
        (seen.len() as u64 >= queued).then_some(())
    });
    let drain_secs = first.map_or(f64::NAN, |first| first.elapsed().as_secs_f64());
    let rate = (queued.saturating_sub(1)) as f64 / drain_secs;
    wait_for("the outbox to be acknowledged", Duration::from_secs(60), || sequence_numbers(&config).1 >= queued);
    let bare_secs = bare_publisher(tls_port, &ca, queued, sample_size);
    let bare_rate = queued as f64 / bare_secs;
    drop(agent);

    println!("regulator feed drain over TLS to mosquitto (messages of {sample_size} bytes; check-in answers {size} bytes)");
    println!("  agent outbox:      {queued} messages in {drain_secs:.2} s = {rate:.0} msg/s (target 5000: {:.2}x)", rate / 5000.0);
    println!("  bare rumqttc QoS1: {queued} messages in {bare_secs:.2} s = {bare_rate:.0} msg/s");
    println!("  ratio agent / bare publisher: {:.2}", rate / bare_rate);
    println!("  every sequence number 1..={queued} received: {}", (1..=queued).all(|seq| seen.contains(&seq)));
}
