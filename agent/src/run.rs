//! `netbar-agent run`: the bus, the venue and the store, wired together.
//!
//! One task owns the [`Venue`]; one thread owns the SQLite connection. Every
//! message from a station is checked (topic, enrollment, MAC, sender,
//! bridged sensor) before the venue sees it; refusals are counted and
//! logged with their reason and change nothing. A sequenced message is
//! acknowledged to its station (`delivery_ack`) only after the log entries
//! it caused are committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::messages::{Delivery, DeliveryAck, DeliveryEntry};
use netbar_protocol::{Envelope, Message, MessageId, Sender, SenderRole, StationChannel, StationId, StationKey, Topic, decode, encode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use crate::config::{BrokerMode, Loaded};
use crate::http::{Api, Request, TransitionFailure};
use crate::journal::LogEntry;
use crate::refusals::Refusals;
use crate::store::{Entry, Outbound, Queued, SEQUENCES_KEPT, Store, StoreError};
use crate::venue::{Effect, Venue};

/// The client id and user name of the agent on the bus.
pub(crate) const AGENT: &str = "netbar-agent";

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
    Append(Timestamp, LogEntry, Option<Outbound>, oneshot::Sender<Result<Entry, StoreError>>),
    /// Stations' sequence numbers accepted, each with whom to tell once
    /// committed (with the entries queued beside them).
    Accept(Vec<((String, u64), Reply<()>)>),
    /// A summary for the regulator, on its own, and the end of its period.
    Enqueue(Timestamp, Outbound, Option<Timestamp>, oneshot::Sender<Result<Option<u64>, StoreError>>),
    QueuedAfter(u64, usize, oneshot::Sender<Result<Vec<Queued>, StoreError>>),
    /// Acknowledged by the regulator's broker: out of the outbox.
    Remove(Vec<u64>, oneshot::Sender<()>),
    Connected(bool, Timestamp),
    /// The outbox's size, the log's head and the store's health.
    Facts(oneshot::Sender<Facts>),
    /// The feed's state as recorded, for the console and /metrics.
    OutboxStatus(oneshot::Sender<Result<crate::store::OutboxStatus, StoreError>>),
    Purge(Timestamp, oneshot::Sender<Result<usize, StoreError>>),
    /// The first of a new block of numbers for the agent's commands.
    Reserve(u64, u64, oneshot::Sender<Result<u64, StoreError>>),
    /// What is enrolled now (enrollments and revocations by `netbar-agent enroll`).
    Enrolled(oneshot::Sender<Result<Enrolled, StoreError>>),
    /// Answered once everything queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// What the store says of itself: the outbox's size, the log's head, and
/// why it last failed to write, while it has not written since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) pending: u64,
    pub(crate) head: (u64, String),
    pub(crate) failing: Option<String>,
}

/// The store's owner: a thread serving requests in order.
#[derive(Debug, Clone)]
pub(crate) struct StoreHandle {
    requests: mpsc::Sender<StoreRequest>,
    /// Woken whenever a message for the regulator was queued.
    pub(crate) queued: Arc<tokio::sync::Notify>,
}

fn stopped() -> StoreError {
    StoreError::Unwritable("the store stopped".into())
}

/// Most entries committed in one transaction.
const BATCH: usize = 256;

/// What commits in one transaction: entries to append and sequence numbers
/// accepted, each with whom to answer.
#[derive(Default)]
struct Batch {
    entries: Vec<(Timestamp, LogEntry, Option<Outbound>, Reply<Entry>)>,
    accepted: Vec<((String, u64), Reply<()>)>,
}

/// Where the store thread answers a request.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl Batch {
    /// Takes an Append or Accept request; gives any other back.
    fn add(&mut self, request: StoreRequest) -> Option<StoreRequest> {
        match request {
            StoreRequest::Append(at, entry, outbound, reply) => self.entries.push((at, entry, outbound, reply)),
            StoreRequest::Accept(accepted) => self.accepted.extend(accepted),
            other => return Some(other),
        }
        None
    }

    fn len(&self) -> usize {
        self.entries.len() + self.accepted.len()
    }
}

/// Commits a batch in one transaction and answers each request; the
/// failure's text when it could not.
fn commit_batch(store: &mut Store, batch: Batch, outbox_max: u64, queued: &tokio::sync::Notify) -> Option<String> {
    let mut replies = Vec::with_capacity(batch.entries.len());
    let mut entries = Vec::with_capacity(batch.entries.len());
    let mut uplinked = false;
    for (at, entry, outbound, reply) in batch.entries {
        uplinked |= outbound.is_some();
        entries.push((at, entry, outbound));
        replies.push(reply);
    }
    let (accepted, accept_replies): (Vec<(String, u64)>, Vec<_>) = batch.accepted.into_iter().unzip();
    let appending = entries.iter_mut().map(|(at, entry, outbound)| ((*at, &*entry), outbound.take())).collect();
    match store.append_accepting(appending, &accepted, outbox_max) {
        Ok(committed) => {
            for (reply, entry) in replies.into_iter().zip(committed) {
                let _ = reply.send(Ok(entry));
            }
            for reply in accept_replies {
                let _ = reply.send(Ok(()));
            }
            if uplinked {
                queued.notify_one();
            }
            None
        }
        Err(error) => {
            let text = error.to_string();
            let failure = || match error {
                StoreError::Full => StoreError::Full,
                _ => StoreError::Unwritable(text.clone()),
            };
            for reply in replies {
                let _ = reply.send(Err(failure()));
            }
            for reply in accept_replies {
                let _ = reply.send(Err(failure()));
            }
            Some(text)
        }
    }
}

