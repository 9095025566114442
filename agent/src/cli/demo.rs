//! `netbar-agent demo`: a whole venue on one machine, until Ctrl-C or SIGTERM.
//!
//! It writes a configuration and a database in a temporary directory,
//! enrolls the stations (every tenth with a smoke detector) and two console
//! users, then starts the real parts: the agent with its embedded broker,
//! on free ports so a broker already on 1883 is no obstacle, and
//! `netbar-collector simulate --desk` for the stations. The demo itself plays
//! the front desk through the agent's API: customers come (now and then a
//! minor, who is refused), get a ticket for a free station, play, and are
//! checked out when they leave. A minute in, a smoke detector goes off.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::StationKey;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The demo users' password.
const PASSWORD: &str = "netbar-demo";

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many stations.
    #[arg(long, default_value_t = 40)]
    stations: usize,
    /// The console's port (default: a free one).
    #[arg(long)]
    http_port: Option<u16>,
    /// The embedded broker's port (default: a free one).
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// Time scale of the customers: 0.2 makes a visit five times shorter than life.
    #[arg(long, default_value_t = 0.2)]
    pace: f64,
    /// Keep the demo's directory (configuration, database, logs) at the end.
    #[arg(long)]
    keep: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!((1..=999).contains(&args.stations), "--stations must be between 1 and 999");
    anyhow::ensure!(args.pace > 0.0 && args.pace.is_finite(), "--pace must be a positive number");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(demo(args))
}

fn free_port(wanted: Option<u16>) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", wanted.unwrap_or(0)))
        .with_context(|| format!("port {} is taken", wanted.unwrap_or(0)))?;
    Ok(listener.local_addr()?.port())
}

/// Writes the configuration, enrolls stations, sensors and users.
fn prepare(dir: &Path, args: &Args, mqtt: u16, http: u16) -> anyhow::Result<(PathBuf, String)> {
    let text = crate::config::DEFAULT_CONFIG
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = {:?}", dir.join("data").display().to_string()))
        .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{mqtt}\""))
        .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{mqtt}\""))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http}\""));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let loaded = crate::config::Config::load(&path)?;
    let mut store = crate::store::Store::open(&loaded.database(), loaded.policy.retention_days)?;
    let now = Timestamp::now();
    for n in 1..=args.stations {
        let id = format!("sim-{n:03}");
        let key = StationKey::from_bytes(rand::random());
        store.enroll_station(&id, &key, now, true)?;
        let station_dir = dir.join("stations").join(&id);
        std::fs::create_dir_all(&station_dir)?;
        netbar_host::private::write_private(&station_dir.join("station.key"), &format!("{}\n", key.to_hex()))?;
        if n % 10 == 1 {
            store.enroll_sensor(&format!("smoke-{id}"), &id, "smoke", now)?;
        }
    }
    for role in ["manager", "cashier"] {
        store.put_user(role, role, &crate::http::auth::hash(PASSWORD)?)?;
    }
    Ok((path, loaded.config.venue.id.to_string()))
}

/// `name` (netbar-collector, netbar-lockscreen) beside this binary; under
/// `cargo run`, built first.
fn sibling_binary(name: &str, what: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if sibling.exists() {
        return Ok(sibling);
    }
    let missing = || {
        anyhow::anyhow!(
            "{what} {} is missing: install {name} beside netbar-agent, or build it (cargo build --release -p {name})",
            sibling.display()
        )
    };
    let cargo = std::env::var_os("CARGO").ok_or_else(missing)?;
    let profile_dir = exe.parent().ok_or_else(missing)?;
    let target_dir = profile_dir.parent().ok_or_else(missing)?;
    eprintln!("building {what} ({name}) first…");
    let mut build = std::process::Command::new(cargo);
    build.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).args(["build", "-p", name, "--target-dir"]);
    build.arg(target_dir);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    anyhow::ensure!(build.status()?.success(), "building {name} failed");
    sibling.exists().then_some(sibling.clone()).ok_or_else(missing)
}

