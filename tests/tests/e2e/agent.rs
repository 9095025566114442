//! `netbar-agent` commands run as an installer would.

use std::process::Command as Run;

use netbar_tests::{TempDir, binary};

fn agent_config(dir: &TempDir) -> std::path::PathBuf {
    let printed = Run::new(binary("netbar-agent")).arg("print-config").output().unwrap();
    let text = String::from_utf8(printed.stdout)
        .unwrap()
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.path().join("data").display()));
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn enrolling_a_station_writes_a_collector_config_that_checks() {
    let dir = TempDir::new("enroll");
    let config = agent_config(&dir);
    let out = dir.path().join("out");
    let enroll = |extra: &[&str]| {
        let mut args = vec!["enroll", "--config", config.to_str().unwrap(), "station", "st-017", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        Run::new(binary("netbar-agent")).args(&args).output().unwrap()
    };
    let first = enroll(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let station = out.join("st-017");
    let key = std::fs::read_to_string(station.join("station.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(station.join("station.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let check = Run::new(binary("netbar-collector"))
        .args(["--config", station.join("collector.toml").to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("station st-017 of venue venue-1"));

    let again = enroll(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("enrolled already (or revoked); --rekey"));
    assert_eq!(std::fs::read_to_string(station.join("station.key")).unwrap(), key, "the old key is untouched");
    assert!(enroll(&["--rekey"]).status.success());
    assert_ne!(std::fs::read_to_string(station.join("station.key")).unwrap(), key, "a new key");

    let sensor = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", config.to_str().unwrap(), "sensor", "smoke-1", "--station", "st-404", "--kind", "smoke"])
        .output()
        .unwrap();
    assert_eq!(sensor.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sensor.stderr).contains("station st-404 is not enrolled"));
}

#[test]
fn a_bad_agent_config_is_refused_with_file_key_and_reason() {
    let dir = TempDir::new("agent-config");
    let config = agent_config(&dir);
    let text = std::fs::read_to_string(&config).unwrap().replace("[http]", "[http]\nport = 80");
    std::fs::write(&config, text).unwrap();
    let output = Run::new(binary("netbar-agent")).args(["check-config", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: key `http.port`: unknown field `port`", config.display())), "{stderr}");
}

/// An agent with its embedded broker on a free port, and one station enrolled.
pub(super) struct Venue {
    pub(super) dir: TempDir,
    pub(super) config: std::path::PathBuf,
    pub(super) port: u16,
    pub(super) http: u16,
    pub(super) agent: Option<netbar_tests::Process>,
}

impl Venue {
    pub(super) fn new(name: &str) -> Venue {
        let dir = TempDir::new(name);
        let config = agent_config(&dir);
        let port = netbar_tests::free_port();
        let http = netbar_tests::free_port();
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http}\""))
            .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{port}\""))
            .replace("advertise = \"192.168.1.10:1883\"", &format!("advertise = \"127.0.0.1:{port}\""));
        std::fs::write(&config, text).unwrap();
        Venue { dir, config, port, http, agent: None }
    }

    /// A Korean venue (zone Asia/Seoul, policy kr) with its embedded broker.
    pub(super) fn korean(name: &str) -> Venue {
        let venue = Venue::new(name);
        let text = std::fs::read_to_string(&venue.config)
            .unwrap()
            .replace("zone = \"Asia/Shanghai\"", "zone = \"Asia/Seoul\"")
            .replace("policy = \"cn\"", "policy = \"kr\"");
        std::fs::write(&venue.config, text).unwrap();
        venue
    }

    /// A venue whose agent uses an external broker (the test's mosquitto).
    pub(super) fn external(name: &str, broker: &netbar_tests::Mosquitto) -> Venue {
        let mut venue = Venue::new(name);
        let text = std::fs::read_to_string(&venue.config)
            .unwrap()
            .replace("mode = \"embedded\"", "mode = \"external\"")
            .replace("# host = \"127.0.0.1\"", "host = \"127.0.0.1\"")
            .replace("# port = 1883", &format!("port = {}", broker.port))
            .replace(&format!("advertise = \"127.0.0.1:{}\"", venue.port), &format!("advertise = \"127.0.0.1:{}\"", broker.port));
        std::fs::write(&venue.config, text).unwrap();
        venue.port = broker.port;
        venue
    }

    pub(super) fn enroll(&self, station: &str) -> std::path::PathBuf {
        let out = self.dir.path().join("stations");
        let output = Run::new(binary("netbar-agent"))
            .args(["enroll", "--config", self.config.to_str().unwrap(), "station", station, "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        out.join(station)
    }

    pub(super) fn start(&mut self) {
        self.start_at(None);
    }

    /// Starts the agent, its clock at `clock` (RFC 3339) when given.
    pub(super) fn start_at(&mut self, clock: Option<&str>) {
        let env: Vec<(&str, &str)> = clock.map(|clock| ("NETBAR_AGENT_CLOCK", clock)).into_iter().collect();
        let agent = netbar_tests::Process::start_with(
            &binary("netbar-agent"),
            &["run", "--config", self.config.to_str().unwrap()],
            self.dir.path().join("agent.stderr"),
            netbar_tests::Stdin::Null,
            &env,
        );
        let (port, http) = (self.port, self.http);
        // The API comes up after the store and the broker; the agent says
        // when the broker has acknowledged its subscriptions.
        netbar_tests::wait_for("the agent's broker, API and subscriptions", std::time::Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
                && agent.stderr().contains("listening to the stations")
        });
        self.agent = Some(agent);
    }

    /// Adds (or updates) a console user with `netbar-agent user add`.
    pub(super) fn add_user(&self, name: &str, role: &str, password: &str) {
        use std::io::Write;
        let mut child = Run::new(binary("netbar-agent"))
            .args(["user", "--config", self.config.to_str().unwrap(), "add", name, "--role", role])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Adds a console user and signs in; returns the token.
    pub(super) fn sign_in(&self, name: &str, role: &str) -> String {
        self.add_user(name, role, "correct horse battery");
        let (status, body) = netbar_tests::http(
            self.http,
            "POST",
            "/api/v1/login",
            None,
            Some(&serde_json::json!({"name": name, "password": "correct horse battery"})),
        );
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub(super) fn log(&self) -> String {
        self.agent.as_ref().map(|agent| agent.stderr()).unwrap_or_default()
    }

    pub(super) fn records(&self, command: &str) -> std::process::Output {
        let db = self.dir.path().join("data").join("netbar.sqlite");
        let mut args = vec!["records", command, "--db", db.to_str().unwrap()];
        if command == "export" {
            args.extend(["--from", "2000-01-01", "--to", "2100-01-01"]);
        }
        Run::new(binary("netbar-agent")).args(&args).output().unwrap()
    }
}

/// Starts a collector from its enrollment directory, with `extra` appended
/// and its lock state read from a file that starts as `state`.
/// The name of the one program that counts as a game at this station: a
/// copy of `sleep` named after the station's directory, so that another
/// test's games (tests run in parallel) are not activity here.
fn game_name(station_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    station_dir.hash(&mut hasher);
    format!("game-{:08x}", hasher.finish() as u32)
}

/// Someone plays at the station: its game runs for a minute (or until killed).
pub(super) fn play(station_dir: &std::path::Path) -> std::process::Child {
    let game = station_dir.join(game_name(station_dir));
    if !game.exists() {
        let sleep = ["/usr/bin/sleep", "/bin/sleep"].into_iter().find(|path| std::path::Path::new(path).exists()).unwrap();
        std::fs::copy(sleep, &game).unwrap();
    }
    Run::new(game).arg("60").spawn().unwrap()
}

pub(super) fn collector(station_dir: &std::path::Path, extra: &str, state: &str) -> netbar_tests::Process {
    collector_with(station_dir, extra, state, &[])
}

/// [`collector`], with `env` added to its environment.
pub(super) fn collector_with(station_dir: &std::path::Path, extra: &str, state: &str, env: &[(&str, &str)]) -> netbar_tests::Process {
    let state_file = station_dir.join("locked");
    std::fs::write(&state_file, state).unwrap();
    let mut text = std::fs::read_to_string(station_dir.join("collector.toml")).unwrap();
    text.push_str(&format!(
        "keep_alive = 5\nmax_backoff = 1\n[telemetry]\ninterval = 0.2\napps = [\"{game}\"]\n[spool]\ndir = \"{spool}\"\n[local]\nlisten = \"127.0.0.1:{local}\"\n[actions]\nlock = [\"sh\", \"-c\", \"echo yes > {state}\"]\nunlock = [\"sh\", \"-c\", \"echo no > {state}\"]\nnotify = [\"sh\", \"-c\", \"echo \\\"$0: $1\\\" >> {notices}\", \"{{level}}\", \"{{text}}\"]\nlock_state = [\"cat\", \"{state}\"]\n{extra}",
        spool = station_dir.join("spool").display(),
        game = game_name(station_dir),
        local = netbar_tests::free_port(),
        state = state_file.display(),
        notices = station_dir.join("notices").display(),
    ));
    let config = station_dir.join("run.toml");
    std::fs::write(&config, text).unwrap();
    netbar_tests::Process::start_with(
        &binary("netbar-collector"),
        &["--config", config.to_str().unwrap(), "run"],
        station_dir.join("stderr"),
        netbar_tests::Stdin::Null,
        env,
    )
}

/// Unregistered use at a real collector: the agent locks the station and
/// records an incident.
fn unregistered_use_is_locked(mut venue: Venue) {
    let station = venue.enroll("st-1");
    venue.start();
    // Someone plays at an unlocked station nobody registered.
    let mut game = play(&station);
    let _collector = collector(&station, "", "no\n");
    let state = station.join("locked");
    netbar_tests::wait_for("the agent to lock the station", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&state).unwrap_or_default().trim() == "yes"
    });
    let _ = game.kill();
    let _ = game.wait();
    assert!(venue.log().contains("UnregisteredUse"), "{}", venue.log());

    let verify = venue.records("verify");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(export.contains("\"kind\":\"incident\"") && export.contains("unregistered_use"), "{export}");
}

#[test]
fn unregistered_use_is_locked_through_the_embedded_broker_and_recorded() {
    unregistered_use_is_locked(Venue::new("unregistered"));
}

#[test]
fn unregistered_use_is_locked_through_mosquitto_and_recorded() {
    let broker = netbar_tests::Mosquitto::start();
    unregistered_use_is_locked(Venue::external("unregistered-mosquitto", &broker));
}

#[test]
fn forged_unenrolled_and_malformed_messages_are_refused_and_survived() {
    forged_messages_are_refused(Venue::new("forged"), true);
}

#[test]
fn forged_unenrolled_and_malformed_messages_are_refused_and_survived_over_mosquitto() {
    let broker = netbar_tests::Mosquitto::start();
    // The test's mosquitto lets anyone in: the agent's checks alone stop them.
    forged_messages_are_refused(Venue::external("forged-mosquitto", &broker), false);
}

/// Forged, unenrolled and malformed messages: refused, counted in /metrics,
/// logged with their reason; the agent survives and records nothing. With
/// `broker_logins`, the broker itself refuses strangers and stolen names.
fn forged_messages_are_refused(mut venue: Venue, broker_logins: bool) {
    venue.enroll("st-1");
    let liar = venue.enroll("st-2");
    venue.start();
    let key = netbar_protocol::StationKey::from_hex(&std::fs::read_to_string(liar.join("station.key")).unwrap()).unwrap();

    // A stranger, or st-2 claiming st-1's name, is refused by the broker itself.
    let connects = |user: &str, password: &str| {
        let mut options = rumqttc::MqttOptions::new(format!("test-{user}"), "127.0.0.1", venue.port);
        options.set_credentials(user, password);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut connection) = rumqttc::Client::new(options, 8);
        let accepted = connection.iter().find_map(|event| match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => Some(ack.code == rumqttc::ConnectReturnCode::Success),
            Err(_) => Some(false),
            _ => None,
        });
        (client, connection, accepted == Some(true))
    };
    if broker_logins {
        assert!(!connects("st-9", "guess").2);
        assert!(!connects("st-1", &key.broker_password()).2);
    }

    // st-2, logged in as itself, publishes on st-1's topics.
    let (client, mut connection, accepted) = connects("st-2", &key.broker_password());
    assert!(accepted);
    // Until the connection ends: rumqttc's iterator would retry at once, forever.
    std::thread::spawn(move || for _ in connection.iter().take_while(Result::is_ok) {});
    let venue_id: netbar_protocol::VenueId = "venue-1".parse().unwrap();
    let forge = |topic: &str, sender: &str, message: netbar_protocol::Message| {
        let mut envelope = netbar_protocol::Envelope::new(
            netbar_protocol::MessageId::from_parts(jiff::Timestamp::now(), [3; 10]),
            jiff::Timestamp::now(),
            venue_id.clone(),
            netbar_protocol::Sender::station(&sender.parse().unwrap()),
            1,
            message,
        );
        key.sign(topic, &mut envelope);
        netbar_protocol::encode(&envelope)
    };
    let activity = || {
        netbar_protocol::messages::Activity { evidence: vec![netbar_protocol::messages::Evidence::Input], since: jiff::Timestamp::now() }
            .into()
    };
    let st1_event = "netbar/v1/venue-1/station/st-1/event";
    let publish = |topic: &str, payload: Vec<u8>| client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).unwrap();
    publish(st1_event, forge(st1_event, "st-1", activity()).into_bytes());
    publish(st1_event, forge(st1_event, "st-2", activity()).into_bytes());
    publish("netbar/v1/venue-1/sensor/smoke-x/reading", forge("x", "st-2", activity()).into_bytes());
    publish("netbar/v1/venue-1/station/st-2/event", b"{not json".to_vec());
    publish(st1_event, vec![b'['; 100_000]);
    // Every refusal is counted; the log has a line per sender and reason
    // (the second forgery on st-1's topic is only counted). The embedded
    // bus refuses st-2's publications on topics not its own before the
    // agent sees them; the test's open mosquitto leaves that to the agent.
    let token = venue.sign_in("li", "cashier");
    let (expected, reasons, lines): (&[&str], &[&str], usize) = if broker_logins {
        (
            &["netbar_messages_refused_total{reason=\"not_its_topic\"} 4", "netbar_messages_refused_total{reason=\"decode\"} 1"],
            &["not_its_topic", "decode", "not well-formed JSON", "bad_login"],
            // The two bad logins from one address, st-2's topics, st-2's junk.
            3,
        )
    } else {
        (
            &[
                "netbar_messages_refused_total{reason=\"forged\"} 2",
                "netbar_messages_refused_total{reason=\"unenrolled_sensor\"} 1",
                "netbar_messages_refused_total{reason=\"decode\"} 2",
            ],
            &["forged", "unenrolled_sensor", "decode", "not well-formed JSON", "at most 65536 allowed"],
            4,
        )
    };
    netbar_tests::wait_for("the refusals counted in /metrics", std::time::Duration::from_secs(20), || {
        let metrics = netbar_tests::http_text(venue.http, "GET", "/metrics", Some(&token), None).1;
        expected.iter().all(|line| metrics.contains(line))
    });
    let log = venue.log();
    for reason in reasons {
        assert!(log.contains(reason), "{reason} missing in {log}");
    }
    assert_eq!(log.matches(" refused (more like it").count(), lines, "one line per sender and reason: {log}");
    assert!(venue.agent.as_mut().unwrap().running(), "the agent survived");
    // Nothing was locked or recorded on st-1's behalf.
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    assert!(!export.contains("incident"), "{export}");
}

