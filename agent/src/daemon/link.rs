//! The agent's side of the bus: its client, what it signs and sends to
//! stations, the numbers of its commands, and who is enrolled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use netbar_protocol::{Envelope, Message, MessageId, Sender, StationChannel, StationId, Topic, VenueId, encode};
use rumqttc::{AsyncClient, QoS};

use crate::clock::Clock;
use crate::config::AGENT;
use crate::store::thread::{Enrolled, StoreHandle};

/// How often the agent reads the enrollments again.
pub(super) const ENROLLMENTS_READ_EVERY: Duration = Duration::from_secs(5);

/// The bus as the agent uses it.
pub(super) struct StationLink {
    pub(super) venue: VenueId,
    pub(super) client: AsyncClient,
    pub(super) clock: Clock,
    pub(super) enrolled: Enrolled,
    /// The embedded bus, told of every change of the enrollments.
    pub(super) bus: Option<crate::bus::Bus>,
    /// When the enrollments were last read.
    pub(super) enrollments_read: tokio::time::Instant,
    pub(super) command_numbers: CommandNumbers,
    /// Subscriptions the broker has yet to acknowledge.
    pub(super) unsubscribed: usize,
}

impl StationLink {
    /// A message to a station, signed with its key: the topic and payload.
    /// Commands carry the agent's next command number and the system's
    /// time, so a station refuses one sent again later.
    pub(super) fn signed(&self, station: &StationId, channel: StationChannel, message: impl Into<Message>) -> Option<(String, Vec<u8>)> {
        let topic = Topic::Station { venue: self.venue.clone(), station: station.clone(), channel }.to_string();
        let message = message.into();
        let (seq, ts) = match message {
            Message::Command(_) => (self.command_numbers.take(), Timestamp::now()),
            _ => (0, self.clock.now()),
        };
        let mut envelope = Envelope::new(
            MessageId::from_parts(Timestamp::now(), rand::random()),
            ts,
            self.venue.clone(),
            Sender::agent(AGENT),
            seq,
            message,
        );
        let key = self.enrolled.stations.get(station.as_str())?;
        key.sign(&topic, &mut envelope);
        Some((topic, encode(&envelope).into_bytes()))
    }

    pub(super) fn publish_to(&self, station: &StationId, channel: StationChannel, message: impl Into<Message>) {
        let Some((topic, payload)) = self.signed(station, channel, message) else { return };
        if let Err(error) = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(%station, %error, "cannot publish to station");
        }
    }

    /// Takes up enrollments and revocations made since the last look.
    pub(super) async fn read_enrollments(&mut self, store: &StoreHandle) {
        self.enrollments_read = tokio::time::Instant::now();
        match store.enrolled().await {
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

    pub(super) fn subscribe(&mut self) {
        let venue = &self.venue;
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

    /// Notes a subscription acknowledged; whether it was the last awaited.
    pub(super) fn subscribed(&mut self) -> bool {
        self.unsubscribed = self.unsubscribed.saturating_sub(1);
        self.unsubscribed == 0
    }

    /// Reserves a new block of command numbers when the current one runs low.
    pub(super) async fn renew_command_numbers(&mut self, store: &StoreHandle) {
        if !self.command_numbers.running_low() {
            return;
        }
        match store.reserve_command_numbers(netbar_protocol::sequence_from_clock(Timestamp::now()), CommandNumbers::BLOCK).await {
            Ok(first) => self.command_numbers = CommandNumbers::starting(first),
            Err(error) => tracing::error!(%error, "cannot reserve numbers for commands; going on with the current block"),
        }
    }
}

/// The numbers of the agent's commands: increasing across restarts, taken
/// from blocks reserved in the database, each starting at least at the
/// clock (microseconds) so a new database also starts above the old one's.
/// A station refuses a command numbered at or below the last it accepted.
#[derive(Debug)]
pub(super) struct CommandNumbers {
    next: AtomicU64,
    end: u64,
}

impl CommandNumbers {
    /// Numbers in a block; a new one is reserved when half is used.
    pub(super) const BLOCK: u64 = 1 << 20;

    pub(super) fn starting(first: u64) -> CommandNumbers {
        CommandNumbers { next: AtomicU64::new(first), end: first + Self::BLOCK }
    }

    fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn running_low(&self) -> bool {
        self.end.saturating_sub(self.next.load(Ordering::Relaxed)) < Self::BLOCK / 2
    }
}

/// The agent's retained status on the bus (its last will says offline).
pub(super) struct AgentStatusTopic {
    pub(super) topic: String,
    venue: netbar_protocol::VenueId,
    policy: String,
    started: Timestamp,
    clock: Clock,
}

impl AgentStatusTopic {
    pub(super) fn new(loaded: &crate::config::Loaded, clock: Clock) -> AgentStatusTopic {
        let venue = loaded.config.venue.id.clone();
        AgentStatusTopic {
            topic: Topic::Agent { venue: venue.clone() }.to_string(),
            venue,
            policy: loaded.config.venue.policy.clone(),
            started: clock.now(),
            clock,
        }
    }

    pub(super) fn payload(&self, online: bool) -> Vec<u8> {
        let status = netbar_protocol::messages::AgentStatus {
            online,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            policy: self.policy.clone(),
            started: self.started,
        };
        let id = MessageId::from_parts(Timestamp::now(), rand::random());
        encode(&Envelope::new(id, self.clock.now(), self.venue.clone(), Sender::agent(AGENT), 0, status)).into_bytes()
    }

    pub(super) fn publish(&self, client: &AsyncClient, online: bool) {
        if let Err(error) = client.try_publish(self.topic.clone(), QoS::AtLeastOnce, true, self.payload(online)) {
            tracing::warn!(%error, "cannot publish the agent's status");
        }
    }
}
