//! The agent's actor: one task owns the [`Venue`] and everything the
//! daemon decides with it. Messages from the bus and requests from the API
//! come in; commands to stations leave at once, log entries go to the
//! store, and answers wait for their commits.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use netbar_protocol::messages::{Delivery, DeliveryAck, DeliveryEntry};
use netbar_protocol::{Message, StationChannel, StationId};
use rumqttc::{Event, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};

use super::admission::{Accepted, Admission, Sequenced, check, is_last_will};
use super::link::{AgentStatusTopic, ENROLLMENTS_READ_EVERY, StationLink};
use crate::clock::Clock;
use crate::config::Loaded;
use crate::feed::sender::LinkView;
use crate::feed::{Feed, Period, Standing, Tally};
use crate::journal::LogEntry;
use crate::refusals::Refusals;
use crate::requests::{OpenFailure, Request, TransitionFailure};
use crate::store::StoreError;
use crate::store::thread::{Facts, Pending, StoreHandle, stopped};
use crate::venue::{Effect, Venue};

/// How often the sequence numbers accepted meanwhile go to the store (their
/// receipts wait for it).
const ACCEPTED_EVERY: Duration = Duration::from_millis(50);

/// How long a worked-out next deadline of the venue is used before it is
/// worked out again.
const DEADLINE_FRESH: Duration = Duration::from_millis(200);

/// How often the floor map is worked out for the console's event streams
/// while any is open; it is pushed when it changed.
const FLOOR_EVERY: Duration = Duration::from_millis(250);

/// Whether two floor maps differ only in their "now".
fn same_but_the_clock(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().all(|(key, value)| key == "now" || b.get(key) == Some(value)),
        _ => a == b,
    }
}

