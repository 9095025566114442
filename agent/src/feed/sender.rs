//! The regulator feed: the agent's outbox, sent to the regulator's broker.
//!
//! Messages for the regulator (summaries, incident transitions,
//! registration records) are queued in the agent's database in the same
//! transaction as what caused them, each with the next number of the
//! venue's feed. This task sends them in order over MQTT (3.1.1 or 5, TLS
//! unless explicitly insecure) at QoS 1 and removes one from the outbox
//! only when the broker acknowledged that very packet: a PUBACK matched to
//! the packet id the publish went out with.
//!
//! rumqttc keeps its own queue of unacknowledged publishes and drops it
//! when the broker holds no session. This task never relies on it: every
//! connection is a fresh client, and after every connect the whole outbox
//! is sent again from its oldest message. Receivers deduplicate by message
//! id; sequence numbers let them see gaps.

use std::time::Duration;

use jiff::Timestamp;
use netbar_protocol::messages::{Heartbeat, LogHead};
use netbar_protocol::{Envelope, MessageId, RegulatorChannel, Sender, Topic, encode};
use tokio::sync::{oneshot, watch};

use super::window::{Action, Event, WINDOW, Window};
use crate::clock::Clock;
use crate::config::{MqttVersion, UplinkSettings};
use crate::store::StoreError;
use crate::store::thread::{Facts, StoreHandle};
use netbar_host::transport::{Backoff, tls_configuration};

/// The link as the console and /metrics see it, published by the sender
/// (its one owner) on a watch channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LinkView {
    pub(crate) connected: bool,
    /// Since when it is (or is not) connected; None before the first try.
    pub(crate) since: Option<Timestamp>,
}

/// One connection to the regulator's broker, in either MQTT version.
enum Wire {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

/// What happened on the wire.
enum WireEvent {
    Connected,
    /// A publish left with this packet id (in the order they were made).
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The broker answered this packet id with a failure (MQTT 5).
    Refused(u16, String),
    Other,
}

impl Wire {
    fn connect(settings: &UplinkSettings) -> anyhow::Result<Wire> {
        let transport = match &settings.tls {
            Some(tls) => rumqttc::Transport::Tls(tls_configuration(&tls.ca_file, tls.client_cert.as_deref(), tls.client_key.as_deref())?),
            None => rumqttc::Transport::Tcp,
        };
        let keep_alive = Duration::from_secs(30);
        Ok(match settings.protocol {
            MqttVersion::V311 => {
                let mut options = rumqttc::MqttOptions::new(settings.client_id.clone(), settings.host.clone(), settings.port);
                options.set_transport(transport).set_keep_alive(keep_alive).set_clean_session(true).set_inflight(WINDOW as u16);
                if let Some(user) = &settings.username {
                    options.set_credentials(user.clone(), settings.password.clone().unwrap_or_default());
                }
                let (client, mut event_loop) = rumqttc::AsyncClient::new(options, WINDOW * 2);
                event_loop.set_network_options(netbar_host::transport::nodelay());
                Wire::V4(client, Box::new(event_loop))
            }
            MqttVersion::V5 => {
                let mut options = rumqttc::v5::MqttOptions::new(settings.client_id.clone(), settings.host.clone(), settings.port);
                options
                    .set_transport(transport)
                    .set_keep_alive(keep_alive)
                    .set_clean_start(true)
                    .set_outgoing_inflight_upper_limit(WINDOW as u16);
                if let Some(user) = &settings.username {
                    options.set_credentials(user.clone(), settings.password.clone().unwrap_or_default());
                }
                options.set_network_options(netbar_host::transport::nodelay());
                let (client, event_loop) = rumqttc::v5::AsyncClient::new(options, WINDOW * 2);
                Wire::V5(client, Box::new(event_loop))
            }
        })
    }

