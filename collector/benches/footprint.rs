//! Footprint of the collector against collectd and node_exporter, side by
//! side on this machine and the same broker.
//!
//! - netbar-collector (release) at a 1 s telemetry interval with its default
//!   probes, publishing to a mosquitto of our own;
//! - collectd 5.12 with the cpu, memory, load, interface, thermal, disk and
//!   mqtt plugins, Interval 1, publishing to the same mosquitto;
//! - prometheus-node-exporter with its default collectors, scraped once a second.
//!
//! For each: peak RSS (VmHWM) and CPU time (utime + stime from /proc) over a
//! window after a warm-up, divided by the samples taken in the window. The
//! figures are printed, never asserted. Peers that are not installed are
//! reported as such (`apt-get install collectd-core prometheus-node-exporter`).
//!
//! With `NETBAR_BENCH_WINE=1`, also the Windows build (release, built here
//! with mingw-w64) of the same collector under wine, in a prefix of its own
//! (tests/wine/run), and separately the CPU of wine's own processes for that
//! prefix (wineserver, services.exe, …): informative only, since wine is not
//! Windows.
//!
//! Beside them, the lock screen (netbar-lockscreen, release) on a 1920 × 1080
//! Xvfb display, attached to a collector: locked (the whole screen), then
//! in session (the strip, unlocked by a command the benchmark sends as the
//! agent would), each over the same window. Its CPU is the four pings a
//! second the collector watches it with; nothing redraws on its own.
//!
//! Run with `cargo bench -p netbar-collector --bench footprint`;
//! `NETBAR_BENCH_SECS` sets the window (default 30 s).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use netbar_tests::{Mosquitto, Process, TempDir, cpu_seconds, free_port, peak_rss_kib, wait_for};

const WARM_UP: Duration = Duration::from_secs(3);

/// Peak resident set size in MB (10^6 bytes), as collectd's figures are given.
fn peak_rss_mb(pid: u32) -> f64 {
    peak_rss_kib(pid) * 1024.0 / 1e6
}

fn spawn(program: &str, args: &[&str], dir: &Path) -> Process {
    let name = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Process::start(Path::new(program), args, dir.join(format!("{name}.stderr")))
}

struct Figures {
    name: &'static str,
    rss_mb: f64,
    cpu_ms_per_sample: f64,
    samples: u64,
    /// Under wine: the CPU of wine's own processes for the prefix, per sample.
    wine_ms_per_sample: Option<f64>,
}

/// Measures `pid` over `window`; `sample` is called once a second and says
/// how many samples were taken since its last call.
fn measure(name: &'static str, pid: u32, window: Duration, mut sample: impl FnMut() -> u64) -> Figures {
    std::thread::sleep(WARM_UP);
    sample();
    let cpu_start = cpu_seconds(pid);
    let end = Instant::now() + window;
    let mut samples = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        samples += sample();
    }
    let cpu = cpu_seconds(pid) - cpu_start;
    Figures { name, rss_mb: peak_rss_mb(pid), cpu_ms_per_sample: cpu * 1000.0 / samples.max(1) as f64, samples, wine_ms_per_sample: None }
}

/// Which collector binary runs, and how.
#[derive(Clone, Copy, PartialEq)]
enum Build {
    Linux,
    /// The Windows build under wine, in the given prefix.
    Wine,
}

fn netbar(broker: u16, dir: &Path, window: Duration, build: Build) -> Figures {
    let dir = &dir.join(if build == Build::Wine { "wine" } else { "linux" });
    std::fs::create_dir_all(dir).expect("scratch folder");
    let config = dir.join("collector.toml");
    let text = format!(
        "[station]\nvenue = \"bench\"\nid = \"st-1\"\n[broker]\nport = {broker}\n[telemetry]\ninterval = 1\n[spool]\ndir = \"{}\"\n[local]\nlisten = \"127.0.0.1:{}\"\n[lock_screen]\nprogram = []\n",
        dir.join("spool").display(),
        free_port()
    );
    std::fs::write(&config, text).expect("config");
    // Count the telemetry the broker really delivered.
    let mut options = rumqttc::MqttOptions::new("bench-counter", "127.0.0.1", broker);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    client.subscribe("netbar/v1/bench/station/st-1/telemetry", rumqttc::QoS::AtMostOnce).expect("subscribe");
    let (counted, count) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    if counted.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let arguments = ["--config", config.to_str().expect("UTF-8"), "run"];
    let figures = match build {
        Build::Linux => {
            let collector = spawn(env!("CARGO_BIN_EXE_netbar-collector"), &arguments, dir);
            measure("netbar-collector (1 s)", collector.id(), window, || count.try_iter().count() as u64)
        }
        Build::Wine => {
            let exe = windows_collector();
            let prefix = dir.join("prefix");
            let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wine/run");
            let mut all = vec![exe.to_str().expect("UTF-8")];
            all.extend(arguments);
            let prefix_text = prefix.to_str().expect("UTF-8");
            let collector = Process::start_with(
                &runner,
                &all,
                dir.join("wine.stderr"),
                netbar_tests::Stdin::Null,
                &[("NETBAR_WINEPREFIX", prefix_text)],
            );
            // The runner makes the prefix first: measured from the first telemetry.
            wait_for("the Windows collector's first telemetry", Duration::from_secs(120), || count.try_iter().count() > 0);
            let before = wine_cpu_seconds(&prefix, collector.id());
            let mut figures = measure("netbar-collector.exe under wine", collector.id(), window, || count.try_iter().count() as u64);
            let wine = wine_cpu_seconds(&prefix, collector.id()) - before;
            figures.wine_ms_per_sample = Some(wine * 1000.0 / figures.samples.max(1) as f64);
            figures
        }
    };
    drop(client);
    figures
}

