//! The collector's main loop: one task that owns the station's state and
//! reacts to the link, the clock, the lock screen and finished commands.
//!
//! Messages that must arrive (events, command acknowledgements, alarms) get
//! a sequence number and go to the [`Spool`] first; they are published from
//! there as the [`Pump`] says: oldest first, a window at a time, and again
//! after a reconnect or when receipts stop coming. Telemetry is published
//! live when connected (sequence 0, never acknowledged) and spooled
//! as droppable only while the agent is away.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use netbar_protocol::local::ShownSession;
use netbar_protocol::messages::*;
use netbar_protocol::{Envelope, Message, MessageId, Sender, SenderRole, StationChannel, StationKey, Topic, decode, encode};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::Config;
use crate::link::{self, LinkEvent};
use crate::machine::{Executor, Machine, Sampler};
use crate::pump::{Pump, PumpAction, PumpEvent, RESEND_AFTER};
use crate::sensors::{self, Sample};
use crate::spool::{Class, Spool};

/// How long the lock screen waits for the agent's answer to a login.
pub(crate) const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How many recent command ids are remembered to answer repeats without
/// running them twice.
const RECENT_COMMANDS: usize = 64;

pub(crate) use netbar_protocol::local::LoginAnswer;

/// A request from the lock screen.
#[derive(Debug)]
pub(crate) enum LocalCall {
    /// A customer typed a ticket.
    Login(LoginCall),
    /// The customer ends the session.
    Logout(oneshot::Sender<LoginAnswer>),
}

/// A login from the lock screen, with the channel for its answer.
#[derive(Debug)]
pub(crate) struct LoginCall {
    pub(crate) ticket: String,
    pub(crate) answer: oneshot::Sender<LoginAnswer>,
}

/// What the command worker reports back.
#[derive(Debug)]
struct Done {
    command: Command,
    result: Outcome,
    lock_state: LockState,
}

/// What the station knows of one of its sensors.
#[derive(Debug)]
struct SensorState {
    last: Option<Sample>,
    heard: Instant,
    heard_at: Timestamp,
}

use crate::held::Held as Session;

/// The running station.
pub(crate) struct Station {
    config: Config,
    sender: Sender,
    spool: Spool,
    client: AsyncClient,
    sampler: Sampler,
    pump: Pump,
    session: Option<Session>,
    lock_state: LockState,
    recent: VecDeque<(String, Message)>,
    logins: HashMap<String, oneshot::Sender<LoginAnswer>>,
    activity_reported: bool,
    commands: mpsc::Sender<Command>,
    login_timeouts: mpsc::Sender<String>,
    sensors: Vec<SensorState>,
    key: Option<StationKey>,
    unreachable_reported: bool,
    /// When the retained status was last published.
    status_told: Instant,
    /// The customer's lock screen, where this collector runs one.
    screens: Option<std::sync::Arc<crate::screen::Screens>>,
}

/// How often the retained status is published again, well within the
/// agent's `rules.message_window`.
const STATUS_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Station {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Station").field("sender", &self.sender).field("connected", &self.pump.connected()).finish_non_exhaustive()
    }
}

fn new_id() -> MessageId {
    MessageId::from_parts(Timestamp::now(), rand::random())
}

