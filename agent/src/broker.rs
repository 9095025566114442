//! The embedded MQTT broker (rumqttd), for venues that install nothing else.
//!
//! rumqttd's limits are designed around here:
//! - no topic ACLs: who said what is established by the per-station MAC
//!   (`netbar_protocol::auth`), not by the broker; the broker only keeps
//!   clients without enrolled credentials out;
//! - no persistence: delivery is guaranteed end to end by the collectors'
//!   spools and the agent's receipts, not by the broker;
//! - no shutdown: it runs on its own threads for the life of the process, and
//!   the agent fails loudly if it ever stops;
//! - memory grows with segment sizes: they are set small (messages are at
//!   most 64 KiB);
//! - it panics on some bad configurations and only logs a failed bind: the
//!   settings are checked and the port bound once before it starts, and the
//!   agent waits until the port accepts connections.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Checks a client's username and password; the client id is given too.
pub(crate) type Credentials = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// Largest MQTT payload the broker accepts: above the protocol's own limit,
/// so an oversized message reaches the agent's decoder and is refused there
/// with a reason, not silently by the broker.
const MAX_PAYLOAD: usize = 256 * 1024;

/// Settings of the embedded broker.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) max_connections: usize,
}

/// Starts the broker on its own threads and returns once it accepts
/// connections.
pub(crate) fn start(settings: &Settings, credentials: Credentials) -> anyhow::Result<()> {
    anyhow::ensure!((1..=100_000).contains(&settings.max_connections), "broker max_connections must be between 1 and 100000");
    // rumqttd only logs a failed bind; find out first, with a clear error.
    TcpListener::bind(settings.listen).with_context(|| format!("the embedded broker cannot listen on {}", settings.listen)).map(drop)?;

    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, username: String, password: String| {
        let allowed = credentials(&client_id, &username, &password);
        async move { allowed }
    });
    let server = rumqttd::ServerSettings {
        name: "netbar-v4".to_owned(),
        listen: settings.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: settings.max_connections,
            max_outgoing_packet_count: 200,
            // Segments hold at least one message each; small ones keep the
            // broker's memory flat with thousands of per-station filters.
            max_segment_size: MAX_PAYLOAD * 2,
            max_segment_count: 2,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("netbar".to_owned(), server)])),
        ..rumqttd::Config::default()
    };
    let listen = settings.listen;
    std::thread::Builder::new()
        .name("broker".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let result = broker.start();
            // It never returns while it serves: if it does, the venue has no bus.
            eprintln!(
                "netbar-agent: the embedded broker on {listen} stopped ({result:?}); exiting so the service manager restarts the agent"
            );
            std::process::exit(70);
        })
        .context("cannot start the broker thread")?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&settings.listen, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the embedded broker did not start listening on {} within 10 s", settings.listen);
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_address() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).unwrap()
    }

    fn client(address: SocketAddr, user: &str, password: &str) -> (rumqttc::Client, rumqttc::Connection) {
        let mut options = rumqttc::MqttOptions::new(format!("test-{user}"), address.ip().to_string(), address.port());
        options.set_credentials(user, password);
        rumqttc::Client::new(options, 16)
    }

    /// The first ConnAck or connection error.
    fn connects(connection: &mut rumqttc::Connection) -> bool {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => return ack.code == rumqttc::ConnectReturnCode::Success,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    #[test]
    fn serves_enrolled_clients_only_and_keeps_retained_messages() {
        let address = free_address();
        let settings = Settings { listen: address, max_connections: 100 };
        start(&settings, Arc::new(|_, user, password| user == "st-1" && password == "secret")).unwrap();

        let (_, mut intruder) = client(address, "st-1", "guess");
        assert!(!connects(&mut intruder), "a wrong password is refused");

        let (publisher, mut publishing) = client(address, "st-1", "secret");
        assert!(connects(&mut publishing));
        publisher.publish("netbar/v1/v/station/st-1/status", rumqttc::QoS::AtLeastOnce, true, "online").unwrap();
        // Drive the publisher until the broker acknowledged the message.
        for event in publishing.iter() {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
                break;
            }
        }
        let mut options = rumqttc::MqttOptions::new("test-reader", address.ip().to_string(), address.port());
        options.set_credentials("st-1", "secret");
        let (reader, mut reading) = rumqttc::Client::new(options, 16);
        reader.subscribe("netbar/v1/v/station/+/status", rumqttc::QoS::AtLeastOnce).unwrap();
        let retained = reading.iter().find_map(|event| match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => Some(publish),
            Err(error) => panic!("{error}"),
            _ => None,
        });
        assert_eq!(retained.map(|p| (p.retain, p.payload.to_vec())), Some((true, b"online".to_vec())));
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = Settings { listen: taken.local_addr().unwrap(), max_connections: 10 };
        let error = start(&settings, Arc::new(|_, _, _| true)).unwrap_err();
        assert!(format!("{error:#}").contains("the embedded broker cannot listen on"), "{error:#}");
    }
}
