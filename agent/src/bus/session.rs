//! One client's connection to the embedded bus, from its CONNECT to its end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck};
use rumqttc::{LastWill, QoS};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::gate::Identity;
use super::router::{Attached, Outgoing};
use super::wire::{Wire, WireError};
use super::{MAX_PACKET, Shared};

/// How long a client has to send its CONNECT once connected.
pub(crate) const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// Messages sent to a client and not yet acknowledged by it.
const MAX_INFLIGHT: usize = 256;
/// The longest a connection may stay silent, whatever keep-alive it asks.
const MAX_SILENCE: Duration = Duration::from_secs(600);

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// DISCONNECT: no last will.
    Cleanly,
    /// Replaced by a later login of the same identity, revoked, or the bus
    /// restarted: no last will either (the newer connection speaks for it).
    Closed,
    /// Anything else: the last will is published.
    Abruptly,
}

/// A station's queue of messages to it; the agent's is deeper (every
/// station's messages pass through it).
fn outbox_depth(identity: &Identity) -> usize {
    if *identity == Identity::Agent { 16_384 } else { 256 }
}

pub(crate) async fn serve(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let address = format!("address {}", peer.ip());
    let Some(handshake) = shared.begin_handshake(peer.ip()) else {
        shared.refusals.refuse(&address, "handshakes", "connection", &"too many connections from one address are still to log in");
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut wire = Wire::new(stream, MAX_PACKET);
    let connect = match tokio::time::timeout(CONNECT_WITHIN, wire.next()).await {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(_)) => return shared.refusals.refuse(&address, "protocol", "connection", &"the first packet was not CONNECT"),
        Ok(Err(error)) => {
            if let Some(reason) = error.reason() {
                shared.refusals.refuse(&address, reason, "connection", &error);
            }
            return;
        }
        Err(_) => {
            return shared.refusals.refuse(&address, "slow_connect", "connection", &format_args!("no CONNECT within {CONNECT_WITHIN:?}"));
        }
    };
    drop(handshake);
    let login = connect.login.as_ref();
    let Some(identity) = login.and_then(|login| shared.gate.login(&login.username, &login.password)) else {
        let user = login.map_or("(none)", |login| login.username.as_str()).chars().take(64).collect::<String>();
        let _ = wire.send(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadUserNamePassword, false))).await;
        return shared.refusals.refuse(
            &address,
            "bad_login",
            "connection",
            &format_args!("user {user:?}: no such station or a wrong password"),
        );
    };
    let who = match &identity {
        Identity::Station(id) => format!("station {id}"),
        other => other.name().to_owned(),
    };
    if let Some(will) = &connect.last_will
        && !shared.gate.may_publish(&identity, &will.topic)
    {
        let _ = wire.send(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false))).await;
        return shared.refusals.refuse(&who, "not_its_topic", "last will", &format_args!("topic {:.200}", will.topic));
    }
    let (outbox, inbox) = mpsc::channel(outbox_depth(&identity));
    let close = Arc::new(Notify::new());
    let generation = shared.next_generation();
    let attached = Attached { generation, outbox, close: close.clone() };
    let replaced = {
        let mut router = shared.router();
        if router.attached(&identity).is_none() && router.connections() >= shared.max_connections {
            None
        } else {
            Some(router.attach(identity.clone(), attached))
        }
    };
    let Some(replaced) = replaced else {
        let _ = wire.send(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false))).await;
        return shared.refusals.refuse(&who, "bus_full", "connection", &format_args!("{} connections already", shared.max_connections));
    };
    if let Some(replaced) = replaced {
        tracing::debug!(%who, "a new login replaces the connection of the same identity");
        replaced.close.notify_one();
    }
    let silence = match connect.keep_alive {
        0 => MAX_SILENCE,
        seconds => (Duration::from_secs(u64::from(seconds)) * 3 / 2).min(MAX_SILENCE),
    };
    let mut session = Session { shared: shared.clone(), identity: identity.clone(), who, wire, inflight: 0, next_pkid: 0 };
    let ended = session.run(inbox, &close, silence).await;
    shared.router().detach(&identity, generation);
    if ended == Ended::Abruptly
        && let Some(LastWill { topic, message, qos, retain }) = connect.last_will
    {
        shared.route(topic, message, qos, retain).await;
    }
}

struct Session {
    shared: Arc<Shared>,
    identity: Identity,
    who: String,
    wire: Wire,
    inflight: usize,
    next_pkid: u16,
}