    async fn poll(&mut self) -> Result<WireEvent, String> {
        use rumqttc::Outgoing;
        match self {
            Wire::V4(_, event_loop) => {
                use rumqttc::{Event, Packet};
                Ok(match event_loop.poll().await.map_err(|error| error.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => WireEvent::Connected,
                    Event::Incoming(Packet::PubAck(ack)) => WireEvent::Acked(ack.pkid),
                    Event::Outgoing(Outgoing::Publish(pkid)) => WireEvent::Sent(pkid),
                    _ => WireEvent::Other,
                })
            }
            Wire::V5(_, event_loop) => {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                Ok(match event_loop.poll().await.map_err(|error| error.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => WireEvent::Connected,
                    Event::Incoming(Packet::PubAck(ack)) => match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => WireEvent::Acked(ack.pkid),
                        reason => WireEvent::Refused(ack.pkid, format!("{reason:?}")),
                    },
                    Event::Outgoing(Outgoing::Publish(pkid)) => WireEvent::Sent(pkid),
                    _ => WireEvent::Other,
                })
            }
        }
    }

    fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Wire::V4(client, _) => client.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).map_err(|e| e.to_string()),
            Wire::V5(client, _) => {
                client.try_publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload).map_err(|e| e.to_string())
            }
        }
    }
}

/// The feed's sender.
pub(crate) struct Uplink {
    pub(crate) settings: UplinkSettings,
    pub(crate) store: StoreHandle,
    pub(crate) view: watch::Sender<LinkView>,
    pub(crate) clock: Clock,
}

impl Uplink {
    fn topic(&self, channel: RegulatorChannel) -> String {
        let settings = &self.settings;
        Topic::Regulator { prefix: settings.prefix.clone(), region: settings.region.clone(), venue: settings.venue.clone(), channel }
            .to_string()
    }

    /// Runs for the life of the agent: connects, sends, reconnects.
    pub(crate) async fn run(self) {
        if self.settings.tls.is_none() {
            tracing::warn!(broker = %self.settings.url, "the regulator feed is NOT encrypted (uplink.insecure = true)");
        }
        let mut backoff = Backoff::new(self.settings.max_backoff);
        loop {
            let reason = match Wire::connect(&self.settings) {
                Err(error) => format!("{error:#}"),
                Ok(mut wire) => match self.session(&mut wire, &mut backoff).await {
                    Ok(never) => match never {},
                    Err(reason) => reason,
                },
            };
            if self.view.borrow().connected {
                self.connected(false).await;
            }
            let wait = backoff.next_wait();
            tracing::warn!(broker = %self.settings.url, %reason, retry_in = ?wait, "the regulator's broker is unreachable; the outbox keeps everything");
            tokio::time::sleep(wait).await;
        }
    }

    /// Notes the link's state: on the watch channel, and in the store for
    /// `uplink status`.
    async fn connected(&self, connected: bool) {
        self.view.send_replace(LinkView { connected, since: Some(Timestamp::now()) });
        self.store.set_connected(connected).await;
    }

