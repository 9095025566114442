//! `netbar-agent run`: the daemon, wired in one place from its parts.
//!
//! One task (the [`agent`] actor) owns the [`Venue`]; one thread owns the
//! SQLite connection ([`crate::store::thread`]). Every message from a
//! station is checked ([`admission`]) before the venue sees it; refusals
//! are counted and logged with their reason and change nothing. A
//! sequenced message is acknowledged to its station (`delivery_ack`) only
//! after the log entries it caused are committed. Views the console reads
//! (the floor, the regulator link) are published on watch channels by
//! their one owner.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::messages::{IncidentKind, IncidentTransition, Severity};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::config::{AGENT, BrokerMode, Loaded};
use crate::feed::sender::{LinkView, Uplink};
use crate::feed::{Feed, Period, Tally};
use crate::http::Api;
use crate::journal::{IncidentEntry, LogEntry, Redaction};
use crate::refusals::Refusals;
use crate::store::Store;
use crate::store::thread::{Enrolled, StoreHandle};
use crate::venue::Venue;
use admission::{Admission, Sequences};
use agent::{Agent, Events};
use link::{AgentStatusTopic, CommandNumbers, StationLink};

mod admission;
mod agent;
mod link;

/// The venue as the log says it stands at `now`: its rules from the
/// configuration, its open matters (check-ins, sessions, holds, incidents
/// and the last day's incident history) replayed from the store.
fn restore_venue(loaded: &Loaded, store: &Store, now: Timestamp) -> anyhow::Result<Venue> {
    let rules = &loaded.config.rules;
    let seconds = |duration: Duration| jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX);
    let thresholds = crate::venue::Thresholds {
        curfew_warning: jiff::SignedDuration::from_mins(i64::from(rules.curfew_warning_minutes)),
        exit_grace: seconds(rules.exit_grace),
        station_silent_after: seconds(rules.station_silent_after),
        overheat_celsius: rules.overheat_celsius,
        co_alarm_ppm: rules.co_alarm_ppm,
        licensed_stations: loaded.config.venue.licensed_stations,
        staff: loaded.config.venue.staff,
        check_in_expires_after: seconds(rules.check_in_expires_after),
    };
    let mut venue = Venue::new(loaded.policy.clone(), loaded.zone.clone(), thresholds);
    let matters = store.open_matters(now - jiff::SignedDuration::from_hours(24)).context("cannot read the venue's open matters")?;
    for problem in &matters.unreadable {
        tracing::error!(%problem, "a registration log entry cannot be replayed; the venue is rebuilt without it");
    }
    let replayed = matters.entries.len();
    let restored = venue.restore(now, matters.entries);
    tracing::info!(
        replayed,
        tickets = restored.tickets,
        sessions = restored.sessions,
        holds = restored.holds,
        incidents_open = restored.incidents_open,
        "venue rebuilt from the registration log"
    );
    Ok(venue)
}

/// What the daemon is made of. [`Parts::open`] takes them as configured;
/// a test can make its own (a clock of its choosing, a listener on a free
/// port) and run a daemon in-process.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) loaded: Loaded,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    /// Where the HTTP API listens.
    pub(crate) http: std::net::TcpListener,
    /// The hold on the data directory: one agent per directory.
    pub(crate) instance: std::fs::File,
}

impl Parts {
    /// The parts as `loaded` says: the data directory held, the clock
    /// (`NETBAR_AGENT_CLOCK` or the system's), the registration log open
    /// and the API's port bound.
    pub(crate) fn open(loaded: Loaded) -> anyhow::Result<Parts> {
        let instance = crate::instance::hold(&loaded.config.data.dir)?;
        let clock = Clock::from_env()?;
        let database = loaded.database();
        let mut store =
            Store::open(&database, loaded.policy.retention_days).with_context(|| format!("cannot open {}", database.display()))?;
        // The upgrade: what an earlier release kept and the policy may not
        // (a Korean venue's resident registration numbers) is cut out now.
        // A log that cannot be cut (one that does not verify) is kept as it
        // is and the agent runs on: the venue must keep working.
        match redact(&mut store, &loaded, clock, "netbar-agent at start") {
            Ok(Some((seq, redaction))) => tracing::warn!(
                entry = seq,
                what = %redaction.described(),
                "document numbers or names the policy may not keep were cut out of the registration log (개인정보 보호법 제24조의2); backups made before still hold them"
            ),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "the registration log holds what the policy may not keep, and it could not be cut")
            }
        }
        let http = std::net::TcpListener::bind(loaded.config.http.listen)
            .with_context(|| format!("the HTTP API cannot listen on {}", loaded.config.http.listen))?;
        http.set_nonblocking(true)?;
        Ok(Parts { loaded, clock, store, http, instance })
    }
}

