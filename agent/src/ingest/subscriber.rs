//! The regulator's side of the broker: one connection of a subscriber to
//! the feed, in MQTT 3.1.1 or 5, acknowledging each message by hand.
//!
//! Each connection is a fresh client: an acknowledgement still queued in an
//! old client is dropped with it, so a packet id the broker has since given
//! to another message can never be acknowledged by mistake.

use std::time::Duration;

use bytes::Bytes;
use netbar_protocol::Prefix;

use crate::config::{MqttVersion, TlsFiles};

/// A broker the feed is read from.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// None: in clear.
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) prefix: Prefix,
    /// `{prefix}/{region or +}/+/+`.
    pub(crate) filter: String,
}

impl Broker {
    fn transport(&self) -> anyhow::Result<rumqttc::Transport> {
        Ok(match &self.tls {
            Some(tls) => rumqttc::Transport::Tls(netbar_host::transport::tls_configuration(
                &tls.ca_file,
                tls.client_cert.as_deref(),
                tls.client_key.as_deref(),
            )?),
            None => rumqttc::Transport::Tcp,
        })
    }

    /// MQTT 3.1.1 options: a persistent session unless `clean`.
    pub(crate) fn options(&self, client_id: String, clean: bool) -> anyhow::Result<rumqttc::MqttOptions> {
        let mut options = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30)).set_clean_session(clean).set_max_packet_size(1 << 20, 1 << 20);
        options.set_transport(self.transport()?);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        Ok(options)
    }

    fn options_v5(&self, client_id: String) -> anyhow::Result<rumqttc::v5::MqttOptions> {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(false)
            // A week: the broker keeps the session through any outage of the ingest.
            .set_session_expiry_interval(Some(7 * 24 * 3600))
            .set_receive_maximum(Some(RECEIVE_MAXIMUM))
            .set_max_packet_size(Some(1 << 20));
        options.set_transport(self.transport()?);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        Ok(options)
    }
}

/// Most messages the broker may send unacknowledged (MQTT 5; a 3.1.1
/// broker applies its own limit, mosquitto's `max_inflight_messages`).
const RECEIVE_MAXIMUM: u16 = 1000;

/// A message received, kept until it is acknowledged.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    V4(rumqttc::Publish),
    V5(Box<rumqttc::v5::mqttbytes::v5::Publish>),
}

impl Delivery {
    pub(crate) fn topic(&self) -> String {
        match self {
            Delivery::V4(publish) => publish.topic.clone(),
            Delivery::V5(publish) => String::from_utf8_lossy(&publish.topic).into_owned(),
        }
    }

    pub(crate) fn payload(&self) -> &Bytes {
        match self {
            Delivery::V4(publish) => &publish.payload,
            Delivery::V5(publish) => &publish.payload,
        }
    }
}

/// What the connection brought.
#[derive(Debug)]
pub(crate) enum Heard {
    Connected {
        session_present: bool,
    },
    /// The broker answered the subscription: whether it took it.
    Subscribed(bool),
    Message(Delivery),
    Other,
}

/// One connection to the broker.
pub(crate) enum Subscriber {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Subscriber::V4(..) => "Subscriber(3.1.1)",
            Subscriber::V5(..) => "Subscriber(5)",
        })
    }
}

impl Subscriber {
    /// A new client with a persistent session under `client_id`.
    pub(crate) fn new(broker: &Broker, version: MqttVersion, client_id: &str) -> anyhow::Result<Subscriber> {
        Ok(match version {
            MqttVersion::V311 => {
                let mut options = broker.options(client_id.to_owned(), false)?;
                options.set_manual_acks(true);
                let (client, event_loop) = rumqttc::AsyncClient::new(options, usize::from(RECEIVE_MAXIMUM));
                Subscriber::V4(client, Box::new(event_loop))
            }
            MqttVersion::V5 => {
                let mut options = broker.options_v5(client_id.to_owned())?;
                options.set_manual_acks(true);
                let (client, event_loop) = rumqttc::v5::AsyncClient::new(options, usize::from(RECEIVE_MAXIMUM));
                Subscriber::V5(client, Box::new(event_loop))
            }
        })
    }

    pub(crate) async fn poll(&mut self) -> Result<Heard, String> {
        match self {
            Subscriber::V4(_, event_loop) => {
                use rumqttc::{Event, Packet};
                Ok(match event_loop.poll().await.map_err(|error| error.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => Heard::Connected { session_present: ack.session_present },
                    Event::Incoming(Packet::SubAck(ack)) => {
                        Heard::Subscribed(!ack.return_codes.iter().any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure)))
                    }
                    Event::Incoming(Packet::Publish(publish)) => Heard::Message(Delivery::V4(publish)),
                    _ => Heard::Other,
                })
            }
            Subscriber::V5(_, event_loop) => {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                Ok(match event_loop.poll().await.map_err(|error| error.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => Heard::Connected { session_present: ack.session_present },
                    Event::Incoming(Packet::SubAck(ack)) => {
                        Heard::Subscribed(ack.return_codes.iter().all(|code| matches!(code, SubscribeReasonCode::Success(_))))
                    }
                    Event::Incoming(Packet::Publish(publish)) => Heard::Message(Delivery::V5(Box::new(publish))),
                    _ => Heard::Other,
                })
            }
        }
    }

    pub(crate) async fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Subscriber::V4(client, _) => client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.map_err(|e| e.to_string()),
            Subscriber::V5(client, _) => {
                client.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Hands the client the acknowledgement of a message this connection
    /// delivered; an error when its queue is full (try again after a poll).
    pub(crate) fn try_ack(&self, delivery: &Delivery) -> Result<(), String> {
        match (self, delivery) {
            (Subscriber::V4(client, _), Delivery::V4(publish)) => client.try_ack(publish).map_err(|e| e.to_string()),
            (Subscriber::V5(client, _), Delivery::V5(publish)) => client.try_ack(publish).map_err(|e| e.to_string()),
            _ => Err("a message acknowledged on a connection of another MQTT version".to_owned()),
        }
    }
}