/// The Windows build of the collector (release), built here.
fn windows_collector() -> std::path::PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "--quiet", "--release", "--target", "x86_64-pc-windows-gnu", "-p", "netbar-collector"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the Windows collector failed (tests/setup installs the target and mingw-w64)");
    workspace.join("target/x86_64-pc-windows-gnu/release/netbar-collector.exe")
}

/// CPU seconds of every process of the wine prefix `prefix` but `except`.
fn wine_cpu_seconds(prefix: &Path, except: u32) -> f64 {
    let marker = format!("WINEPREFIX={}", prefix.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != except)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(|variable| variable == marker.as_bytes()))
        })
        .map(cpu_seconds)
        .sum()
}

fn collectd(broker: u16, dir: &Path, window: Duration) -> Option<Figures> {
    let binary = ["/usr/sbin/collectd", "/usr/bin/collectd"].into_iter().find(|p| Path::new(p).exists())?;
    let config = dir.join("collectd.conf");
    let text = format!(
        "Interval 1\nTypesDB \"/usr/share/collectd/types.db\"\nPluginDir \"/usr/lib/collectd\"\nBaseDir \"{dir}\"\nPIDFile \"{dir}/collectd.pid\"\n\
         LoadPlugin cpu\nLoadPlugin memory\nLoadPlugin load\nLoadPlugin interface\nLoadPlugin thermal\nLoadPlugin disk\nLoadPlugin mqtt\n\
         <Plugin mqtt>\n  <Publish \"bench\">\n    Host \"127.0.0.1\"\n    Port \"{broker}\"\n    ClientId \"collectd-bench\"\n  </Publish>\n</Plugin>\n",
        dir = dir.display()
    );
    std::fs::write(&config, text).ok()?;
    let collectd = spawn(binary, &["-f", "-C", config.to_str()?], dir);
    // One sample of every plugin per interval.
    Some(measure("collectd 5.12 (Interval 1)", collectd.id(), window, || 1))
}

fn node_exporter(dir: &Path, window: Duration) -> Option<Figures> {
    let binary = ["/usr/bin/prometheus-node-exporter", "/usr/local/bin/node_exporter"].into_iter().find(|p| Path::new(p).exists())?;
    let port = free_port();
    let address = format!("--web.listen-address=127.0.0.1:{port}");
    let exporter = spawn(binary, &[&address], dir);
    wait_for("node_exporter to listen", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let scrape = || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
        let request = format!("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return 0;
        }
        let mut body = Vec::new();
        u64::from(stream.read_to_end(&mut body).is_ok() && body.len() > 1000)
    };
    Some(measure("node_exporter 1.5 (scraped 1/s)", exporter.id(), window, scrape))
}

