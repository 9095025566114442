//! The MQTT link to the agent's broker.
//!
//! rumqttc's event loop runs in its own task and turns what happens on the
//! connection into [`LinkEvent`]s; the station never blocks on it. When the
//! connection fails, the loop waits with exponential backoff and full jitter
//! before the next attempt, so a venue's stations do not all hammer a
//! restarted agent in the same second.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;

use crate::config::Broker;
pub(crate) use netbar_host::transport::Backoff;
use netbar_host::transport::tls_configuration;

/// What happened on the link.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Connected (again); subscriptions must be made anew.
    Connected,
    /// The connection is lost; the loop is reconnecting.
    Disconnected(String),
    /// A message arrived.
    Message { topic: String, payload: Vec<u8> },
}

/// Largest packet accepted from the broker. Larger than the protocol's own
/// limit on purpose: an oversized message must reach the decoder, which
/// refuses it with a logged reason, instead of tearing the connection down.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// Builds the client options: identity, keep-alive, last will and TLS.
pub(crate) fn options(broker: &Broker, client_id: &str, will: Option<(String, Vec<u8>)>) -> anyhow::Result<MqttOptions> {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options.set_keep_alive(broker.keep_alive.max(Duration::from_secs(5)));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET);
    if let Some((topic, payload)) = will {
        options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    if let Some(username) = &broker.username {
        options.set_credentials(username.clone(), broker.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &broker.tls {
        options.set_transport(Transport::Tls(tls_configuration(&tls.ca_file, tls.client_cert.as_deref(), tls.client_key.as_deref())?));
    }
    Ok(options)
}

/// Starts the client and its event loop task.
pub(crate) fn start(options: MqttOptions, max_backoff: Duration) -> (AsyncClient, mpsc::Receiver<LinkEvent>) {
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    event_loop.set_network_options(netbar_host::transport::nodelay());
    let (events, receiver) = mpsc::channel(256);
    tokio::spawn(drive(event_loop, events, max_backoff));
    (client, receiver)
}

async fn drive(mut event_loop: EventLoop, events: mpsc::Sender<LinkEvent>, max_backoff: Duration) {
    let mut backoff = Backoff::new(max_backoff);
    loop {
        let event = match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                LinkEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Message { topic: publish.topic, payload: publish.payload.to_vec() },
            Ok(_) => continue,
            Err(error) => {
                let wait = backoff.next_wait();
                if events.send(LinkEvent::Disconnected(error.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