#[test]
fn check_in_login_session_logout_and_a_refused_minor() {
    check_in_flow(&mut Venue::new("flow"));
}

#[test]
fn check_in_login_session_logout_and_a_refused_minor_over_mosquitto() {
    let broker = netbar_tests::Mosquitto::start();
    let mut venue = Venue::external("flow-mosquitto", &broker);
    check_in_flow(&mut venue);
    // The agent's status is retained on the bus; its last will says offline.
    let topic = "netbar/v1/venue-1/agent/status";
    let bus = netbar_tests::Client::connect(broker.port, &[topic]);
    let online = |envelope: netbar_protocol::Envelope| match envelope.message {
        netbar_protocol::Message::AgentStatus(status) => status.online,
        other => panic!("{other:?}"),
    };
    let deadline = std::time::Duration::from_secs(10);
    assert!(online(bus.expect_message(topic, netbar_protocol::Kind::AgentStatus, deadline)));
    venue.agent.as_mut().unwrap().kill();
    assert!(!online(bus.expect_message(topic, netbar_protocol::Kind::AgentStatus, deadline)));
}

/// The desk and a station, end to end: a refused minor, an invalid number,
/// an admitted adult who logs in, logs out and is checked out.
fn check_in_flow(venue: &mut Venue) {
    let station = venue.enroll("st-1");
    venue.start();
    let (status, body) = netbar_tests::http(venue.http, "GET", "/api/v1/stations", None, None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "nothing but /healthz without a session");
    assert_eq!(netbar_tests::http(venue.http, "GET", "/healthz", None, None).0, 200);
    let (status, _) =
        netbar_tests::http(venue.http, "POST", "/api/v1/login", None, Some(&serde_json::json!({"name": "nobody", "password": "x"})));
    assert_eq!(status, 401);
    let token = venue.sign_in("li", "cashier");

    // A minor is refused with the reason the cashier reads aloud.
    let minor = serde_json::json!({"document_type": "cn_id", "number": "310104201001151236"});
    let (status, body) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&minor));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["outcome"], "refused");
    assert_eq!(body["result"]["reasons"][0], "under_age");
    assert!(body["message"].as_str().unwrap().contains("minors may not be admitted"), "{body}");
    let bad = serde_json::json!({"document_type": "cn_id", "number": "310104201001151237"});
    let (status, body) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&bad));
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_document")), "{body}");

    // An adult checks in and gets a ticket.
    let adult = serde_json::json!({"document_type": "cn_id", "number": "11010519491231002x"});
    let (status, body) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&adult));
    assert_eq!(status, 201, "{body}");
    let ticket = body["result"]["ticket"].as_str().unwrap().to_owned();

    // The customer logs in at a station with it: unlocked, a session.
    let _collector = collector(&station, "", "yes\n");
    let config = station.join("run.toml");
    let login = || {
        let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &ticket]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    netbar_tests::wait_for("the station online at the agent", std::time::Duration::from_secs(20), || {
        netbar_tests::http(venue.http, "GET", "/api/v1/stations", Some(&token), None).1["stations"][0]["online"] == true
    });
    let answer = login();
    assert_eq!(answer["status"], "unlocked", "{answer}");
    netbar_tests::wait_for("the station unlocked", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "no"
    });
    let (_, stations) = netbar_tests::http(venue.http, "GET", "/api/v1/stations", Some(&token), None);
    assert_eq!(stations["stations"][0]["session"]["ticket"], ticket, "{stations}");
    let (_, sessions) = netbar_tests::http(venue.http, "GET", "/api/v1/sessions", Some(&token), None);
    assert_eq!(sessions["sessions"][0]["station"], "st-1", "{sessions}");

    // Only a manager commands stations.
    let notice = serde_json::json!({"action": "notify", "text": "Closing in 30 minutes"});
    let (status, body) = netbar_tests::http(venue.http, "POST", "/api/v1/stations/st-1/commands", Some(&token), Some(&notice));
    assert_eq!((status, body["code"].as_str()), (403, Some("manager_only")));
    let manager = venue.sign_in("wang", "manager");
    assert_eq!(netbar_tests::http(venue.http, "POST", "/api/v1/stations/st-1/commands", Some(&manager), Some(&notice)).0, 202);
    let (status, _) = netbar_tests::http(venue.http, "POST", "/api/v1/stations/st-404/commands", Some(&manager), Some(&notice));
    assert_eq!(status, 404);
    netbar_tests::wait_for("the manager's notice at the station", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(station.join("notices")).unwrap_or_default().contains("info: Closing in 30 minutes")
    });

    // Logout at the station ends the session; check-out at the desk ends the ticket.
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "logout"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("logging_out"));
    netbar_tests::wait_for("the session's end in the log", std::time::Duration::from_secs(20), || {
        String::from_utf8(venue.records("export").stdout).unwrap().contains("session_end")
    });
    let (status, _) = netbar_tests::http(venue.http, "DELETE", &format!("/api/v1/checkins/{}", ticket.to_lowercase()), Some(&token), None);
    assert_eq!(status, 200);
    let (status, body) = netbar_tests::http(venue.http, "DELETE", &format!("/api/v1/checkins/{ticket}"), Some(&token), None);
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_ticket")));

    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    for kind in ["\"check_in\"", "\"session_start\"", "\"session_end\"", "\"check_out\"", "under_age"] {
        assert!(export.contains(kind), "{kind} missing in {export}");
    }
    assert!(venue.records("verify").status.success());
}

