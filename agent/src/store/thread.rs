//! The store's owner: one thread holds the SQLite connection and serves
//! requests in order, committing bursts of appends in one transaction and
//! answering each only after its commit.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::StationKey;
use tokio::sync::{mpsc, oneshot};

use super::{Entry, Outbound, Queued, Store, StoreError};
use crate::journal::LogEntry;

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

pub(crate) fn stopped() -> StoreError {
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
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

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
    pub(crate) async fn accept(&self, accepted: Vec<((String, u64), Reply<()>)>) {
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
    pub(crate) async fn reserve_command_numbers(&self, floor: u64, count: u64) -> Result<u64, StoreError> {
        self.ask(|reply| StoreRequest::Reserve(floor, count, reply)).await.ok_or_else(stopped)?
    }

    /// What is enrolled, as the database says now.
    pub(crate) async fn enrolled(&self) -> Result<Enrolled, StoreError> {
        self.ask(StoreRequest::Enrolled).await.ok_or_else(stopped)?
    }

    /// Returns once everything queued so far is done.
    pub(crate) async fn flush(&self) {
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

/// What is enrolled: station keys and which station bridges each sensor.
#[derive(Debug, Default)]
pub(crate) struct Enrolled {
    pub(crate) stations: HashMap<String, StationKey>,
    pub(crate) sensors: HashMap<String, String>,
}

impl Enrolled {
    pub(crate) fn load(store: &Store) -> Result<Enrolled, StoreError> {
        Ok(Enrolled {
            stations: store.stations()?.into_iter().collect(),
            sensors: store.sensors()?.into_iter().map(|(sensor, station, _)| (sensor, station)).collect(),
        })
    }
}
