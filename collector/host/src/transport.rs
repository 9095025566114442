//! What both daemons need to reach an MQTT broker: TLS settings from PEM
//! files and the reconnection backoff.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rumqttc::TlsConfiguration;

/// Socket options for MQTT connections: Nagle's algorithm off, so a small
/// command or acknowledgement is not held back behind the previous one's
/// TCP acknowledgement (tens of milliseconds on a busy connection).
pub fn nodelay() -> rumqttc::NetworkOptions {
    let mut options = rumqttc::NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

/// rustls settings that verify the broker against `ca_file`, with a client
/// certificate when both `client_cert` and `client_key` are given.
pub fn tls_configuration(ca_file: &Path, client_cert: Option<&Path>, client_key: Option<&Path>) -> anyhow::Result<TlsConfiguration> {
    let read_pem = |path: &Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut read_pem(ca_file)?.as_slice()) {
        let certificate = certificate.with_context(|| format!("{}: not a PEM certificate", ca_file.display()))?;
        roots.add(certificate).with_context(|| format!("{}: certificate refused", ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: holds no certificate", ca_file.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (client_cert, client_key) {
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
        _ => anyhow::bail!("client_cert and client_key go together"),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// Exponential backoff from 0.5 s to a ceiling, with full jitter over the
/// upper half of each step.
#[derive(Debug)]
pub struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);

    pub fn new(max: Duration) -> Backoff {
        Backoff { step: Backoff::FIRST, max: max.max(Backoff::FIRST) }
    }

    pub fn reset(&mut self) {
        self.step = Backoff::FIRST;
    }

    pub fn next_wait(&mut self) -> Duration {
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
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        let steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0];
        for (wait, step) in waits.iter().zip(steps) {
            let wait = wait.as_secs_f64();
            assert!(wait >= step * 0.5 && wait <= step, "{wait} outside [{}, {step}]", step * 0.5);
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(500));
    }
}