/// Cuts out of the registration log what the venue's policy may not keep,
/// where an earlier release (or an earlier policy) kept it: at every start
/// (which reads only entries not yet checked) and by `records redact`.
/// Pending records for the regulator are cut too, their pseudonyms made
/// again with the venue's key where it has one; the regulator is told by a
/// `records_redacted` incident, opened and resolved in the same transaction.
pub(crate) fn redact(store: &mut Store, loaded: &Loaded, clock: Clock, by: &str) -> anyhow::Result<Option<(u64, Redaction)>> {
    let key_path = loaded.config.data.dir.join("pseudonym.key");
    let key = if key_path.exists() { Some(Feed::pseudonym_key(&key_path)?) } else { None };
    let feed = feed_of(loaded, clock)?;
    let now = clock.now();
    let mut cut = |pending: crate::store::Pending<'_>| crate::feed::cut_queued(pending, key.as_ref());
    let announce = |redaction: &Redaction| {
        let incident = format!("i-{}-redaction", now.as_second());
        let detail = format!(
            "what policy {} may not keep was cut out of the registration log (개인정보 보호법 제24조의2): {}",
            redaction.policy,
            redaction.described()
        );
        let opened = IncidentTransition::Opened {
            incident_kind: IncidentKind::RecordsRedacted,
            severity: Severity::Notice,
            station: None,
            sensor: None,
            detail,
        };
        let resolved = IncidentTransition::Resolved { by: redaction.by.clone(), note: "done by netbar".to_owned() };
        [opened, resolved]
            .into_iter()
            .map(|transition| {
                let entry = LogEntry::Incident(IncidentEntry { incident: incident.clone(), transition });
                let message = feed.as_ref().and_then(|feed| feed.outbound(&entry, now));
                (entry, message)
            })
            .collect()
    };
    Ok(store.redact(now, loaded.policy.registration, (&loaded.policy.name, by), &mut cut, &announce)?)
}

/// What the feed needs to build the venue's messages, when it has a feed.
fn feed_of(loaded: &Loaded, clock: Clock) -> anyhow::Result<Option<Feed>> {
    let Some(uplink) = &loaded.uplink else { return Ok(None) };
    Ok(Some(Feed {
        venue: loaded.config.venue.id.clone(),
        clock,
        disclosure: uplink.records,
        pseudonym_key: Feed::pseudonym_key(&loaded.config.data.dir.join("pseudonym.key"))?,
        outbox_max: uplink.outbox_max,
        ga_code: uplink.ga_code.clone(),
    }))
}