impl StoreHandle {
    pub(crate) fn start(mut store: Store, outbox_max: u64) -> anyhow::Result<StoreHandle> {
        let (requests, mut queue) = mpsc::channel::<StoreRequest>(4096);
        let queued = Arc::new(tokio::sync::Notify::new());
        let notify = queued.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                // Why the last write failed, until one succeeds again.
                let mut failing: Option<String> = None;
                let mut next = queue.blocking_recv();
                while let Some(request) = next.take() {
                    match request {
                        request @ (StoreRequest::Append(..) | StoreRequest::Accept(..)) => {
                            // Whatever queued up meanwhile commits with it:
                            // one sync for a burst, in the order received.
                            let mut batch = Batch::default();
                            batch.add(request);
                            while batch.len() < BATCH {
                                match queue.try_recv() {
                                    Ok(request) => {
                                        if let Some(other) = batch.add(request) {
                                            next = Some(other);
                                            break;
                                        }
                                    }
                                    Err(_) => break,
                                }
                            }
                            failing = commit_batch(&mut store, batch, outbox_max, &notify);
                        }
                        StoreRequest::Enqueue(at, outbound, period_end, reply) => {
                            let result = store.enqueue_alone(at, outbox_max, outbound, period_end);
                            match &result {
                                Ok(Some(_)) => {
                                    failing = None;
                                    notify.notify_one();
                                }
                                Ok(None) => {}
                                Err(error) => failing = Some(error.to_string()),
                            }
                            let _ = reply.send(result);
                        }
                        StoreRequest::QueuedAfter(after, limit, reply) => {
                            let _ = reply.send(store.queued_after(after, limit));
                        }
                        StoreRequest::Remove(seqs, done) => {
                            if let Err(error) = store.acknowledged(&seqs) {
                                tracing::error!(%error, "cannot remove acknowledged messages from the outbox; they will be sent again");
                            }
                            drop(done);
                        }
                        StoreRequest::Connected(connected, at) => {
                            if let Err(error) = store.set_connected(connected, at) {
                                tracing::warn!(%error, "cannot note the uplink's state");
                            }
                        }
                        StoreRequest::Facts(reply) => {
                            let (index, hash) = store.head();
                            let _ =
                                reply.send(Facts { pending: store.pending(), head: (index, hash.to_owned()), failing: failing.clone() });
                        }
                        StoreRequest::OutboxStatus(reply) => {
                            let _ = reply.send(store.outbox_status());
                        }
                        StoreRequest::Purge(now, reply) => {
                            let _ = reply.send(store.purge(now));
                        }
                        StoreRequest::Reserve(floor, count, reply) => {
                            let _ = reply.send(store.reserve_command_numbers(floor, count));
                        }
                        StoreRequest::Enrolled(reply) => {
                            let _ = reply.send(Enrolled::load(&store));
                        }
                        StoreRequest::Flush(reply) => {
                            let _ = reply.send(());
                        }
                    }
                    if next.is_none() {
                        next = queue.blocking_recv();
                    }
                }
            })
            .context("cannot start the store thread")?;
        Ok(StoreHandle { requests, queued })
    }

    /// Sends a request whose answer comes on a oneshot channel.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> StoreRequest) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Queues an entry, with the message for the regulator it causes; it is
    /// committed, in order, soon after.
    pub(crate) async fn queue(&self, at: Timestamp, entry: LogEntry, outbound: Option<Outbound>) -> Pending {
        let (reply, committed) = oneshot::channel();
        if let Err(mpsc::error::SendError(StoreRequest::Append(.., reply))) =
            self.requests.send(StoreRequest::Append(at, entry, outbound, reply)).await
        {
            let _ = reply.send(Err(stopped()));
        }
        Pending(committed)
    }

    /// Notes stations' sequence numbers as accepted, in one transaction
    /// (with the entries queued beside them); each is told when committed.
    async fn accept(&self, accepted: Vec<((String, u64), Reply<()>)>) {
        if let Err(mpsc::error::SendError(StoreRequest::Accept(accepted))) = self.requests.send(StoreRequest::Accept(accepted)).await {
            for (_, reply) in accepted {
                let _ = reply.send(Err(stopped()));
            }
        }
    }

    /// Queues a summary for the regulator on its own, ending its period at
    /// `period_end`; its sequence number, or None when it is not queued
    /// (the outbox is over its bound).
    pub(crate) async fn enqueue(
        &self,
        at: Timestamp,
        outbound: Outbound,
        period_end: Option<Timestamp>,
    ) -> Result<Option<u64>, StoreError> {
        self.ask(|reply| StoreRequest::Enqueue(at, outbound, period_end, reply)).await.ok_or_else(stopped)?
    }

    pub(crate) async fn queued_after(&self, after: u64, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.ask(|reply| StoreRequest::QueuedAfter(after, limit, reply)).await.ok_or_else(stopped)?
    }

    /// Removes acknowledged messages; the receiver closes once done.
    pub(crate) async fn remove(&self, seqs: Vec<u64>) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        let _ = self.requests.send(StoreRequest::Remove(seqs, done)).await;
        finished
    }

    pub(crate) async fn set_connected(&self, connected: bool) {
        let _ = self.requests.send(StoreRequest::Connected(connected, Timestamp::now())).await;
    }

    /// The outbox's size, the log's head and the store's health; an error
    /// when the store's thread is gone (never zeros that look like data).
    pub(crate) async fn facts(&self) -> Result<Facts, StoreError> {
        self.ask(StoreRequest::Facts).await.ok_or_else(stopped)
    }

    /// The feed's state as recorded: backlog, oldest unsent, sequence numbers.
    pub(crate) async fn outbox_status(&self) -> Result<crate::store::OutboxStatus, StoreError> {
        self.ask(StoreRequest::OutboxStatus).await.ok_or_else(stopped)?
    }

    /// Removes entries older than the retention period.
    pub(crate) async fn purge(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.ask(|reply| StoreRequest::Purge(now, reply)).await.ok_or_else(stopped)?
    }

    /// The first of a new block of `count` command numbers, at least `floor`.
    async fn reserve_command_numbers(&self, floor: u64, count: u64) -> Result<u64, StoreError> {
        self.ask(|reply| StoreRequest::Reserve(floor, count, reply)).await.ok_or_else(stopped)?
    }

    /// What is enrolled, as the database says now.
    async fn enrolled(&self) -> Result<Enrolled, StoreError> {
        self.ask(StoreRequest::Enrolled).await.ok_or_else(stopped)?
    }

    /// Returns once everything queued so far is done.
    async fn flush(&self) {
        self.ask(StoreRequest::Flush).await;
    }
}