impl Session {
    async fn run(&mut self, mut inbox: mpsc::Receiver<Outgoing>, close: &Notify, silence: Duration) -> Ended {
        if self.wire.send(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await.is_err() {
            return Ended::Abruptly;
        }
        let mut retired = self.shared.retired.subscribe();
        let mut heard = Instant::now();
        loop {
            let result = tokio::select! {
                read = self.wire.fill() => match read {
                    Ok(()) => {
                        heard = Instant::now();
                        self.handle_received().await
                    }
                    Err(error) => Err(error),
                },
                Some(outgoing) = inbox.recv(), if self.inflight < MAX_INFLIGHT => {
                    self.deliver(outgoing);
                    // Whatever else is waiting goes out in the same write.
                    while self.inflight < MAX_INFLIGHT {
                        match inbox.try_recv() {
                            Ok(outgoing) => self.deliver(outgoing),
                            Err(_) => break,
                        }
                    }
                    self.wire.flush().await.map(|()| true)
                }
                () = close.notified() => return Ended::Closed,
                _ = retired.changed() => return Ended::Closed,
                () = tokio::time::sleep_until(heard + silence) => {
                    self.shared.refusals.refuse(&self.who, "silent", "connection", &format_args!("nothing heard for {silence:?}"));
                    return Ended::Abruptly;
                }
            };
            match result {
                Ok(true) => {}
                Ok(false) => return Ended::Cleanly,
                Err(error) => {
                    if let Some(reason) = error.reason() {
                        self.shared.refusals.refuse(&self.who, reason, "connection", &error);
                    }
                    return Ended::Abruptly;
                }
            }
        }
    }

    fn deliver(&mut self, outgoing: Outgoing) {
        let mut publish = Publish::from_bytes(&*outgoing.topic, outgoing.qos, outgoing.payload);
        publish.retain = outgoing.retain;
        if outgoing.qos != QoS::AtMostOnce {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            publish.pkid = self.next_pkid;
            self.inflight += 1;
        }
        // Writing into memory fails only for a packet over u32::MAX bytes.
        let _ = self.wire.queue(&Packet::Publish(publish));
    }

    /// Acts on every whole packet received; false once the client said
    /// DISCONNECT.
    async fn handle_received(&mut self) -> Result<bool, WireError> {
        while let Some(packet) = self.wire.take()? {
            match packet {
                Packet::Publish(publish) => self.on_publish(publish).await?,
                Packet::PubAck(_) => self.inflight = self.inflight.saturating_sub(1),
                Packet::Subscribe(subscribe) => {
                    let mut codes = Vec::with_capacity(subscribe.filters.len());
                    let mut retained = Vec::new();
                    for filter in subscribe.filters {
                        if rumqttc::valid_filter(&filter.path) && self.shared.gate.may_subscribe(&self.identity, &filter.path) {
                            let qos = if filter.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                            retained.extend(self.shared.router().subscribe(&self.identity, &filter.path, qos));
                            codes.push(SubscribeReasonCode::Success(qos));
                        } else {
                            self.shared.refusals.refuse(
                                &self.who,
                                "not_its_topic",
                                "subscription",
                                &format_args!("filter {:.200}", filter.path),
                            );
                            codes.push(SubscribeReasonCode::Failure);
                        }
                    }
                    self.wire.queue(&Packet::SubAck(SubAck::new(subscribe.pkid, codes)))?;
                    for outgoing in retained {
                        self.deliver(outgoing);
                    }
                }
                Packet::Unsubscribe(unsubscribe) => {
                    for filter in &unsubscribe.topics {
                        self.shared.router().unsubscribe(&self.identity, filter);
                    }
                    self.wire.queue(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))?;
                }
                Packet::PingReq => self.wire.queue(&Packet::PingResp)?,
                Packet::Disconnect => {
                    self.wire.flush().await?;
                    return Ok(false);
                }
                other => {
                    let kind = format!("{other:?}").split(['(', ' ']).next().unwrap_or("?").to_owned();
                    self.shared.refusals.refuse(&self.who, "protocol", "connection", &format_args!("a client does not send {kind}"));
                    return Err(WireError::Closed);
                }
            }
        }
        self.wire.flush().await?;
        Ok(true)
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<(), WireError> {
        if publish.qos == QoS::ExactlyOnce || !rumqttc::valid_topic(&publish.topic) || publish.topic.is_empty() {
            let detail = format_args!("QoS {:?} on {:.200}", publish.qos, publish.topic);
            self.shared.refusals.refuse(&self.who, "protocol", "message", &detail);
            return Err(WireError::Closed);
        }
        if self.shared.gate.may_publish(&self.identity, &publish.topic) {
            self.shared.route(publish.topic, publish.payload, publish.qos, publish.retain).await;
        } else {
            // Acknowledged all the same (as MQTT 3.1.1 brokers do), so the
            // client does not send it again and again.
            self.shared.refusals.refuse(&self.who, "not_its_topic", "message", &format_args!("topic {:.200}", publish.topic));
        }
        if publish.qos == QoS::AtLeastOnce {
            self.wire.queue(&Packet::PubAck(PubAck::new(publish.pkid)))?;
        }
        Ok(())
    }
}
