//! `netbar-agent enroll`: giving a station (or a sensor it bridges) its place.
//!
//! A station gets one secret, 32 random bytes: it signs every message with it
//! and derives its broker password from it. Enrollment stores the key in the
//! agent's database and writes the station's `station.key` and
//! `collector.toml`, to be installed together in `/etc/netbar/` (or
//! `%ProgramData%\netbar\`) on the station.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use netbar_protocol::messages::SensorKind;
use netbar_protocol::{SensorId, StationId, StationKey};

use crate::config::{BrokerMode, Loaded};
use crate::store::Store;

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

pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}

/// Runs an `enroll` subcommand with the agent's configuration.
pub(crate) fn run(loaded: &Loaded, command: Command) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&loaded.database(), loaded.policy.retention_days)?;
    match command {
        Command::Station { id, out, rekey } => {
            let (host, port) = advertised_broker(loaded)?;
            let key = StationKey::from_bytes(rand::random());
            if !store.enroll_station(id.as_str(), &key, Timestamp::now(), rekey)? {
                anyhow::bail!("station {id} is enrolled already; --rekey gives it a new key (its current files stop working)");
            }
            let dir = out.join(id.as_str());
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            write_private(&dir.join("station.key"), &format!("{}\n", key.to_hex()))?;
            let config = format!(
                "# Written by `netbar-agent enroll station {id}` on {now}.\n\
                 # Install this file and station.key together in /etc/netbar/ (Windows:\n\
                 # %ProgramData%\\netbar\\) on the station; `netbar-collector print-config`\n\
                 # shows every other setting.\n\n\
                 [station]\nvenue = \"{venue}\"\nid = \"{id}\"\nkey_file = \"station.key\"\n\n\
                 [broker]\nhost = \"{host}\"\nport = {port}\n",
                now = Timestamp::now(),
                venue = loaded.config.venue.id,
            );
            write_private(&dir.join("collector.toml"), &config)?;
            println!("enrolled station {id}: {} and {}", dir.join("station.key").display(), dir.join("collector.toml").display());
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