/// The one station a person can walk up to: a real collector on this PC,
/// with the lock screen, enrolled as `desk-1`. Its "operating system's
/// lock" only writes to a file in the demo's folder: the demo never locks
/// this PC's own session. Returns the collector's configuration.
fn walk_up_station(dir: &Path, config: &Path, venue: &str, mqtt: u16, lockscreen: &Path) -> anyhow::Result<PathBuf> {
    let loaded = crate::config::Config::load(config)?;
    let mut store = crate::store::Store::open(&loaded.database(), loaded.policy.retention_days)?;
    let key = StationKey::from_bytes(rand::random());
    store.enroll_station(WALK_UP, &key, Timestamp::now(), true)?;
    let station_dir = dir.join("stations").join(WALK_UP);
    std::fs::create_dir_all(&station_dir)?;
    let key_file = station_dir.join("station.key");
    netbar_host::private::write_private(&key_file, &format!("{}\n", key.to_hex()))?;
    let os_lock = station_dir.join("os-lock.log");
    let (shell, flag) = if cfg!(windows) { ("cmd", "/C") } else { ("sh", "-c") };
    let action = |word: &str| format!("[{shell:?}, {flag:?}, {:?}]", format!("echo {word} >> \"{}\"", os_lock.display()));
    let text = format!(
        "version = 1\n[station]\nvenue = {venue:?}\nid = {WALK_UP:?}\nkey_file = {key:?}\n[broker]\nport = {mqtt}\n[spool]\ndir = {spool:?}\n\
         [local]\nlisten = \"127.0.0.1:{local}\"\n[lock_screen]\nprogram = [{lockscreen:?}]\nvenue_name = \"netbar demo · 网吧演示\"\n\
         languages = [\"zh\", \"en\", \"ko\"]\n[lock_screen.exits]\nzh = \"出门左转，走廊尽头的绿色安全出口\"\n\
         en = \"Turn left: the green exit at the end of the corridor\"\nko = \"왼쪽으로 나가 복도 끝 초록색 비상구\"\n\
         [actions]\nlock = {lock}\nunlock = {unlock}\nnotify = {notify}\nlock_state = []\n",
        key = key_file.display().to_string(),
        spool = station_dir.join("spool").display().to_string(),
        local = free_port(None)?,
        lockscreen = lockscreen.display().to_string(),
        lock = action("locked"),
        unlock = action("unlocked"),
        notify = action("notice"),
    );
    let path = station_dir.join("collector.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The walk-up station's id.
const WALK_UP: &str = "desk-1";

/// Whether windows can be opened here.
fn display_available() -> bool {
    cfg!(windows) || ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))
}

/// One request to the agent's API on 127.0.0.1: the status and the JSON body.
async fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
}

/// A valid Chinese resident ID number of someone born on `birth` (Xuhui, Shanghai).
fn cn_id(birth: jiff::civil::Date, serial: u16) -> String {
    let body = format!("310104{:04}{:02}{:02}{:03}", birth.year(), birth.month(), birth.day(), serial % 1000);
    let check = netbar_protocol::identity::cn_check_for(&body).unwrap_or('0');
    format!("{body}{check}")
}

/// The front desk: who came with which ticket to which station.
#[derive(Debug, Default)]
struct Desk {
    /// ticket → (station number, when handed, whether the session started)
    out: std::collections::HashMap<String, (usize, std::time::Instant, bool)>,
    serial: u16,
}

