//! The customer's lock screen on a real X server (Xvfb), started and
//! watched by a real collector, with a real agent behind it: a customer
//! types a ticket, plays, is warned, evacuated and logged out; a refused
//! ticket shows its reason; killing the lock screen locks the station with
//! the operating system's lock, brings the lock screen back and is
//! recorded by the agent.
//!
//! The test reads the screen twice over: the pixels (xwd) for where the
//! window is and what colour covers the screen, and the lock screen's own
//! account of what it shows (a line on standard error at each change) for
//! the words. With `NETBAR_SCREENSHOTS=DIR` it writes the screenshots the
//! README shows.

use std::path::{Path, PathBuf};
use std::process::Command as Run;
use std::time::{Duration, Instant};

use netbar_tests::display::{Display, Image};
use netbar_tests::{binary, http, wait_for};
use serde_json::json;

use super::agent::{Venue, collector, collector_with, smoke_station};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;
const WAIT: Duration = Duration::from_secs(30);
/// The lock screen's colours (collector/lockscreen/src/app.rs).
const LOCKED: [u8; 3] = [18, 23, 33];
const STRIP: [u8; 3] = [31, 36, 48];
const EVACUATION: [u8; 3] = [199, 0, 0];
/// A refusal's words, amber, in the band under the ticket field.
const AMBER: [u8; 3] = [255, 194, 51];
const ANSWER_BAND: (u32, u32, u32, u32) = (0, 470, WIDTH, 90);
/// The session's strip: 460 × 64 at the top right, 12 pixels in; with a
/// notice 560 × 230.
const STRIP_AREA: (u32, u32, u32, u32) = (WIDTH - 460 - 12, 12, 460, 64);
const NOTICE_AREA: (u32, u32, u32, u32) = (WIDTH - 560 - 12, 100, 560, 130);

/// What the screen shows, told apart by colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Locked,
    /// Locked, with a refusal written under the field.
    Refused,
    Strip,
    StripWithNotice,
    Evacuation,
    Other,
}

fn seen(image: &Image) -> Seen {
    if image.share_all(EVACUATION, 4) > 0.6 {
        Seen::Evacuation
    } else if image.share_all(LOCKED, 4) > 0.6 && image.share(AMBER, 40, ANSWER_BAND) > 0.002 {
        Seen::Refused
    } else if image.share_all(LOCKED, 4) > 0.6 {
        Seen::Locked
    } else if image.share(STRIP, 4, NOTICE_AREA) > 0.5 {
        Seen::StripWithNotice
    } else if image.share(STRIP, 4, STRIP_AREA) > 0.5 {
        Seen::Strip
    } else {
        Seen::Other
    }
}

struct Station<'a> {
    display: &'a Display,
    log: PathBuf,
    shots: Option<PathBuf>,
}

