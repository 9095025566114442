//! The front-desk console in a real browser (headless Chromium through
//! chromedriver) against a real agent and collector.
//!
//! With `NETBAR_SCREENSHOTS=DIR` the test also saves screenshots of the
//! main screens there (the README's come from this).

use std::process::Command as Run;
use std::time::Duration;

use netbar_tests::binary;
use netbar_tests::browser::Browser;
use serde_json::json;

use super::agent::{Venue, collector, smoke_station};

const WAIT: Duration = Duration::from_secs(20);

fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("NETBAR_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        browser.screenshot(&std::path::Path::new(&dir).join(format!("{name}.png")));
    }
}

fn sign_in(browser: &Browser, name: &str, password: &str) {
    browser.fill("#login-name", name);
    browser.fill("#login-password", password);
    browser.click("#login-submit");
}

/// The venue's zone: the agent's default configuration's, not the browser's.
const VENUE_ZONE: &str = "Asia/Shanghai";

/// Checks that the `<time>` element `selector` names shows its instant as
/// the venue's clock reads it (HH:MM:SS, after the date when there is one),
/// and returns the instant.
fn shows_venue_time(browser: &Browser, selector: &str) -> jiff::Timestamp {
    let shown = browser.run(
        "const e = document.querySelector(arguments[0]); return e ? [e.getAttribute('datetime'), e.textContent] : null;",
        json!([selector]),
    );
    let (datetime, text) = (shown[0].as_str().unwrap_or_else(|| panic!("no time at {selector}: {shown}")), shown[1].as_str().unwrap());
    let instant: jiff::Timestamp = datetime.parse().unwrap();
    let at_venue = instant.to_zoned(jiff::tz::TimeZone::get(VENUE_ZONE).unwrap());
    assert!(text.ends_with(&at_venue.strftime("%H:%M:%S").to_string()), "{selector} shows {text:?} for {datetime}: not the venue's time");
    instant
}