#[test]
fn smoke_evacuates_and_opens_a_critical_incident_staff_can_handle() {
    smoke_evacuates(Venue::new("smoke"));
}

#[test]
fn smoke_evacuates_and_opens_a_critical_incident_over_mosquitto() {
    let broker = netbar_tests::Mosquitto::start();
    smoke_evacuates(Venue::external("smoke-mosquitto", &broker));
}

/// Enrolls station st-1 with smoke detector smoke-1, read from a file that
/// holds "0" (clear; write "1" to set it off): the station's directory, that
/// file, and the `[[sensors]]` section for its collector.
pub(super) fn smoke_station(venue: &Venue) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let station = venue.enroll("st-1");
    let sensor = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", venue.config.to_str().unwrap(), "sensor", "smoke-1", "--station", "st-1", "--kind", "smoke"])
        .output()
        .unwrap();
    assert!(sensor.status.success(), "{}", String::from_utf8_lossy(&sensor.stderr));
    let smoke = station.join("smoke");
    std::fs::write(&smoke, "0\n").unwrap();
    let source = format!(
        "[[sensors]]\nid = \"smoke-1\"\nkind = \"smoke\"\nsource = {{ type = \"file\", path = \"{}\", interval = 0.1 }}\n",
        smoke.display()
    );
    (station, smoke, source)
}