fn token(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

impl Station {
    fn topic(&self, channel: StationChannel) -> String {
        Topic::Station { venue: self.config.station.venue.clone(), station: self.config.station.id.clone(), channel }.to_string()
    }

    /// Builds, signs and encodes a message for `topic`.
    fn seal(&self, topic: &str, seq: u64, message: impl Into<Message>) -> (MessageId, String) {
        seal(&self.config, self.key.as_ref(), topic, seq, message.into())
    }

    fn topic_for(&self, message: &Message) -> String {
        match message {
            Message::SensorReading(reading) => {
                Topic::Sensor { venue: self.config.station.venue.clone(), sensor: reading.sensor.clone() }.to_string()
            }
            other => self.topic(StationChannel::for_kind(other.kind()).unwrap_or(StationChannel::Event)),
        }
    }

    /// Spools a message that must arrive, then publishes what the window allows.
    fn send_reliably(&mut self, message: impl Into<Message>, class: Class) {
        let message = message.into();
        let topic = self.topic_for(&message);
        let stored = self.spool.next_seq().and_then(|seq| {
            let (id, payload) = self.seal(&topic, seq, message.clone());
            self.spool.push(seq, id, class, &topic, &payload)
        });
        match stored {
            Ok(dropped) if !dropped.is_empty() => tracing::warn!(?dropped, "spool full: dropped the oldest telemetry"),
            Ok(_) => {}
            // The disk is full or gone: say so, and still try to deliver it now.
            Err(error) => {
                tracing::error!(%error, kind = %message.kind(), "cannot spool a message; publishing it without a copy on disk");
                let (_, payload) = self.seal(&topic, 0, message);
                let _ = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload);
            }
        }
        self.feed(PumpEvent::Spooled);
    }

    /// Tells the pump what happened, and publishes the spooled messages it says to.
    fn feed(&mut self, event: PumpEvent) {
        let (after, limit) = match self.pump.handle(event, Instant::now(), &self.spool) {
            None => return,
            Some(PumpAction::Publish { after, limit }) => (after, limit),
            Some(PumpAction::Resend { limit }) => {
                tracing::info!(held = self.spool.len(), "no receipt for {} s; sending the window again", RESEND_AFTER.as_secs());
                (0, limit)
            }
        };
        for spooled in self.spool.pending(after + 1, limit) {
            if self.client.try_publish(spooled.topic, QoS::AtLeastOnce, false, spooled.payload).is_err() {
                // The client's queue is full: the rest goes on the next pump.
                break;
            }
            self.pump.published(spooled.seq);
        }
    }

    fn publish_live(&self, message: impl Into<Message>, retain: bool) {
        let message = message.into();
        let topic = self.topic_for(&message);
        let (_, payload) = self.seal(&topic, 0, message);
        let qos = if retain { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        if let Err(error) = self.client.try_publish(topic, qos, retain, payload) {
            tracing::debug!(%error, "live message not published");
        }
    }

    fn status(&self, online: bool) -> StationStatus {
        let mut capabilities = vec!["lock".to_owned(), "notify".to_owned()];
        if !self.config.sensors.is_empty() {
            capabilities.push("sensor_bridge".to_owned());
        }
        StationStatus {
            online,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities,
            lock_state: self.lock_state,
            session: self.session.as_ref().map(|session| session.id.clone()),
        }
    }

    /// Takes up a new session (or none) and lock state: kept on disk, and
    /// told to the agent in the retained status, so whoever subscribes
    /// next (the agent after its restart) learns what the station holds.
    fn hold(&mut self, session: Option<Session>, lock_state: LockState) {
        let changed = session != self.session;
        if changed && let Err(error) = crate::held::save(&self.config.spool_dir(), session.as_ref()) {
            tracing::error!(%error, "cannot keep the session on disk; a restart of the collector would forget it");
        }
        let told = changed || lock_state != self.lock_state;
        if let Some(screens) = &self.screens {
            let shown = session.as_ref().map(|held| ShownSession { id: held.id.clone(), until: held.until });
            screens.update(|screen| screen.session = shown);
        }
        self.session = session;
        self.lock_state = lock_state;
        if told && self.pump.connected() {
            self.publish_live(self.status(true), true);
        }
    }

    fn on_connected(&mut self) {
        tracing::info!("connected to the broker");
        self.unreachable_reported = false;
        for channel in [StationChannel::Command, StationChannel::Delivery] {
            let _ = self.client.try_subscribe(self.topic(channel), QoS::AtLeastOnce);
        }
        self.publish_live(self.status(true), true);
        // Everything not yet acknowledged goes again: the broker may have
        // lost it with the old session, and the agent drops duplicates.
        self.feed(PumpEvent::Connected);
    }

    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let own = [self.topic(StationChannel::Command), self.topic(StationChannel::Delivery)];
        let envelope = match check_incoming(topic, payload, &own, self.key.as_ref()) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::warn!(topic = %topic.chars().take(200).collect::<String>(), bytes = payload.len(), "message refused: {reason}");
                return;
            }
        };
        match envelope.message {
            Message::DeliveryAck(ack) => self.on_delivery(ack),
            Message::Command(command) => {
                if let Err(reason) = self.admit_command(envelope.seq, envelope.ts) {
                    tracing::warn!(command = %command.command_id, "command refused: {reason}");
                    return;
                }
                self.on_command(command);
            }
            other => tracing::warn!(kind = %other.kind(), "message refused: not expected by a station"),
        }
    }

    /// A command is carried out once: numbered after the last one carried
    /// out (on disk, so after any restart too) and made recently.
    fn admit_command(&mut self, seq: u64, ts: Timestamp) -> Result<(), String> {
        if seq <= self.spool.last_command() {
            return Err(format!("numbered {seq}, not after the last one carried out ({}): sent again", self.spool.last_command()));
        }
        let off = (ts.as_second() - Timestamp::now().as_second()).unsigned_abs();
        if off > self.config.broker.command_window.as_secs() {
            return Err(format!("made {off} s away from this clock (more than broker.command_window)"));
        }
        self.spool.accept_command(seq).map_err(|error| format!("cannot keep its number on disk: {error}"))
    }

    /// The agent already accepted this number from this station (its spool
    /// was reset): the message goes again, numbered after `newest`.
    fn renumber(&mut self, seq: u64, newest: u64) {
        let taken = self.spool.count_on_after(newest).and_then(|()| self.spool.take(seq));
        let (class, spooled) = match taken {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(error) => return tracing::error!(%error, seq, "cannot renumber a spooled message"),
        };
        match netbar_protocol::decode(spooled.payload.as_bytes()) {
            Ok(envelope) => {
                tracing::warn!(
                    seq,
                    newest,
                    "the agent had numbers up to {newest} from this station already: sending again, numbered after it"
                );
                self.send_reliably(envelope.message, class);
            }
            Err(error) => tracing::error!(%error, seq, "a spooled message cannot be read back to renumber it"),
        }
    }

    fn on_delivery(&mut self, ack: DeliveryAck) {
        let mut acknowledged = false;
        for entry in ack.entries {
            if let Delivery::Rejected { reason } = &entry.delivery {
                if let Some(newest) = netbar_protocol::messages::stale_sequence_newest(reason) {
                    self.renumber(entry.seq, newest);
                    continue;
                }
                tracing::error!(seq = entry.seq, id = %entry.id, %reason, "the agent rejected a message for good");
            }
            match self.spool.acknowledge(entry.seq, entry.id) {
                Ok(true) => acknowledged = true,
                Ok(false) => tracing::debug!(seq = entry.seq, "receipt for a message not held"),
                Err(error) => tracing::error!(%error, seq = entry.seq, "cannot remove an acknowledged message from the spool"),
            }
        }
        self.feed(PumpEvent::Receipt { acknowledged });
    }

    fn on_command(&mut self, command: Command) {
        if let Some((_, ack)) = self.recent.iter().find(|(id, _)| *id == command.command_id) {
            // A repeat (the agent resends until it hears back): answer again, do not run again.
            let ack = ack.clone();
            self.send_reliably(ack, Class::Event);
            return;
        }
        if let Action::RefuseLogin { request_id, reasons, message, station, allowed_from } = &command.action {
            if let Some(answer) = self.logins.remove(request_id) {
                let _ = answer.send(LoginAnswer::Refused {
                    reasons: reasons.clone(),
                    message: message.clone(),
                    station: station.clone(),
                    allowed_from: *allowed_from,
                });
            }
            self.acknowledge(command, Outcome::Done, self.lock_state);
            return;
        }
        if self.commands.try_send(command).is_err() {
            tracing::warn!("command queue full; the agent will resend");
        }
    }

    fn acknowledge(&mut self, command: Command, result: Outcome, lock_state: LockState) {
        let ack: Message = CommandAck { command_id: command.command_id.clone(), result, lock_state }.into();
        self.recent.push_back((command.command_id, ack.clone()));
        if self.recent.len() > RECENT_COMMANDS {
            self.recent.pop_front();
        }
        self.send_reliably(ack, Class::Event);
    }

    fn on_done(&mut self, done: Done) {
        let succeeded = done.result == Outcome::Done;
        let mut session = self.session.clone();
        match &done.command.action {
            // The session the station holds already (the agent sends it
            // again when it is not sure the station has it): kept as it is.
            Action::Unlock { session_id, request_id, .. } if succeeded && session.as_ref().is_some_and(|held| held.id == *session_id) => {
                if let Some(answer) = request_id.as_ref().and_then(|id| self.logins.remove(id)) {
                    let _ = answer.send(LoginAnswer::Unlocked { session_id: session_id.clone() });
                }
            }
            Action::Unlock { session_id, request_id, until } if succeeded => {
                if let Some(previous) = session.take() {
                    self.send_reliably(SessionEvent::Ended { session_id: previous.id, reason: EndReason::Staff }, Class::Event);
                }
                session = Some(Session { id: session_id.clone(), until: *until });
                self.activity_reported = false;
                self.send_reliably(SessionEvent::Started { session_id: session_id.clone() }, Class::Event);
                if let Some(answer) = request_id.as_ref().and_then(|id| self.logins.remove(id)) {
                    let _ = answer.send(LoginAnswer::Unlocked { session_id: session_id.clone() });
                }
            }
            Action::Lock { reason } if succeeded => {
                if let Some(ended) = session.take() {
                    let reason = match reason.as_str() {
                        "time_up" => EndReason::TimeUp,
                        "logout" => EndReason::Logout,
                        "curfew" | "policy" | "under_age" | "youth_hours" | "closed" => EndReason::Policy,
                        _ => EndReason::Staff,
                    };
                    self.send_reliably(SessionEvent::Ended { session_id: ended.id, reason }, Class::Event);
                }
            }
            _ => {}
        }
        self.hold(session, done.lock_state);
        self.acknowledge(done.command, done.result, done.lock_state);
    }

    fn on_login(&mut self, call: LoginCall) {
        let request_id = token("r");
        let ticket: String = call.ticket.chars().take(256).collect();
        self.send_reliably(LoginRequest { request_id: request_id.clone(), ticket }, Class::Event);
        if !self.pump.connected() {
            // Nobody to answer now: tell the lock screen at once that the
            // request waits in the spool.
            let _ = call.answer.send(LoginAnswer::Queued { request_id });
            return;
        }
        self.logins.insert(request_id.clone(), call.answer);
        let (logins_timeout, id) = (self.login_timeouts.clone(), request_id);
        tokio::spawn(async move {
            tokio::time::sleep(LOGIN_ANSWER_WAIT).await;
            let _ = logins_timeout.send(id).await;
        });
    }

    fn on_logout(&mut self, answer: oneshot::Sender<LoginAnswer>) {
        let Some(session) = &self.session else {
            let _ = answer.send(LoginAnswer::NoSession);
            return;
        };
        let _ = answer.send(LoginAnswer::LoggingOut { session_id: session.id.clone() });
        let command = Command { command_id: token("c-local"), action: Action::Lock { reason: "logout".into() } };
        let _ = self.commands.try_send(command);
    }

    fn on_tick(&mut self) {
        // The retained status is told again now and then, so whoever reads
        // it later (the agent after a restart) finds it fresh enough.
        if self.pump.connected() && self.status_told.elapsed() >= STATUS_EVERY {
            self.status_told = Instant::now();
            self.publish_live(self.status(true), true);
        }
        let (telemetry, usage) = self.sampler.sample(self.lock_state, self.session.as_ref().map(|s| s.id.clone()));
        if self.pump.connected() {
            self.publish_live(telemetry, false);
        } else {
            self.send_reliably(telemetry, Class::Telemetry);
        }
        self.check_silence();
        if self.session.is_none() {
            let mut evidence = Vec::new();
            if usage.input_idle.is_some_and(|idle| idle < self.config.telemetry.activity_idle) {
                evidence.push(Evidence::Input);
            }
            if usage.apps_running > 0 {
                evidence.push(Evidence::Applications);
            }
            if usage.interactive_users > 0 && self.lock_state == LockState::Unlocked {
                evidence.push(Evidence::InteractiveLogin);
            }
            if evidence.is_empty() {
                self.activity_reported = false;
            } else if !self.activity_reported {
                self.activity_reported = true;
                self.send_reliably(Activity { evidence, since: Timestamp::now() }, Class::Event);
            }
        }
        self.feed(PumpEvent::Tick);
    }

    fn on_sample(&mut self, sample: Sample) {
        let Some(sensor) = self.config.sensors.get(sample.sensor) else { return };
        let reading = SensorReading {
            sensor: sensor.id.clone(),
            sensor_kind: sensor.kind,
            reading: sample.reading.clone(),
            battery_percent: sample.battery_percent,
            tamper: sample.tamper,
        };
        if let Err(violation) = Message::from(reading.clone()).validate() {
            tracing::warn!(sensor = %sensor.id, %violation, "sensor reading out of range; ignored");
            return;
        }
        let Some(state) = self.sensors.get_mut(sample.sensor) else { return };
        let significant = sensors::significant(state.last.as_ref(), &sample);
        state.last = Some(sample);
        state.heard = Instant::now();
        state.heard_at = Timestamp::now();
        if significant {
            self.send_reliably(reading, Class::Alarm);
        } else if self.pump.connected() {
            self.publish_live(reading, false);
        }
    }

    /// Reports sensors that have been quiet for longer than they may be.
    fn check_silence(&mut self) {
        let mut silent = Vec::new();
        for (index, (state, sensor)) in self.sensors.iter_mut().zip(&self.config.sensors).enumerate() {
            let already = state.last.as_ref().is_some_and(|last| matches!(last.reading, Reading::Silent { .. }));
            if !already && state.heard.elapsed() > sensor.silent_after {
                let sample =
                    Sample { sensor: index, reading: Reading::Silent { since: state.heard_at }, battery_percent: None, tamper: false };
                state.last = Some(sample.clone());
                silent.push((sensor.id.clone(), sensor.kind, sample));
            }
        }
        for (sensor, sensor_kind, sample) in silent {
            tracing::warn!(%sensor, "sensor silent");
            let reading = SensorReading { sensor, sensor_kind, reading: sample.reading, battery_percent: None, tamper: false };
            self.send_reliably(reading, Class::Alarm);
        }
    }

    fn session_deadline(&self) -> Option<Instant> {
        let until = self.session.as_ref()?.until?;
        let left = until.duration_since(Timestamp::now());
        Some(Instant::now() + Duration::try_from(left).unwrap_or(Duration::ZERO))
    }
}