/// Wrong passwords are refused, and the fifth locks the user out even
/// for the right one; another user signs in, checks in an adult and sees a
/// minor refused in plain words, watches a station go into session when
/// the customer logs in at it, acknowledges a smoke alarm, switches to
/// Chinese and signs out. Every time is the venue's (Asia/Shanghai), not
/// the browser's (America/Los_Angeles), and axe-core finds nothing on any
/// view: signed out, the floor, an alarm, the records, in English, Chinese
/// and Korean. The venue's configuration sets English over its policy's
/// Chinese; a foreign permanent resident card says whose it is.
#[test]
fn the_console_in_a_browser_from_sign_in_to_smoke_alarm() {
    let mut venue = Venue::new("console");
    let text = std::fs::read_to_string(&venue.config).unwrap().replace("# language = \"ko\"", "language = \"en\"");
    std::fs::write(&venue.config, text).unwrap();
    let (station, smoke, source) = smoke_station(&venue);
    venue.add_user("zhao", "cashier", "correct horse battery");
    venue.add_user("li", "manager", "correct horse battery");
    venue.start();
    let _collector = collector(&station, &source, "yes\n");

    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{}/", venue.http));
    browser.wait_text("#login-submit", "Sign in", WAIT);
    screenshot(&browser, "console-sign-in");
    browser.assert_accessible("the signed-out page");
    let browser_zone = browser.run("return Intl.DateTimeFormat().resolvedOptions().timeZone;", json!([]));
    assert_eq!(browser_zone, netbar_tests::browser::ZONE, "the browser's own zone is not the venue's");

    // A wrong password is refused; the fifth in a row locks zhao out.
    sign_in(&browser, "zhao", "wrong");
    browser.wait_text("#login-error", "Unknown user or wrong password.", WAIT);
    for _ in 0..4 {
        browser.run("document.getElementById('login-error').textContent = '';", json!([]));
        sign_in(&browser, "zhao", "wrong");
        browser.wait_until("an answer", "return document.getElementById('login-error').textContent !== '';", json!([]), WAIT);
    }
    browser.wait_text("#login-error", "Too many wrong passwords", WAIT);
    browser.run("document.getElementById('login-error').textContent = '';", json!([]));
    sign_in(&browser, "zhao", "correct horse battery");
    browser.wait_text("#login-error", "Too many wrong passwords", WAIT);
    assert!(venue.log().contains("console user locked out"), "{}", venue.log());

    // The manager signs in: the floor shows the station, free.
    sign_in(&browser, "li", "correct horse battery");
    browser.wait_text("#who", "li (manager)", WAIT);
    browser.wait_text("#venue-zone", &format!("Times in {VENUE_ZONE}"), WAIT);
    browser.wait_text("[data-station='st-1']", "Free", WAIT);
    browser.wait_text("#count-sensors", "1/1", WAIT);

    // An adult checks in: a ticket, and the free station offered.
    browser.select("#checkin-type", "cn_id");
    browser.fill("#checkin-number", "11010519491231002X");
    browser.fill("#checkin-name", "张三");
    browser.click("#checkin-submit");
    browser.wait_until("a ticket", "return document.getElementById('checkin-ticket') !== null;", json!([]), WAIT);
    let ticket = browser.text("#checkin-ticket");
    assert_eq!(ticket.trim().len(), 6, "{ticket:?}");
    assert_eq!(browser.text("#checkin-station"), "st-1");
    screenshot(&browser, "console-checked-in");

    // A minor is refused, with the reason to read aloud.
    browser.fill("#checkin-number", "310104201001151236");
    browser.click("#checkin-submit");
    browser.wait_text("#checkin-result", "Refused", WAIT);
    browser.wait_text("[data-reason='under_age']", "minors may not be admitted", WAIT);
    // No guardian admits a minor in China: the desk is not asked.
    browser.wait_until("the desk's questions", "return questions !== null && questions.birth_date === '2010-01-15';", json!([]), WAIT);
    assert_eq!(browser.run("return document.getElementById('guardian-row').hidden;", json!([])), json!(true));

    // A foreign permanent resident ID card of 2023: the holder's
    // nationality and accepting province, read from the number.
    browser.select("#checkin-type", "cn_prc");
    browser.fill("#checkin-number", "932682198501010017");
    browser.wait_text("#checkin-card", "(SAU)", WAIT);
    assert!(browser.text("#checkin-card").contains("Jiangsu"), "{}", browser.text("#checkin-card"));
    browser.click("#checkin-submit");
    browser.wait_text("#checkin-result", "Admitted", WAIT);
    // The form is back to the usual document.
    assert_eq!(browser.run("return document.getElementById('checkin-type').value;", json!([])), json!("cn_id"));

    // The customer types the ticket at the station: the tile turns blue.
    let login = Run::new(binary("netbar-collector"))
        .args(["--config", station.join("run.toml").to_str().unwrap(), "login", ticket.trim()])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    browser.wait_text("[data-station='st-1']", "In session", WAIT);
    browser.wait_text("[data-station='st-1']", ticket.trim(), WAIT);
    browser.wait_text("#count-sessions", "1", WAIT);
    screenshot(&browser, "console-floor");
    browser.assert_accessible("the floor");

    // Smoke: the banner cannot be missed, until someone acknowledges it.
    std::fs::write(&smoke, "1\n").unwrap();
    browser.wait_text("#alarm-text", "Smoke or fire", WAIT);
    browser.wait_until(
        "the station's tile to show the alarm",
        "return document.querySelector(\"[data-station='st-1']\").dataset.state === 'alarm';",
        json!([]),
        WAIT,
    );
    screenshot(&browser, "console-alarm");
    shows_venue_time(&browser, "#incidents .incident time");
    browser.assert_accessible("the floor with an alarm");
    browser.click("#alarm-ack");
    browser.wait_until("the banner to go", "return document.getElementById('alarm').hidden;", json!([]), WAIT);
    browser.wait_text("#incidents", "acknowledged by li", WAIT);

    // The records of today, for the manager; the search itself is logged.
    browser.click("#records-form button[type=submit]");
    browser.wait_text("#records-table", "check_in", WAIT);
    shows_venue_time(&browser, "#records-table tbody time");
    browser.assert_accessible("the records");
    // The export the console links to: each entry's time as hashed (UTC)
    // and the same instant at the venue, with its offset.
    let csv = browser.run_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.getElementById('records-csv').href).then((answer) => answer.text()).then(done, (error) => done(String(error)));",
        json!([]),
    );
    let csv = csv.as_str().unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("seq,at,kind,body,prev_hash,hash,at_local"), "{csv}");
    let mut rows = 0;
    for line in lines {
        let at: jiff::Timestamp = line.split(',').nth(1).unwrap().parse().unwrap();
        let at_local = line.rsplit(',').next().unwrap();
        assert_eq!(at_local, at.display_with_offset(jiff::tz::offset(8)).to_string(), "{line}");
        rows += 1;
    }
    assert!(rows >= 2, "{csv}");
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(export.contains("\"kind\":\"personal_data_access\"") && export.contains("\"by\":\"li\""), "{export}");

    // Every phrase in every language.
    let missing = browser.run(
        "return Object.keys(TEXT.en).filter((key) => !(key in TEXT.zh) || !(key in TEXT.ko)).concat(Object.keys(TEXT.zh).concat(Object.keys(TEXT.ko)).filter((key) => !(key in TEXT.en)));",
        json!([]),
    );
    assert_eq!(missing, json!([]), "phrases missing from a language");

    // 中文, then 한국어, then sign out.
    browser.select("#app-view .lang-switch", "zh");
    browser.wait_text("#checkin-submit", "登记", WAIT);
    browser.wait_text("#venue-zone", &format!("时间均为 {VENUE_ZONE} 时区"), WAIT);
    screenshot(&browser, "console-chinese");
    browser.assert_accessible("the floor and the records in Chinese");
    browser.select("#app-view .lang-switch", "ko");
    browser.wait_text("#checkin-submit", "등록", WAIT);
    browser.wait_text("#venue-zone", &format!("시간대: {VENUE_ZONE}"), WAIT);
    assert_eq!(browser.run("return document.documentElement.lang;", json!([])), json!("ko"));
    browser.assert_accessible("the floor and the records in Korean");
    browser.click("#logout");
    browser.wait_text("#login-submit", "로그인", WAIT);
    browser.assert_accessible("the signed-out page in Korean");
    browser.select("#login-view .lang-switch", "zh");
    browser.wait_text("#login-submit", "登录", WAIT);
    browser.assert_accessible("the signed-out page in Chinese");
    let (status, _) = netbar_tests::http(venue.http, "GET", "/api/v1/me", None, None);
    assert_eq!(status, 401);
}