/// A smoke detector at a real collector: evacuation notices, a critical
/// incident the cashier acknowledges and the manager resolves.
fn smoke_evacuates(mut venue: Venue) {
    let (station, smoke, source) = smoke_station(&venue);
    venue.start();
    let _collector = collector(&station, &source, "yes\n");
    let cashier = venue.sign_in("li", "cashier");
    let manager = venue.sign_in("wang", "manager");
    netbar_tests::wait_for("the station online", std::time::Duration::from_secs(20), || {
        netbar_tests::http(venue.http, "GET", "/api/v1/stations", Some(&cashier), None).1["stations"][0]["online"] == true
    });

    std::fs::write(&smoke, "1\n").unwrap();
    netbar_tests::wait_for("the evacuation notice at the station", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(station.join("notices")).unwrap_or_default().starts_with("evacuation: EMERGENCY")
    });
    let (_, body) = netbar_tests::http(venue.http, "GET", "/api/v1/incidents", Some(&cashier), None);
    let incident = &body["incidents"][0];
    assert_eq!((incident["kind"].as_str(), incident["severity"].as_str()), (Some("fire"), Some("critical")), "{body}");
    let id = incident["id"].as_str().unwrap().to_owned();

    let (status, _) = netbar_tests::http(venue.http, "POST", &format!("/api/v1/incidents/{id}/acknowledge"), Some(&cashier), None);
    assert_eq!(status, 200);
    let note = serde_json::json!({"note": "burnt toast in the kitchen; aired"});
    let (status, body) = netbar_tests::http(venue.http, "POST", &format!("/api/v1/incidents/{id}/resolve"), Some(&cashier), Some(&note));
    assert_eq!((status, body["code"].as_str()), (403, Some("manager_only")));
    let (status, _) = netbar_tests::http(venue.http, "POST", &format!("/api/v1/incidents/{id}/resolve"), Some(&manager), Some(&note));
    assert_eq!(status, 200);
    let (status, body) = netbar_tests::http(venue.http, "POST", &format!("/api/v1/incidents/{id}/acknowledge"), Some(&cashier), None);
    assert_eq!((status, body["code"].as_str()), (409, Some("incident_resolved")));

    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    for transition in ["\"opened\"", "\"acknowledged\"", "\"resolved\"", "burnt toast"] {
        assert!(export.contains(transition), "{transition} missing in {export}");
    }
}