    /// One connection: everything unacknowledged goes again, in order. The
    /// window decides; this carries its actions out.
    async fn session(&self, wire: &mut Wire, backoff: &mut Backoff) -> Result<std::convert::Infallible, String> {
        while !matches!(wire.poll().await?, WireEvent::Connected) {}
        backoff.reset();
        self.connected(true).await;
        tracing::info!(broker = %self.settings.url, "connected to the regulator's broker");
        let mut window = Window::default();
        let mut actions: std::collections::VecDeque<Action> = window.start().into();
        let mut removing: Option<oneshot::Receiver<()>> = None;
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat_period);
        loop {
            while let Some(action) = actions.pop_front() {
                match action {
                    Action::Read { after, limit } => {
                        let batch = self.store.queued_after(after, limit).await.map_err(|error| error.to_string())?;
                        let mut seqs = Vec::with_capacity(batch.len());
                        for message in batch {
                            let channel = RegulatorChannel::from_level(&message.channel).unwrap_or(RegulatorChannel::Summary);
                            wire.publish(self.topic(channel), message.payload)?;
                            seqs.push(message.seq);
                        }
                        actions.extend(window.handle(Event::Published { seqs, asked: limit }));
                    }
                    Action::Remove(seqs) => removing = Some(self.store.remove(seqs).await),
                    Action::Fail(reason) => return Err(reason),
                }
            }
            let event = tokio::select! {
                event = wire.poll() => match event? {
                    WireEvent::Sent(pkid) => Event::Sent(pkid),
                    WireEvent::Acked(pkid) => Event::Acked(pkid),
                    WireEvent::Refused(pkid, reason) => Event::Refused(pkid, reason),
                    WireEvent::Connected | WireEvent::Other => continue,
                },
                _ = async { removing.as_mut().expect("guarded").await }, if removing.is_some() => {
                    removing = None;
                    Event::Removed
                }
                () = self.store.queued.notified(), if window.drained() => Event::Queued,
                _ = heartbeat.tick() => {
                    let payload = self.heartbeat().await;
                    wire.publish(self.topic(RegulatorChannel::Heartbeat), payload)?;
                    Event::Heartbeat
                }
            };
            actions.extend(window.handle(event));
        }
    }

    /// Proof of life, outside the sequence: what the outbox holds and the
    /// log's head now.
    async fn heartbeat(&self) -> Vec<u8> {
        let message = Heartbeat { ga_code: self.settings.ga_code.clone(), ..heartbeat(self.store.facts().await) };
        let id = MessageId::from_parts(Timestamp::now(), rand::random());
        encode(&Envelope::new(id, self.clock.now(), self.settings.venue.clone(), Sender::agent(crate::config::AGENT), 0, message))
            .into_bytes()
    }
}

/// The heartbeat for what the store said of itself: its figures, and why
/// it fails when it does; nothing it could not say.
fn heartbeat(facts: Result<Facts, StoreError>) -> Heartbeat {
    match facts {
        Ok(Facts { pending, head: (index, hash), failing }) => {
            Heartbeat { outbox_pending: Some(pending), log_head: Some(LogHead { index, hash }), store_error: failing, ga_code: None }
        }
        Err(error) => Heartbeat { outbox_pending: None, log_head: None, store_error: Some(error.to_string()), ga_code: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{CheckOut, LogEntry};

    /// Regression: when the store failed, heartbeats said "0 waiting, log
    /// head 0" (and summaries were green) instead of saying it failed.
    #[tokio::test]
    async fn a_failing_store_is_reported_as_failing_never_as_zeros() {
        let dir = std::env::temp_dir().join(format!("netbar-uplink-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::Store::open(&dir.join("log.sqlite"), 60).unwrap();
        store.fill_disk_after(2);
        let store = StoreHandle::start(store, u64::MAX).unwrap();
        let healthy = store.facts().await.unwrap();
        assert_eq!(healthy.failing, None);
        let beat = heartbeat(Ok(healthy));
        assert_eq!((beat.outbox_pending, beat.log_head.map(|head| head.index), beat.store_error), (Some(0), Some(0), None));
        // Write until the disk is full: the refusal is kept until a write succeeds.
        let mut n = 0;
        let error = loop {
            let entry = LogEntry::CheckOut(CheckOut { ticket: format!("{n:04}{}", "x".repeat(2000)), reason: None });
            match store.queue(Timestamp::now(), entry, None).await.committed().await {
                Ok(_) => n += 1,
                Err(error) => break error,
            }
            assert!(n < 1000, "the disk never filled");
        };
        assert!(matches!(error, StoreError::Full), "{error}");
        let facts = store.facts().await.unwrap();
        assert_eq!(facts.head.0, n, "what was committed is still the head");
        let beat = heartbeat(Ok(facts));
        assert_eq!(beat.store_error.as_deref(), Some("the disk holding the registration log is full; nothing was recorded"));
        assert_eq!(beat.log_head.map(|head| head.index), Some(n));
        // A store that is gone says so, with no figures at all.
        let gone = heartbeat(Err(StoreError::Unwritable("the store stopped".into())));
        assert_eq!(
            (gone.outbox_pending, gone.log_head, gone.store_error.as_deref()),
            (None, None, Some("the registration log cannot be written: the store stopped"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
