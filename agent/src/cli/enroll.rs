//! `netbar-agent enroll`: giving a station (or a sensor it bridges) its place,
//! and taking it away.
//!
//! A station gets one secret, 32 random bytes: it signs every message with it
//! and derives its broker password from it. Enrollment stores the key in the
//! agent's database and writes the station's `station.key` and
//! `collector.toml`, to be installed together in `/etc/netbar/` (or
//! `%ProgramData%\netbar\`) on the station. With `--csr` (for a venue whose
//! broker wants certificates) it also signs the station's certificate
//! request with the venue CA and writes `station.pem` and `ca.pem`: the
//! station's private key was made on the station and stays there.
//! `enroll revoke` withdraws a station: its key stops working at the agent
//! and its certificates go on the revocation list.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::messages::SensorKind;
use netbar_protocol::{SensorId, StationId, StationKey};

use crate::cli::pki::Authority;
use crate::config::{BrokerMode, Loaded};
use crate::store::Store;
use netbar_host::private::{create_folder, write_private, write_public};

/// `enroll` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Enroll a station: store its key, write its key file and collector config.
    Station {
        /// The station's id (letters, digits, '-' and '_').
        id: StationId,
        /// Where to write `<ID>/station.key` and `<ID>/collector.toml`.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Replace the key of a station enrolled already (its old files stop working).
        #[arg(long)]
        rekey: bool,
        /// The station's certificate request (`netbar-collector pki request`):
        /// sign it with the venue CA and configure TLS to the broker.
        #[arg(long, value_name = "FILE")]
        csr: Option<PathBuf>,
    },
    /// Revoke a station: its key stops working at once and its certificates
    /// go on the revocation list (copied to --crl-out for the broker).
    Revoke {
        /// The station's id.
        id: StationId,
        /// The broker's folder, where crl.pem is copied.
        #[arg(long)]
        crl_out: Option<PathBuf>,
    },
    /// Enroll a safety sensor bridged by an enrolled station.
    Sensor {
        /// The sensor's id.
        id: SensorId,
        /// The station that bridges it.
        #[arg(long)]
        station: StationId,
        /// What it measures: smoke, heat, temperature, carbon_monoxide, door, people_counter.
        #[arg(long)]
        kind: String,
    },
}

/// The station's TLS key, next to its collector.toml, as `netbar-collector
/// pki request` writes it.
const TLS_KEY: &str = "tls.key";

/// Where stations are told to connect.
fn advertised_broker(loaded: &Loaded) -> anyhow::Result<(String, u16)> {
    let broker = &loaded.config.broker;
    if let Some(address) = &broker.advertise {
        let (host, port) = address.rsplit_once(':').with_context(|| format!("broker.advertise {address:?} is not host:port"))?;
        let port = port.parse().with_context(|| format!("broker.advertise {address:?}: bad port"))?;
        return Ok((host.to_owned(), port));
    }
    match broker.mode {
        BrokerMode::External => Ok((broker.host.clone(), broker.port)),
        BrokerMode::Embedded if !broker.listen.ip().is_unspecified() => Ok((broker.listen.ip().to_string(), broker.listen.port())),
        BrokerMode::Embedded => anyhow::bail!(
            "the embedded broker listens on {} (every address): set broker.advertise to the address stations reach this PC at",
            broker.listen
        ),
    }
}

/// Runs an `enroll` subcommand with the agent's configuration.
pub(crate) fn run(loaded: &Loaded, command: Command) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&loaded.database(), loaded.policy.retention_days)?;
    match command {
        Command::Station { id, out, rekey, csr } => {
            let (host, port) = advertised_broker(loaded)?;
            // The certificate request is checked before anything is stored.
            let signing = match &csr {
                Some(path) => {
                    Some((Authority::load(&crate::cli::pki::folder(loaded))?, crate::cli::pki::station_request(id.as_str(), path)?))
                }
                None => None,
            };
            let key = StationKey::from_bytes(rand::random());
            if !store.enroll_station(id.as_str(), &key, Timestamp::now(), rekey)? {
                anyhow::bail!("station {id} is enrolled already (or revoked); --rekey gives it a new key (its current files stop working)");
            }
            let dir = out.join(id.as_str());
            create_folder(&dir)?;
            let mut tls = String::new();
            if let Some((authority, request)) = &signing {
                let certificate = authority.sign_station(&mut store, id.as_str(), request)?;
                write_public(&dir.join("station.pem"), &certificate)?;
                write_public(&dir.join("ca.pem"), authority.certificate())?;
                tls = format!(
                    "# TLS with the venue CA; tls.key is the key `netbar-collector pki request`\n\
                     # made on the station (it never left it).\n\
                     tls = {{ ca_file = \"ca.pem\", client_cert = \"station.pem\", client_key = \"{TLS_KEY}\" }}\n"
                );
            }
            write_private(&dir.join("station.key"), &format!("{}\n", key.to_hex()))?;
            let config = format!(
                "# Written by `netbar-agent enroll station {id}` on {now}.\n\
                 # Install this file and station.key together in /etc/netbar/ (Windows:\n\
                 # %ProgramData%\\netbar\\) on the station; `netbar-collector print-config`\n\
                 # shows every other setting.\n\n\
                 [station]\nvenue = \"{venue}\"\nid = \"{id}\"\nkey_file = \"station.key\"\n\n\
                 [broker]\nhost = \"{host}\"\nport = {port}\n{tls}",
                now = Timestamp::now(),
                venue = loaded.config.venue.id,
            );
            write_private(&dir.join("collector.toml"), &config)?;
            let certificate = if csr.is_some() { ", station.pem and ca.pem" } else { "" };
            println!("enrolled station {id}: station.key, collector.toml{certificate} in {}", dir.display());
        }
        Command::Revoke { id, crl_out } => {
            let Some(serials) = store.revoke_station(id.as_str(), Timestamp::now())? else {
                anyhow::bail!("station {id} is not enrolled, or revoked already");
            };
            println!("station {id} revoked: its key no longer works at the agent");
            let pki = crate::cli::pki::folder(loaded);
            if pki.join("ca.key").exists() {
                let authority = Authority::load(&pki)?;
                let listed = authority.write_crl(&store, crl_out.as_deref())?;
                let places = std::iter::once(pki.as_path()).chain(crl_out.as_deref()).map(|dir| dir.join("crl.pem").display().to_string());
                println!(
                    "{} certificate(s) of {id} revoked; revocation list ({listed} in all) written to {}: restart the broker, which reads it at start (systemctl restart mosquitto)",
                    serials.len(),
                    places.collect::<Vec<_>>().join(" and ")
                );
            }
        }
        Command::Sensor { id, station, kind } => {
            let parsed: SensorKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
                .map_err(|_| anyhow::anyhow!("--kind {kind:?}: one of smoke, heat, temperature, carbon_monoxide, door, people_counter"))?;
            let kind = serde_json::to_value(parsed)?.as_str().unwrap_or_default().to_owned();
            if !store.enroll_sensor(id.as_str(), station.as_str(), &kind, Timestamp::now())? {
                anyhow::bail!("station {station} is not enrolled; enroll it first");
            }
            println!("enrolled sensor {id} ({kind}) bridged by station {station}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
