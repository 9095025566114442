//! `netbar-agent regulator ingest`: the regulator's feed, from its broker
//! into its PostgreSQL, nothing lost and nothing twice.
//!
//! Two tasks. The connection task holds the broker (a persistent session,
//! QoS 1, acknowledgements by hand) and hands each message to the writer;
//! the writer checks messages and writes them in batches, one transaction
//! each, and only once a batch committed does the connection task
//! acknowledge its messages, in the order they came. A message is
//! therefore in the database before the broker forgets it (at least once,
//! end to end); the database's `netbar.receive` absorbs the second copy.
//!
//! A batch whose transaction fails on the database's side (the server
//! gone, a lock) is written again once the database answers; one that
//! fails on what it holds is written message by message, and a message that
//! fails alone is kept in `netbar.rejected` with the database's words.

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::MqttVersion;
pub(crate) use subscriber::Broker;
use subscriber::{Delivery, Heard, Subscriber};

mod database;
mod subscriber;

use database::{Checked, Database, Verdict};

/// What `regulator ingest` was given.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) broker: Broker,
    pub(crate) database: String,
    pub(crate) session: String,
    pub(crate) protocol: MqttVersion,
}

/// Most messages in one transaction.
const BATCH: usize = 500;

/// A message on its way: the connection it came on, and the message.
type Received = (u64, Delivery);