/// A Korean venue's desk, in Korean from its policy: the first seven digits
/// of a resident registration number are all it takes (개인정보 보호법
/// 제24조의2), no name is asked, a guardian is asked of a youth at night
/// only, and the youth's calendar-year age refuses an 18-year-old born in
/// 2008 at 23:00 in 2026. Under the Game Industry Act as it read until 2023
/// (kr-until-2023.toml) the desk is asked whether a presumed student is
/// enrolled, and "no" admits them. axe-core finds nothing in Korean.
#[test]
fn a_korean_desk_in_korean_takes_seven_digits_and_asks_only_what_changes_the_decision() {
    let mut venue = Venue::korean("console-kr");
    venue.add_user("park", "cashier", "correct horse battery");
    venue.start_at(Some("2026-12-15T23:00:00+09:00"));
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{}/", venue.http));
    browser.wait_text("#login-submit", "로그인", WAIT);
    browser.assert_accessible("the signed-out page of a Korean venue");
    sign_in(&browser, "park", "correct horse battery");
    browser.wait_text("#checkin-submit", "등록", WAIT);
    let offered =
        browser.run("return [...document.getElementById('checkin-type').options].filter((o) => !o.hidden).map((o) => o.value);", json!([]));
    assert_eq!(offered, json!(["kr_rrn", "other"]));
    assert_eq!(browser.run("return document.getElementById('name-row').hidden;", json!([])), json!(true), "no name is asked");
    let answered = |birth: &str| {
        browser.wait_until(
            "the desk's questions",
            "return questions !== null && questions.birth_date === arguments[0];",
            json!([birth]),
            WAIT,
        )
    };
    let hidden = |id: &str| browser.run("return document.getElementById(arguments[0]).hidden;", json!([id])) == json!(true);

    // A youth at 23:00, the whole number typed: refused, the guardian
    // asked, and what stays on screen is what left the browser, YYMMDD-G.
    browser.fill("#checkin-number", "080115-3123454");
    answered("2008-01-15");
    assert!(!hidden("guardian-row") && hidden("student-row"));
    browser.assert_accessible("the desk of a Korean venue with a question");
    browser.click("#checkin-submit");
    browser.wait_text("#checkin-result", "입장 불가", WAIT);
    browser.wait_text("[data-reason='youth_hours']", "보호자 없이", WAIT);
    assert_eq!(browser.run("return document.getElementById('checkin-number').value;", json!([])), json!("080115-3"));
    browser.click("#checkin-guardian");
    browser.click("#checkin-submit");
    browser.wait_text("#checkin-result", "입장 허용", WAIT);
    // An adult: nothing asked; a whole number typed leaves the browser cut.
    browser.fill("#checkin-number", "900101-1234568");
    answered("1990-01-01");
    assert!(hidden("guardian-row") && hidden("student-row"));
    browser.click("#checkin-submit");
    netbar_tests::wait_for("the adult's check-in in the log", WAIT, || {
        String::from_utf8(venue.records("export").stdout).unwrap().contains("\"number\":\"900101-1\"")
    });
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(!export.contains("1234568") && !export.contains("3123454"), "{export}");
    // Another document: its birth date, no number asked.
    browser.select("#checkin-type", "other");
    assert!(hidden("number-row"));
    browser.run(
        "const field = document.getElementById('checkin-birth-date'); field.value = '1985-06-30'; field.dispatchEvent(new Event('input'));",
        json!([]),
    );
    answered("1985-06-30");
    browser.click("#checkin-submit");
    netbar_tests::wait_for("the other document's check-in in the log", WAIT, || {
        String::from_utf8(venue.records("export").stdout).unwrap().contains("\"birth_date\":\"1985-06-30\"")
    });

    // The text of 2023: born 2008, on 15 January 2027 at 23:00, presumed
    // still at school.
    venue.agent = None;
    let old = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/policies/kr-until-2023.toml");
    let text = std::fs::read_to_string(&venue.config).unwrap().replace("policy = \"kr\"", &format!("policy = \"{old}\""));
    std::fs::write(&venue.config, text).unwrap();
    venue.start_at(Some("2027-01-15T23:00:00+09:00"));
    browser.open(&format!("http://127.0.0.1:{}/", venue.http));
    browser.wait_text("#login-submit", "로그인", WAIT);
    sign_in(&browser, "park", "correct horse battery");
    browser.wait_text("#checkin-submit", "등록", WAIT);
    browser.fill("#checkin-number", "080615-3");
    answered("2008-06-15");
    assert!(!hidden("student-row"), "asked whether enrolled");
    browser.wait_text("#student-hint", "재학 중으로 봅니다", WAIT);
    browser.assert_accessible("the school question in Korean");
    browser.click("#checkin-submit");
    browser.wait_text("[data-reason='youth_hours']", "보호자 없이", WAIT);
    browser.click("#checkin-student-no");
    browser.click("#checkin-submit");
    browser.wait_text("#checkin-result", "입장 허용", WAIT);
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(export.contains("\"student\":false"), "what the desk said is recorded: {export}");
}