/// An entry queued for the store; [`Pending::committed`] waits for its commit.
pub(crate) struct Pending(oneshot::Receiver<Result<Entry, StoreError>>);

impl Pending {
    pub(crate) async fn committed(self) -> Result<Entry, StoreError> {
        self.0.await.map_err(|_| stopped())?
    }
}

/// The entries some event caused, on their way to the store, and the
/// sequence number accepted with them.
#[derive(Default)]
struct Commits(Vec<Pending>, Option<oneshot::Receiver<Result<(), StoreError>>>);

impl Commits {
    /// Waits until everything is committed; the first failure otherwise.
    async fn done(self) -> Result<(), StoreError> {
        for pending in self.0 {
            pending.committed().await?;
        }
        if let Some(accepted) = self.1 {
            accepted.await.map_err(|_| stopped())??;
        }
        Ok(())
    }
}

/// How often the agent reads the enrollments again.
const ENROLLMENTS_READ_EVERY: Duration = Duration::from_secs(5);

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
    key.verify(topic, payload).map_err(|e| ("forged", e.to_string()))?;
    if envelope.sender.role != SenderRole::Station || envelope.sender.id != station.as_str() {
        return Err(("forged", format!("sender {:?} {} is not station {station}", envelope.sender.role, envelope.sender.id)));
    }
    if &envelope.venue != venue {
        return Err(("venue", format!("envelope of venue {}", envelope.venue)));
    }
    if !parsed.carries().contains(&envelope.kind()) {
        return Err(("kind", format!("a {} message does not belong on {topic}", envelope.kind())));
    }
    if i64::try_from(envelope.seq).is_err() {
        return Err(("sequence", format!("sequence number {} is beyond 2^63", envelope.seq)));
    }
    Ok(Accepted { station, envelope })
}

/// The sequence numbers accepted from each station: the newest
/// [`SEQUENCES_KEPT`] of each, kept in the database with the entries they
/// caused, so a message captured once is refused after any restart.
#[derive(Debug, Default)]
struct Sequences {
    accepted: HashMap<String, std::collections::BTreeSet<u64>>,
}

/// The numbers of the agent's commands: increasing across restarts, taken
/// from blocks reserved in the database, each starting at least at the
/// clock (microseconds) so a new database also starts above the old one's.
/// A station refuses a command numbered at or below the last it accepted.
#[derive(Debug)]
struct CommandNumbers {
    next: std::sync::atomic::AtomicU64,
    end: u64,
}

impl CommandNumbers {
    /// Numbers in a block; a new one is reserved when half is used.
    const BLOCK: u64 = 1 << 20;

    fn starting(first: u64) -> CommandNumbers {
        CommandNumbers { next: std::sync::atomic::AtomicU64::new(first), end: first + Self::BLOCK }
    }

    fn take(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn running_low(&self) -> bool {
        self.end.saturating_sub(self.next.load(std::sync::atomic::Ordering::Relaxed)) < Self::BLOCK / 2
    }
}

/// What a sequenced message is to the station's sequence.
#[derive(Debug, PartialEq, Eq)]
enum Sequenced {
    New,
    /// Accepted already: a resend whose receipt was lost, or a replay.
    Again,
    /// Older than every number kept: a replay, or a station whose spool
    /// was reset and counts from a number it already used.
    Stale {
        newest: u64,
    },
}

impl Sequences {
    fn restore(accepted: HashMap<String, Vec<u64>>) -> Sequences {
        Sequences { accepted: accepted.into_iter().map(|(station, seqs)| (station, seqs.into_iter().collect())).collect() }
    }

    fn judge(&self, station: &str, seq: u64) -> Sequenced {
        let Some(kept) = self.accepted.get(station) else { return Sequenced::New };
        if kept.contains(&seq) {
            return Sequenced::Again;
        }
        match kept.first() {
            Some(&oldest_kept) if kept.len() >= SEQUENCES_KEPT && seq < oldest_kept => {
                Sequenced::Stale { newest: kept.last().copied().unwrap_or(oldest_kept) }
            }
            _ => Sequenced::New,
        }
    }

    fn accept(&mut self, station: &str, seq: u64) {
        let kept = self.accepted.entry(station.to_owned()).or_default();
        kept.insert(seq);
        if kept.len() > SEQUENCES_KEPT {
            kept.pop_first();
        }
    }

    /// Takes back a number whose commit failed (the station sends it again).
    fn forget(&mut self, station: &str, seq: u64) {
        if let Some(kept) = self.accepted.get_mut(station) {
            kept.remove(&seq);
        }
    }
}

/// How often the sequence numbers accepted meanwhile go to the store (their
/// receipts wait for it).
const ACCEPTED_EVERY: Duration = Duration::from_millis(50);

/// How long a worked-out next deadline of the venue is used before it is
/// worked out again.
const DEADLINE_FRESH: Duration = Duration::from_millis(200);

/// Seconds a station's clock may be off before its tile says so.
const CLOCK_OFF_AFTER: i64 = 30;

/// A station's status saying it is offline: its last will, published by the
/// broker when the connection dies, so as old as the connection.
fn is_last_will(message: &Message) -> bool {
    matches!(message, Message::StationStatus(status) if !status.online)
}

/// What the agent takes back when an event's log entries cannot be committed.
enum Undo {
    CheckIn(String),
    Accepted(StationId, u64),
    Incident(Box<crate::venue::Incident>),
}

/// The running agent's bus side.
struct Agent {
    loaded: Loaded,
    client: AsyncClient,
    store: StoreHandle,
    enrolled: Enrolled,
    /// The embedded bus, told of every change of the enrollments.
    bus: Option<crate::bus::Bus>,
    /// When the enrollments were last read.
    enrollments_read: tokio::time::Instant,
    venue: Venue,
    sequences: Sequences,
    /// Sequence numbers accepted since they were last sent to the store.
    accepted: Vec<((String, u64), Reply<()>)>,
    command_numbers: CommandNumbers,
    /// Stations whose clocks are off: seconds ahead (negative: behind).
    skews: HashMap<String, i64>,
    refusals: Arc<Refusals>,
    clock: Clock,
    /// Answers waiting for their commits: receipts, API replies.
    waiting: tokio::task::JoinSet<()>,
    undo: mpsc::UnboundedSender<Undo>,
    /// Subscriptions the broker has yet to acknowledge.
    unsubscribed: usize,
    /// The regulator feed, when there is one.
    feed: Option<crate::feed::Feed>,
    /// What happened since the last summary, and since when.
    tally: crate::feed::Tally,
    period_start: Timestamp,
    /// The regulator link as the uplink task sees it.
    uplink_state: Arc<crate::uplink::LinkState>,
    /// (when, customers present, sessions open), a sample a minute for a day.
    occupancy: std::collections::VecDeque<(Timestamp, u32, u32)>,
}

impl Agent {
    /// A message to a station, signed with its key: the topic and payload.
    /// Commands carry the agent's next command number and the system's
    /// time, so a station refuses one sent again later.
    fn signed(&self, station: &StationId, channel: StationChannel, message: impl Into<Message>) -> Option<(String, Vec<u8>)> {
        let topic = Topic::Station { venue: self.loaded.config.venue.id.clone(), station: station.clone(), channel }.to_string();
        let message = message.into();
        let (seq, ts) = match message {
            Message::Command(_) => (self.command_numbers.take(), Timestamp::now()),
            _ => (0, self.clock.now()),
        };
        let mut envelope = Envelope::new(
            MessageId::from_parts(Timestamp::now(), rand::random()),
            ts,
            self.loaded.config.venue.id.clone(),
            Sender::agent(AGENT),
            seq,
            message,
        );
        let key = self.enrolled.stations.get(station.as_str())?;
        key.sign(&topic, &mut envelope);
        Some((topic, encode(&envelope).into_bytes()))
    }

