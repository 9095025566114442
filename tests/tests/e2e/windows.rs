//! The Windows build under wine, installed from its zip as an operator
//! would, as far as wine allows: the package built (`deploy/windows/package`,
//! dev profile), unpacked to `C:\Program Files\netbar`, the configurations
//! in `%ProgramData%\netbar`; the agent and a collector run in the
//! foreground with a customer in session, are killed (kill -9), then run as
//! services through wine's service control manager: the session carries on
//! across the kill and across a clean stop and start, the station never
//! locked; install again, a broken configuration failing visibly,
//! uninstall twice. Each test has a wine prefix of its own, made by
//! tests/wine/run with the stand-ins wine lacks; nothing of it is shipped.
//!
//! What wine cannot show: access lists on `%ProgramData%\netbar` (install.ps1
//! sets them with icacls), the agent's virtual service account, session 0
//! and a customer's desktop, recovery actions actually restarting a service,
//! PowerShell itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use netbar_tests::{Process, Stdin, TempDir, free_port, wait_for};

/// Wine's first start of a prefix, and a debug build's first start, are slow.
const STARTED: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the Windows package from this workspace with the dev profile.
fn package(dir: &Path) -> PathBuf {
    let zip = dir.join("netbar-windows.zip");
    let output = Command::new(workspace().join("deploy/windows/package"))
        .args(["--profile", "dev", "--out"])
        .arg(&zip)
        .output()
        .expect("deploy/windows/package runs");
    assert!(
        output.status.success(),
        "building the Windows package failed (tests/run installs the Windows target, mingw-w64, wine and zip): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    zip
}

/// A wine prefix of the test's own, kept alive by one ordinary process
/// (wine stops its services when the last one exits) whose standard error
/// collects what services write to the event log; every wine process of the
/// prefix is killed when dropped.
struct Wine {
    prefix: PathBuf,
    _alive: Process,
    events: PathBuf,
}

impl Wine {
    /// A fresh prefix whose programs show their windows on `display`.
    fn new(dir: &Path, display: &str) -> Wine {
        let prefix = dir.join("prefix");
        let events = dir.join("wine-events.log");
        let prefix_text = prefix.to_str().unwrap().to_owned();
        let alive = Process::start_with(
            &workspace().join("tests/wine/run"),
            &["cmd", "/c", "pause"],
            events.clone(),
            Stdin::Piped,
            // The prefix is made by this first program: its desktop is on
            // the display it was made with.
            &[("NETBAR_WINEPREFIX", prefix_text.as_str()), ("WINEDEBUG", "-all,err+eventlog"), ("DISPLAY", display)],
        );
        let wine = Wine { prefix, _alive: alive, events };
        // Wine's own services start with the prefix's first program and
        // keep its standard output and error: that must be this one, or a
        // later program's output would never end (and the event log would
        // go elsewhere). It is running once `pause` prompts.
        wait_for("the wine prefix and its first program", STARTED, || wine.events().contains("Press any key"));
        wine
    }

    /// Runs a program in the prefix (Windows paths), waiting for it up to a
    /// deadline. Its output goes through files, not pipes: a wine service
    /// it happened to start would hold a pipe open long after it ended.
    fn run(&self, args: &[&str]) -> Output {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (out, err) = (self.prefix.with_file_name(format!("run-{n}.out")), self.prefix.with_file_name(format!("run-{n}.err")));
        let mut child = self
            .command(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("wine runs");
        let mut status = None;
        wait_for(&format!("{args:?} to finish"), STARTED, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        Output { status: status.unwrap(), stdout: std::fs::read(&out).unwrap(), stderr: std::fs::read(&err).unwrap() }
    }

    /// Starts a long-running program in the prefix, its output to `log`.
    fn start(&self, args: &[&str], log: PathBuf) -> Process {
        Process::start_with(
            &workspace().join("tests/wine/run"),
            args,
            log,
            Stdin::Null,
            &[("NETBAR_WINEPREFIX", self.prefix.to_str().unwrap())],
        )
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace().join("tests/wine/run"));
        command.args(args).env("NETBAR_WINEPREFIX", &self.prefix).stdin(Stdio::null());
        command
    }

    /// A Windows path's place on this machine (`C:\…` only).
    fn host_path(&self, windows: &str) -> PathBuf {
        let rest = windows.strip_prefix(r"C:\").expect("a path on C:");
        rest.split('\\').fold(self.prefix.join("drive_c"), |path, part| path.join(part))
    }

    /// What `sc query NAME` says: the state and the two exit codes, or
    /// None when the service does not exist.
    fn service(&self, name: &str) -> Option<(String, u32, u32)> {
        let output = self.run(&["sc", "query", name]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |key: &str| {
            text.lines()
                .find(|line| line.trim_start().starts_with(key))
                .and_then(|line| line.split(':').nth(1))
                .map(str::trim)
                .map(str::to_owned)
        };
        let state = field("STATE")?.split_whitespace().nth(1)?.to_owned();
        let code = |key: &str| field(key).and_then(|value| value.split_whitespace().next()?.parse().ok()).unwrap_or(u32::MAX);
        Some((state, code("WIN32_EXIT_CODE"), code("SERVICE_EXIT_CODE")))
    }

    fn wait_state(&self, name: &str, state: &str) {
        wait_for(&format!("{name} {state}"), STARTED, || self.service(name).is_some_and(|(now, _, _)| now == state));
    }

    fn events(&self) -> String {
        std::fs::read_to_string(&self.events).unwrap_or_default()
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new("wineserver").arg("-k").env("WINEPREFIX", &self.prefix).status();
    }
}

/// Runs a program of the package, which must succeed; its standard output.
fn ok(wine: &Wine, args: &[&str]) -> String {
    let output = wine.run(args);
    assert!(output.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const AGENT: &str = r"C:\Program Files\netbar\netbar-agent.exe";
const COLLECTOR: &str = r"C:\Program Files\netbar\netbar-collector.exe";
const LOCKSCREEN: &str = r"C:\Program Files\netbar\netbar-lockscreen.exe";
const AGENT_CONFIG: &str = r"C:\ProgramData\netbar\agent.toml";
const COLLECTOR_CONFIG: &str = r"C:\ProgramData\netbar\collector.toml";

fn healthy(http: u16) -> bool {
    netbar_tests::try_http_text(http, "GET", "/healthz", None, None).is_ok_and(|(status, _)| status == 200)
}

/// Signs in as the manager the test added; the token.
fn sign_in(http: u16) -> String {
    let password = serde_json::json!({"name": "li", "password": "correct horse battery"});
    let (status, body) = netbar_tests::http(http, "POST", "/api/v1/login", None, Some(&password));
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn station(http: u16, token: &str) -> serde_json::Value {
    netbar_tests::try_http_text(http, "GET", "/api/v1/stations", Some(token), None)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|body| body["stations"][0].clone())
        .unwrap_or_default()
}

#[test]
fn a_venue_on_windows_from_its_zip() {
    let dir = TempDir::new("windows");
    let zip = package(dir.path());
    let display = netbar_tests::display::Display::start(1024, 640);
    let wine = Wine::new(dir.path(), display.name());

    // Unpacked as an operator would, with what install.ps1 copies where it
    // copies it (PowerShell itself does not run under wine).
    let unpacked = dir.path().join("unpacked");
    let unzip = Command::new("unzip").arg("-q").arg(&zip).arg("-d").arg(&unpacked).status().expect("unzip runs");
    assert!(unzip.success());
    let folder = std::fs::read_dir(&unpacked).unwrap().next().unwrap().unwrap().path();
    for file in [
        "netbar-agent.exe",
        "netbar-collector.exe",
        "netbar-lockscreen.exe",
        "install.ps1",
        "uninstall.ps1",
        "agent.toml",
        "collector.toml",
        "README.md",
        "netbar-agent-completion.ps1",
        "netbar-collector-completion.ps1",
    ] {
        assert!(folder.join(file).is_file(), "the package holds {file}");
    }
    // The completions come from the packaged binaries: the agent's offers
    // its subcommands, and not the demo, which the package leaves out.
    let completion = std::fs::read_to_string(folder.join("netbar-agent-completion.ps1")).unwrap();
    assert!(completion.contains("Register-ArgumentCompleter -Native -CommandName 'netbar-agent'"), "{completion}");
    assert!(completion.contains("'check-id'") && completion.contains("'ingest'"), "{completion}");
    assert!(!completion.contains("'demo'"), "the packaged agent has no demo: {completion}");
    let completion = std::fs::read_to_string(folder.join("netbar-collector-completion.ps1")).unwrap();
    assert!(completion.contains("-CommandName 'netbar-collector'") && completion.contains("'simulate'"), "{completion}");
    let program = wine.host_path(r"C:\Program Files\netbar");
    let data = wine.host_path(r"C:\ProgramData\netbar");
    std::fs::create_dir_all(&program).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    for binary in ["netbar-agent.exe", "netbar-collector.exe", "netbar-lockscreen.exe"] {
        std::fs::copy(folder.join(binary), program.join(binary)).unwrap();
    }
    // The packaged defaults, on ports of this test's own.
    let (bus, http) = (free_port(), free_port());
    let defaults = std::fs::read_to_string(folder.join("agent.toml")).unwrap();
    assert!(defaults.contains(r#"dir = "C:/ProgramData/netbar/data""#), "Windows' folders: {defaults}");
    let config = defaults
        .replace(r#"listen = "0.0.0.0:1883""#, &format!(r#"listen = "127.0.0.1:{bus}""#))
        .replace(r#"advertise = "192.168.1.10:1883""#, &format!(r#"advertise = "127.0.0.1:{bus}""#))
        .replace(r#"listen = "127.0.0.1:8080""#, &format!(r#"listen = "127.0.0.1:{http}""#));
    std::fs::write(wine.host_path(AGENT_CONFIG), &config).unwrap();

    // The tools, with the configuration found where Windows keeps it.
    let checked = ok(&wine, &[AGENT, "check-config"]);
    assert!(checked.contains("configuration is valid") && checked.contains("C:/ProgramData/netbar/data"), "{checked}");
    assert!(ok(&wine, &[AGENT, "pki", "init"]).contains("venue CA made"));
    let ids = ok(&wine, &[AGENT, "check-id", "--at", "2026-11-22T20:00:00+08:00", "11010519491231002x", "310104201001151236"]);
    let ids: Vec<serde_json::Value> = ids.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!((ids[0]["allowed"].as_bool(), ids[1]["reasons"][0].as_str()), (Some(true), Some("under_age")), "{ids:?}");
    let mut add =
        wine.command(&[AGENT, "user", "add", "li", "--role", "manager"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"correct horse battery\n").unwrap();
    assert!(add.wait().unwrap().success());
    let enrolled = ok(&wine, &[AGENT, "enroll", "station", "st-1", "--out", r"C:\ProgramData\netbar\enrolled"]);
    assert!(enrolled.contains("enrolled station st-1"), "{enrolled}");
    // What install.ps1 -Enrollment copies, and programs that stand in for
    // the lock screen (a service cannot show one under wine): the station's
    // lock state is a file they write and read.
    let station_files = data.join("enrolled").join("st-1");
    std::fs::copy(station_files.join("station.key"), data.join("station.key")).unwrap();
    let locked = || std::fs::read_to_string(data.join("locked")).unwrap_or_default().trim().to_owned();
    std::fs::write(data.join("locked"), "yes\n").unwrap();
    // The lock screen is started by hand below (a service's would go to a
    // console session wine does not have); wine has no CJK font of its own.
    let local = free_port();
    let collector_config = std::fs::read_to_string(station_files.join("collector.toml")).unwrap()
        + &format!(
            "\n[local]\nlisten = \"127.0.0.1:{local}\"\n\
             [lock_screen]\nprogram = []\nlanguages = ['zh', 'en']\n\
             fonts = ['Z:\\usr\\share\\fonts\\opentype\\noto\\NotoSansCJK-Regular.ttc']\n[actions]\n\
             lock = ['cmd', '/c', 'echo yes> C:\\ProgramData\\netbar\\locked']\n\
             unlock = ['cmd', '/c', 'echo no> C:\\ProgramData\\netbar\\locked']\n\
             notify = ['cmd', '/c', 'echo {{text}}']\n\
             lock_state = ['cmd', '/c', 'type C:\\ProgramData\\netbar\\locked']\n",
        );
    std::fs::write(wine.host_path(COLLECTOR_CONFIG), &collector_config).unwrap();
    assert!(ok(&wine, &[COLLECTOR, "check-config"]).contains("station st-1"));

    // In the foreground: the agent serves, the collector reports through its bus.
    let mut agent = wine.start(&[AGENT, "run"], dir.path().join("agent.log"));
    wait_for("the agent's /healthz", STARTED, || healthy(http));
    let mut token = sign_in(http);
    let mut collector = wine.start(&[COLLECTOR, "run"], dir.path().join("collector.log"));
    wait_for("st-1 online and reporting telemetry", STARTED, || {
        let station = station(http, &token);
        station["online"] == true && station["cpu_percent"].is_number() && station["lock_state"] == "locked"
    });
    // The lock screen's Windows build, on a virtual display: it attaches to
    // the collector and covers the screen, locked. Killed, the station is
    // locked with the operating system's lock (here: the file).
    let screen_log = dir.path().join("lockscreen.log");
    let mut screen = Process::start_with(
        &workspace().join("tests/wine/run"),
        &[LOCKSCREEN, "--connect", &format!("127.0.0.1:{local}")],
        screen_log.clone(),
        Stdin::Null,
        &[("NETBAR_WINEPREFIX", wine.prefix.to_str().unwrap()), ("DISPLAY", display.name())],
    );
    let end = std::time::Instant::now() + STARTED;
    let image = loop {
        let image = display.capture();
        let said = std::fs::read_to_string(&screen_log).unwrap_or_default();
        // Locked, with the venue's name drawn at the top left (its fonts loaded).
        let named = image.share([255, 255, 255], 40, (40, 40, 360, 70)) > 0.01;
        if said.contains("netbar-lockscreen: showing locked [zh]") && image.share_all([18, 23, 33], 4) > 0.6 && named {
            break image;
        }
        assert!(std::time::Instant::now() < end, "the Windows lock screen shows no locked screen; it said:\n{said}");
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Some(shots) = std::env::var_os("NETBAR_SCREENSHOTS") {
        image.save_png(&Path::new(&shots).join("windows-locked-zh.png"));
    }
    wait_for("st-1 locked by the lock screen", STARTED, || station(http, &token)["lock_state"] == "locked");
    std::fs::write(data.join("locked"), "unknown\n").unwrap();
    screen.kill();
    wait_for("the operating system's lock after the lock screen was killed", STARTED, || locked() == "yes");
    // A customer checked in at the desk logs in at the station.
    let adult = serde_json::json!({"document_type": "other", "number": "WINE-1", "birth_date": "1990-01-01"});
    let (_, body) = netbar_tests::http(http, "POST", "/api/v1/checkins", Some(&token), Some(&adult));
    let ticket = body["result"]["ticket"].as_str().unwrap().to_owned();
    let answer = ok(&wine, &[COLLECTOR, "login", &ticket]);
    assert!(answer.contains("unlocked"), "{answer}");
    let in_session = |token: &str| station(http, token)["session"]["ticket"] == ticket.as_str();
    wait_for("st-1 in session and unlocked", STARTED, || in_session(&token) && locked() == "no");
    // Both killed (kill -9 of the wine processes): nothing to clean up with.
    collector.kill();
    agent.kill();

    // As services: installed, running, stopped, started, installed again.
    for (binary, config, name) in [(AGENT, AGENT_CONFIG, "netbar-agent"), (COLLECTOR, COLLECTOR_CONFIG, "netbar-collector")] {
        assert!(ok(&wine, &[binary, "install-service", "--config", config]).contains(&format!("installed {name}")));
        wine.wait_state(name, "RUNNING");
    }
    wait_for("the agent service's /healthz", STARTED, || healthy(http));
    token = sign_in(http);
    // The session outlived both processes, and the station was never locked.
    wait_for("st-1 online through the services, in the same session", STARTED, || {
        station(http, &token)["online"] == true && in_session(&token)
    });
    // Services log beside their configuration: install.ps1's %ProgramData%\netbar.
    for name in ["netbar-agent", "netbar-collector"] {
        let logged = std::fs::read_dir(data.join("logs"))
            .unwrap()
            .flatten()
            .any(|file| file.file_name().to_string_lossy().starts_with(name) && std::fs::metadata(file.path()).is_ok_and(|m| m.len() > 0));
        assert!(logged, "{name} logs in C:\\ProgramData\\netbar\\logs");
    }
    assert_eq!(locked(), "no");
    for name in ["netbar-agent", "netbar-collector"] {
        ok(&wine, &["sc", "stop", name]);
        wine.wait_state(name, "STOPPED");
        assert_eq!(wine.service(name).map(|(_, win32, _)| win32), Some(0), "{name} stopped cleanly");
    }
    assert!(!healthy(http), "the agent stopped with its service");
    for name in ["netbar-agent", "netbar-collector"] {
        ok(&wine, &["sc", "start", name]);
        wine.wait_state(name, "RUNNING");
    }
    wait_for("the agent service's /healthz again", STARTED, || healthy(http));
    // And a clean stop of both: the same session, still unlocked.
    token = sign_in(http);
    wait_for("st-1 online again, in the same session", STARTED, || station(http, &token)["online"] == true && in_session(&token));
    assert_eq!(locked(), "no");
    // Installing over an installed, running service updates it.
    assert!(ok(&wine, &[AGENT, "install-service", "--config", AGENT_CONFIG]).contains("installed netbar-agent"));
    assert_eq!(wine.service("netbar-agent").map(|(state, _, _)| state), Some("RUNNING".to_owned()));

    // A configuration broken while installed: the service stops with its
    // own exit code, and the event log says why.
    for (config, name) in [(AGENT_CONFIG, "netbar-agent"), (COLLECTOR_CONFIG, "netbar-collector")] {
        ok(&wine, &["sc", "stop", name]);
        wine.wait_state(name, "STOPPED");
        let good = std::fs::read_to_string(wine.host_path(config)).unwrap();
        std::fs::write(wine.host_path(config), format!("{good}\nbogus = 1\n")).unwrap();
        ok(&wine, &["sc", "start", name]);
        wait_for(&format!("{name} failing visibly"), STARTED, || {
            wine.service(name) == Some(("STOPPED".to_owned(), 1066, 1)) && wine.events().contains(&format!("{name} failed:"))
        });
        let events = wine.events();
        let reported = events.lines().find(|line| line.contains(&format!("{name} failed:"))).unwrap();
        assert!(reported.contains("bogus"), "the event names the key: {reported}");
        std::fs::write(wine.host_path(config), good).unwrap();
    }

    // Uninstalled, and uninstalling again is no error.
    for (binary, name) in [(AGENT, "netbar-agent"), (COLLECTOR, "netbar-collector")] {
        ok(&wine, &[binary, "uninstall-service"]);
        assert_eq!(wine.service(name), None, "{name} is gone");
        ok(&wine, &[binary, "uninstall-service"]);
    }
}
