//! `netbar-agent run`: the bus, the venue and the store, wired together.
//!
//! One task owns the [`Venue`]; one thread owns the SQLite connection. Every
//! message from a station is checked (topic, enrollment, MAC, sender,
//! bridged sensor) before the venue sees it; refusals are counted and
//! logged with their reason and change nothing. A sequenced message is
//! acknowledged to its station (`delivery_ack`) only after the log entries
//! it caused are committed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::messages::{Delivery, DeliveryAck, DeliveryEntry};
use netbar_protocol::{Envelope, Message, MessageId, Sender, SenderRole, StationChannel, StationId, StationKey, Topic, decode, encode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use crate::broker;
use crate::config::{BrokerMode, Loaded};
use crate::http::{Api, Request, TransitionFailure};
use crate::store::{Entry, Store, StoreError};
use crate::venue::{Effect, Venue};

/// The client id and user name of the agent on the bus.
const AGENT: &str = "netbar-agent";

/// The venue's clock. Normally the system's; `NETBAR_AGENT_CLOCK` (an RFC
/// 3339 instant) starts it elsewhere, for demos and tests of time-bound
/// rules. Commands carry instants in the stations' (system) time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    offset: jiff::SignedDuration,
}

impl Clock {
    /// The system clock, or the one `NETBAR_AGENT_CLOCK` asks for.
    pub(crate) fn from_env() -> anyhow::Result<Clock> {
        match std::env::var("NETBAR_AGENT_CLOCK") {
            Err(_) => Ok(Clock::default()),
            Ok(text) => {
                let start: Timestamp = text.parse().with_context(|| format!("NETBAR_AGENT_CLOCK {text:?} is not an RFC 3339 instant"))?;
                tracing::warn!(%start, "the venue's clock is set by NETBAR_AGENT_CLOCK, not the system");
                Ok(Clock { offset: start.duration_since(Timestamp::now()) })
            }
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::now() + self.offset
    }

    /// An instant of the venue's clock in the system's time.
    fn to_system(self, at: Timestamp) -> Timestamp {
        at - self.offset
    }
}

/// What the store thread does, in order.
enum StoreRequest {
    Append(Timestamp, &'static str, serde_json::Value, oneshot::Sender<Result<Entry, StoreError>>),
    Purge(Timestamp, oneshot::Sender<Result<usize, StoreError>>),
}

/// The store's owner: a thread serving requests in order.
#[derive(Debug, Clone)]
pub(crate) struct StoreHandle {
    requests: mpsc::Sender<StoreRequest>,
}

fn stopped() -> StoreError {
    StoreError::Unwritable("the store stopped".into())
}

impl StoreHandle {
    fn start(mut store: Store) -> anyhow::Result<StoreHandle> {
        let (requests, mut queue) = mpsc::channel::<StoreRequest>(1024);
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                while let Some(request) = queue.blocking_recv() {
                    match request {
                        StoreRequest::Append(at, kind, body, reply) => {
                            let _ = reply.send(store.append(at, kind, &body));
                        }
                        StoreRequest::Purge(now, reply) => {
                            let _ = reply.send(store.purge(now));
                        }
                    }
                }
            })
            .context("cannot start the store thread")?;
        Ok(StoreHandle { requests })
    }