    fn publish_to(&self, station: &StationId, channel: StationChannel, message: impl Into<Message>) {
        let Some((topic, payload)) = self.signed(station, channel, message) else { return };
        if let Err(error) = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(%station, %error, "cannot publish to station");
        }
    }

    /// Applies effects: commands leave at once, log entries are queued for
    /// the store, in order; the returned commits say when they are durable.
    async fn apply(&mut self, effects: Vec<Effect>) -> Commits {
        let mut commits = Commits::default();
        let now = self.clock.now();
        for effect in effects {
            match effect {
                Effect::Command { station, mut action } => {
                    // Instants a station acts on are in its (the system's) time.
                    if let netbar_protocol::messages::Action::Unlock { until: Some(at), .. }
                    | netbar_protocol::messages::Action::Notify { ends: Some(at), .. }
                    | netbar_protocol::messages::Action::RefuseLogin { allowed_from: Some(at), .. } = &mut action
                    {
                        *at = self.clock.to_system(*at);
                    }
                    let command = netbar_protocol::messages::Command { command_id: format!("c-{:016x}", rand::random::<u64>()), action };
                    self.publish_to(&station, StationChannel::Command, command);
                }
                Effect::Record(entry) => {
                    if let LogEntry::Incident(incident) = &entry {
                        tracing::warn!(incident = %incident.incident, transition = ?incident.transition, "incident");
                    }
                    self.tally.observe(&entry);
                    let outbound = self.feed.as_ref().and_then(|feed| feed.outbound(&entry, now));
                    commits.0.push(self.store.queue(now, entry, outbound).await);
                }
            }
        }
        commits
    }

    /// Runs `then` with the outcome once `commits` are durable, without
    /// holding up the next event.
    fn after<F>(&mut self, commits: Commits, then: impl FnOnce(Result<(), StoreError>) -> F + Send + 'static)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.waiting.spawn(async move { then(commits.done().await).await });
    }