impl Station<'_> {
    /// Waits until the screen shows `wanted`; the screenshot.
    fn wait_seen(&self, wanted: Seen) -> Image {
        let end = Instant::now() + WAIT;
        loop {
            let image = self.display.capture();
            let now = seen(&image);
            if now == wanted {
                return image;
            }
            assert!(Instant::now() < end, "the screen shows {now:?}, not {wanted:?}; the collector's log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the lock screen says it shows `line` (its last word on it).
    fn wait_showing(&self, line: &str) {
        self.wait_showing_within(line, WAIT);
    }

    fn wait_showing_within(&self, line: &str, deadline: Duration) {
        let wanted = format!("netbar-lockscreen: showing {line}");
        let end = Instant::now() + deadline;
        loop {
            let log = self.log();
            let last = log.lines().rev().find(|said| said.starts_with("netbar-lockscreen: showing")).unwrap_or_default();
            if last.starts_with(&wanted) {
                return;
            }
            assert!(Instant::now() < end, "the lock screen is not showing {line:?} after {deadline:?}; the collector's log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `wanted` on the screen and in the lock screen's words;
    /// keeps the screenshot as `name` (the README's), unless empty.
    fn expect(&self, wanted: Seen, showing: &str, name: &str) {
        self.wait_showing(showing);
        let image = self.wait_seen(wanted);
        if let Some(dir) = self.shots.as_ref().filter(|_| !name.is_empty()) {
            image.save_png(&dir.join(format!("{name}.png")));
        }
    }

    fn lock_screen_pids(&self) -> Vec<u32> {
        self.log()
            .lines()
            .filter(|line| line.contains("lock screen started"))
            .filter_map(|line| line.rsplit("pid=").next().and_then(|pid| pid.split_whitespace().next()?.parse().ok()))
            .collect()
    }
}

fn check_in(venue: &Venue, token: &str, number: &str) -> String {
    let (status, body) =
        http(venue.http, "POST", "/api/v1/checkins", Some(token), Some(&json!({"document_type": "kr_rrn", "number": number})));
    assert_eq!(status, 201, "{body}");
    body["result"]["ticket"].as_str().unwrap().to_owned()
}

fn state(station: &Path) -> String {
    std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim().to_owned()
}

#[test]
fn a_customer_logs_in_plays_is_warned_evacuated_and_logged_out_and_killing_the_lock_screen_is_caught() {
    let display = Display::start(WIDTH, HEIGHT);
    let shots = std::env::var_os("NETBAR_SCREENSHOTS").map(PathBuf::from);
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
    }
    // A Korean venue whose clock starts at 21:58:10: a youth's session
    // ends at 22:00, and the warning comes a minute before.
    let mut venue = Venue::korean("lockscreen");
    let text = std::fs::read_to_string(&venue.config).unwrap().replace("curfew_warning_minutes = 10", "curfew_warning_minutes = 1");
    std::fs::write(&venue.config, text).unwrap();
    let (station, smoke, sensor) = smoke_station(&venue);
    let elsewhere = venue.enroll("st-2");
    venue.start_at(Some("2026-11-22T21:58:10+09:00"));
    let cashier = venue.sign_in("kim", "cashier");
    let manager = venue.sign_in("park", "manager");

    let extra = format!(
        "{sensor}[lock_screen]\nprogram = [\"{}\"]\nvenue_name = \"별빛 PC방 · 星光网咖\"\nlanguages = [\"zh\", \"en\"]\nhung_after = 3\n[lock_screen.exits]\nzh = \"出门左转，走廊尽头的绿色安全出口\"\nen = \"Turn left: the green exit at the end of the corridor\"\n",
        binary("netbar-lockscreen").display()
    );
    // The station's PC keeps Korean time, as the venue does.
    let mut station_collector = collector_with(&station, &extra, "yes\n", &[("DISPLAY", display.name()), ("TZ", "Asia/Seoul")]);
    let _other = collector(&elsewhere, "", "yes\n");
    let screen = Station { display: &display, log: station.join("stderr"), shots };

    // Locked: the whole screen, in the venue's first language.
    screen.expect(Seen::Locked, "locked [zh]", "locked-zh");

    // A ticket in use at st-2 is refused with where.
    let adult = check_in(&venue, &cashier, "800101-1234560");
    wait_for("st-2 online", WAIT, || {
        let (_, body) = http(venue.http, "GET", "/api/v1/stations", Some(&cashier), None);
        body["stations"].as_array().is_some_and(|all| all.iter().any(|station| station["id"] == "st-2" && station["online"] == true))
    });
    let config = elsewhere.join("run.toml");
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &adult]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("unlocked"), "{}", String::from_utf8_lossy(&output.stdout));
    display.type_line(&adult);
    screen.expect(Seen::Refused, "locked [zh] 此上机码正在 st-2 号机使用中。", "refused-zh");

    // A youth's ticket opens a session: the strip, with the time left.
    let youth = check_in(&venue, &cashier, "120601-3000004");
    display.type_line(&youth);
    screen.expect(Seen::Strip, "session [zh]", "session-zh");
    assert_eq!(state(&station), "yes", "the lock screen, not the operating system, unlocked");

    // A full-screen game opens over it: the strip comes back on top.
    let _game = netbar_tests::Process::start_with(
        Path::new("xlogo"),
        &["-geometry", &format!("{WIDTH}x{HEIGHT}+0+0")],
        station.join("game.stderr"),
        netbar_tests::Stdin::Null,
        &[("DISPLAY", display.name())],
    );
    screen.wait_seen(Seen::Strip);

    // A minute before 22:00 (the agent's clock) the warning, in the
    // customer's language, with the end in the station's own time.
    screen.wait_showing_within("session [zh] notice: 您的上机将于 ", Duration::from_secs(90));
    screen.expect(Seen::StripWithNotice, "session [zh] notice: 您的上机将于 ", "warning-zh");

    // Smoke: the evacuation covers the game, in both languages, until resolved.
    std::fs::write(&smoke, "1\n").unwrap();
    screen.expect(Seen::Evacuation, "evacuation", "evacuation");
    let (_, body) = http(venue.http, "GET", "/api/v1/incidents", Some(&cashier), None);
    let fire = body["incidents"].as_array().unwrap().iter().find(|incident| incident["kind"] == "fire").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&smoke, "0\n").unwrap();
    let note = json!({"note": "a toaster; aired"});
    assert_eq!(http(venue.http, "POST", &format!("/api/v1/incidents/{fire}/resolve"), Some(&manager), Some(&note)).0, 200);
    screen.expect(Seen::StripWithNotice, "session [zh] notice:", "");

    // The customer logs out with the strip's button: locked again.
    display.click(WIDTH - 12 - 16 - 30, 12 + 28);
    screen.expect(Seen::Locked, "locked [zh]", "");

    // The next customer switches to English (F2): the refusal in English,
    // then a session that is warned at once.
    display.run("xdotool", &["key", "F2"]);
    screen.expect(Seen::Locked, "locked [en]", "locked-en");
    display.type_line(&adult);
    screen.expect(Seen::Refused, "locked [en] This ticket is in use at station st-2.", "refused-en");
    display.type_line(&youth);
    screen.expect(Seen::StripWithNotice, "session [en] notice: Your session ends at ", "warning-en");
    // At 22:00 (the agent's clock) the curfew logs the youth out.
    screen.wait_showing_within("locked [zh]", Duration::from_secs(150));
    screen.expect(Seen::Locked, "locked [zh]", "");

    // Killed: the operating system's lock at once, the lock screen back,
    // the operating system's lock lifted, the tamper recorded.
    std::fs::write(station.join("locked"), "unknown\n").unwrap();
    let first = *screen.lock_screen_pids().last().unwrap();
    let killed = Instant::now();
    assert!(Run::new("kill").args(["-9", &first.to_string()]).status().unwrap().success());
    wait_for("the operating system's lock", WAIT, || state(&station) == "yes");
    eprintln!("the operating system locked the station {} ms after the lock screen was killed", killed.elapsed().as_millis());
    wait_for("the lock screen started again", WAIT, || screen.lock_screen_pids().len() >= 2);
    screen.wait_seen(Seen::Locked);
    wait_for("the operating system's lock lifted", WAIT, || state(&station) == "no");
    wait_for("the tamper recorded by the agent", WAIT, || {
        let (_, body) = http(venue.http, "GET", "/api/v1/incidents", Some(&cashier), None);
        body["incidents"]
            .as_array()
            .is_some_and(|all| all.iter().any(|incident| incident["kind"] == "lock_screen_tampered" && incident["station"] == "st-1"))
    });
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(export.contains("lock_screen_tampered"), "{export}");

    // The collector killed (kill -9) and started again on the same
    // configuration: the lock screen outlives it, attaches to the new one
    // (or the new one's own does and the other leaves), and one is left.
    station_collector.kill();
    let log = station.join("stderr-again");
    let _again = netbar_tests::Process::start_with(
        &binary("netbar-collector"),
        &["--config", station.join("run.toml").to_str().unwrap(), "run"],
        log.clone(),
        netbar_tests::Stdin::Null,
        &[("DISPLAY", display.name()), ("TZ", "Asia/Seoul")],
    );
    wait_for("a lock screen attached to the collector started again", WAIT, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("lock screen attached")
    });
    let mut started = screen.lock_screen_pids();
    started.extend(Station { display: &display, log: log.clone(), shots: None }.lock_screen_pids());
    let running = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
    };
    wait_for("one lock screen left", WAIT, || started.iter().filter(|pid| running(pid)).count() == 1);
    screen.wait_seen(Seen::Locked);
}
