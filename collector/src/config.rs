//! The collector's configuration: one TOML file, every key documented in
//! [`DEFAULT_CONFIG`], unknown keys refused.
//!
//! The file is looked for, in order, at the path given with `--config`, in
//! `$NETBAR_COLLECTOR_CONFIG`, at the system path (`/etc/netbar/collector.toml`
//! on Linux, `%ProgramData%\netbar\collector.toml` on Windows) and in the
//! user's configuration directory (`directories`). A file that does not parse
//! is refused at start with its path, the key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use netbar_protocol::local::Language;
use netbar_protocol::messages::SensorKind;
use netbar_protocol::{SensorId, StationId, VenueId};
use serde::Deserialize;

/// The commented configuration `print-config` prints: every key at its
/// default, the two that have none (`venue`, `id`) at placeholders.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// `print-config`'s text: [`DEFAULT_CONFIG`] with the folders of this
/// platform, or of Windows (under `%ProgramData%\netbar`).
pub(crate) fn default_text(windows: bool) -> String {
    netbar_host::default_config(DEFAULT_CONFIG, windows)
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) station: Station,
    #[serde(default)]
    pub(crate) broker: Broker,
    #[serde(default)]
    pub(crate) telemetry: Telemetry,
    #[serde(default)]
    pub(crate) spool: Spool,
    #[serde(default)]
    pub(crate) local: Local,
    #[serde(default)]
    pub(crate) actions: Actions,
    #[serde(default)]
    pub(crate) lock_screen: LockScreen,
    #[serde(default)]
    pub(crate) sensors: Vec<Sensor>,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub(crate) path: PathBuf,
    #[serde(default)]
    pub(crate) log: netbar_protocol::settings::Log,
}

/// Who this station is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Station {
    pub(crate) venue: VenueId,
    pub(crate) id: StationId,
    /// The file holding this station's key from enrollment (64 hex digits).
    #[serde(default)]
    pub(crate) key_file: Option<PathBuf>,
}

/// Where the agent's broker is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) keep_alive: Duration,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) max_backoff: Duration,
    /// How far from this clock a command's time may be.
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) command_window: Duration,
    pub(crate) tls: Option<Tls>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            host: "127.0.0.1".into(),
            port: 1883,
            username: None,
            password: None,
            keep_alive: Duration::from_secs(15),
            max_backoff: Duration::from_secs(30),
            command_window: Duration::from_secs(300),
            tls: None,
        }
    }
}

/// TLS towards the broker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tls {
    pub(crate) ca_file: PathBuf,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

/// What to report and how often.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Telemetry {
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) interval: Duration,
    /// Process names whose presence counts as an application running.
    pub(crate) apps: Vec<String>,
    /// Input idle time after which the station counts as unused.
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) activity_idle: Duration,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry { interval: Duration::from_secs(5), apps: Vec::new(), activity_idle: Duration::from_secs(60) }
    }
}

/// The on-disk spool of messages waiting for the agent's receipt.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Spool {
    /// Directory; empty for the platform's data directory.
    pub(crate) dir: Option<PathBuf>,
    /// Most messages held; above it telemetry is dropped, oldest first.
    pub(crate) max_messages: usize,
}

impl Default for Spool {
    fn default() -> Self {
        Spool { dir: None, max_messages: 10_000 }
    }
}

/// The local interface for the station's lock screen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Local {
    /// Loopback address to listen on.
    pub(crate) listen: SocketAddr,
}

impl Default for Local {
    fn default() -> Self {
        Local { listen: SocketAddr::from(([127, 0, 0, 1], 47_017)) }
    }
}

/// The customer's lock screen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LockScreen {
    /// Started (and started again) by the collector in the customer's
    /// session, with `--connect` and the local address added; empty when
    /// the desktop's autostart starts it.
    pub(crate) program: Vec<String>,
    /// The venue's name as customers know it; the venue id when empty.
    pub(crate) venue_name: String,
    /// The languages offered, the first shown until the customer picks another.
    pub(crate) languages: Vec<Language>,
    /// The way to the nearest exit from this station, per language.
    pub(crate) exits: BTreeMap<Language, String>,
    /// Font files to load besides the system's.
    pub(crate) fonts: Vec<String>,
    /// A lock screen silent this long is hung.
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) hung_after: Duration,
}