/// Where the actor's events come from.
pub(super) struct Events {
    /// The agent's connection to the bus.
    pub(super) bus: rumqttc::EventLoop,
    /// Its retained status there.
    pub(super) status: AgentStatusTopic,
    /// The API's requests.
    pub(super) requests: mpsc::Receiver<Request>,
    /// What to take back after a failed commit.
    pub(super) undone: mpsc::UnboundedReceiver<Undo>,
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

/// What the agent takes back when an event's log entries cannot be committed.
pub(super) enum Undo {
    CheckIn(String),
    Accepted(StationId, u64),
    Incident(Box<crate::venue::Incident>),
}

/// The running agent: the venue, and what it decides with.
pub(super) struct Agent {
    pub(super) loaded: Loaded,
    pub(super) clock: Clock,
    pub(super) venue: Venue,
    /// The bus as the agent uses it: signing, sending, who is enrolled.
    pub(super) link: StationLink,
    /// What a message must pass, and the sequence numbers accepted.
    pub(super) admission: Admission,
    pub(super) store: StoreHandle,
    pub(super) refusals: Arc<Refusals>,
    /// Answers waiting for their commits: receipts, API replies.
    pub(super) waiting: tokio::task::JoinSet<()>,
    pub(super) undo: mpsc::UnboundedSender<Undo>,
    /// The regulator feed and its summary period, when there is a feed.
    pub(super) reporter: Option<(Feed, Period)>,
    /// The regulator link, as its sender publishes it.
    pub(super) uplink: watch::Receiver<LinkView>,
    /// The floor map, pushed to the console's event streams.
    pub(super) floor: watch::Sender<Arc<serde_json::Value>>,
}

impl Agent {
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
                    self.link.publish_to(&station, StationChannel::Command, command);
                }
                Effect::Record(entry) => {
                    if let LogEntry::Incident(incident) = &entry {
                        tracing::warn!(incident = %incident.incident, transition = ?incident.transition, "incident");
                    }
                    let outbound = self.reporter.as_mut().and_then(|(feed, period)| {
                        period.tally.observe(&entry);
                        feed.outbound(&entry, now)
                    });
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

    async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let mut checked = check(&self.link.enrolled, &self.loaded.config.venue.id, topic, payload);
        if matches!(checked, Err(("unenrolled_station" | "unenrolled_sensor", _)))
            && self.link.enrollments_read.elapsed() >= Duration::from_secs(1)
        {
            // Enrolled a moment ago? Look again (at most once a second, so a
            // revoked station's stream costs nothing).
            self.link.read_enrollments(&self.store).await;
            checked = check(&self.link.enrolled, &self.loaded.config.venue.id, topic, payload);
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
            self.admission.note_clock(&station, skew, self.loaded.config.rules.message_window);
        }
        if sequenced {
            match self.admission.sequences.judge(station.as_str(), envelope.seq) {
                Sequenced::New => {}
                Sequenced::Again => {
                    self.link.publish_to(&station, StationChannel::Delivery, receipt(Delivery::Duplicate));
                    return;
                }
                Sequenced::Stale { newest } => {
                    let detail = format_args!("sequence number {} is older than every one kept (the newest is {newest})", envelope.seq);
                    self.refusals.refuse(&format!("station {station}"), "replayed", "message", &detail);
                    let reason = netbar_protocol::messages::stale_sequence(newest);
                    self.link.publish_to(&station, StationChannel::Delivery, receipt(Delivery::Rejected { reason }));
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
            self.admission.sequences.accept(station.as_str(), envelope.seq);
            let (reply, committed) = oneshot::channel();
            self.admission.accepted.push(((station.to_string(), envelope.seq), reply));
            commits.1 = Some(committed);
        }
        if commits.0.is_empty() && !sequenced {
            return;
        }
        // The receipt leaves only once the entries are committed; without
        // it the station keeps the message and sends it again.
        let stored = if sequenced { self.link.signed(&station, StationChannel::Delivery, receipt(Delivery::Stored)) } else { None };
        let client = self.link.client.clone();
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
            Request::CheckIn { document, desk, circumstances, reply } => {
                let (outcome, effects) = self.venue.check_in(now, &document, circumstances, desk, rand::random);
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
                let points: Vec<serde_json::Value> = self
                    .venue
                    .occupancy_history(now)
                    .into_iter()
                    .map(|(at, customers, sessions)| serde_json::json!([at, customers, sessions]))
                    .collect();
                let _ = reply.send(serde_json::json!({ "points": points, "capacity": self.loaded.config.venue.capacity }));
            }
            Request::Open { station, ticket, by, reply } => match self.venue.open_for(now, &station, &ticket, &by) {
                None => {
                    let _ = reply.send(Err(OpenFailure::UnknownStation(format!("station {station} is not known to the venue"))));
                }
                Some(Err(message)) => {
                    let _ = reply.send(Err(OpenFailure::Refused(message)));
                }
                Some(Ok(effects)) => {
                    let commits = self.apply(effects).await;
                    self.after(commits, move |result| async move {
                        let _ = reply.send(result.map_err(|error| OpenFailure::NotRecorded(format!("NOT recorded: {error}"))));
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

    /// Adds how far off each station's clock is (when it is) to its tile.
    fn with_clocks(&self, tiles: &mut [serde_json::Value]) {
        for tile in tiles {
            let skew = tile.get("id").and_then(|id| id.as_str()).and_then(|id| self.admission.skews.get(id)).copied();
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
                    "connected": self.uplink.borrow().connected,
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
            "sensors": { "enrolled": self.link.enrolled.sensors.len(), "healthy": self.link.enrolled.sensors.len().saturating_sub(sensors_faulty) },
            "stations": tiles,
            "incidents": open,
            "uplink": uplink,
            "store": store,
        })
    }

    /// Pushes the floor map to the console's event streams when it changed
    /// (the clock in it aside).
    async fn publish_floor(&mut self) {
        let floor = self.floor().await;
        self.floor.send_if_modified(|current| {
            if same_but_the_clock(current, &floor) {
                return false;
            }
            *current = Arc::new(floor);
            true
        });
    }

    /// Queues the summary of the period since the last one queued. When
    /// the outbox is over its bound the summary is not queued and this
    /// period's counts carry over into the next: nothing is lost and no
    /// sequence number is skipped.
    async fn summarise(&mut self) {
        let Some((feed, period)) = &mut self.reporter else { return };
        let now = self.clock.now();
        let (open, silent) = self.venue.compliance_inputs();
        let (pending, store_error) = match self.store.facts().await {
            Ok(facts) => (Some(facts.pending), facts.failing),
            Err(error) => (None, Some(error.to_string())),
        };
        let occupancy = self.venue.occupancy();
        let standing = Standing {
            stations_enrolled: self.link.enrolled.stations.len() as u32,
            sensors_enrolled: self.link.enrolled.sensors.len() as u32,
            stations_online: occupancy.online,
            sessions_open: occupancy.sessions,
            customers_present: occupancy.customers,
            open,
            silent,
            pending,
            store_error,
        };
        let from = period.start;
        let summary = feed.summarise(period, standing, now);
        match self.store.enqueue(now, feed.summary(summary), Some(now)).await {
            Ok(Some(_)) => *period = Period { start: now, tally: Tally::default() },
            Ok(None) => {
                tracing::warn!(?pending, since = %from, "the regulator outbox is over its bound: this period's summary carries over into the next")
            }
            Err(error) => {
                tracing::error!(%error, since = %from, "cannot queue the summary for the regulator; its period carries over into the next")
            }
        }
    }

    /// Takes back what could not be recorded.
    fn on_undo(&mut self, undo: Undo) {
        match undo {
            Undo::CheckIn(ticket) => self.venue.cancel_check_in(&ticket),
            Undo::Accepted(station, seq) => self.admission.sequences.forget(station.as_str(), seq),
            Undo::Incident(before) => self.venue.restore_incident(*before),
        }
    }

    /// Runs until `shutdown` resolves: handles the bus's messages, the
    /// API's requests and the venue's deadlines, one at a time.
    pub(super) async fn run(
        self,
        events: Events,
        truncation: Option<crate::store::Truncation>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Events { bus: mut event_loop, status, mut requests, mut undone } = events;
        let mut agent = self;
        let mut occupancy_sample = tokio::time::interval(Duration::from_secs(60));
        occupancy_sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The regulator feed: summaries on a schedule, the outbox sent by its own task.
        let summary_period = agent.loaded.uplink.as_ref().map_or(Duration::from_secs(86_400), |uplink| uplink.summary_period);
        let mut summaries = tokio::time::interval_at(tokio::time::Instant::now() + summary_period, summary_period);
        summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        // The floor map goes to the console's event streams, while there are any.
        let mut floor_out = tokio::time::interval(FLOOR_EVERY);
        floor_out.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                        agent.link.subscribe();
                        status.publish(&agent.link.client, true);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => agent.on_message(&publish.topic, &publish.payload).await,
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if agent.link.subscribed() {
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
                _ = summaries.tick(), if agent.reporter.is_some() => agent.summarise().await,
                _ = occupancy_sample.tick() => {
                    agent.venue.sample_occupancy(agent.clock.now());
                    agent.link.renew_command_numbers(&agent.store).await;
                }
                // The API keeps one receiver; each open event stream has another.
                _ = floor_out.tick(), if agent.floor.receiver_count() > 1 => agent.publish_floor().await,
                Some(_) = agent.waiting.join_next(), if !agent.waiting.is_empty() => {}
                _ = purge.tick() => match agent.store.purge(agent.clock.now()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "registration records past the retention period purged"),
                    Err(error) => tracing::error!(%error, "cannot purge old registration records"),
                },
                _ = enrollments.tick() => agent.link.read_enrollments(&agent.store).await,
                _ = refusal_lines.tick() => agent.refusals.log_counts(),
                _ = accepted_out.tick(), if !agent.admission.accepted.is_empty() => {
                    let accepted = std::mem::take(&mut agent.admission.accepted);
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
        let accepted = std::mem::take(&mut agent.admission.accepted);
        agent.store.accept(accepted).await;
        agent.store.flush().await;
        while agent.waiting.join_next().await.is_some() {}
        // A clean disconnect sends no last will: say it.
        status.publish(&agent.link.client, false);
        let _ = agent.link.client.disconnect().await;
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
}