#[test]
fn sigterm_stops_the_agent_cleanly_and_verify_catches_an_edited_entry() {
    let mut venue = Venue::new("sigterm");
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let adult = serde_json::json!({"document_type": "cn_id", "number": "11010519491231002X"});
    assert_eq!(netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&adult)).0, 201);
    let visitor = serde_json::json!({"document_type": "other", "number": "P1234567", "birth_date": "1990-01-01"});
    assert_eq!(netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&visitor)).0, 201);
    let pid = venue.agent.as_ref().unwrap().id().to_string();
    assert!(Run::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let agent = venue.agent.as_mut().unwrap();
    netbar_tests::wait_for("the agent to exit", std::time::Duration::from_secs(20), || !agent.running());
    assert!(venue.log().contains("stopped"), "{}", venue.log());
    let verify = venue.records("verify");
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact: 2 entries"), "{}", String::from_utf8_lossy(&verify.stdout));

    // Someone with the file drops the guard and rewrites the first entry.
    let db = rusqlite::Connection::open(venue.dir.path().join("data").join("netbar.sqlite")).unwrap();
    db.execute_batch(
        "DROP TRIGGER log_append_only; UPDATE log SET body = replace(body, '11010519491231002X', '110105200912310011') WHERE seq = 1",
    )
    .unwrap();
    assert_eq!(db.changes(), 1);
    drop(db);
    let verify = venue.records("verify");
    let report = String::from_utf8_lossy(&verify.stdout).into_owned() + &String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success() && report.contains("entry 1: its content does not match its hash"), "{report}");
}