impl Default for LockScreen {
    fn default() -> Self {
        LockScreen {
            program: if cfg!(windows) { vec!["netbar-lockscreen.exe".into()] } else { Vec::new() },
            venue_name: String::new(),
            languages: vec![Language::Zh, Language::En],
            exits: BTreeMap::new(),
            fonts: Vec::new(),
            hung_after: Duration::from_secs(1),
        }
    }
}

/// The programs that carry out commands; each is argv, `{text}` and
/// `{level}` are replaced in `notify`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Actions {
    pub(crate) lock: Vec<String>,
    pub(crate) unlock: Vec<String>,
    pub(crate) notify: Vec<String>,
    /// Prints the lock state: output containing "yes" or "locked" means
    /// locked (case-insensitive), "no" or "unlocked" unlocked.
    pub(crate) lock_state: Vec<String>,
}

impl Default for Actions {
    fn default() -> Self {
        let argv = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        if cfg!(windows) {
            // Without the lock screen: the console session is disconnected
            // (Windows shows its own sign-in screen), which nothing but
            // signing in again undoes; its state is not known.
            Actions {
                lock: argv(&["tsdiscon.exe", "console"]),
                unlock: Vec::new(),
                notify: argv(&["msg.exe", "*", "{text}"]),
                lock_state: Vec::new(),
            }
        } else {
            Actions {
                lock: argv(&["loginctl", "lock-sessions"]),
                unlock: argv(&["loginctl", "unlock-sessions"]),
                notify: argv(&["notify-send", "--urgency=critical", "netbar", "{text}"]),
                lock_state: argv(&[
                    "sh",
                    "-c",
                    "loginctl show-session $(loginctl list-sessions --no-legend | awk 'NR==1{print $1}') -p LockedHint --value",
                ]),
            }
        }
    }
}

/// A safety sensor wired to or bridged by this station.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sensor {
    pub(crate) id: SensorId,
    pub(crate) kind: SensorKind,
    pub(crate) source: Source,
    /// Silence after which the sensor is reported silent.
    #[serde(with = "netbar_protocol::settings::seconds", default = "default_silent_after")]
    pub(crate) silent_after: Duration,
}

fn default_silent_after() -> Duration {
    Duration::from_secs(120)
}

/// Where a sensor's readings come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Source {
    /// A zigbee2mqtt device's JSON topic on the given broker.
    Zigbee2mqtt { host: String, port: u16, topic: String },
    /// A file or sysfs attribute holding a number, read every `interval`.
    File {
        path: PathBuf,
        #[serde(default = "one")]
        scale: f64,
        #[serde(with = "netbar_protocol::settings::seconds", default = "default_poll")]
        interval: Duration,
    },
    /// A command whose output is a number or a zigbee2mqtt-style JSON object.
    Command {
        argv: Vec<String>,
        #[serde(with = "netbar_protocol::settings::seconds", default = "default_poll")]
        interval: Duration,
    },
    /// A Modbus TCP device: one register, coil or input, polled.
    Modbus {
        host: String,
        #[serde(default = "modbus_port")]
        port: u16,
        /// The unit (slave) id behind a gateway.
        #[serde(default = "one_u8")]
        unit: u8,
        /// Which table the address is in.
        #[serde(default)]
        table: ModbusTable,
        /// The register or coil address.
        address: u16,
        #[serde(default = "one")]
        scale: f64,
        #[serde(with = "netbar_protocol::settings::seconds", default = "default_poll")]
        interval: Duration,
    },
    /// Fed by `simulate`; not available in a configuration file.
    #[serde(skip)]
    Simulated,
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ModbusTable {
    /// Read/write 16-bit registers (function 3).
    #[default]
    Holding,
    /// Read-only 16-bit registers (function 4).
    Input,
    /// Read/write bits (function 1).
    Coil,
    /// Read-only bits (function 2).
    Discrete,
}

