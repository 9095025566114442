//! The MQTT link to the agent's broker.
//!
//! rumqttc's event loop runs in its own task and turns what happens on the
//! connection into [`LinkEvent`]s; the station never blocks on it. When the
//! connection fails, the loop waits with exponential backoff and full jitter
//! before the next attempt, so a venue's stations do not all hammer a
//! restarted agent in the same second.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::config::{Broker, Tls};

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
        options.set_transport(Transport::Tls(tls_configuration(tls)?));
    }
    Ok(options)
}

fn tls_configuration(tls: &Tls) -> anyhow::Result<TlsConfiguration> {
    let read_pem = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut read_pem(&tls.ca_file)?.as_slice()) {
        let certificate = certificate.with_context(|| format!("{}: not a PEM certificate", tls.ca_file.display()))?;
        roots.add(certificate).with_context(|| format!("{}: certificate refused", tls.ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: holds no certificate", tls.ca_file.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = rustls_pemfile::certs(&mut read_pem(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
            let key = rustls_pemfile::private_key(&mut read_pem(key)?.as_slice())
                .with_context(|| format!("{}: not a PEM private key", key.display()))?
                .with_context(|| format!("{}: holds no private key", key.display()))?;
            builder.with_client_auth_cert(chain, key).context("client certificate and key do not match")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("broker.tls: client_cert and client_key go together"),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// Starts the client and its event loop task.
pub(crate) fn start(options: MqttOptions, max_backoff: Duration) -> (AsyncClient, mpsc::Receiver<LinkEvent>) {
    let (client, event_loop) = AsyncClient::new(options, 64);
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
                let wait = backoff.next();
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

/// Exponential backoff from 0.5 s to a ceiling, with full jitter over the
/// upper half of each step.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);

    pub(crate) fn new(max: Duration) -> Backoff {
        Backoff { step: Backoff::FIRST, max: max.max(Backoff::FIRST) }
    }

    pub(crate) fn reset(&mut self) {
        self.step = Backoff::FIRST;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_its_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        let steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0];
        for (wait, step) in waits.iter().zip(steps) {
            let wait = wait.as_secs_f64();
            assert!(wait >= step * 0.5 && wait <= step, "{wait} outside [{}, {step}]", step * 0.5);
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(500));
    }
}
