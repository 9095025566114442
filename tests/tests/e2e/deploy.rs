//! Keeping a venue running across upgrades and accidents: schema
//! migrations from a database the previous release wrote, and backups
//! taken while the agent works.

use std::path::Path;
use std::process::Command as Run;

use netbar_tests::{TempDir, binary};

use super::agent::Venue;

/// A database written by netbar at commit 32b41c6 (schema before the
/// regulator outbox, no schema version): three check-ins (one refused) and
/// one check-out. Made by running that commit's agent; see tests/fixtures/README.md.
const PREVIOUS_RELEASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/netbar-32b41c6.sqlite");

fn records(command: &str, db: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["records", command, "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    Run::new(binary("netbar-agent")).args(&args).output().unwrap()
}

fn exported(db: &Path) -> String {
    let output = records("export", db, &["--from", "2000-01-01", "--to", "2100-01-01"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db).unwrap().query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap()
}

/// `records export --tz` reads its days in the zone given and writes each
/// entry's time there, with its offset, beside the UTC time the hash covers.
#[test]
fn an_export_reads_days_and_local_times_in_the_zone_given() {
    let dir = TempDir::new("export-zone");
    let db = dir.path().join("netbar.sqlite");
    std::fs::copy(PREVIOUS_RELEASE, &db).unwrap();
    let day = |date: &str, zone: &str| {
        let output = records("export", &db, &["--from", date, "--to", date, "--format", "csv", "--tz", zone]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    // The fixture's entries are from 13:13 UTC on 26 November: 03:13 on
    // the 27th at UTC+14.
    assert_eq!(day("2026-11-26", "Pacific/Kiritimati"), "seq,at,kind,body,prev_hash,hash,at_local\n");
    let csv = day("2026-11-27", "Pacific/Kiritimati");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let first = csv.lines().nth(1).unwrap();
    assert!(first.starts_with("1,2026-11-26T13:13:26.788189587Z,") && first.ends_with(",2026-11-27T03:13:26.788189587+14:00"), "{first}");
    assert_eq!(day("2026-11-26", "UTC").lines().count(), 5);
}

/// The previous release's database opens in this one: migrated to the
/// current schema, its chain intact, and the agent appends to it.
#[test]
fn a_database_of_the_previous_release_migrates_and_its_chain_holds() {
    let mut venue = Venue::new("upgrade");
    let data = venue.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("netbar.sqlite");
    // Every tool works on copies: the fixture stays as the old release wrote it.
    std::fs::copy(PREVIOUS_RELEASE, &db).unwrap();
    assert_eq!(user_version(&db), 0, "the fixture predates schema versions");
    let reference = venue.dir.path().join("reference.sqlite");
    std::fs::copy(PREVIOUS_RELEASE, &reference).unwrap();
    let old = exported(&reference);
    assert_eq!(user_version(&reference), 0, "reading a log (export) does not migrate it");
    assert!(records("verify", &reference, &[]).status.success());
    assert_eq!(user_version(&reference), 0, "nor does verifying it");
    let old_entries = old.lines().count();
    assert_eq!(old_entries, 4, "{old}");

    venue.start();
    let token = venue.sign_in("li", "cashier");
    let body = serde_json::json!({"document_type": "other", "number": "U0000001", "birth_date": "1990-01-01"});
    let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
    assert_eq!(status, 201, "{answer}");
    // The old release forgot every open matter at each of its restarts, so
    // the upgrade starts as it did: its customer left open in the log
    // (passport P1234567, ticket N35FU5) is not brought back...
    let old_customer = serde_json::json!({"document_type": "other", "number": "P1234567", "birth_date": "1985-06-30"});
    let (status, readmitted) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&old_customer));
    assert_eq!(status, 201, "{readmitted}");
    // ...while what the upgraded agent records is kept across its restarts.
    venue.agent.take().unwrap().terminate();
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let (_, again) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
    assert_eq!(again["result"]["reasons"][0], "already_checked_in", "{again}");
    venue.agent.take().unwrap().terminate();

    assert_eq!(user_version(&db), 5, "migrated to the current schema");
    let verify = records("verify", &db, &[]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let now = exported(&db);
    assert!(now.starts_with(&old), "the old entries are untouched, in order");
    assert_eq!(now.lines().count(), old_entries + 3, "{now}");
    assert!(now.contains(answer["result"]["ticket"].as_str().unwrap()));
}

/// A database from a newer netbar is refused, not touched.
#[test]
fn a_database_of_a_newer_release_is_refused() {
    let dir = TempDir::new("newer");
    let db = dir.path().join("netbar.sqlite");
    std::fs::copy(PREVIOUS_RELEASE, &db).unwrap();
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let before = std::fs::read(&db).unwrap();
    let verify = records("verify", &db, &[]);
    assert_eq!(verify.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(stderr.contains("schema version 99, written by a newer netbar"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not touched");
}

/// A backup taken during a burst of check-ins verifies, holds every
/// check-in acknowledged before it started, and restores.
#[test]
fn a_backup_taken_while_the_agent_works_verifies_and_restores() {
    let mut venue = Venue::new("backup");
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let db = venue.dir.path().join("data").join("netbar.sqlite");
    let check_in = |n: u32| {
        let body = serde_json::json!({"document_type": "other", "number": format!("B{n:07}"), "birth_date": "1990-01-01"});
        let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
        assert_eq!(status, 201, "{answer}");
        answer["result"]["ticket"].as_str().unwrap().to_owned()
    };
    let before: Vec<String> = (0..20).map(check_in).collect();
    let (http, burst_token) = (venue.http, token.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = serde_json::json!({"document_type": "other", "number": format!("B{n:07}"), "birth_date": "1990-01-01"});
                netbar_tests::http(http, "POST", "/api/v1/checkins", Some(&burst_token), Some(&body));
                n += 1;
            }
            n - 1000
        })
    };
    let dir = TempDir::new("backup-copy");
    let copy = dir.path().join("copy.sqlite");
    let backup = records("backup", &db, &["--to", copy.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = burst.join().unwrap();
    assert!(backup.status.success(), "{}{}", String::from_utf8_lossy(&backup.stdout), String::from_utf8_lossy(&backup.stderr));
    assert!(String::from_utf8_lossy(&backup.stdout).contains("registration log intact"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600, "personal data: owner only");
    }
    let copied = exported(&copy);
    for ticket in &before {
        assert!(copied.contains(ticket), "{ticket} missing from the backup");
    }
    assert!(during > 0, "check-ins went on during the backup");
    let again = records("backup", &db, &["--to", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "an existing file is not overwritten");

    // Restored in place of a lost database, after the agent stopped.
    venue.agent.take().unwrap().terminate();
    let restored = dir.path().join("restored.sqlite");
    let restore = Run::new(binary("netbar-agent"))
        .args(["records", "restore", "--from", copy.to_str().unwrap(), "--db", restored.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(exported(&restored), copied);
}

/// An MQTT client of the deploy/ broker, authenticated by its certificate.
pub(super) fn tls_client(
    port: u16,
    ca: &Path,
    identity: &(std::path::PathBuf, std::path::PathBuf),
    name: &str,
) -> (rumqttc::Client, rumqttc::Connection) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = rumqttc::MqttOptions::new(format!("{name}-client"), "127.0.0.1", port);
    let auth = (std::fs::read(&identity.0).unwrap(), std::fs::read(&identity.1).unwrap());
    options.set_transport(rumqttc::Transport::tls(std::fs::read(ca).unwrap(), Some(auth), None));
    options.set_keep_alive(std::time::Duration::from_secs(30));
    rumqttc::Client::new(options, 16)
}

/// Polls a connection on its own thread until it sends DISCONNECT or fails.
fn pump(mut connection: rumqttc::Connection) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for event in connection.iter() {
            if matches!(event, Err(_) | Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect))) {
                break;
            }
        }
    })
}

/// The next event of interest on a connection, within the deadline.
fn next_event<T>(connection: &mut rumqttc::Connection, what: &str, mut pick: impl FnMut(rumqttc::Event) -> Option<T>) -> T {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        match connection.recv_timeout(left) {
            Ok(Ok(event)) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Ok(Err(error)) => panic!("connection failed while waiting for {what}: {error}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// mosquitto started with exactly the deploy/ files `confs` (from `folder`,
/// one after the other as conf.d would have them), only their locations,
/// addresses and port changed: each `{location}/X` becomes the file given
/// for X in `files` (ca.pem, broker.pem, broker.key, crl.pem), or deploy's
/// own X for an ACL file; each address in `addresses` its replacement.
/// Returns the broker and its port.
pub(super) fn deploy_broker(
    dir: &TempDir,
    folder: &str,
    confs: &[&str],
    location: &str,
    files: &[(&str, &Path)],
    addresses: &[(&str, String)],
) -> (netbar_tests::Process, u16) {
    let (config_path, port) = deploy_config(dir, folder, confs, location, files, addresses);
    (deploy_start(&config_path, port), port)
}

/// mosquitto on the configuration `config_path` written by [`deploy_config`]
/// (its log beside it), once it listens on `port`.
pub(super) fn deploy_start(config_path: &Path, port: u16) -> netbar_tests::Process {
    let broker = netbar_tests::Process::start(
        &netbar_tests::mosquitto_binary(),
        &["-c", config_path.to_str().unwrap()],
        std::path::PathBuf::from(format!("{}.log", config_path.display())),
    );
    netbar_tests::wait_for("mosquitto with the deploy config", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    broker
}

/// The configuration [`deploy_broker`] runs, written into `dir`: its path
/// and port.
pub(super) fn deploy_config(
    dir: &TempDir,
    folder: &str,
    confs: &[&str],
    location: &str,
    files: &[(&str, &Path)],
    addresses: &[(&str, String)],
) -> (std::path::PathBuf, u16) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(folder);
    let port = netbar_tests::free_port();
    let mut config: String = confs.iter().map(|conf| std::fs::read_to_string(deploy.join(conf)).unwrap() + "\n").collect();
    config = config.replace("listener 8883", &format!("listener {port} 127.0.0.1"));
    for (address, replacement) in addresses {
        assert!(config.contains(address), "{address} is in {confs:?}");
        config = config.replace(address, replacement);
    }
    for (name, file) in files {
        config = config.replace(&format!("{location}/{name}"), file.to_str().unwrap());
        // Started as root, mosquitto drops to its own user: it must read them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    for acl in std::fs::read_dir(&deploy).unwrap().filter_map(|entry| entry.ok()).map(|entry| entry.path()) {
        if acl.extension().is_some_and(|extension| extension == "acl") {
            let name = acl.file_name().unwrap().to_str().unwrap().to_owned();
            config = config.replace(&format!("{location}/{name}"), acl.to_str().unwrap());
        }
    }
    assert!(!config.lines().any(|line| !line.starts_with('#') && line.contains("/etc/")), "every location replaced:\n{config}");
    let config_path = dir.path().join(confs[0]);
    std::fs::write(&config_path, config).unwrap();
    (config_path, port)
}

/// Runs `netbar-agent` with the venue's config; its stdout, or the failure.
fn agent(venue: &Venue, args: &[&str]) -> Result<String, String> {
    let (command, rest) = args.split_first().unwrap();
    let output =
        Run::new(binary("netbar-agent")).arg(command).args(["--config", venue.config.to_str().unwrap()]).args(rest).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A venue's certificates made as an installer makes them: the venue CA by
/// `netbar-agent pki init`, the broker's by `pki broker`. Returns the
/// broker's folder (ca.pem, broker.pem, broker.key, crl.pem).
pub(super) fn venue_pki(venue: &Venue) -> std::path::PathBuf {
    let said = agent(venue, &["pki", "init"]).unwrap();
    assert!(said.contains("venue CA made"), "{said}");
    let pki = venue.dir.path().join("data").join("pki");
    assert!(agent(venue, &["pki", "init"]).unwrap_err().contains("the venue CA is made already"));
    let broker = venue.dir.path().join("broker");
    agent(venue, &["pki", "broker", "--name", "localhost", "--name", "127.0.0.1", "--out", broker.to_str().unwrap()]).unwrap();
    for key in [pki.join("ca.key"), pki.join("agent.key"), broker.join("broker.key")] {
        assert!(key.is_file(), "{}", key.display());
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    broker
}

/// A station enrolled as an installer does it: on the station,
/// `netbar-collector pki request` makes its key and request; on the cashier
/// PC, `netbar-agent enroll station --csr` signs it; the enrolled files are
/// installed next to the key. Returns the station's folder.
pub(super) fn enroll_with_certificate(venue: &Venue, station: &str) -> std::path::PathBuf {
    let folder = venue.dir.path().join(format!("station-{station}"));
    let request =
        Run::new(binary("netbar-collector")).args(["pki", "request", "--id", station, "--out", folder.to_str().unwrap()]).output().unwrap();
    assert!(request.status.success(), "{}", String::from_utf8_lossy(&request.stderr));
    #[cfg(unix)]
    assert_eq!(mode(&folder.join("tls.key")), 0o600);
    let enrolled = venue.dir.path().join("enrolled");
    let csr = folder.join(format!("{station}.csr"));
    agent(venue, &["enroll", "station", station, "--csr", csr.to_str().unwrap(), "--out", enrolled.to_str().unwrap()]).unwrap();
    // What the cashier PC hands over holds no TLS private key: it never left the station.
    for file in std::fs::read_dir(enrolled.join(station)).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{} carries a private key", path.display());
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    folder
}

/// Waits for the connection's CONNACK.
fn connected(connection: &mut rumqttc::Connection, who: &str) {
    next_event(connection, &format!("{who} connected"), |event| {
        matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))).then_some(())
    })
}

/// Waits for a SUBACK and checks the subscription was granted at QoS 1.
fn granted(connection: &mut rumqttc::Connection, what: &str) {
    let codes = next_event(connection, what, |event| match event {
        rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => Some(ack.return_codes),
        _ => None,
    });
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)], "{what}");
}

/// mosquitto run with exactly deploy/mosquitto/netbar.conf and netbar.acl
/// (only the file locations and the port changed): a station cannot write
/// under another station's topics or read its commands; the agent reads
/// everything and reaches the station; a client without a certificate is
/// not let in.
#[test]
fn the_deploy_mosquitto_config_keeps_each_station_to_its_own_topics() {
    let venue = Venue::new("deploy-mosquitto");
    let broker_files = venue_pki(&venue);
    let stations = [enroll_with_certificate(&venue, "st-1"), enroll_with_certificate(&venue, "st-2")];
    let pki = venue.dir.path().join("data").join("pki");
    let files = ["ca.pem", "broker.pem", "broker.key", "crl.pem"].map(|name| (name, broker_files.join(name)));
    let files: Vec<(&str, &Path)> = files.iter().map(|(name, path)| (*name, path.as_path())).collect();
    let (_broker, port) = deploy_broker(&venue.dir, "mosquitto", &["netbar.conf"], "/etc/mosquitto/netbar", &files, &[]);
    let ca = pki.join("ca.pem");
    let clients = [
        (pki.join("agent.pem"), pki.join("agent.key")),
        (stations[0].join("station.pem"), stations[0].join("tls.key")),
        (stations[1].join("station.pem"), stations[1].join("tls.key")),
    ];
    let (agent, mut agent_events) = tls_client(port, &ca, &clients[0], "netbar-agent");
    connected(&mut agent_events, "the agent");
    agent.subscribe("netbar/v1/#", rumqttc::QoS::AtLeastOnce).unwrap();
    granted(&mut agent_events, "the agent's subscription");
    let (st1, mut st1_events) = tls_client(port, &ca, &clients[1], "st-1");
    connected(&mut st1_events, "st-1");
    st1.subscribe("netbar/v1/venue-1/station/st-1/command", rumqttc::QoS::AtLeastOnce).unwrap();
    granted(&mut st1_events, "st-1's subscription to its commands");
    let (st2, mut st2_events) = tls_client(port, &ca, &clients[2], "st-2");
    connected(&mut st2_events, "st-2");

    // st-2 posing as st-1, then st-2 as itself: mosquitto handles one
    // client's publishes in order, so when the second reaches the agent the
    // first would have, had it been let through.
    st2.publish("netbar/v1/venue-1/station/st-1/event", rumqttc::QoS::AtLeastOnce, false, b"forged".to_vec()).unwrap();
    st2.publish("netbar/v1/venue-1/station/st-2/event", rumqttc::QoS::AtLeastOnce, false, b"genuine".to_vec()).unwrap();
    // st-2's connection must be polled for its publishes to leave.
    let st2_pump = pump(st2_events);
    let first = next_event(&mut agent_events, "st-2's message at the agent", |event| match event {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => Some((publish.topic.clone(), publish.payload.to_vec())),
        _ => None,
    });
    assert_eq!(first, ("netbar/v1/venue-1/station/st-2/event".to_owned(), b"genuine".to_vec()), "the forged message was let through");

    // The agent reaches st-1 with a command.
    agent.publish("netbar/v1/venue-1/station/st-1/command", rumqttc::QoS::AtLeastOnce, false, b"lock".to_vec()).unwrap();
    let agent_pump = pump(agent_events);
    let command = next_event(&mut st1_events, "the command at st-1", |event| match event {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(command, b"lock");
    // A DISCONNECT ends each connection's event stream, and its pump.
    st2.disconnect().unwrap();
    agent.disconnect().unwrap();
    let _ = (st2_pump.join(), agent_pump.join());

    // A client with no certificate is not let in.
    let mut options = rumqttc::MqttOptions::new("stranger", "127.0.0.1", port);
    options.set_transport(rumqttc::Transport::tls(std::fs::read(&ca).unwrap(), None, None));
    let (_stranger, mut stranger_events) = rumqttc::Client::new(options, 4);
    let refused = stranger_events.iter().next().unwrap();
    assert!(refused.is_err(), "{refused:?}");
}

/// The venue on its own CA, its agent on mosquitto run with the deploy/
/// config, over TLS with the certificate `pki init` made (its files given
/// relative to the agent's config, as an installer may write them). Returns
/// the broker's files and the broker.
pub(super) fn on_the_deploy_broker(venue: &mut Venue) -> (std::path::PathBuf, netbar_tests::Process) {
    let folder = venue_pki(venue);
    let files = broker_files(&folder);
    let files: Vec<(&str, &Path)> = files.iter().map(|(name, path)| (*name, path.as_path())).collect();
    let (broker, port) = deploy_broker(&venue.dir, "mosquitto", &["netbar.conf"], "/etc/mosquitto/netbar", &files, &[]);
    let text = std::fs::read_to_string(&venue.config)
        .unwrap()
        .replace("mode = \"embedded\"", "mode = \"external\"")
        .replace("# host = \"127.0.0.1\"", "host = \"127.0.0.1\"")
        .replace("# port = 1883", &format!("port = {port}"))
        .replace(&format!("advertise = \"127.0.0.1:{}\"", venue.port), &format!("advertise = \"127.0.0.1:{port}\""))
        .replace("# tls = { ca_file = \"/var/lib/netbar/pki/ca.pem\", client_cert = \"/var/lib/netbar/pki/agent.pem\", client_key = \"/var/lib/netbar/pki/agent.key\" }",
            "tls = { ca_file = \"data/pki/ca.pem\", client_cert = \"data/pki/agent.pem\", client_key = \"data/pki/agent.key\" }");
    assert!(text.contains("tls = { ca_file = \"data/pki/ca.pem\""), "the example tls line is in the printed config");
    std::fs::write(&venue.config, text).unwrap();
    venue.port = port;
    (folder, broker)
}

/// The broker's files from `venue_pki`, as `deploy_broker` takes them.
pub(super) fn broker_files(folder: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    ["ca.pem", "broker.pem", "broker.key", "crl.pem"].into_iter().map(|name| (name, folder.join(name))).collect()
}

/// A whole venue on its own CA: the agent on the deploy/ mosquitto over TLS
/// with the certificate `pki init` made, two stations enrolled with
/// certificates running real collectors. A request for another station is
/// refused. A revoked station is refused by the agent within seconds, and by
/// the broker once it has read the new revocation list, while the other
/// station goes on.
#[test]
fn a_venue_on_its_own_ca_until_a_station_is_revoked() {
    let mut venue = Venue::new("venue-ca");
    let (folder, mut broker) = on_the_deploy_broker(&mut venue);
    let port = venue.port;

    let stations = [enroll_with_certificate(&venue, "st-1"), enroll_with_certificate(&venue, "st-2")];
    let csr = stations[0].join("st-1.csr");
    let refused = agent(&venue, &["enroll", "station", "st-3", "--csr", csr.to_str().unwrap()]).unwrap_err();
    assert!(refused.contains("the certificate request is for st-1, not station st-3"), "{refused}");

    venue.start();
    let token = venue.sign_in("li", "manager");
    let _collectors = stations.each_ref().map(|station| super::agent::collector(station, "", "no\n"));
    let state = |id: &str| {
        let (_, floor) = netbar_tests::http(venue.http, "GET", "/api/v1/floor", Some(&token), None);
        floor["stations"].as_array().and_then(|tiles| tiles.iter().find(|tile| tile["id"] == id).map(|tile| tile["state"].to_string()))
    };
    netbar_tests::wait_for("both stations online through the TLS broker", std::time::Duration::from_secs(30), || {
        ["st-1", "st-2"].iter().all(|id| state(id).is_some_and(|state| state != "\"offline\""))
    });

    let said = agent(&venue, &["enroll", "revoke", "st-2", "--crl-out", folder.to_str().unwrap()]).unwrap();
    assert!(said.contains("1 certificate(s) of st-2 revoked"), "{said}");
    assert!(agent(&venue, &["enroll", "revoke", "st-2"]).unwrap_err().contains("not enrolled, or revoked already"));
    // The agent takes the revocation up by itself and refuses st-2's telemetry.
    netbar_tests::wait_for("the agent to refuse the revoked station", std::time::Duration::from_secs(20), || {
        venue.log().contains("station st-2 is not enrolled")
    });
    let list = agent(&venue, &["pki", "list"]).unwrap();
    let line = |subject: &str| list.lines().find(|line| line.contains(&format!(" {subject} "))).unwrap_or_default().to_owned();
    assert!(line("st-2").contains("revoked") && line("st-1").ends_with("valid"), "{list}");

    // mosquitto reads the revocation list when it starts.
    broker.terminate();
    let config = venue.dir.path().join("netbar.conf");
    let _broker = netbar_tests::Process::start(
        &netbar_tests::mosquitto_binary(),
        &["-c", config.to_str().unwrap()],
        venue.dir.path().join("netbar.conf.again.log"),
    );
    let ca = venue.dir.path().join("data").join("pki").join("ca.pem");
    let identity = |station: &Path| (station.join("station.pem"), station.join("tls.key"));
    let mut first = None;
    netbar_tests::wait_for("mosquitto back, letting st-1 in", std::time::Duration::from_secs(20), || {
        let (client, mut events) = tls_client(port, &ca, &identity(&stations[0]), "st-1-again");
        let accepted = matches!(events.iter().next(), Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))));
        if accepted {
            first = Some((client, events));
        }
        accepted
    });
    let (_client, mut events) = tls_client(port, &ca, &identity(&stations[1]), "st-2-again");
    let refused = events.iter().next().unwrap();
    assert!(refused.is_err(), "the revoked certificate was let in: {refused:?}");
    // The same broker had let st-2 in before (its collector), with the same CA.
    let before = std::fs::read_to_string(venue.dir.path().join("netbar.conf.log")).unwrap();
    assert!(before.contains("u'st-2'"), "st-2 was in before the revocation:\n{before}");
    // The client can see the refusal before mosquitto has logged it.
    let after_log = venue.dir.path().join("netbar.conf.again.log");
    netbar_tests::wait_for("mosquitto to log the refused certificate", std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&after_log).unwrap_or_default().contains("certificate verify failed")
    });
    let after = std::fs::read_to_string(&after_log).unwrap();
    assert!(!after.contains("u'st-2'"), "{after}");
}