    /// Takes up enrollments and revocations made since the last look.
    async fn read_enrollments(&mut self) {
        self.enrollments_read = tokio::time::Instant::now();
        match self.store.enrolled().await {
            Ok(enrolled) => {
                let revoked: Vec<&String> = self.enrolled.stations.keys().filter(|id| !enrolled.stations.contains_key(*id)).collect();
                if !revoked.is_empty() {
                    tracing::warn!(stations = ?revoked, "stations revoked: their messages are refused from now on");
                }
                let changed = enrolled.stations != self.enrolled.stations || enrolled.sensors != self.enrolled.sensors;
                if let Some(bus) = self.bus.as_ref().filter(|_| changed) {
                    bus.enroll(&enrolled.stations, &enrolled.sensors);
                }
                self.enrolled = enrolled;
            }
            Err(error) => tracing::warn!(%error, "cannot read the enrollments"),
        }
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let mut checked = check(&self.enrolled, &self.loaded.config.venue.id, topic, payload);
        if matches!(checked, Err(("unenrolled_station" | "unenrolled_sensor", _)))
            && self.enrollments_read.elapsed() >= Duration::from_secs(1)
        {
            // Enrolled a moment ago? Look again (at most once a second, so a
            // revoked station's stream costs nothing).
            self.read_enrollments().await;
            checked = check(&self.enrolled, &self.loaded.config.venue.id, topic, payload);
        }
        let Accepted { station, envelope } = match checked {
            Ok(accepted) => accepted,
            Err((reason, detail)) => {
                let topic = topic.chars().take(200).collect::<String>();
                self.refusals.refuse(&crate::refusals::sender_of(&topic), reason, "message", &format_args!("{detail} (topic {topic})"));
                return;
            }
        };
        let sequenced = envelope.seq > 0;
        let receipt = |delivery| DeliveryAck { entries: vec![DeliveryEntry { id: envelope.id, seq: envelope.seq, delivery }] };
        let skew = envelope.ts.as_second() - Timestamp::now().as_second();
        if !sequenced && matches!(envelope.message, Message::Telemetry(_)) {
            // Telemetry is sent the moment it is made: its time is the
            // station's clock.
            self.note_clock(&station, skew);
        }
        if sequenced {
            match self.sequences.judge(station.as_str(), envelope.seq) {
                Sequenced::New => {}
                Sequenced::Again => {
                    self.publish_to(&station, StationChannel::Delivery, receipt(Delivery::Duplicate));
                    return;
                }
                Sequenced::Stale { newest } => {
                    let detail = format_args!("sequence number {} is older than every one kept (the newest is {newest})", envelope.seq);
                    self.refusals.refuse(&format!("station {station}"), "replayed", "message", &detail);
                    let reason = netbar_protocol::messages::stale_sequence(newest);
                    self.publish_to(&station, StationChannel::Delivery, receipt(Delivery::Rejected { reason }));
                    return;
                }
            }
        } else if skew.unsigned_abs() > self.loaded.config.rules.message_window.as_secs() && !is_last_will(&envelope.message) {
            // Unsequenced (telemetry, status): only fresh ones count, so a
            // captured one sent again later does nothing.
            let detail = format_args!("a {} from {skew} s away from this clock", envelope.kind());
            self.refusals.refuse(&format!("station {station}"), "stale", "message", &detail);
            return;
        }
        let effects = self.venue.on_message(self.clock.now(), &station, &envelope.message);
        let mut commits = self.apply(effects).await;
        if sequenced {
            // Committed with the others accepted within ACCEPTED_EVERY: one
            // transaction for many stations' messages, not one each.
            self.sequences.accept(station.as_str(), envelope.seq);
            let (reply, committed) = oneshot::channel();
            self.accepted.push(((station.to_string(), envelope.seq), reply));
            commits.1 = Some(committed);
        }
        if commits.0.is_empty() && !sequenced {
            return;
        }
        // The receipt leaves only once the entries are committed; without
        // it the station keeps the message and sends it again.
        let stored = if sequenced { self.signed(&station, StationChannel::Delivery, receipt(Delivery::Stored)) } else { None };
        let client = self.client.clone();
        let (undo, seq) = (self.undo.clone(), envelope.seq);
        self.after(commits, move |result| async move {
            if result.is_err() && seq > 0 {
                let _ = undo.send(Undo::Accepted(station.clone(), seq));
            }
            match (result, stored) {
                (Ok(()), Some((topic, payload))) => {
                    if let Err(error) = client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                        tracing::warn!(%station, %error, "cannot send a receipt");
                    }
                }
                (Ok(()), None) => {}
                (Err(error), _) => tracing::error!(%station, %error, "message not stored; the station will resend it"),
            }
        });
    }

    async fn on_request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            Request::CheckIn { document, name, circumstances, reply } => {
                let (outcome, effects) = self.venue.check_in(now, &document, circumstances, name, rand::random);
                let commits = self.apply(effects).await;
                let undo = self.undo.clone();
                self.after(commits, move |result| async move {
                    let _ = reply.send(match result {
                        Ok(()) => Ok(outcome),
                        Err(error) => {
                            if let crate::venue::CheckInOutcome::Admitted { ticket, .. } = outcome {
                                let _ = undo.send(Undo::CheckIn(ticket));
                            }
                            tracing::error!(%error, "check-in refused: it cannot be recorded");
                            Err(error.to_string())
                        }
                    });
                });
            }
            Request::CheckOut { ticket, reply } => match self.venue.check_out(now, &ticket) {
                None => {
                    let _ = reply.send(Ok(false));
                }
                Some(effects) => {
                    let commits = self.apply(effects).await;
                    self.after(commits, move |result| async move {
                        let _ = reply.send(result.map(|()| true).map_err(|error| error.to_string()));
                    });
                }
            },
            Request::Stations { reply } => {
                let mut stations = self.venue.stations_json();
                if let Some(list) = stations.get_mut("stations").and_then(|list| list.as_array_mut()) {
                    self.with_clocks(list);
                }
                let _ = reply.send(stations);
            }
            Request::Sessions { reply } => {
                let _ = reply.send(self.venue.sessions_json());
            }
            Request::Command { station, action, by, reply } => match self.venue.staff_command(now, &station, action, &by) {
                None => {
                    let _ = reply.send(Err(format!("station {station} is not known to the venue")));
                }
                Some(effects) => {
                    let commits = self.apply(effects).await;
                    self.after(commits, move |result| async move {
                        let _ = reply.send(result.map_err(|error| error.to_string()));
                    });
                }
            },
            Request::Floor { reply } => {
                let _ = reply.send(self.floor().await);
            }
            Request::Occupancy { reply } => {
                let mut points: Vec<serde_json::Value> =
                    self.occupancy.iter().map(|(at, customers, sessions)| serde_json::json!([at, customers, sessions])).collect();
                let occupancy = self.venue.occupancy();
                points.push(serde_json::json!([now, occupancy.customers, occupancy.sessions]));
                let _ = reply.send(serde_json::json!({ "points": points, "capacity": self.loaded.config.venue.capacity }));
            }
            Request::Open { station, ticket, by, reply } => match self.venue.open_for(now, &station, &ticket, &by) {
                None => {
                    let _ = reply.send(Err((
                        axum::http::StatusCode::NOT_FOUND,
                        "unknown_station",
                        format!("station {station} is not known to the venue"),
                    )));
                }
                Some(Err(message)) => {
                    let _ = reply.send(Err((axum::http::StatusCode::CONFLICT, "login_refused", message)));
                }
                Some(Ok(effects)) => {
                    let commits = self.apply(effects).await;
                    self.after(commits, move |result| async move {
                        let _ = reply.send(result.map_err(|error| {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not_recorded", format!("NOT recorded: {error}"))
                        }));
                    });
                }
            },
            Request::Audit { access, reply } => {
                let commits = self.apply(vec![Effect::Record(LogEntry::PersonalDataAccess(access))]).await;
                self.after(commits, move |result| async move {
                    let _ = reply.send(result.map_err(|error| error.to_string()));
                });
            }
            Request::Incidents { reply } => {
                let _ = reply.send(serde_json::json!({ "incidents": self.venue.incidents() }));
            }
            Request::Transition { id, by, resolve, reply } => {
                let before = self.venue.incident(&id).cloned();
                match self.venue.transition(now, &id, &by, resolve) {
                    Err(error) => {
                        let _ = reply.send(Err(TransitionFailure::Refused(error)));
                    }
                    Ok(effects) => {
                        let commits = self.apply(effects).await;
                        let undo = self.undo.clone();
                        self.after(commits, move |result| async move {
                            let _ = reply.send(result.map_err(|error| {
                                if let Some(before) = before {
                                    let _ = undo.send(Undo::Incident(Box::new(before)));
                                }
                                TransitionFailure::NotRecorded(error.to_string())
                            }));
                        });
                    }
                }
            }
        }
    }

    /// Queues the summary of the period that ends now for the regulator.
    /// One point of the console's occupancy chart.
    fn sample_occupancy(&mut self) {
        let now = self.clock.now();
        let occupancy = self.venue.occupancy();
        self.occupancy.push_back((now, occupancy.customers, occupancy.sessions));
        while self.occupancy.front().is_some_and(|(at, ..)| now.duration_since(*at).as_secs() > 86_400) {
            self.occupancy.pop_front();
        }
    }

    /// Adds how far off each station's clock is (when it is) to its tile.
    fn with_clocks(&self, tiles: &mut [serde_json::Value]) {
        for tile in tiles {
            let skew = tile.get("id").and_then(|id| id.as_str()).and_then(|id| self.skews.get(id)).copied();
            if let (Some(skew), Some(tile)) = (skew, tile.as_object_mut()) {
                tile.insert("clock_skew_seconds".into(), skew.into());
            }
        }
    }

    /// The floor map and the counts at a glance.
    async fn floor(&self) -> serde_json::Value {
        let occupancy = self.venue.occupancy();
        let mut tiles = self.venue.floor();
        self.with_clocks(&mut tiles);
        let open: Vec<&crate::venue::Incident> = self.venue.incidents().into_iter().filter(|i| i.resolved.is_none()).collect();
        let sensors_faulty =
            open.iter().filter(|i| i.kind == netbar_protocol::messages::IncidentKind::SensorFault && i.sensor.is_some()).count();
        let facts = self.store.facts().await;
        let store = match &facts {
            Ok(Facts { failing: None, .. }) => serde_json::json!({ "ok": true }),
            Ok(Facts { failing: Some(error), .. }) => serde_json::json!({ "ok": false, "error": error }),
            Err(error) => serde_json::json!({ "ok": false, "error": error.to_string() }),
        };
        let uplink = match &self.loaded.uplink {
            None => serde_json::json!({ "configured": false }),
            Some(settings) => {
                let pending = facts.as_ref().ok().map(|facts| facts.pending);
                serde_json::json!({
                    "configured": true,
                    "connected": self.uplink_state.connected.load(std::sync::atomic::Ordering::Relaxed),
                    "backlog": pending,
                    "outbox_max": settings.outbox_max,
                    "warning": pending.is_some_and(|pending| crate::feed::half_full(pending, settings.outbox_max)),
                })
            }
        };
        serde_json::json!({
            "venue": self.loaded.config.venue.id.as_str(),
            "now": self.clock.now(),
            "customers": occupancy.customers,
            "capacity": self.loaded.config.venue.capacity,
            "sessions": occupancy.sessions,
            "online": occupancy.online,
            "sensors": { "enrolled": self.enrolled.sensors.len(), "healthy": self.enrolled.sensors.len().saturating_sub(sensors_faulty) },
            "stations": tiles,
            "incidents": open,
            "uplink": uplink,
            "store": store,
        })
    }

    /// Queues the summary of the period since the last one queued. When
    /// the outbox is over its bound the summary is not queued and this
    /// period's counts carry over into the next: nothing is lost and no
    /// sequence number is skipped.
    async fn summarise(&mut self) {
        let Some(feed) = &self.feed else { return };
        let now = self.clock.now();
        let open: Vec<(netbar_protocol::messages::Severity, bool)> = self
            .venue
            .incidents()
            .into_iter()
            .filter(|incident| incident.resolved.is_none())
            .map(|incident| (incident.severity, incident.acknowledged.is_some()))
            .collect();
        let silent = self
            .venue
            .incidents()
            .into_iter()
            .filter(|incident| incident.resolved.is_none() && incident.kind == netbar_protocol::messages::IncidentKind::SensorFault)
            .count() as u32;
        let (pending, store_error) = match self.store.facts().await {
            Ok(facts) => (Some(facts.pending), facts.failing),
            Err(error) => (None, Some(error.to_string())),
        };
        let occupancy = self.venue.occupancy();
        let sensors_enrolled = self.enrolled.sensors.len() as u32;
        let tally = &self.tally;
        let from = self.period_start;
        let half_full = pending.is_some_and(|pending| crate::feed::half_full(pending, feed.outbox_max));
        let summary = netbar_protocol::messages::Summary {
            from,
            to: now.max(from + jiff::SignedDuration::from_millis(1)),
            stations_enrolled: (self.enrolled.stations.len() as u32).max(occupancy.online),
            stations_online: occupancy.online,
            sessions_open: occupancy.sessions,
            customers_present: occupancy.customers,
            registrations: tally.admitted,
            refusals: tally.refusals(),
            unregistered_use: tally.unregistered_use,
            incidents_opened: tally.opened,
            incidents_acknowledged: tally.acknowledged,
            incidents_resolved: tally.resolved,
            incidents_open: open.len() as u32,
            incidents_open_by_severity: crate::feed::by_severity(&open),
            sensors_enrolled,
            sensors_silent: silent.min(sensors_enrolled),
            compliance: crate::feed::compliance(&open, silent, half_full, store_error.is_some()),
            // Filled in by the store with the head at the moment it queues the summary.
            log_head: netbar_protocol::messages::LogHead { index: 0, hash: crate::store::GENESIS.to_owned() },
            store_error,
        };
        match self.store.enqueue(now, feed.summary(summary), Some(now)).await {
            Ok(Some(_)) => {
                self.tally = crate::feed::Tally::default();
                self.period_start = now;
            }
            Ok(None) => {
                tracing::warn!(?pending, since = %from, "the regulator outbox is over its bound: this period's summary carries over into the next")
            }
            Err(error) => {
                tracing::error!(%error, since = %from, "cannot queue the summary for the regulator; its period carries over into the next")
            }
        }
    }

    /// Keeps how far off a station's clock is, for its tile; logged when it
    /// goes off and when it is right again.
    fn note_clock(&mut self, station: &StationId, skew: i64) {
        if skew.abs() > CLOCK_OFF_AFTER {
            if self.skews.insert(station.to_string(), skew).is_none() {
                let window = self.loaded.config.rules.message_window.as_secs();
                tracing::warn!(%station, skew_seconds = skew, window, "the station's clock is off from this one: its telemetry and status are refused once further off than the window");
            }
        } else if self.skews.remove(station.as_str()).is_some() {
            tracing::info!(%station, "the station's clock is right again");
        }
    }

    /// Takes back what could not be recorded.
    fn on_undo(&mut self, undo: Undo) {
        match undo {
            Undo::CheckIn(ticket) => self.venue.cancel_check_in(&ticket),
            Undo::Accepted(station, seq) => self.sequences.forget(station.as_str(), seq),
            Undo::Incident(before) => self.venue.restore_incident(*before),
        }
    }

    fn subscribe(&mut self) {
        let venue = &self.loaded.config.venue.id;
        let mut filters: Vec<String> = [StationChannel::Status, StationChannel::Telemetry, StationChannel::Event, StationChannel::Ack]
            .into_iter()
            .map(|channel| Topic::stations_filter(venue, channel))
            .collect();
        filters.push(Topic::sensors_filter(venue));
        self.unsubscribed = filters.len();
        for filter in filters {
            if let Err(error) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                tracing::error!(%error, "cannot subscribe to the stations");
            }
        }
    }
}