/// Runs the agent on `parts` until `shutdown` resolves: the store's thread,
/// the bus (embedded, or a client of the venue's broker), the API, the
/// regulator feed's sender, and the actor that owns the venue.
pub(crate) async fn run(parts: Parts, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let Parts { loaded, clock, mut store, http, instance: _instance } = parts;
    let started = std::time::Instant::now();
    let database = loaded.database();
    let enrolled = Enrolled::load(&store)?;
    tracing::info!(
        stations = enrolled.stations.len(),
        sensors = enrolled.sensors.len(),
        log_head = store.head().0,
        "registration log open"
    );
    // Whatever an earlier run noted, this one is not connected to the
    // regulator until its uplink says so.
    if let Err(error) = store.set_connected(false, Timestamp::now()) {
        tracing::error!(%error, "cannot note that the regulator is not connected yet");
    }
    // The summary period under way when the agent stopped goes on, its
    // counts recounted from the log: a restart loses none of them.
    if loaded.uplink.is_some()
        && let Err(error) = store.begin_period(clock.now())
    {
        tracing::error!(%error, "cannot note where the first summary period starts");
    }
    let period = match store.period_start() {
        Ok(Some(start)) => {
            let mut tally = Tally::default();
            for entry in store.counted_since(start)? {
                tally.observe(&entry);
            }
            Period { start, tally }
        }
        Ok(None) => Period { start: clock.now(), tally: Tally::default() },
        Err(error) => {
            tracing::error!(%error, "cannot read where the summary period started; it starts now");
            Period { start: clock.now(), tally: Tally::default() }
        }
    };
    let truncation = store.truncation().cloned();
    if let Some(truncation) = &truncation {
        tracing::error!(%truncation, "the registration log was altered outside netbar: new entries follow the last one committed, so no position is given out twice");
    }
    let venue = restore_venue(&loaded, &store, clock.now())?;
    let sequences = Sequences::restore(store.accepted_sequences()?);
    let command_numbers = CommandNumbers::starting(
        store.reserve_command_numbers(netbar_protocol::sequence_from_clock(Timestamp::now()), CommandNumbers::BLOCK)?,
    );
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "venue restored");
    let outbox_max = loaded.uplink.as_ref().map_or(u64::MAX, |uplink| uplink.outbox_max);
    let store = StoreHandle::start(store, outbox_max)?;

    let agent_password = format!("{:032x}", rand::random::<u128>());
    let refusals: Arc<Refusals> = Arc::default();
    let (options, bus) = match loaded.config.broker.mode {
        BrokerMode::Embedded => {
            let listen = loaded.config.broker.listen;
            let gate = Arc::new(crate::bus::gate::Gate::new(
                loaded.config.venue.id.as_str(),
                agent_password.clone(),
                format!("{:032x}", rand::random::<u128>()),
            ));
            gate.enroll(&enrolled.stations, &enrolled.sensors);
            let settings = crate::bus::Settings {
                listen,
                max_connections: loaded.config.broker.max_connections,
                canary_every: crate::bus::CANARY_EVERY,
            };
            let bus = crate::bus::Bus::start(&settings, gate, refusals.clone()).await?;
            tracing::info!(%listen, "embedded bus listening");
            let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
            let mut options = MqttOptions::new(AGENT, host, listen.port());
            options.set_credentials(AGENT, agent_password);
            (options, Some(bus))
        }
        BrokerMode::External => {
            let broker = &loaded.config.broker;
            let mut options = MqttOptions::new(AGENT, broker.host.clone(), broker.port);
            if let Some(tls) = &broker.tls {
                let configuration =
                    netbar_host::transport::tls_configuration(&tls.ca_file, tls.client_cert.as_deref(), tls.client_key.as_deref())
                        .context("broker.tls")?;
                options.set_transport(rumqttc::Transport::Tls(configuration));
            }
            if let Some(user) = &broker.username {
                options.set_credentials(user.clone(), broker.password.clone().unwrap_or_default());
            }
            (options, None)
        }
    };
    let mut options = options;
    let will = AgentStatusTopic::new(&loaded, clock);
    options.set_last_will(rumqttc::LastWill::new(will.topic.clone(), will.payload(false), QoS::AtLeastOnce, true));
    options.set_keep_alive(Duration::from_secs(15));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_clean_session(true);
    let (client, mut event_loop) = AsyncClient::new(options, 4096);
    event_loop.set_network_options(netbar_host::transport::nodelay());

    let (api_requests, requests) = mpsc::channel(256);
    let listener = tokio::net::TcpListener::from_std(http)?;
    let (uplink_view, uplink_watch) = watch::channel(LinkView { connected: false, since: Some(Timestamp::now()) });
    let (floor, floor_watch) = watch::channel(Arc::new(serde_json::Value::Null));
    let feed_settings = loaded.uplink.as_ref().map(|uplink| (uplink.url.clone(), uplink.outbox_max));
    let bus_health = bus.as_ref().map(|bus| bus.health.clone());
    let router = Api::new(
        api_requests,
        store.clone(),
        database.clone(),
        (refusals.clone(), bus_health),
        crate::http::Rules { zone: loaded.zone.clone(), clock, policy: loaded.policy.clone(), language: loaded.language() },
        (feed_settings, uplink_watch.clone()),
        floor_watch,
    )
    .router();
    tracing::info!(listen = %listener.local_addr()?, "HTTP API listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the HTTP API stopped");
        }
    });
    let reporter = feed_of(&loaded, clock)?.map(|feed| (feed, period));
    if let Some(settings) = loaded.uplink.clone() {
        tokio::spawn(Uplink { settings, store: store.clone(), view: uplink_view, clock }.run());
    }
    let (undo, undone) = mpsc::unbounded_channel();
    let status = AgentStatusTopic::new(&loaded, clock);
    let agent = Agent {
        link: StationLink {
            venue: loaded.config.venue.id.clone(),
            client,
            clock,
            enrolled,
            bus,
            enrollments_read: tokio::time::Instant::now(),
            command_numbers,
            unsubscribed: 0,
        },
        loaded,
        clock,
        venue,
        admission: Admission { sequences, ..Admission::default() },
        store,
        refusals,
        waiting: tokio::task::JoinSet::new(),
        undo,
        reporter,
        uplink: uplink_watch,
        floor,
    };
    agent.run(Events { bus: event_loop, status, requests, undone }, truncation, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request to the API; the status and the body.
    async fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the API answers");
        let auth = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("request sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer read");
        let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// The daemon runs in-process on parts a test made (a clock set to
    /// another year, a listener on a free port), answers on that listener
    /// with that clock (today is the venue's, in its zone), and stops when
    /// its shutdown future resolves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_daemon_runs_in_process_on_the_parts_it_is_given_and_stops_on_its_shutdown() {
        let dir = std::env::temp_dir().join(format!("netbar-daemon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let bus_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let text = crate::config::DEFAULT_CONFIG
            .replace("dir = \"/var/lib/netbar\"", &format!("dir = {:?}", dir.display().to_string()))
            .replace("listen = \"0.0.0.0:1883\"", &format!("listen = \"127.0.0.1:{bus_port}\""));
        let loaded = Config::parse(&dir.join("agent.toml"), &text).expect("the default configuration");
        let mut store = Store::open(&loaded.database(), loaded.policy.retention_days).expect("a new store");
        store.put_user("li", "manager", &crate::http::auth::hash("correct horse").expect("hash")).expect("user");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("bound").port();
        let instance = crate::instance::hold(&dir).expect("the data directory");
        // Evening in UTC, the next morning at the venue (Asia/Shanghai).
        let start: Timestamp = "2031-05-06T20:08:09Z".parse().expect("an instant");
        let parts = Parts { loaded, clock: Clock::starting_at(start), store, http: listener, instance };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(run(parts, async move {
            let _ = stopped.await;
        }));

        let (status, login) = http(port, "POST", "/api/v1/login", None, r#"{"name":"li","password":"correct horse"}"#).await;
        assert_eq!(status, 200, "{login}");
        let token = login["token"].as_str().expect("a token").to_owned();
        assert_eq!(login["today"], "2031-05-07", "the console's dates start from the venue's today, in its zone");
        assert_eq!(login["zone"], "Asia/Shanghai", "the console shows times in the venue's zone");
        let (status, floor) = http(port, "GET", "/api/v1/floor", Some(&token), "").await;
        assert_eq!(status, 200, "{floor}");
        let now: Timestamp = floor["now"].as_str().and_then(|now| now.parse().ok()).expect("the floor's clock");
        assert!(now >= start && now < start + jiff::SignedDuration::from_mins(5), "the venue's clock is the one given: {now}");

        stop.send(()).expect("the daemon waits for its shutdown");
        let stopped = tokio::time::timeout(Duration::from_secs(30), daemon).await.expect("it stops within 30 s");
        stopped.expect("no panic").expect("a clean stop");
        assert!(!crate::instance::running(&dir), "the data directory's lock is let go");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