#[test]
fn kill_9_during_a_burst_of_check_ins_loses_no_acknowledged_one() {
    let mut venue = Venue::new("kill9");
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let http = venue.http;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let burst = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || {
            for n in 0.. {
                let body = serde_json::json!({"document_type": "other", "number": format!("P{n:07}"), "birth_date": "1990-01-01"});
                // Once the agent is gone the connection fails: the burst ends.
                let Ok((status, answer)) =
                    std::panic::catch_unwind(|| netbar_tests::http(http, "POST", "/api/v1/checkins", Some(&token), Some(&body)))
                else {
                    return;
                };
                if status == 201 {
                    acknowledged.lock().unwrap().push(answer["result"]["ticket"].as_str().unwrap().to_owned());
                } else if status == 0 {
                    return;
                }
            }
        })
    };
    netbar_tests::wait_for("40 acknowledged check-ins", std::time::Duration::from_secs(30), || acknowledged.lock().unwrap().len() >= 40);
    venue.agent.as_mut().unwrap().kill();
    let _ = burst.join();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let export = String::from_utf8(venue.records("export").stdout).unwrap();
    for ticket in &acknowledged {
        assert!(export.contains(&format!("\"ticket\":\"{ticket}\"")), "acknowledged ticket {ticket} lost");
    }
    let verify = venue.records("verify");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// 게임산업진흥법 시행령 제16조 제2호 가목: a youth's session ends at 22:00,