/// Decodes an incoming message and checks that it came where and from whom
/// it should.
fn check_incoming(topic: &str, payload: &[u8], own_topics: &[String], key: Option<&StationKey>) -> Result<Envelope, String> {
    if !own_topics.iter().any(|own| own == topic) {
        return Err("not a topic of this station".into());
    }
    let parsed = Topic::parse(topic).map_err(|error| error.to_string())?;
    let envelope = decode(payload).map_err(|error| error.to_string())?;
    if let Some(key) = key {
        key.verify(topic, payload).map_err(|error| error.to_string())?;
    }
    if envelope.sender.role != SenderRole::Agent {
        return Err(format!("sent by a {:?}, only the agent may send here", envelope.sender.role));
    }
    if &envelope.venue != parsed.venue() {
        return Err(format!("for venue {}, not {}", envelope.venue, parsed.venue()));
    }
    if !parsed.carries().contains(&envelope.kind()) {
        return Err(format!("a {} message does not belong on this topic", envelope.kind()));
    }
    Ok(envelope)
}

/// Builds, signs (when the station has a key) and encodes a message.
fn seal(config: &Config, key: Option<&StationKey>, topic: &str, seq: u64, message: Message) -> (MessageId, String) {
    let sender = Sender::station(&config.station.id);
    let mut envelope = Envelope::new(new_id(), Timestamp::now(), config.station.venue.clone(), sender, seq, message);
    if let Some(key) = key {
        key.sign(topic, &mut envelope);
    }
    (envelope.id, encode(&envelope))
}