/// The cookie alone does not let another page change anything: without
/// the CSRF token a check-in is refused; with it, it goes through.
#[test]
fn a_cookie_without_the_csrf_token_changes_nothing() {
    let mut venue = Venue::new("csrf");
    venue.add_user("li", "cashier", "correct horse battery");
    venue.start();
    let (status, body) =
        netbar_tests::http(venue.http, "POST", "/api/v1/login", None, Some(&json!({"name": "li", "password": "correct horse battery"})));
    assert_eq!(status, 200, "{body}");
    let (token, csrf) = (body["token"].as_str().unwrap(), body["csrf"].as_str().unwrap());
    let check_in = |headers: &str| {
        use std::io::{Read, Write};
        let body = json!({"document_type": "other", "number": "C0000001", "birth_date": "1990-01-01"}).to_string();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", venue.http)).unwrap();
        write!(
            stream,
            "POST /api/v1/checkins HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nCookie: netbar_session={token}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let forged = check_in("");
    assert!(forged.starts_with("HTTP/1.1 403") && forged.contains("\"code\":\"csrf\""), "{forged}");
    let wrong = check_in("X-CSRF-Token: 0000\r\n");
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    // Regression: any Authorization header skipped the check, even one that
    // is no bearer token of a session.
    let other_scheme = check_in("Authorization: Basic bGk6Z3Vlc3M=\r\n");
    assert!(other_scheme.starts_with("HTTP/1.1 403") && other_scheme.contains("\"code\":\"csrf\""), "{other_scheme}");
    let genuine = check_in(&format!("X-CSRF-Token: {csrf}\r\n"));
    assert!(genuine.starts_with("HTTP/1.1 201"), "{genuine}");
    let page = netbar_tests::http_text(venue.http, "GET", "/", None, None);
    assert_eq!(page.0, 200);
    assert!(page.1.contains("/console/console.js") && !page.1.contains("http://") && !page.1.contains("https://"), "no CDN");
}

/// `netbar-agent demo` starts beside a broker holding the standard MQTT
/// port, prints where its console is, plays customers in and out, and
/// stops cleanly on Ctrl-C, leaving nothing behind.
#[test]
fn the_demo_runs_beside_a_broker_on_1883_and_stops_on_ctrl_c() {
    demo_stops_everything_on("-INT");
}

/// `kill PID` (SIGTERM) of a running demo stops it like Ctrl-C: its agent
/// and station simulator stop with it and its folder goes.
#[test]
fn the_demo_stops_everything_it_started_on_sigterm() {
    demo_stops_everything_on("-TERM");
}

/// Runs the demo, waits for a customer in session, sends it `signal`, and
/// checks that nothing it started is left: no process naming its folder,
/// and no folder.
fn demo_stops_everything_on(signal: &str) {
    // Whoever holds 1883 (this machine's mosquitto, or this listener).
    let _held = std::net::TcpListener::bind("127.0.0.1:1883");
    assert!(std::net::TcpListener::bind("127.0.0.1:1883").is_err(), "1883 is taken");
    let dir = netbar_tests::TempDir::new("demo");
    let mut demo =
        netbar_tests::Process::start(&binary("netbar-agent"), &["demo", "--stations", "12", "--pace", "0.05"], dir.path().join("demo.out"));
    netbar_tests::wait_for("the demo's banner", WAIT, || demo.stderr().contains("Ctrl-C stops"));
    let banner = demo.stderr();
    let port: u16 = banner
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no console address in {banner}"));
    let data = banner.lines().find_map(|line| line.trim().strip_prefix("data:")).unwrap().trim().to_owned();
    assert!(banner.contains("manager / netbar-demo"), "{banner}");
    let (status, body) =
        netbar_tests::http(port, "POST", "/api/v1/login", None, Some(&json!({"name": "manager", "password": "netbar-demo"})));
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    netbar_tests::wait_for("a simulated customer in session", Duration::from_secs(60), || {
        let (_, floor) = netbar_tests::http(port, "GET", "/api/v1/floor", Some(&token), None);
        floor["stations"].as_array().is_some_and(|stations| stations.len() == 12)
            && floor["sessions"].as_u64().is_some_and(|sessions| sessions >= 1)
    });
    assert!(std::path::Path::new(&data).exists());
    let started_by_demo = || -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .filter(|cmdline| cmdline.contains(&data))
            .collect()
    };
    let running = started_by_demo();
    assert!(running.iter().any(|cmdline| cmdline.contains(" run --config")), "the demo's agent runs: {running:?}");
    assert!(running.iter().any(|cmdline| cmdline.contains(" simulate ")), "the demo's simulator runs: {running:?}");
    let _ = Run::new("kill").args([signal, &demo.id().to_string()]).status();
    netbar_tests::wait_for("the demo to stop", WAIT, || !demo.running());
    assert!(demo.stderr().contains("stopping"), "{}", demo.stderr());
    assert!(!std::path::Path::new(&data).exists(), "the demo's directory is removed");
    netbar_tests::wait_for("every process the demo started to stop", WAIT, || started_by_demo().is_empty());
}

/// Regression: guesses sent at once were all checked before the first
/// wrong one counted, so sixty of them went round the five-try lock-out.
/// Now five are checked (the fifth answered with the lock-out), the rest
/// refused at once, and the right password after them is refused too.
#[test]
fn guesses_sent_at_once_get_five_checks_and_no_more() {
    let mut venue = Venue::new("guesses");
    venue.add_user("li", "cashier", "correct horse battery");
    venue.start();
    let http = venue.http;
    let guesses: Vec<_> = (0..40)
        .map(|n| {
            std::thread::spawn(move || {
                netbar_tests::http(http, "POST", "/api/v1/login", None, Some(&json!({"name": "li", "password": format!("guess {n}")}))).0
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|guess| guess.join().unwrap()).collect();
    // Five checked: four wrong, the fifth wrong one answered with the lock-out.
    assert_eq!(statuses.iter().filter(|status| **status == 401).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 36, "{statuses:?}");
    assert_eq!(venue.log().matches("locked out after 5 wrong passwords").count(), 1, "{}", venue.log());
    let right = json!({"name": "li", "password": "correct horse battery"});
    assert_eq!(netbar_tests::http(http, "POST", "/api/v1/login", None, Some(&right)).0, 429, "locked out");
    // A name longer than any user's is refused before anything is kept of
    // it; a request body of megabytes is not even read.
    let long = json!({"name": "x".repeat(1_000), "password": "x"});
    let (status, body) = netbar_tests::http(http, "POST", "/api/v1/login", None, Some(&long));
    assert_eq!((status, body["code"].as_str()), (422, Some("too_long")), "{body}");
    let huge = json!({"name": "x".repeat(2_000_000), "password": "x"});
    assert_eq!(netbar_tests::http(http, "POST", "/api/v1/login", None, Some(&huge)).0, 413);
}