impl Desk {
    /// One round at the desk: check out who left, maybe let someone in.
    async fn round(&mut self, http: u16, token: &str, simulator: &mut tokio::process::ChildStdin) -> anyhow::Result<()> {
        let (status, floor) = call(http, "GET", "/api/v1/floor", Some(token), None).await?;
        anyhow::ensure!(status == 200, "the floor map answered {status}");
        let stations = floor["stations"].as_array().cloned().unwrap_or_default();
        let session_of = |ticket: &str| stations.iter().any(|s| s["session"]["ticket"].as_str() == Some(ticket));
        let mut leaving = Vec::new();
        for (ticket, (_, handed, started)) in &mut self.out {
            let playing = session_of(ticket);
            if playing {
                *started = true;
            } else if *started || handed.elapsed() > Duration::from_secs(90) {
                leaving.push(ticket.clone());
            }
        }
        for ticket in leaving {
            self.out.remove(&ticket);
            call(http, "DELETE", &format!("/api/v1/checkins/{ticket}"), Some(token), None).await?;
        }
        if rand::random::<f64>() < 0.2 {
            return Ok(());
        }
        let waiting: Vec<usize> = self.out.values().map(|(n, ..)| *n).collect();
        let free: Vec<usize> = stations
            .iter()
            .filter(|s| s["state"] == "free")
            .filter_map(|s| s["id"].as_str()?.strip_prefix("sim-")?.parse().ok())
            .filter(|n| !waiting.contains(n))
            .collect();
        let Some(&station) = free.get(rand::random::<u32>() as usize % free.len().max(1)) else { return Ok(()) };
        self.serial = self.serial.wrapping_add(1);
        let today = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
        // One customer in eight is a minor, and is turned away.
        let age = if rand::random::<u8>().is_multiple_of(8) { 15 } else { 18 + rand::random::<i16>().rem_euclid(45) };
        let birth = today.saturating_sub(jiff::Span::new().years(age).days(i64::from(rand::random::<u16>() % 300) + 1));
        let body = serde_json::json!({ "document_type": "cn_id", "number": cn_id(birth, self.serial) });
        let (status, answer) = call(http, "POST", "/api/v1/checkins", Some(token), Some(body)).await?;
        if status == 201
            && let Some(ticket) = answer["result"]["ticket"].as_str()
        {
            self.out.insert(ticket.to_owned(), (station, std::time::Instant::now(), false));
            simulator.write_all(format!("ticket {station} {ticket}\n").as_bytes()).await?;
        }
        Ok(())
    }
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("netbar-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (mqtt, http) = (free_port(args.mqtt_port)?, free_port(args.http_port)?);
    let (config, venue) = prepare(&dir, &args, mqtt, http)?;
    let collector = sibling_binary("netbar-collector", "the station simulator")?;
    let lockscreen = sibling_binary("netbar-lockscreen", "the lock screen")?;
    let walk_up = walk_up_station(&dir, &config, &venue, mqtt, &lockscreen)?;

    let mut agent = tokio::process::Command::new(std::env::current_exe()?)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&dir, "agent.log")?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the agent")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_err() {
        if std::time::Instant::now() > deadline || agent.try_wait()?.is_some() {
            anyhow::bail!("the agent did not start; see {}", dir.join("agent.log").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut simulator = tokio::process::Command::new(&collector)
        .args(["simulate", "--desk", "--stations", &args.stations.to_string(), "--venue", &venue, "--host", "127.0.0.1"])
        .args(["--port", &mqtt.to_string(), "--pace", &args.pace.to_string(), "--interval", "2"])
        .arg("--keys-dir")
        .arg(dir.join("stations"))
        .arg("--spool-root")
        .arg(dir.join("spool"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&dir, "simulate.log")?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the station simulator")?;
    let mut to_simulator = simulator.stdin.take().context("the simulator's standard input")?;
    // The walk-up station: a real collector that starts the lock screen,
    // when there is a display to show it on.
    let shown = display_available();
    let mut station = if shown {
        Some(
            tokio::process::Command::new(&collector)
                .arg("--config")
                .arg(&walk_up)
                .arg("run")
                .stdout(std::process::Stdio::null())
                .stderr(log_file(&dir, "desk-1.log")?)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start the walk-up station")?,
        )
    } else {
        None
    };

    let (status, login) =
        call(http, "POST", "/api/v1/login", None, Some(serde_json::json!({ "name": "cashier", "password": PASSWORD }))).await?;
    anyhow::ensure!(status == 200, "the demo cannot sign in: {login}");
    let token = login["token"].as_str().unwrap_or_default().to_owned();

    let smoke_at = if args.stations >= 11 { 11 } else { 1 };
    let mut out = std::io::stdout().lock();
    writeln!(out, "netbar demo: venue {venue}, {} simulated stations", args.stations)?;
    writeln!(out, "  console:  http://127.0.0.1:{http}/")?;
    writeln!(out, "  sign in:  manager / {PASSWORD}   or   cashier / {PASSWORD}")?;
    writeln!(out, "  broker:   127.0.0.1:{mqtt} (embedded)")?;
    writeln!(out, "  data:     {}", dir.display())?;
    if shown {
        writeln!(out, "  station:  {WALK_UP}, a lock screen window on this display: check a customer in at the console")?;
        writeln!(out, "            and type the ticket there (F2 switches its language)")?;
    } else {
        writeln!(out, "  station:  {WALK_UP} has no display here; on a desktop, start it with")?;
        writeln!(out, "            {} --config {} run", collector.display(), walk_up.display())?;
    }
    writeln!(
        out,
        "A smoke detector (station sim-{smoke_at:03}) goes off in a minute. Type `smoke N` or `clear N` to set one off or clear it; Ctrl-C stops."
    )?;
    drop(out);

    let mut desk = Desk::default();
    let mut rounds = tokio::time::interval(Duration::from_secs(3));
    let smoke = tokio::time::sleep(Duration::from_secs(60));
    let clear = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(smoke, clear);
    let (mut smoked, mut cleared) = (false, false);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // Ctrl-C or SIGTERM (`kill PID`): either stops everything below.
    let stop = netbar_host::shutdown();
    tokio::pin!(stop);
    let result = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            status = agent.wait() => break Err(anyhow::anyhow!("the agent stopped ({}); see {}", status?, dir.join("agent.log").display())),
            status = simulator.wait() => break Err(anyhow::anyhow!("the simulator stopped ({}); see {}", status?, dir.join("simulate.log").display())),
            _ = rounds.tick() => {
                if let Err(error) = desk.round(http, &token, &mut to_simulator).await {
                    eprintln!("demo desk: {error:#}");
                }
            }
            () = &mut smoke, if !smoked => {
                smoked = true;
                println!("smoke at station sim-{smoke_at:03}: see the console's alarm");
                to_simulator.write_all(format!("smoke {smoke_at}\n").as_bytes()).await?;
            }
            () = &mut clear, if !cleared => {
                cleared = true;
                to_simulator.write_all(format!("clear {smoke_at}\n").as_bytes()).await?;
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => to_simulator.write_all(format!("{line}\n").as_bytes()).await?,
                _ => stdin_open = false,
            },
        }
    };
    println!("stopping…");
    if let Some(station) = station.as_mut() {
        let _ = station.kill().await;
        // A lock screen outlives its collector (a station's keeps covering
        // it); the demo's goes with the demo.
        let log = std::fs::read_to_string(dir.join("desk-1.log")).unwrap_or_default();
        for pid in log.lines().filter_map(|line| line.split("lock screen started pid=").nth(1)?.split_whitespace().next()) {
            let (program, args) = if cfg!(windows) { ("taskkill", vec!["/F", "/PID", pid]) } else { ("kill", vec!["-TERM", pid]) };
            let _ = tokio::process::Command::new(program).args(args).stderr(std::process::Stdio::null()).status().await;
        }
    }
    let _ = to_simulator.write_all(b"quit\n").await;
    drop(to_simulator);
    if tokio::time::timeout(Duration::from_secs(5), simulator.wait()).await.is_err() {
        let _ = simulator.kill().await;
    }
    // The agent stops the orderly way: it finishes and flushes the log.
    if let Some(pid) = agent.id() {
        let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    }
    if tokio::time::timeout(Duration::from_secs(10), agent.wait()).await.is_err() {
        let _ = agent.kill().await;
    }
    if args.keep {
        println!("the demo's files are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_id_numbers_are_valid() {
        let today = jiff::civil::date(2026, 11, 26);
        for serial in [1, 17, 999] {
            let number = cn_id(jiff::civil::date(1990, 5, 17), serial);
            let document = netbar_protocol::identity::validate(netbar_protocol::identity::DocumentType::CnId, &number, today);
            assert!(document.is_ok(), "{number}: {document:?}");
        }
    }
}