    /// Appends and returns once the entry is committed durably.
    pub(crate) async fn append(&self, at: Timestamp, kind: &'static str, body: serde_json::Value) -> Result<Entry, StoreError> {
        let (reply, committed) = oneshot::channel();
        self.requests.send(StoreRequest::Append(at, kind, body, reply)).await.map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Removes entries older than the retention period.
    pub(crate) async fn purge(&self, now: Timestamp) -> Result<usize, StoreError> {
        let (reply, done) = oneshot::channel();
        self.requests.send(StoreRequest::Purge(now, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

/// Why messages were refused, counted for /metrics.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    counts: Mutex<HashMap<&'static str, u64>>,
}

impl Refusals {
    fn count(&self, reason: &'static str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(reason).or_default() += 1;
        }
    }

    /// The counts by reason.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<_> = self.counts.lock().map(|c| c.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default();
        counts.sort();
        counts
    }
}

/// What is enrolled: station keys and which station bridges each sensor.
#[derive(Debug, Default)]
struct Enrolled {
    stations: HashMap<String, StationKey>,
    sensors: HashMap<String, String>,
}

impl Enrolled {
    fn load(store: &Store) -> Result<Enrolled, StoreError> {
        Ok(Enrolled {
            stations: store.stations()?.into_iter().collect(),
            sensors: store.sensors()?.into_iter().map(|(sensor, station, _)| (sensor, station)).collect(),
        })
    }
}

/// A message that passed every check.
struct Accepted {
    station: StationId,
    envelope: Envelope,
}

/// Checks a message from the bus; the reason code when refused.
fn check(enrolled: &Enrolled, venue: &netbar_protocol::VenueId, topic: &str, payload: &[u8]) -> Result<Accepted, (&'static str, String)> {
    let parsed = Topic::parse(topic).map_err(|e| ("topic", e.to_string()))?;
    if parsed.venue() != venue {
        return Err(("venue", format!("topic of venue {}", parsed.venue())));
    }
    let envelope = decode(payload).map_err(|e| ("decode", e.to_string()))?;
    let station: StationId = match &parsed {
        Topic::Station { station, .. } => station.clone(),
        Topic::Sensor { sensor, .. } => {
            let bridge = enrolled.sensors.get(sensor.as_str()).ok_or(("unenrolled_sensor", format!("sensor {sensor} is not enrolled")))?;
            bridge.parse().map_err(|_| ("unenrolled_sensor", format!("sensor {sensor} has a bad station")))?
        }
        Topic::Agent { .. } | Topic::Regulator { .. } => return Err(("topic", "not a station's topic".into())),
    };
    let key = enrolled.stations.get(station.as_str()).ok_or(("unenrolled_station", format!("station {station} is not enrolled")))?;
    key.verify(topic, &envelope).map_err(|e| ("forged", e.to_string()))?;
    if envelope.sender.role != SenderRole::Station || envelope.sender.id != station.as_str() {
        return Err(("forged", format!("sender {:?} {} is not station {station}", envelope.sender.role, envelope.sender.id)));
    }
    if &envelope.venue != venue {
        return Err(("venue", format!("envelope of venue {}", envelope.venue)));
    }
    if !parsed.carries().contains(&envelope.kind()) {
        return Err(("kind", format!("a {} message does not belong on {topic}", envelope.kind())));
    }
    Ok(Accepted { station, envelope })
}

/// The recent message ids of each station, to answer repeats as duplicates.
#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<String, (HashSet<MessageId>, VecDeque<MessageId>)>,
}

impl Seen {
    const KEEP: usize = 4096;