/// The binary calls in a PowerShell script: the argument lists of
/// `Invoke-Netbar @(...)` and `& $exe ...` lines, variables left as `$name`.
fn script_calls(script: &str) -> Vec<Vec<String>> {
    let unquote = |token: &str| token.trim().trim_matches('\'').to_owned();
    script
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with("function"))
        .filter_map(|line| {
            if let Some(rest) = line.split("Invoke-Netbar @(").nth(1) {
                let list = rest.split(')').next().unwrap_or_default();
                Some(list.split(',').map(unquote).collect())
            } else {
                line.split("& $exe ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().take_while(|word| !word.starts_with('2')).map(unquote).collect())
            }
        })
        // Invoke-Netbar's own body passes its arguments on (`@Arguments`).
        .filter(|call: &Vec<String>| call.first().is_some_and(|word| !word.starts_with('@')))
        .collect()
}

/// The Windows install and uninstall scripts cannot run here (there is no
/// PowerShell), but what they ask of the binaries can: each call they make
/// is run with the script's arguments (the service registrations only as far
/// as `--help`, since they would register a service), and the configuration
/// the install script writes — print-config — is accepted by check-config
/// (with the data folder moved to the test's own). The Windows build itself
/// runs those calls under wine in `windows.rs`.
#[test]
fn the_windows_scripts_call_what_the_binaries_offer() {
    let dir = TempDir::new("windows-scripts");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/windows");
    let mut calls = Vec::new();
    for script in ["install.ps1", "uninstall.ps1"] {
        calls.extend(script_calls(&std::fs::read_to_string(scripts.join(script)).unwrap()));
    }
    let named = |command: &str| calls.iter().any(|call| call.iter().any(|word| word == command));
    for command in ["print-config", "check-config", "install-service", "uninstall-service"] {
        assert!(named(command), "the scripts call {command}: {calls:?}");
    }
    for component in ["agent", "collector"] {
        let program = binary(&format!("netbar-{component}"));
        let printed = Run::new(&program).arg("print-config").output().unwrap();
        let text = String::from_utf8(printed.stdout).unwrap();
        let moved = text.replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.path().join("data").display()));
        let config = dir.path().join(format!("{component}.toml"));
        std::fs::write(&config, moved).unwrap();
        for call in &calls {
            let mut args: Vec<String> =
                call.iter().map(|word| if word == "$configPath" { config.display().to_string() } else { word.clone() }).collect();
            if args.iter().any(|word| word.ends_with("-service")) {
                args.push("--help".into());
            }
            let output = Run::new(&program).args(&args).output().unwrap();
            assert!(output.status.success(), "netbar-{component} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
}

/// The units `install-service` writes for both daemons pass
/// `systemd-analyze verify` (where systemd-analyze is installed).
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = TempDir::new("units");
    let agent_config = dir.path().join("agent.toml");
    let collector_config = dir.path().join("collector.toml");
    for (program, config) in [("netbar-agent", &agent_config), ("netbar-collector", &collector_config)] {
        let printed = Run::new(binary(program)).arg("print-config").output().unwrap();
        std::fs::write(config, printed.stdout).unwrap();
    }
    let units = dir.path().join("units");
    let agent = Run::new(binary("netbar-agent"))
        .args(["install-service", "--config", agent_config.to_str().unwrap(), "--unit-dir", units.to_str().unwrap(), "--no-systemctl"])
        .output()
        .unwrap();
    assert!(agent.status.success(), "{}", String::from_utf8_lossy(&agent.stderr));
    let collector = Run::new(binary("netbar-collector"))
        .args(["--config", collector_config.to_str().unwrap(), "install-service", "--unit-dir", units.to_str().unwrap(), "--no-systemctl"])
        .output()
        .unwrap();
    assert!(collector.status.success(), "{}", String::from_utf8_lossy(&collector.stderr));
    for unit in ["netbar-agent.service", "netbar-collector.service"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        for hardening in ["ProtectSystem=strict", "NoNewPrivileges=yes", "SystemCallFilter=@system-service", "RestrictAddressFamilies="] {
            assert!(text.contains(hardening), "{unit} lacks {hardening}");
        }
    }
    let Ok(verify) = Run::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("netbar-agent.service"))
        .arg(units.join("netbar-collector.service"))
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the units were checked for their hardening only");
        return;
    };
    assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(!complaints.contains("netbar-"), "{complaints}");
}