/// The agent's retained status on the bus (its last will says offline).
struct AgentStatusTopic {
    topic: String,
    venue: netbar_protocol::VenueId,
    policy: String,
    started: Timestamp,
    clock: Clock,
}

impl AgentStatusTopic {
    fn new(loaded: &Loaded, clock: Clock) -> AgentStatusTopic {
        let venue = loaded.config.venue.id.clone();
        AgentStatusTopic {
            topic: Topic::Agent { venue: venue.clone() }.to_string(),
            venue,
            policy: loaded.config.venue.policy.clone(),
            started: clock.now(),
            clock,
        }
    }

    fn payload(&self, online: bool) -> Vec<u8> {
        let status = netbar_protocol::messages::AgentStatus {
            online,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            policy: self.policy.clone(),
            started: self.started,
        };
        let id = MessageId::from_parts(Timestamp::now(), rand::random());
        encode(&Envelope::new(id, self.clock.now(), self.venue.clone(), Sender::agent(AGENT), 0, status)).into_bytes()
    }

    fn publish(&self, client: &AsyncClient, online: bool) {
        if let Err(error) = client.try_publish(self.topic.clone(), QoS::AtLeastOnce, true, self.payload(online)) {
            tracing::warn!(%error, "cannot publish the agent's status");
        }
    }
}

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