    /// Records `id`; false if it was seen already.
    fn first_time(&mut self, station: &str, id: MessageId) -> bool {
        let (set, order) = self.ids.entry(station.to_owned()).or_default();
        if !set.insert(id) {
            return false;
        }
        order.push_back(id);
        if order.len() > Seen::KEEP
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

/// The running agent's bus side.
struct Agent {
    loaded: Loaded,
    client: AsyncClient,
    store: StoreHandle,
    enrolled: Enrolled,
    database: std::path::PathBuf,
    venue: Venue,
    seen: Seen,
    refusals: Arc<Refusals>,
    clock: Clock,
}

impl Agent {
    fn publish_to(&self, station: &StationId, channel: StationChannel, message: impl Into<Message>) {
        let topic = Topic::Station { venue: self.loaded.config.venue.id.clone(), station: station.clone(), channel }.to_string();
        let mut envelope = Envelope::new(
            MessageId::from_parts(Timestamp::now(), rand::random()),
            self.clock.now(),
            self.loaded.config.venue.id.clone(),
            Sender::agent(AGENT),
            0,
            message,
        );
        let Some(key) = self.enrolled.stations.get(station.as_str()) else { return };
        key.sign(&topic, &mut envelope);
        if let Err(error) = self.client.try_publish(topic, QoS::AtLeastOnce, false, encode(&envelope)) {
            tracing::warn!(%station, %error, "cannot publish to station");
        }
    }

    /// Applies effects; log entries are committed before this returns.
    async fn apply(&mut self, effects: Vec<Effect>) -> Result<(), StoreError> {
        for effect in effects {
            match effect {
                Effect::Command { station, mut action } => {
                    if let netbar_protocol::messages::Action::Unlock { until: Some(until), .. } = &mut action {
                        *until = self.clock.to_system(*until);
                    }
                    let command = netbar_protocol::messages::Command { command_id: format!("c-{:016x}", rand::random::<u64>()), action };
                    self.publish_to(&station, StationChannel::Command, command);
                }
                Effect::Record { kind, body } => {
                    self.store.append(self.clock.now(), kind, body).await?;
                }
                Effect::Incident { id, transition } => {
                    tracing::warn!(incident = %id, ?transition, "incident");
                    let body = serde_json::json!({ "incident": id, "transition": transition });
                    self.store.append(self.clock.now(), "incident", body).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let mut checked = check(&self.enrolled, &self.loaded.config.venue.id, topic, payload);
        if matches!(checked, Err(("unenrolled_station" | "unenrolled_sensor", _))) {
            // Enrolled since the agent started? Look again, once.
            if let Ok(store) = Store::open(&self.database, 1)
                && let Ok(enrolled) = Enrolled::load(&store)
            {
                self.enrolled = enrolled;
                checked = check(&self.enrolled, &self.loaded.config.venue.id, topic, payload);
            }
        }
        let Accepted { station, envelope } = match checked {
            Ok(accepted) => accepted,
            Err((reason, detail)) => {
                self.refusals.count(reason);
                tracing::warn!(topic = %topic.chars().take(200).collect::<String>(), reason, %detail, "message refused");
                return;
            }
        };
        let sequenced = envelope.seq > 0;
        if sequenced && !self.seen.first_time(station.as_str(), envelope.id) {
            self.acknowledge(&station, &envelope, Delivery::Duplicate);
            return;
        }
        let effects = self.venue.on_message(self.clock.now(), &station, &envelope.message);
        match self.apply(effects).await {
            Ok(()) if sequenced => self.acknowledge(&station, &envelope, Delivery::Stored),
            Ok(()) => {}
            // Not stored: no receipt, so the station keeps it and sends it again.
            Err(error) => tracing::error!(%station, %error, "message not stored; the station will resend it"),
        }
    }

    fn acknowledge(&self, station: &StationId, envelope: &Envelope, delivery: Delivery) {
        let ack = DeliveryAck { entries: vec![DeliveryEntry { id: envelope.id, seq: envelope.seq, delivery }] };
        self.publish_to(station, StationChannel::Delivery, ack);
    }

    async fn on_request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            Request::CheckIn { document, circumstances, reply } => {
                let (outcome, effects) = self.venue.check_in(now, &document, circumstances, rand::random);
                let result = match self.apply(effects).await {
                    Ok(()) => Ok(outcome),
                    Err(error) => {
                        if let crate::venue::CheckInOutcome::Admitted { ticket, .. } = &outcome {
                            self.venue.cancel_check_in(ticket);
                        }
                        tracing::error!(%error, "check-in refused: it cannot be recorded");
                        Err(error.to_string())
                    }
                };
                let _ = reply.send(result);
            }
            Request::CheckOut { ticket, reply } => {
                let result = match self.venue.check_out(now, &ticket) {
                    None => Ok(false),
                    Some(effects) => self.apply(effects).await.map(|()| true).map_err(|error| error.to_string()),
                };
                let _ = reply.send(result);
            }
            Request::Stations { reply } => {
                let _ = reply.send(self.venue.stations_json());
            }
            Request::Sessions { reply } => {
                let _ = reply.send(self.venue.sessions_json());
            }
            Request::Command { station, action, by, reply } => {
                let result = match self.venue.staff_command(now, &station, action, &by) {
                    None => Err(format!("station {station} is not known to the venue")),
                    Some(effects) => self.apply(effects).await.map_err(|error| error.to_string()),
                };
                let _ = reply.send(result);
            }
            Request::Incidents { reply } => {
                let _ = reply.send(serde_json::json!({ "incidents": self.venue.incidents() }));
            }
            Request::Transition { id, by, resolve, reply } => {
                let result = match self.venue.transition(now, &id, &by, resolve) {
                    Err(error) => Err(TransitionFailure::Refused(error)),
                    Ok(effects) => self.apply(effects).await.map_err(|error| TransitionFailure::NotRecorded(error.to_string())),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn subscribe(&self) {
        let venue = &self.loaded.config.venue.id;
        for channel in [StationChannel::Status, StationChannel::Telemetry, StationChannel::Event, StationChannel::Ack] {
            let _ = self.client.try_subscribe(Topic::stations_filter(venue, channel), QoS::AtLeastOnce);
        }
        let _ = self.client.try_subscribe(Topic::sensors_filter(venue), QoS::AtLeastOnce);
    }
}

/// Runs the agent until `shutdown` resolves.
pub(crate) async fn run(loaded: Loaded, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let database = loaded.database();
    let store = Store::open(&database, loaded.policy.retention_days).with_context(|| format!("cannot open {}", database.display()))?;
    let enrolled = Enrolled::load(&store)?;
    tracing::info!(
        stations = enrolled.stations.len(),
        sensors = enrolled.sensors.len(),
        log_head = store.head().0,
        "registration log open"
    );
    let store = StoreHandle::start(store)?;

    let agent_password = format!("{:032x}", rand::random::<u128>());
    let options = match loaded.config.broker.mode {
        BrokerMode::Embedded => {
            let listen = loaded.config.broker.listen;
            let (password, database) = (agent_password.clone(), database.clone());
            // Stations log in with their id and the password derived from their key.
            let stations = Arc::new(Mutex::new(enrolled.stations.clone()));
            let credentials: broker::Credentials = Arc::new(move |_client, user, given| {
                if user == AGENT {
                    return given == password;
                }
                let known = |stations: &HashMap<String, StationKey>| stations.get(user).map(|key| key.broker_password() == given);
                let Ok(mut stations) = stations.lock() else { return false };
                if let Some(answer) = known(&stations) {
                    return answer;
                }
                // Enrolled since start: read the enrollments again.
                if let Ok(store) = Store::open(&database, 1)
                    && let Ok(fresh) = store.stations()
                {
                    *stations = fresh.into_iter().collect();
                }
                known(&stations).unwrap_or(false)
            });
            broker::start(&broker::Settings { listen, max_connections: loaded.config.broker.max_connections }, credentials)?;
            tracing::info!(%listen, "embedded broker listening");
            let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
            let mut options = MqttOptions::new(AGENT, host, listen.port());
            options.set_credentials(AGENT, agent_password);
            options
        }
        BrokerMode::External => {
            let broker = &loaded.config.broker;
            let mut options = MqttOptions::new(AGENT, broker.host.clone(), broker.port);
            if let Some(user) = &broker.username {
                options.set_credentials(user.clone(), broker.password.clone().unwrap_or_default());
            }
            options
        }
    };
    let mut options = options;
    options.set_keep_alive(Duration::from_secs(15));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_clean_session(true);
    let (client, mut event_loop) = AsyncClient::new(options, 4096);

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
    };
    let venue = Venue::new(loaded.policy.clone(), loaded.zone.clone(), thresholds);
    let refusals: Arc<Refusals> = Arc::default();
    let (api_requests, mut requests) = mpsc::channel(256);
    let listener = tokio::net::TcpListener::bind(loaded.config.http.listen)
        .await
        .with_context(|| format!("the HTTP API cannot listen on {}", loaded.config.http.listen))?;
    let clock = Clock::from_env()?;
    let router = Api::new(api_requests, database.clone(), refusals.clone(), loaded.zone.clone(), clock).router();
    tracing::info!(listen = %loaded.config.http.listen, "HTTP API listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the HTTP API stopped");
        }
    });
    let mut agent = Agent { loaded, client, store, enrolled, database, venue, seen: Seen::default(), refusals, clock };
    // Old records go on a schedule, never younger than the retention period.
    let mut purge = tokio::time::interval(Duration::from_secs(3600));
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let deadline = agent.venue.next_deadline();
        let wait = deadline.map(|at| Duration::try_from(at.duration_since(agent.clock.now())).unwrap_or(Duration::ZERO));
        tokio::select! {
            event = event_loop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to the bus");
                    agent.subscribe();
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => agent.on_message(&publish.topic, &publish.payload).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "bus connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = async { tokio::time::sleep(wait.unwrap_or(Duration::ZERO)).await }, if wait.is_some() => {
                let effects = agent.venue.tick(agent.clock.now());
                if let Err(error) = agent.apply(effects).await {
                    tracing::error!(%error, "cannot record the end of a session");
                }
            }
            Some(request) = requests.recv() => agent.on_request(request).await,
            _ = purge.tick() => match agent.store.purge(agent.clock.now()).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "registration records past the retention period purged"),
                Err(error) => tracing::error!(%error, "cannot purge old registration records"),
            },
            () = &mut shutdown => break,
        }
    }
    // Every acknowledged entry is committed already (appends are synchronous
    // with their answers); finish what the API queued, then stop.
    requests.close();
    while let Some(request) = requests.recv().await {
        agent.on_request(request).await;
    }
    let _ = agent.client.disconnect().await;
    tracing::info!(refused = ?agent.refusals.snapshot(), "stopped");
    Ok(())
}