/// warned before. The youth is 18 in full years (born 2008-01-15) but not
/// yet 19 by calendar year in 2026 (제2조 제10호 → 청소년 보호법 제2조 제1호),
/// typed as the first seven digits the desk may take.
#[test]
fn a_curfew_warns_and_ends_a_youths_session_on_time() {
    let mut venue = Venue::korean("curfew");
    let station = venue.enroll("st-1");
    // The venue's clock starts fifteen seconds before 22:00 in Seoul: time
    // enough to check in and log in, even on a busy machine.
    venue.start_at(Some("2026-11-22T21:59:45+09:00"));
    let token = venue.sign_in("kim", "cashier");
    let youth = serde_json::json!({"document_type": "kr_rrn", "number": "080115-3"});
    let (status, body) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&youth));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["result"]["until"], "2026-11-22T13:00:00Z", "admitted until 22:00 KST");
    let ticket = body["result"]["ticket"].as_str().unwrap().to_owned();

    let _collector = collector(&station, "", "yes\n");
    netbar_tests::wait_for("the station online", std::time::Duration::from_secs(20), || {
        netbar_tests::http(venue.http, "GET", "/api/v1/stations", Some(&token), None).1["stations"][0]["online"] == true
    });
    let config = station.join("run.toml");
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &ticket]).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["status"], "unlocked", "{answer}");
    // Within ten minutes of the end: a warning at once; at 22:00 the lock.
    netbar_tests::wait_for("the curfew lock", std::time::Duration::from_secs(40), || {
        std::fs::read_to_string(station.join("locked")).unwrap_or_default().trim() == "yes"
    });
    let notices = std::fs::read_to_string(station.join("notices")).unwrap_or_default();
    assert!(notices.starts_with("warning: Your session ends in 1 minute"), "{notices}");
    netbar_tests::wait_for("the session's end in the log", std::time::Duration::from_secs(20), || {
        String::from_utf8(venue.records("export").stdout).unwrap().contains("\"reason\":\"policy\"")
    });
    // After 22:00 the ticket no longer opens a station.
    let output = Run::new(binary("netbar-collector")).args(["--config", config.to_str().unwrap(), "login", &ticket]).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((answer["status"].as_str(), answer["reasons"][0].as_str()), (Some("refused"), Some("youth_hours")), "{answer}");
}