/// Runs the agent until `shutdown` resolves.
pub(crate) async fn run(loaded: Loaded, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let _instance = crate::instance::hold(&loaded.config.data.dir)?;
    let started = std::time::Instant::now();
    let clock = Clock::from_env()?;
    let database = loaded.database();
    let mut store = Store::open(&database, loaded.policy.retention_days).with_context(|| format!("cannot open {}", database.display()))?;
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
    let (period_start, tally) = match store.period_start() {
        Ok(Some(start)) => {
            let mut tally = crate::feed::Tally::default();
            for entry in store.counted_since(start)? {
                tally.observe(&entry);
            }
            (start, tally)
        }
        Ok(None) => (clock.now(), crate::feed::Tally::default()),
        Err(error) => {
            tracing::error!(%error, "cannot read where the summary period started; it starts now");
            (clock.now(), crate::feed::Tally::default())
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
    let status = AgentStatusTopic::new(&loaded, clock);
    options.set_last_will(rumqttc::LastWill::new(status.topic.clone(), status.payload(false), QoS::AtLeastOnce, true));
    options.set_keep_alive(Duration::from_secs(15));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_clean_session(true);
    let (client, mut event_loop) = AsyncClient::new(options, 4096);
    event_loop.set_network_options(netbar_host::transport::nodelay());

    let (api_requests, mut requests) = mpsc::channel(256);
    let listener = tokio::net::TcpListener::bind(loaded.config.http.listen)
        .await
        .with_context(|| format!("the HTTP API cannot listen on {}", loaded.config.http.listen))?;
    let uplink = loaded.uplink.as_ref().map(|uplink| (uplink.url.clone(), uplink.outbox_max));
    let bus_health = bus.as_ref().map(|bus| bus.health.clone());
    let router =
        Api::new(api_requests, store.clone(), database.clone(), (refusals.clone(), bus_health), loaded.zone.clone(), clock, uplink)
            .router();
    tracing::info!(listen = %loaded.config.http.listen, "HTTP API listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the HTTP API stopped");
        }
    });
    let feed = match &loaded.uplink {
        None => None,
        Some(uplink) => Some(crate::feed::Feed {
            venue: loaded.config.venue.id.clone(),
            clock,
            disclosure: uplink.records,
            pseudonym_key: crate::feed::Feed::pseudonym_key(&loaded.config.data.dir.join("pseudonym.key"))?,
            outbox_max: uplink.outbox_max,
        }),
    };
    let uplink_state: Arc<crate::uplink::LinkState> = Arc::default();
    let (undo, mut undone) = mpsc::unbounded_channel();
    let waiting = tokio::task::JoinSet::new();
    let mut agent = Agent {
        loaded,
        client,
        store,
        enrolled,
        bus,
        enrollments_read: tokio::time::Instant::now(),
        venue,
        sequences,
        accepted: Vec::new(),
        command_numbers,
        skews: HashMap::new(),
        refusals,
        clock,
        waiting,
        undo,
        unsubscribed: 0,
        feed,
        tally,
        period_start,
        uplink_state: uplink_state.clone(),
        occupancy: std::collections::VecDeque::new(),
    };
    let mut occupancy_sample = tokio::time::interval(Duration::from_secs(60));
    occupancy_sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The regulator feed: summaries on a schedule, the outbox sent by its own task.
    let summary_period = agent.loaded.uplink.as_ref().map_or(Duration::from_secs(86_400), |uplink| uplink.summary_period);
    let mut summaries = tokio::time::interval_at(tokio::time::Instant::now() + summary_period, summary_period);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(settings) = agent.loaded.uplink.clone() {
        let uplink = crate::uplink::Uplink { settings, store: agent.store.clone(), state: uplink_state.clone(), clock: agent.clock };
        tokio::spawn(uplink.run());
    }
    // Old records go on a schedule, never younger than the retention period.
    let mut purge = tokio::time::interval(Duration::from_secs(3600));
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A station revoked while the agent runs is refused within seconds.
    let mut enrollments = tokio::time::interval(ENROLLMENTS_READ_EVERY);
    enrollments.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Refusals counted quietly are said once their minute is over.
    let mut refusal_lines = tokio::time::interval(Duration::from_secs(5));
    let mut accepted_out = tokio::time::interval(ACCEPTED_EVERY);
    accepted_out.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refusal_lines.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the log says and what is due at once: a truncation found at
    // opening, and whatever fell due while the agent was down (a curfew
    // that passed ends its session now, with its reason recorded).
    let mut effects = match truncation {
        Some(truncation) => agent.venue.records_tampered(agent.clock.now(), truncation.to_string()),
        None => Vec::new(),
    };
    effects.extend(agent.venue.tick(agent.clock.now()));
    let commits = agent.apply(effects).await;
    agent.after(commits, |result| async move {
        if let Err(error) = result {
            tracing::error!(%error, "cannot record what was due at start-up");
        }
    });
    tokio::pin!(shutdown);
    // The venue's next deadline looks at every station and ticket: it is
    // worked out again at most every DEADLINE_FRESH (and after every tick),
    // not for every message, so a deadline is acted on at most that late.
    let mut deadline: Option<(tokio::time::Instant, Option<Timestamp>)> = None;
    loop {
        let next = match deadline {
            Some((at, next)) if at.elapsed() < DEADLINE_FRESH => next,
            _ => {
                let next = agent.venue.next_deadline();
                deadline = Some((tokio::time::Instant::now(), next));
                next
            }
        };
        let wait = next.map(|at| Duration::try_from(at.duration_since(agent.clock.now())).unwrap_or(Duration::ZERO));
        tokio::select! {
            event = event_loop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to the bus");
                    agent.subscribe();
                    status.publish(&agent.client, true);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => agent.on_message(&publish.topic, &publish.payload).await,
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    agent.unsubscribed = agent.unsubscribed.saturating_sub(1);
                    if agent.unsubscribed == 0 {
                        tracing::info!("listening to the stations");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "bus connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = async { tokio::time::sleep(wait.unwrap_or(Duration::ZERO)).await }, if wait.is_some() => {
                deadline = None;
                let effects = agent.venue.tick(agent.clock.now());
                let commits = agent.apply(effects).await;
                agent.after(commits, |result| async move {
                    if let Err(error) = result {
                        tracing::error!(%error, "cannot record what the venue's timer did");
                    }
                });
            }
            Some(request) = requests.recv() => agent.on_request(request).await,
            Some(undo) = undone.recv() => agent.on_undo(undo),
            _ = summaries.tick(), if agent.feed.is_some() => agent.summarise().await,
            _ = occupancy_sample.tick() => {
                agent.sample_occupancy();
                if agent.command_numbers.running_low() {
                    match agent.store.reserve_command_numbers(netbar_protocol::sequence_from_clock(Timestamp::now()), CommandNumbers::BLOCK).await {
                        Ok(first) => agent.command_numbers = CommandNumbers::starting(first),
                        Err(error) => tracing::error!(%error, "cannot reserve numbers for commands; going on with the current block"),
                    }
                }
            }
            Some(_) = agent.waiting.join_next(), if !agent.waiting.is_empty() => {}
            _ = purge.tick() => match agent.store.purge(agent.clock.now()).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "registration records past the retention period purged"),
                Err(error) => tracing::error!(%error, "cannot purge old registration records"),
            },
            _ = enrollments.tick() => agent.read_enrollments().await,
            _ = refusal_lines.tick() => agent.refusals.log_counts(),
            _ = accepted_out.tick(), if !agent.accepted.is_empty() => {
                let accepted = std::mem::take(&mut agent.accepted);
                agent.store.accept(accepted).await;
            }
            () = &mut shutdown => break,
        }
    }
    // Finish what the API queued, let the store commit everything, send the
    // answers and receipts that waited for it, then stop.
    requests.close();
    while let Some(request) = requests.recv().await {
        agent.on_request(request).await;
    }
    let accepted = std::mem::take(&mut agent.accepted);
    agent.store.accept(accepted).await;
    agent.store.flush().await;
    while agent.waiting.join_next().await.is_some() {}
    // A clean disconnect sends no last will: say it.
    status.publish(&agent.client, false);
    let _ = agent.client.disconnect().await;
    // Drive the connection until the receipts and the disconnect are out.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = event_loop.poll().await {
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                break;
            }
        }
    })
    .await;
    tracing::info!(refused = ?agent.refusals.snapshot(), "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_number_is_accepted_once_and_one_older_than_all_kept_is_stale() {
        let mut sequences = Sequences::restore(HashMap::from([("st-1".to_owned(), vec![5, 6])]));
        assert_eq!(sequences.judge("st-1", 6), Sequenced::Again, "restored from the database");
        assert_eq!(sequences.judge("st-1", 4), Sequenced::New, "out of order, within what is kept");
        assert_eq!(sequences.judge("st-2", 1), Sequenced::New);
        for seq in 100..100 + SEQUENCES_KEPT as u64 {
            sequences.accept("st-1", seq);
        }
        assert_eq!(sequences.judge("st-1", 99), Sequenced::Stale { newest: 99 + SEQUENCES_KEPT as u64 });
        assert_eq!(sequences.judge("st-1", 100), Sequenced::Again);
        sequences.forget("st-1", 100);
        assert_eq!(sequences.judge("st-1", 100), Sequenced::New, "a number whose commit failed comes again");
    }
}