pub(crate) async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let database = match Database::open(&settings.database).await {
        Ok(database) => database,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    eprintln!("the database is ready (schema netbar); following {} on {}", settings.broker.filter, settings.broker.url);
    let (to_writer, from_broker) = mpsc::unbounded_channel::<Received>();
    let (committed, to_acknowledge) = mpsc::unbounded_channel::<Vec<Received>>();
    let writer = tokio::spawn(write(database, settings.database.clone(), settings.broker.prefix.clone(), from_broker, committed));
    tokio::select! {
        () = connect(&settings, to_writer, to_acknowledge) => {}
        _ = writer => {}
        () = netbar_host::shutdown() => eprintln!("stopping: everything acknowledged is committed"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The connection task: connects (again and again), hands messages to the
/// writer, and acknowledges what the writer committed.
async fn connect(settings: &Settings, to_writer: mpsc::UnboundedSender<Received>, mut committed: mpsc::UnboundedReceiver<Vec<Received>>) {
    let mut backoff = netbar_host::transport::Backoff::new(Duration::from_secs(30));
    let mut connection = 0_u64;
    loop {
        connection += 1;
        let reason = match Subscriber::new(&settings.broker, settings.protocol, &settings.session) {
            Err(error) => format!("{error:#}"),
            Ok(mut subscriber) => {
                // Committed, to be acknowledged when the client takes them.
                let mut unsent: VecDeque<Delivery> = VecDeque::new();
                loop {
                    while let Some(delivery) = unsent.front() {
                        if subscriber.try_ack(delivery).is_err() {
                            break;
                        }
                        unsent.pop_front();
                    }
                    tokio::select! {
                        heard = subscriber.poll() => match heard {
                            Ok(Heard::Connected { session_present }) => {
                                backoff.reset();
                                eprintln!("connected to {} (session {}, kept by the broker: {session_present})", settings.broker.url, settings.session);
                                // Again even when the session was kept: a subscription
                                // the broker refused before is asked for once more.
                                if let Err(error) = subscriber.subscribe(&settings.broker.filter).await {
                                    break error;
                                }
                            }
                            Ok(Heard::Subscribed(true)) => eprintln!("subscribed to {}", settings.broker.filter),
                            Ok(Heard::Subscribed(false)) => break format!("the broker refused the subscription to {}", settings.broker.filter),
                            Ok(Heard::Message(delivery)) => {
                                if to_writer.send((connection, delivery)).is_err() {
                                    return;
                                }
                            }
                            Ok(Heard::Other) => {}
                            Err(error) => break error,
                        },
                        done = committed.recv() => {
                            let Some(done) = done else { return };
                            // Messages of an earlier connection stay unacknowledged:
                            // the broker sends them again on this one.
                            unsent.extend(done.into_iter().filter(|(from, _)| *from == connection).map(|(_, delivery)| delivery));
                        }
                    }
                }
            }
        };
        let wait = backoff.next_wait();
        eprintln!("warning: {} unreachable ({reason}); again in {:.1} s", settings.broker.url, wait.as_secs_f64());
        tokio::time::sleep(wait).await;
    }
}

/// The writer task: batches, transactions, and the tally it prints.
async fn write(
    mut database: Database,
    connection: String,
    prefix: netbar_protocol::Prefix,
    mut incoming: mpsc::UnboundedReceiver<Received>,
    committed: mpsc::UnboundedSender<Vec<Received>>,
) {
    let mut tally: BTreeMap<Verdict, u64> = BTreeMap::new();
    let mut told = Instant::now();
    let mut backoff = netbar_host::transport::Backoff::new(Duration::from_secs(30));
    while let Some(first) = incoming.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(next) = incoming.try_recv()
        {
            batch.push(next);
        }
        let checked: Vec<(String, bytes::Bytes, Checked)> = batch
            .iter()
            .map(|(_, delivery)| {
                let topic = delivery.topic();
                let checked = database::check(&prefix, &topic, delivery.payload());
                (topic, delivery.payload().clone(), checked)
            })
            .collect();
        let verdicts = loop {
            if database.is_closed() {
                match Database::open(&connection).await {
                    Ok(again) => database = again,
                    Err(error) => {
                        let wait = backoff.next_wait();
                        eprintln!("warning: the database is unreachable ({error:#}); again in {:.1} s", wait.as_secs_f64());
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            match database.write(&checked).await {
                Ok(verdicts) => break verdicts,
                Err(error) if database::transient(&error) => {
                    let wait = backoff.next_wait();
                    eprintln!("warning: the batch was not committed ({error}); again in {:.1} s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    eprintln!("warning: the batch was refused ({error}); writing its messages one by one");
                    match one_by_one(&mut database, &checked).await {
                        Ok(verdicts) => break verdicts,
                        Err(error) => {
                            let wait = backoff.next_wait();
                            eprintln!("warning: the batch was not committed ({error}); again in {:.1} s", wait.as_secs_f64());
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        };
        backoff.reset();
        for verdict in verdicts {
            *tally.entry(verdict).or_default() += 1;
        }
        if committed.send(batch).is_err() {
            return;
        }
        if told.elapsed() >= Duration::from_secs(10) {
            eprintln!("{}", tally_line(&tally));
            told = Instant::now();
        }
    }
}

/// A refused batch, a transaction a message; one that fails alone is kept
/// as rejected, with what the database said. Fails only when the database
/// does (the batch is then written again).
async fn one_by_one(database: &mut Database, checked: &[(String, bytes::Bytes, Checked)]) -> Result<Vec<Verdict>, tokio_postgres::Error> {
    let mut verdicts = Vec::with_capacity(checked.len());
    for item in checked {
        let verdict = match database.write(std::slice::from_ref(item)).await {
            Ok(verdict) => verdict,
            Err(error) if database::transient(&error) => return Err(error),
            Err(error) => {
                let (topic, payload, _) = item;
                let said = error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned());
                eprintln!("warning: the database refused a message on {topic} ({said}); it is kept in netbar.rejected");
                let why = format!("the database refused it: {said}");
                database.write(&[(topic.clone(), payload.clone(), Checked::Rejected(why))]).await?
            }
        };
        verdicts.extend(verdict);
    }
    Ok(verdicts)
}

fn tally_line(tally: &BTreeMap<Verdict, u64>) -> String {
    let count = |verdict| tally.get(&verdict).copied().unwrap_or(0);
    format!(
        "committed: {} new, {} after a gap, {} late, {} duplicates absorbed, {} heartbeats; {} rejected",
        count(Verdict::New),
        count(Verdict::Gap),
        count(Verdict::Late),
        count(Verdict::Duplicate),
        count(Verdict::Live),
        count(Verdict::Rejected)
    )
}