/// The lock screen's figures, locked and in session; `None` without Xvfb.
fn lock_screen(broker: u16, dir: &Path, window: Duration) -> Option<[Figures; 2]> {
    if !Path::new("/usr/bin/Xvfb").exists() {
        return None;
    }
    let display = netbar_tests::display::Display::start(1920, 1080);
    let dir = &dir.join("lockscreen");
    std::fs::create_dir_all(dir).expect("scratch folder");
    let config = dir.join("collector.toml");
    let text = format!(
        "[station]\nvenue = \"bench\"\nid = \"st-2\"\n[broker]\nport = {broker}\n[spool]\ndir = \"{}\"\n[local]\nlisten = \"127.0.0.1:{}\"\n\
         [lock_screen]\nprogram = [\"{}\"]\n[actions]\nlock = [\"true\"]\nunlock = [\"true\"]\nlock_state = []\n",
        dir.join("spool").display(),
        free_port(),
        netbar_tests::binary("netbar-lockscreen").display()
    );
    std::fs::write(&config, text).expect("config");
    let log = dir.join("collector.stderr");
    let _collector = Process::start_with(
        Path::new(env!("CARGO_BIN_EXE_netbar-collector")),
        &["--config", config.to_str().expect("UTF-8"), "run"],
        log.clone(),
        netbar_tests::Stdin::Null,
        &[("DISPLAY", display.name())],
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let showing = |what: &str| {
        read().lines().rev().find(|line| line.starts_with("netbar-lockscreen: showing")).is_some_and(|line| line.contains(what))
    };
    wait_for("the lock screen, locked", Duration::from_secs(60), || showing("showing locked"));
    let pid = read()
        .lines()
        .find_map(|line| line.split("lock screen started pid=").nth(1)?.split_whitespace().next()?.parse::<u32>().ok())
        .expect("the lock screen's pid");
    let locked = measure("netbar-lockscreen, locked", pid, window, || 1);
    // The agent's unlock, as the agent would send it (the station has no key here).
    let now = jiff::Timestamp::now();
    let unlock = netbar_protocol::messages::Command {
        command_id: "c-bench".into(),
        action: netbar_protocol::messages::Action::Unlock {
            session_id: "s-bench".into(),
            request_id: None,
            until: Some(now + jiff::SignedDuration::from_hours(2)),
        },
    };
    let envelope = netbar_protocol::Envelope::new(
        netbar_protocol::MessageId::from_parts(now, [1; 10]),
        now,
        "bench".parse().expect("venue"),
        netbar_protocol::Sender::agent("netbar-agent"),
        netbar_protocol::sequence_from_clock(now),
        unlock,
    );
    let mut options = rumqttc::MqttOptions::new("bench-agent", "127.0.0.1", broker);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::Client::new(options, 16);
    client
        .publish("netbar/v1/bench/station/st-2/command", rumqttc::QoS::AtLeastOnce, false, netbar_protocol::encode(&envelope))
        .expect("publish");
    std::thread::spawn(move || for _ in connection.iter() {});
    wait_for("the lock screen's strip", Duration::from_secs(60), || showing("showing session"));
    let session = measure("netbar-lockscreen, in session", pid, window, || 1);
    Some([locked, session])
}

fn main() {
    let window = Duration::from_secs(std::env::var("NETBAR_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30));
    let scratch = TempDir::new("footprint");
    let dir = scratch.path();
    let broker = Mosquitto::start();
    let port = broker.port;
    let ours = netbar(port, dir, window, Build::Linux);
    let peers = [collectd(port, dir, window), node_exporter(dir, window)];
    let wine = std::env::var_os("NETBAR_BENCH_WINE").is_some().then(|| netbar(port, dir, window, Build::Wine));
    let screens = lock_screen(port, dir, window);
    println!("footprint over {} s after {} s warm-up (peak RSS = VmHWM; CPU = utime+stime)", window.as_secs(), WARM_UP.as_secs());
    println!("{:<32} {:>12} {:>14} {:>8} {:>12} {:>12}", "", "peak RSS MB", "CPU ms/sample", "samples", "RSS / ours", "CPU / ours");
    let row = |f: &Figures| {
        // CPU is counted in 10 ms ticks: over a short window ours may be zero,
        // and a ratio to zero says nothing.
        let cpu_ratio = if ours.cpu_ms_per_sample > 0.0 {
            format!("{:.2}x", f.cpu_ms_per_sample / ours.cpu_ms_per_sample)
        } else {
            "n/a (window too short)".to_owned()
        };
        println!(
            "{:<32} {:>12.2} {:>14.2} {:>8} {:>11.2}x {:>12}",
            f.name,
            f.rss_mb,
            f.cpu_ms_per_sample,
            f.samples,
            f.rss_mb / ours.rss_mb.max(0.001),
            cpu_ratio
        )
    };
    row(&ours);
    for (peer, name) in peers.iter().zip(["collectd", "prometheus-node-exporter"]) {
        match peer {
            Some(figures) => row(figures),
            None => println!("{name:<32} not installed"),
        }
    }
    match wine {
        Some(figures) => {
            row(&figures);
            let wine = figures.wine_ms_per_sample.unwrap_or_default();
            println!("{:<32} {:>12} {:>14.2} (wineserver, services.exe…: wine's own work)", "  + wine's processes", "", wine);
        }
        None => println!("{:<32} NETBAR_BENCH_WINE=1 measures the Windows build under wine", "netbar-collector.exe"),
    }
    // The lock screen runs beside the collector: its figures are per second
    // (a "sample" is a second here), and the ratio is to the collector.
    match screens {
        Some(screens) => {
            println!("{:<32} {:>12} {:>14} {:>8}", "the lock screen (1920 x 1080)", "peak RSS MB", "CPU ms/second", "seconds");
            for figures in &screens {
                println!(
                    "{:<32} {:>12.2} {:>14.2} {:>8} {:>11.2}x",
                    figures.name,
                    figures.rss_mb,
                    figures.cpu_ms_per_sample,
                    figures.samples,
                    figures.rss_mb / ours.rss_mb.max(0.001)
                );
            }
        }
        None => println!("{:<32} not measured: Xvfb is not installed", "netbar-lockscreen"),
    }
}