fn modbus_port() -> u16 {
    502
}

fn one_u8() -> u8 {
    1
}

fn one() -> f64 {
    1.0
}

fn default_poll() -> Duration {
    Duration::from_secs(10)
}

/// The configuration format this build reads and writes (`version = 1`).
pub(crate) const FORMAT: u32 = 1;

/// Why a configuration was refused: the file, the key and the reason.
pub(crate) type ConfigError = netbar_protocol::settings::FileError;

impl Config {
    /// Parses `text`, read from `path`, and checks what types cannot.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let error = |key: String, reason: String| ConfigError::new(path, key, reason);
        // Format 1 is the only one so far: no key retired yet, and a file
        // for a newer collector is refused by name.
        let (config, _notices): (Config, _) =
            netbar_protocol::settings::from_versioned_toml(text, FORMAT, &[]).map_err(|e| error(e.key, e.reason))?;
        config.check().map_err(|(key, reason)| error(key.to_owned(), reason))?;
        // Relative files sit next to the configuration, as enrollment writes them.
        let mut config = config;
        config.path = path.to_owned();
        if let Some(dir) = path.parent() {
            let beside = |file: &mut PathBuf| {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            };
            config.station.key_file.as_mut().map(beside);
            if let Some(tls) = &mut config.broker.tls {
                beside(&mut tls.ca_file);
                tls.client_cert.as_mut().map(beside);
                tls.client_key.as_mut().map(beside);
            }
        }
        Ok(config)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, argv) in [("actions.lock", &self.actions.lock), ("actions.notify", &self.actions.notify)] {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return Err((key, "is empty; give the program and its arguments".into()));
            }
        }
        // These may be empty: nothing lifts the lock, its state is not known.
        for (key, argv) in [
            ("actions.unlock", &self.actions.unlock),
            ("actions.lock_state", &self.actions.lock_state),
            ("lock_screen.program", &self.lock_screen.program),
        ] {
            if argv.first().is_some_and(|program| program.is_empty()) {
                return Err((key, "names an empty program; give the program and its arguments, or no list".into()));
            }
        }
        if !self.local.listen.ip().is_loopback() {
            return Err((
                "local.listen",
                format!("{} is not a loopback address; the login interface must not face the network", self.local.listen),
            ));
        }
        if self.spool.max_messages < 16 {
            return Err(("spool.max_messages", format!("is {}, at least 16 needed", self.spool.max_messages)));
        }
        if self.broker.host.is_empty() {
            return Err(("broker.host", "is empty".into()));
        }
        let mut ids: Vec<&SensorId> = self.sensors.iter().map(|sensor| &sensor.id).collect();
        ids.sort();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(("sensors", format!("sensor {} is configured twice", pair[0])));
        }
        Ok(())
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read: {e}")))?;
        Config::parse(path, &text)
    }

    /// Reads the station key, if one is configured.
    pub(crate) fn station_key(&self) -> anyhow::Result<Option<netbar_protocol::StationKey>> {
        let Some(path) = &self.station.key_file else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read the station key {}: {e}", path.display()))?;
        let key = netbar_protocol::StationKey::from_hex(&text).map_err(|e| anyhow::anyhow!("station key {}: {e}", path.display()))?;
        Ok(Some(key))
    }

    /// The lock screen's address when no configuration can be read.
    /// What the lock screen shows of the venue and this station.
    pub(crate) fn look(&self) -> netbar_protocol::local::Look {
        let screen = &self.lock_screen;
        let venue_name = if screen.venue_name.trim().is_empty() { self.station.venue.to_string() } else { screen.venue_name.clone() };
        netbar_protocol::local::Look {
            venue_name,
            station: self.station.id.clone(),
            languages: if screen.languages.is_empty() { vec![Language::Zh, Language::En] } else { screen.languages.clone() },
            exits: screen.exits.clone(),
            fonts: screen.fonts.clone(),
        }
    }

    pub(crate) fn default_listen() -> SocketAddr {
        Local::default().listen
    }

    /// Where the spool lives.
    pub(crate) fn spool_dir(&self) -> PathBuf {
        self.spool.dir.clone().unwrap_or_else(|| {
            // Under systemd: the unit's StateDirectory, /var/lib/netbar-collector.
            if let Some(state) = std::env::var_os("STATE_DIRECTORY").filter(|state| !state.is_empty()) {
                return PathBuf::from(state).join("spool");
            }
            // On Windows: beside the configuration (where install.ps1 puts
            // it, %ProgramData%\netbar), not in the profile of the account
            // the service runs as.
            if cfg!(windows) {
                return netbar_host::beside(&self.path, "spool");
            }
            directories::ProjectDirs::from("", "netbar", "netbar-collector")
                .map(|dirs| dirs.data_local_dir().join("spool"))
                .unwrap_or_else(|| std::env::temp_dir().join("netbar-collector-spool"))
        })
    }
}