/// Runs commands one after the other, so a slow lock program never holds
/// up telemetry or receipts.
async fn command_worker(executor: Executor, mut commands: mpsc::Receiver<Command>, done: mpsc::Sender<Done>) {
    while let Some(command) = commands.recv().await {
        let result = match executor.execute(&command.action).await {
            Ok(()) => Outcome::Done,
            Err(error) => {
                tracing::warn!(command = %command.command_id, %error, "command failed");
                Outcome::Failed { error: error.chars().take(MAX_TEXT - 4).collect() }
            }
        };
        // Report the state the station is really in, whatever was asked.
        let lock_state = executor.lock_state().await;
        if done.send(Done { command, result, lock_state }).await.is_err() {
            return;
        }
    }
}

/// Runs the station until `shutdown` resolves.
pub(crate) async fn run(
    config: Config,
    machine: Machine,
    mut locals: mpsc::Receiver<LocalCall>,
    mut samples: mpsc::Receiver<Sample>,
    mut tampers: mpsc::Receiver<crate::screen::Gone>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let sender = Sender::station(&config.station.id);
    let spool = Spool::open(&config.spool_dir(), config.spool.max_messages)
        .map_err(|error| anyhow::anyhow!("cannot open the spool {}: {error}", config.spool_dir().display()))?;
    let status_topic: String =
        Topic::Station { venue: config.station.venue.clone(), station: config.station.id.clone(), channel: StationChannel::Status }
            .to_string();
    let offline = StationStatus {
        online: false,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capabilities: vec![],
        lock_state: LockState::Unknown,
        session: None,
    };
    let key = config.station_key()?;
    if key.is_none() {
        tracing::warn!(
            "no station key configured (station.key_file): messages are not authenticated and any client of the broker can command this station"
        );
    }
    let (_, will) = seal(&config, key.as_ref(), &status_topic, 0, offline.into());
    let client_id = format!("netbar-{}-{}", config.station.venue, config.station.id);
    // Enrolled stations log in to the broker with their id and the password
    // derived from their key, unless the configuration names other credentials.
    let mut broker = config.broker.clone();
    if let (None, Some(key)) = (&broker.username, &key) {
        broker.username = Some(config.station.id.to_string());
        broker.password = Some(key.broker_password());
    }
    let options = link::options(&broker, &client_id, Some((status_topic, will.into_bytes())))?;
    let (client, mut link_events) = link::start(options, config.broker.max_backoff);
    let sensors = config.sensors.iter().map(|_| SensorState { last: None, heard: Instant::now(), heard_at: Timestamp::now() }).collect();
    let (commands, command_queue) = mpsc::channel(16);
    let (done_sender, mut done) = mpsc::channel(16);
    let lock_state = machine.executor.lock_state().await;
    // The session held when the collector stopped: still on if the screen
    // is still unlocked (the collector alone restarted); over if the
    // station is locked (it shut down, or someone locked it meanwhile).
    let session = crate::held::load(&config.spool_dir());
    tokio::spawn(command_worker(machine.executor, command_queue, done_sender));
    let (login_timeouts, mut timed_out) = mpsc::channel(64);
    tracing::info!(venue = %config.station.venue, station = %config.station.id, spooled = spool.len(), "collector starting");

    let mut station = Station {
        sampler: machine.sampler,
        lock_state,
        sender,
        spool,
        client,
        pump: Pump::new(Instant::now()),
        session: session.clone(),
        recent: VecDeque::new(),
        logins: HashMap::new(),
        activity_reported: false,
        commands,
        login_timeouts,
        sensors,
        key,
        unreachable_reported: false,
        status_told: Instant::now(),
        screens: machine.screens,
        config,
    };
    if let Some(screens) = &station.screens {
        let shown = session.as_ref().map(|held| ShownSession { id: held.id.clone(), until: held.until });
        screens.update(|screen| {
            screen.locked = shown.is_none();
            screen.session = shown;
        });
    }
    match session {
        Some(ended) if lock_state == LockState::Locked => {
            tracing::info!(session = %ended.id, "the station is locked: the session held before the restart is over");
            station.send_reliably(SessionEvent::Ended { session_id: ended.id, reason: EndReason::Shutdown }, Class::Event);
            station.hold(None, lock_state);
        }
        Some(session) => tracing::info!(session = %session.id, "carrying on with the session held before the restart"),
        None => {}
    }
    let mut tick = tokio::time::interval(station.config.telemetry.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let deadline = station.session_deadline();
        tokio::select! {
            event = link_events.recv() => match event {
                Some(LinkEvent::Connected) => station.on_connected(),
                Some(LinkEvent::Disconnected(reason)) => {
                    if station.pump.connected() {
                        tracing::warn!(%reason, "connection to the broker lost; reconnecting");
                    } else if !station.unreachable_reported {
                        // Once per outage, so a wrong address or TLS setup is
                        // visible without flooding the log.
                        station.unreachable_reported = true;
                        tracing::warn!(%reason, "cannot connect to the broker; retrying with backoff");
                    } else {
                        tracing::debug!(%reason, "broker unreachable");
                    }
                    station.feed(PumpEvent::Disconnected);
                }
                Some(LinkEvent::Message { topic, payload }) => station.on_message(&topic, &payload),
                None => anyhow::bail!("the MQTT event loop stopped"),
            },
            _ = tick.tick() => station.on_tick(),
            Some(call) = locals.recv() => match call {
                LocalCall::Login(call) => station.on_login(call),
                LocalCall::Logout(answer) => station.on_logout(answer),
            },
            Some(finished) = done.recv() => station.on_done(finished),
            Some(sample) = samples.recv() => station.on_sample(sample),
            Some(gone) = tampers.recv() => {
                let session = station.session.as_ref().map(|held| held.id.clone());
                station.send_reliably(Tamper { what: gone.what, session, detail: gone.detail.chars().take(MAX_TEXT - 4).collect() }, Class::Event);
            }
            Some(request_id) = timed_out.recv() => {
                if let Some(answer) = station.logins.remove(&request_id) {
                    let _ = answer.send(LoginAnswer::Queued { request_id });
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                // Paid time or an allowed window is over: lock on our own,
                // even if the agent is unreachable.
                if let Some(session) = station.session.as_mut() {
                    session.until = None;
                }
                let command = Command { command_id: token("c-local"), action: Action::Lock { reason: "time_up".into() } };
                let _ = station.commands.try_send(command);
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("stopping: marking the station offline");
    station.publish_live(station.status(false), true);
    let _ = station.client.try_disconnect();
    // Give the event loop a moment to flush the offline status and the disconnect.
    let flush = async {
        while let Some(event) = link_events.recv().await {
            if matches!(event, LinkEvent::Disconnected(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use netbar_protocol::{Kind, examples};

    use super::*;

    #[test]
    fn incoming_messages_are_checked() {
        let command_topic = examples::COMMAND_TOPIC;
        let own = [command_topic.to_owned(), "netbar/v1/sh-0042/station/st-017/delivery".to_owned()];
        let key = examples::example_key();
        let command = encode(&examples::envelope(Kind::Command));
        assert!(check_incoming(command_topic, command.as_bytes(), &own, Some(&key)).is_ok());
        let mut unsigned = examples::envelope(Kind::Command);
        unsigned.mac = None;
        let cases = [
            ("netbar/v1/sh-0042/station/st-018/command", command.clone(), "not a topic of this station"),
            (own[1].as_str(), command.clone(), "published on another topic"),
            (command_topic, encode(&unsigned), "not authenticated"),
            (command_topic, "{".repeat(70_000), "at most 65536 allowed"),
            (command_topic, "nonsense".to_owned(), "not well-formed JSON"),
        ];
        for (topic, payload, expected) in cases {
            let error = check_incoming(topic, payload.as_bytes(), &own, Some(&key)).unwrap_err();
            assert!(error.contains(expected), "{topic}: {error}");
        }
        // Without a key, the other checks still hold.
        let error = check_incoming(command_topic, encode(&examples::envelope(Kind::Telemetry)).as_bytes(), &own, None).unwrap_err();
        assert!(error.contains("sent by a Station"), "{error}");
        let error = check_incoming(&own[1], command.as_bytes(), &own, None).unwrap_err();
        assert!(error.contains("a command message does not belong on this topic"), "{error}");
    }
}