/// A district broker run with exactly deploy/regulator/district.conf,
/// district.acl and bridge.conf: the agent's feed (its certificate named
/// after the venue) reaches the regulator, and through the bridge the
/// central broker; another venue cannot write under this venue's topics.
#[test]
fn the_district_broker_config_takes_each_venue_feed_under_its_own_name_only() {
    let dir = TempDir::new("district");
    let (ca, server, clients) = netbar_tests::certificates_for(dir.path(), "test", &["venue-1", "venue-2", "regulator"]);
    // The regulator's central broker, which the district bridges to with
    // its own certificate from the central CA.
    let (central_ca, central_server, bridge) = netbar_tests::certificates_for(dir.path(), "central", &["bridge-310104"]);
    let central_tls = netbar_tests::free_port();
    let central = netbar_tests::Mosquitto::start_with(&super::uplink::tls_listener(
        central_tls,
        &central_ca,
        &central_server.0,
        &central_server.1,
        true,
    ));
    let at_central = netbar_tests::Client::connect(central.port, &["netbar/feed/#"]);
    let files = [
        ("ca.pem", ca.as_path()),
        ("broker.pem", server.0.as_path()),
        ("broker.key", server.1.as_path()),
        ("central-ca.pem", central_ca.as_path()),
        ("bridge-310104.pem", bridge[0].0.as_path()),
        ("bridge-310104.key", bridge[0].1.as_path()),
    ];
    let central_address = [("central.regulator.example:8883", format!("127.0.0.1:{central_tls}"))];
    let confs = ["district.conf", "bridge.conf"];
    let (_broker, port) = deploy_broker(&dir, "regulator", &confs, "/etc/mosquitto/netbar-feed", &files, &central_address);

    let (regulator, mut regulator_events) = tls_client(port, &ca, &clients[2], "regulator");
    connected(&mut regulator_events, "the regulator");
    regulator.subscribe("netbar/feed/#", rumqttc::QoS::AtLeastOnce).unwrap();
    granted(&mut regulator_events, "the regulator's subscription");

    // The real agent of venue-1 sends its feed with its certificate.
    let mut venue = Venue::new("district-venue");
    let section = super::uplink::uplink_section(&format!("mqtts://127.0.0.1:{port}"), &ca, Some((&clients[0].0, &clients[0].1)), "3.1.1");
    super::uplink::add_uplink(&venue, &section);
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let body = serde_json::json!({"document_type": "other", "number": "D0000001", "birth_date": "1990-01-01"});
    assert_eq!(netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body)).0, 201);
    next_event(&mut regulator_events, "venue-1's record at the regulator", |event| match event {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => (publish.topic == "netbar/feed/310104/venue-1/record").then_some(()),
        _ => None,
    });
    // The bridge carries it on to the central broker.
    at_central.expect("venue-1's record at the central broker", std::time::Duration::from_secs(20), |topic, _| {
        (topic == "netbar/feed/310104/venue-1/record").then_some(())
    });

    // venue-2 writes under venue-1's name, then under its own.
    let (impostor, mut impostor_events) = tls_client(port, &ca, &clients[1], "venue-2");
    connected(&mut impostor_events, "venue-2");
    impostor.publish("netbar/feed/310104/venue-1/incident", rumqttc::QoS::AtLeastOnce, false, b"forged".to_vec()).unwrap();
    impostor.publish("netbar/feed/310104/venue-2/heartbeat", rumqttc::QoS::AtLeastOnce, false, b"genuine".to_vec()).unwrap();
    let impostor_pump = pump(impostor_events);
    let mut forged = false;
    next_event(&mut regulator_events, "venue-2's own message", |event| match event {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => {
            forged |= publish.payload.as_ref() == b"forged";
            (publish.payload.as_ref() == b"genuine").then_some(())
        }
        _ => None,
    });
    assert!(!forged, "venue-2 wrote under venue-1's name");
    impostor.disconnect().unwrap();
    let _ = impostor_pump.join();
}