/// The configuration file to use: the explicit one, else the first that
/// exists of the environment's, the system's and the user's.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("NETBAR_COLLECTOR_CONFIG") {
        candidates.push(PathBuf::from(path));
    }
    candidates.push(system_path());
    if let Some(dirs) = directories::ProjectDirs::from("", "netbar", "netbar-collector") {
        candidates.push(dirs.config_dir().join("collector.toml"));
    }
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|path| path.display().to_string()).collect();
        format!("no configuration file found (tried {}); write one with `netbar-collector print-config`", tried.join(", "))
    })
}

/// The system-wide configuration path.
pub(crate) fn system_path() -> PathBuf {
    netbar_host::system_path("collector.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("collector.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn printed_defaults_parse_to_the_defaults() {
        let config = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(config.broker, Broker::default());
        assert_eq!(config.telemetry, Telemetry::default());
        assert_eq!(config.spool, Spool::default());
        assert_eq!(config.local, Local::default());
        assert_eq!(config.actions, Actions::default());
        assert_eq!(config.lock_screen, LockScreen::default());
        assert!(config.sensors.is_empty());
        let windows = netbar_protocol::settings::for_platform(DEFAULT_CONFIG, true, Some(PathBuf::from(r"C:\ProgramData")));
        assert_eq!(parse(&windows).unwrap(), config, "on Windows only comments name other folders");
        assert!(!windows.contains("= \"/var") && !windows.contains("= \"/etc"), "no setting names a Unix folder: {windows}");
    }

    #[test]
    fn refusals_name_file_key_and_reason() {
        let minimal = "[station]\nvenue = \"v1\"\nid = \"st-1\"\n";
        assert!(parse(minimal).is_ok());
        let newer = parse(&format!("version = 2\n{minimal}")).unwrap_err();
        assert!(newer.contains("collector.toml: key `version`: is 2: this file is for a newer netbar"), "{newer}");
        let cases = [
            (format!("{minimal}[broker]\nhots = \"x\"\n"), "collector.toml: key `broker.hots`: unknown field `hots`"),
            ("[station]\nvenue = \"v1\"\n".to_owned(), "collector.toml: key `station`: missing field `id`"),
            ("[station]\nvenue = \"v 1\"\nid = \"st-1\"\n".to_owned(), "key `station.venue`: venue id holds ' '"),
            (format!("{minimal}[telemetry]\ninterval = 0\n"), "key `telemetry.interval`: 0 seconds is out of range"),
            (format!("{minimal}[local]\nlisten = \"0.0.0.0:4000\"\n"), "key `local.listen`: 0.0.0.0:4000 is not a loopback address"),
            (format!("{minimal}[actions]\nlock = []\n"), "key `actions.lock`: is empty"),
            (
                format!("{minimal}[[sensors]]\nid = \"s1\"\nkind = \"smoke\"\nsource = {{ type = \"pigeon\" }}\n"),
                "key `sensors[0].source.type`: unknown variant `pigeon`",
            ),
            ("[station\n".to_owned(), "collector.toml: TOML parse error"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