/// Regression: the agent checked the MAC over a re-encoding of what it
/// parsed, and genuine readings whose floats JSON did not give back byte
/// for byte (2 of 30 signed carbon-monoxide readings) were refused as
/// forged and never acknowledged. Every genuine reading is stored now,
/// also those written with their floats in exponent form.
#[test]
fn every_genuine_reading_is_accepted_whatever_its_float() {
    let mut venue = Venue::new("floats");
    let station = venue.enroll("st-1");
    let sensor = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", venue.config.to_str().unwrap(), "sensor", "co-1", "--station", "st-1", "--kind", "carbon_monoxide"])
        .output()
        .unwrap();
    assert!(sensor.status.success(), "{}", String::from_utf8_lossy(&sensor.stderr));
    venue.start();
    let key = netbar_protocol::StationKey::from_hex(&std::fs::read_to_string(station.join("station.key")).unwrap()).unwrap();
    let delivery = "netbar/v1/venue-1/station/st-1/delivery";
    let mut options = rumqttc::MqttOptions::new("test-floats", "127.0.0.1", venue.port);
    options.set_credentials("st-1", key.broker_password());
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    client.subscribe(delivery, rumqttc::QoS::AtLeastOnce).unwrap();
    let (receipts, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = receipts.send(None);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    let _ = receipts.send(netbar_protocol::decode(&publish.payload).ok());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    assert!(received.recv_timeout(std::time::Duration::from_secs(20)).unwrap().is_none(), "subscribed");
    let topic = "netbar/v1/venue-1/sensor/co-1/reading";
    let count = 30u64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for seq in 1..=count {
        // Full-precision floats below the alarm level: 17 significant digits.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let value = (x >> 11) as f64 / (1u64 << 53) as f64 * 40.0;
        let reading = netbar_protocol::messages::SensorReading {
            sensor: "co-1".parse().unwrap(),
            sensor_kind: netbar_protocol::messages::SensorKind::CarbonMonoxide,
            reading: netbar_protocol::messages::Reading::Ppm { value },
            battery_percent: None,
            tamper: false,
        };
        let envelope = netbar_protocol::Envelope::new(
            netbar_protocol::MessageId::from_parts(jiff::Timestamp::now(), [seq as u8; 10]),
            jiff::Timestamp::now(),
            "venue-1".parse().unwrap(),
            netbar_protocol::Sender::station(&"st-1".parse().unwrap()),
            seq,
            reading,
        );
        // Written as another station's JSON writer might (every second one
        // with its float in exponent form), signed over exactly those bytes.
        let mut json = netbar_protocol::encode(&envelope);
        if seq % 2 == 0 {
            let plain = json.clone();
            json = json.replace(&format!("\"value\":{value}"), &format!("\"value\":{value:e}"));
            assert_ne!(json, plain, "the float written another way");
        }
        let payload = key.seal(topic, &json).unwrap();
        client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into_bytes()).unwrap();
    }
    let mut stored = std::collections::BTreeSet::new();
    while stored.len() < count as usize {
        let receipt =
            received.recv_timeout(std::time::Duration::from_secs(20)).unwrap_or_else(|_| panic!("{stored:?} of {count}\n{}", venue.log()));
        if let Some(netbar_protocol::Envelope { message: netbar_protocol::Message::DeliveryAck(ack), .. }) = receipt {
            for entry in ack.entries {
                assert_eq!(entry.delivery, netbar_protocol::messages::Delivery::Stored);
                stored.insert(entry.seq);
            }
        }
    }
    assert!(!venue.log().contains("message refused"), "{}", venue.log());
}
