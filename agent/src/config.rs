//! The agent's configuration: one TOML file, every key documented in
//! [`DEFAULT_CONFIG`], unknown keys refused, checked before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netbar_protocol::VenueId;
use netbar_protocol::policy::Policy;
use serde::Deserialize;

/// The client id and user name of the agent on the bus.
pub(crate) const AGENT: &str = "netbar-agent";

/// What `print-config` prints.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// `print-config`'s text: [`DEFAULT_CONFIG`] with the folders of this
/// platform, or of Windows (under `%ProgramData%\netbar`).
pub(crate) fn default_text(windows: bool) -> String {
    netbar_host::default_config(DEFAULT_CONFIG, windows)
}

/// The configuration format this build writes (`version = N` at the top; a
/// file without it is format 1). Format 2 renamed `uplink.records` to
/// `uplink.disclosure`. An older file is read as it was meant, with a
/// notice; see [`netbar_protocol::settings::from_versioned_toml`].
pub(crate) const FORMAT: u32 = 2;

/// Keys earlier formats had.
const RETIRED: &[netbar_protocol::settings::Retired] =
    &[netbar_protocol::settings::Retired { key: "uplink.records", since: 2, now: Some("uplink.disclosure"), advice: "" }];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) venue: Venue,
    pub(crate) data: Data,
    #[serde(default)]
    pub(crate) broker: Broker,
    #[serde(default)]
    pub(crate) http: Http,
    #[serde(default)]
    pub(crate) rules: Rules,
    #[serde(default)]
    pub(crate) log: netbar_protocol::settings::Log,
    /// The regulator feed; none without this section.
    #[serde(default)]
    pub(crate) uplink: Option<Uplink>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Venue {
    pub(crate) id: VenueId,
    pub(crate) zone: String,
    pub(crate) policy: String,
    pub(crate) licensed_stations: u32,
    pub(crate) capacity: u32,
    #[serde(default)]
    pub(crate) staff: u32,
    /// The console's language until a cashier picks another; the policy's
    /// without it.
    #[serde(default)]
    pub(crate) language: Option<netbar_protocol::local::Language>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Data {
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BrokerMode {
    #[default]
    Embedded,
    External,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Broker {
    pub(crate) mode: BrokerMode,
    pub(crate) listen: SocketAddr,
    pub(crate) max_connections: usize,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) advertise: Option<String>,
    /// External: TLS to the broker (relative files are next to this file).
    pub(crate) tls: Option<TlsFiles>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            mode: BrokerMode::Embedded,
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 2000,
            host: "127.0.0.1".into(),
            port: 1883,
            username: None,
            password: None,
            advertise: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Http {
    pub(crate) listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Self {
        Http { listen: SocketAddr::from(([127, 0, 0, 1], 8080)) }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Rules {
    pub(crate) curfew_warning_minutes: u32,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) exit_grace: Duration,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) station_silent_after: Duration,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) sensor_silent_after: Duration,
    pub(crate) overheat_celsius: f64,
    pub(crate) co_alarm_ppm: f64,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) check_in_expires_after: Duration,
    #[serde(with = "netbar_protocol::settings::seconds")]
    pub(crate) message_window: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            curfew_warning_minutes: 10,
            exit_grace: Duration::from_secs(60),
            station_silent_after: Duration::from_secs(120),
            sensor_silent_after: Duration::from_secs(300),
            overheat_celsius: 95.0,
            co_alarm_ppm: 50.0,
            check_in_expires_after: Duration::from_secs(12 * 3600),
            message_window: Duration::from_secs(300),
        }
    }
}

/// The MQTT version spoken to the regulator's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub(crate) enum MqttVersion {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// How much of a person a registration record sent to the regulator carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Disclosure {
    None,
    #[default]
    Pseudonymised,
    Full,
}

/// The `[uplink]` section as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Uplink {
    pub(crate) broker: String,
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) client_cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) client_key: Option<PathBuf>,
    #[serde(default)]
    pub(crate) insecure: bool,
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) protocol: MqttVersion,
    #[serde(default = "Uplink::default_prefix")]
    pub(crate) prefix: String,
    pub(crate) region: String,
    #[serde(default = "Uplink::default_summary_period", with = "netbar_protocol::settings::seconds")]
    pub(crate) summary_period: Duration,
    #[serde(default = "Uplink::default_heartbeat_period", with = "netbar_protocol::settings::seconds")]
    pub(crate) heartbeat_period: Duration,
    #[serde(default)]
    pub(crate) disclosure: Disclosure,
    #[serde(default = "Uplink::default_outbox_max")]
    pub(crate) outbox_max: u64,
    #[serde(default = "Uplink::default_max_backoff", with = "netbar_protocol::settings::seconds")]
    pub(crate) max_backoff: Duration,
    /// The venue's GA 557-2005 code, sent in every summary and heartbeat.
    #[serde(default)]
    pub(crate) ga_code: Option<String>,
}

impl Uplink {
    fn default_prefix() -> String {
        "netbar/feed".into()
    }
    fn default_summary_period() -> Duration {
        Duration::from_secs(300)
    }
    fn default_heartbeat_period() -> Duration {
        Duration::from_secs(60)
    }
    fn default_outbox_max() -> u64 {
        100_000
    }
    fn default_max_backoff() -> Duration {
        Duration::from_secs(30)
    }
}

/// An MQTT broker's URL: `mqtts://host[:port]` (TLS, port 8883 unless
/// given) or `mqtt://host[:port]` (in clear, 1883); whether it is TLS, the
/// host and the port.
pub(crate) fn broker_address(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(format!("{url:?} must start with mqtts:// (or mqtt:// in clear)"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("{port:?} is not a port"))?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((tls, host.to_owned(), port))
}

/// TLS files for a broker: the CA that signed its certificate, and the
/// agent's own certificate and key when it must show one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFiles {
    pub(crate) ca_file: PathBuf,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

/// The `[uplink]` section checked and resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UplinkSettings {
    /// The broker as written, for messages.
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// None only when `insecure = true` and the URL is `mqtt://`.
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) protocol: MqttVersion,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) client_id: String,
    pub(crate) prefix: netbar_protocol::Prefix,
    pub(crate) region: netbar_protocol::RegionCode,
    pub(crate) venue: VenueId,
    pub(crate) summary_period: Duration,
    pub(crate) heartbeat_period: Duration,
    pub(crate) records: Disclosure,
    pub(crate) outbox_max: u64,
    pub(crate) max_backoff: Duration,
    pub(crate) ga_code: Option<netbar_protocol::GaCode>,
}

impl Uplink {
    /// Checks the section; `relative_to` resolves relative file names.
    fn resolve(
        &self,
        venue: &VenueId,
        relative_to: &Path,
        error: impl Fn(&str, String) -> ConfigError,
    ) -> Result<UplinkSettings, ConfigError> {
        let (encrypted, host, port) = broker_address(&self.broker).map_err(|reason| error("uplink.broker", reason))?;
        let tls = if encrypted {
            let ca_file = self
                .ca_file
                .as_ref()
                .ok_or_else(|| error("uplink.ca_file", "is required with mqtts:// (the regulator's CA certificate)".into()))?;
            let file = |path: &PathBuf| relative_to.join(path);
            if self.client_cert.is_some() != self.client_key.is_some() {
                return Err(error("uplink.client_cert", "client_cert and client_key go together".into()));
            }
            Some(TlsFiles {
                ca_file: file(ca_file),
                client_cert: self.client_cert.as_ref().map(file),
                client_key: self.client_key.as_ref().map(file),
            })
        } else if self.insecure {
            None
        } else {
            return Err(error(
                "uplink.broker",
                format!("{} is not encrypted; use mqtts://, or set insecure = true to send the feed in clear", self.broker),
            ));
        };
        if self.max_backoff.is_zero() {
            return Err(error("uplink.max_backoff", "must be at least 1 second".into()));
        }
        let prefix = netbar_protocol::Prefix::new(&self.prefix).map_err(|e| error("uplink.prefix", e.to_string()))?;
        let region: netbar_protocol::RegionCode =
            self.region.parse().map_err(|e: netbar_protocol::ids::IdError| error("uplink.region", e.to_string()))?;
        let ga_code = match &self.ga_code {
            None => None,
            Some(code) => {
                let code: netbar_protocol::GaCode =
                    code.parse().map_err(|e: netbar_protocol::ids::GaCodeError| error("uplink.ga_code", e.to_string()))?;
                // A district's feed carries its own venues: the code's region
                // is the district the venue publishes under.
                if code.region() != region.as_str() {
                    return Err(error(
                        "uplink.ga_code",
                        format!("{code} belongs to region {}, but the feed goes to region {region}", code.region()),
                    ));
                }
                Some(code)
            }
        };
        if self.outbox_max < 100 {
            return Err(error("uplink.outbox_max", format!("is {}, must be at least 100", self.outbox_max)));
        }
        Ok(UplinkSettings {
            url: self.broker.clone(),
            host,
            port,
            tls,
            protocol: self.protocol,
            username: self.username.clone(),
            password: self.password.clone(),
            client_id: format!("netbar-{venue}"),
            prefix,
            region,
            venue: venue.clone(),
            summary_period: self.summary_period,
            heartbeat_period: self.heartbeat_period,
            records: self.disclosure,
            outbox_max: self.outbox_max,
            max_backoff: self.max_backoff,
            ga_code,
        })
    }
}

/// Why a configuration was refused: the file, the key and the reason.
pub(crate) type ConfigError = netbar_protocol::settings::FileError;

/// A configuration with its policy and zone resolved.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    pub(crate) policy: Policy,
    pub(crate) zone: jiff::tz::TimeZone,
    pub(crate) uplink: Option<UplinkSettings>,
    /// What an older format's file should change (read as meant meanwhile).
    pub(crate) notices: Vec<String>,
}

impl Loaded {
    /// The console's first language: the configuration's, else the
    /// policy's, else English.
    pub(crate) fn language(&self) -> netbar_protocol::local::Language {
        self.config.venue.language.or(self.policy.language).unwrap_or(netbar_protocol::local::Language::En)
    }
}

/// The time zone of an IANA name (Asia/Shanghai), from the database
/// compiled in; the error says which name is unknown.
pub(crate) fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|error| format!("{name:?} is not a known time zone: {error}"))
}

impl Config {
    /// Parses and checks `text`, read from `path` (policy files are relative to it).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
        let error = |key: &str, reason: String| ConfigError::new(path, key, reason);
        let (config, notices): (Config, _) =
            netbar_protocol::settings::from_versioned_toml(text, FORMAT, RETIRED).map_err(|e| error(&e.key, e.reason))?;
        let zone = time_zone(&config.venue.zone).map_err(|reason| error("venue.zone", reason))?;
        let policy = match config.venue.policy.as_str() {
            "cn" | "kr" => Policy::preset(&config.venue.policy).map_err(|e| error("venue.policy", e.to_string()))?,
            file => {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                let text =
                    std::fs::read_to_string(&file).map_err(|e| error("venue.policy", format!("cannot read {}: {e}", file.display())))?;
                Policy::from_toml(&text).map_err(|e| error("venue.policy", format!("{}: {e}", file.display())))?
            }
        };
        if config.venue.licensed_stations == 0 {
            return Err(error("venue.licensed_stations", "is 0".into()));
        }
        if config.broker.mode == BrokerMode::External && config.broker.host.is_empty() {
            return Err(error("broker.host", "is empty".into()));
        }
        let mut config = config;
        if let Some(tls) = &mut config.broker.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                return Err(error("broker.tls.client_cert", "client_cert and client_key go together".into()));
            }
            let relative_to = path.parent().unwrap_or(Path::new("."));
            tls.ca_file = relative_to.join(&tls.ca_file);
            tls.client_cert = tls.client_cert.as_ref().map(|file| relative_to.join(file));
            tls.client_key = tls.client_key.as_ref().map(|file| relative_to.join(file));
        }
        if !(1..=100_000).contains(&config.broker.max_connections) {
            return Err(error("broker.max_connections", format!("is {}, must be between 1 and 100000", config.broker.max_connections)));
        }
        if !(30.0..=200.0).contains(&config.rules.overheat_celsius) {
            return Err(error("rules.overheat_celsius", format!("is {}, must be between 30 and 200", config.rules.overheat_celsius)));
        }
        let relative_to = path.parent().unwrap_or(Path::new("."));
        let uplink = config.uplink.as_ref().map(|uplink| uplink.resolve(&config.venue.id, relative_to, error)).transpose()?;
        Ok(Loaded { config, policy, zone, uplink, notices })
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read: {e}")))?;
        Config::parse(path, &text)
    }
}

impl Loaded {
    /// The registration log database.
    pub(crate) fn database(&self) -> PathBuf {
        self.config.data.dir.join("netbar.sqlite")
    }
}

/// The configuration file: the explicit one, the environment's, or the system's.
pub(crate) fn locate(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os("NETBAR_AGENT_CONFIG") {
        return PathBuf::from(path);
    }
    netbar_host::system_path("agent.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, String> {
        Config::parse(Path::new("agent.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_format_1_file_is_read_as_meant_and_format_2_names_the_rename() {
        let uplink = "[uplink]\nbroker = \"mqtts://feed\"\nca_file = \"ca.pem\"\nregion = \"310104\"\nrecords = \"full\"\n";
        let old = DEFAULT_CONFIG.replace("version = 2\n", "") + uplink;
        let loaded = parse(&old).unwrap();
        assert_eq!(loaded.uplink.map(|uplink| uplink.records), Some(Disclosure::Full));
        assert_eq!(loaded.notices.len(), 1);
        assert!(loaded.notices[0].contains("`uplink.records` was renamed `uplink.disclosure` in format 2"), "{:?}", loaded.notices);
        let current = format!("{DEFAULT_CONFIG}{uplink}");
        let error = parse(&current).unwrap_err();
        assert!(error.ends_with("key `uplink.records`: was renamed `uplink.disclosure` in format 2"), "{error}");
        assert!(parse(&current.replace("records =", "disclosure =")).is_ok_and(|loaded| loaded.notices.is_empty()));
        let newer = parse(&DEFAULT_CONFIG.replace("version = 2", "version = 3")).unwrap_err();
        assert!(newer.contains("key `version`: is 3: this file is for a newer netbar"), "{newer}");
    }

    #[test]
    fn printed_defaults_parse_to_the_defaults() {
        let loaded = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(loaded.config.http, Http::default());
        assert_eq!(loaded.config.rules, Rules::default());
        assert_eq!(loaded.config.log, netbar_protocol::settings::Log::default());
        let broker = Broker { advertise: Some("192.168.1.10:1883".into()), ..Broker::default() };
        assert_eq!(loaded.config.broker, broker);
        assert_eq!(loaded.policy, Policy::preset("cn").unwrap());
        // On Windows the same text with its folders under %ProgramData%.
        let windows = netbar_protocol::settings::for_platform(DEFAULT_CONFIG, true, Some(PathBuf::from(r"C:\ProgramData")));
        assert_eq!(parse(&windows).unwrap().config.data.dir, Path::new("C:/ProgramData/netbar/data"));
        assert!(!windows.contains("= \"/var") && !windows.contains("= \"/etc"), "no setting names a Unix folder: {windows}");
    }

    #[test]
    fn refusals_name_file_key_and_reason() {
        let base = "[venue]\nid = \"v1\"\nzone = \"Asia/Seoul\"\npolicy = \"kr\"\nlicensed_stations = 10\ncapacity = 20\n[data]\ndir = \"/tmp/x\"\n";
        assert!(parse(base).is_ok());
        let cases = [
            (format!("{base}[http]\nlisen = \"x\"\n"), "agent.toml: key `http.lisen`: unknown field `lisen`"),
            (base.replace("Asia/Seoul", "Mars/Base"), "key `venue.zone`: \"Mars/Base\" is not a known time zone"),
            (base.replace("\"kr\"", "\"missing.toml\""), "key `venue.policy`: cannot read missing.toml"),
            (format!("{base}[broker]\nmode = \"cloud\"\n"), "key `broker.mode`: unknown variant `cloud`"),
            (format!("{base}[rules]\noverheat_celsius = 500\n"), "key `rules.overheat_celsius`: is 500"),
            (base.replace("[data]\ndir = \"/tmp/x\"\n", ""), "missing field `data`"),
            (
                format!("{base}[uplink]\nbroker = \"mqtt://feed:1883\"\nregion = \"310104\"\n"),
                "key `uplink.broker`: mqtt://feed:1883 is not encrypted",
            ),
            (format!("{base}[uplink]\nbroker = \"mqtts://feed\"\nregion = \"310104\"\n"), "key `uplink.ca_file`: is required"),
            (
                format!("{base}[uplink]\nbroker = \"feed:8883\"\nregion = \"310104\"\n"),
                "key `uplink.broker`: \"feed:8883\" must start with mqtts://",
            ),
            (format!("{base}[uplink]\nbroker = \"mqtts://feed\"\nca_file = \"ca.pem\"\nregion = \"a b\"\n"), "key `uplink.region`"),
            (
                format!("{base}[uplink]\nbroker = \"mqtts://feed\"\nca_file = \"ca.pem\"\nregion = \"r\"\nprotocol = \"4\"\n"),
                "key `uplink.protocol`",
            ),
            (
                format!(
                    "{base}[uplink]\nbroker = \"mqtts://feed\"\nca_file = \"ca.pem\"\nregion = \"310104\"\nga_code = \"3101041000042\"\n"
                ),
                "key `uplink.ga_code`: a GA 557-2005 venue code is 14 digits; \"3101041000042\" is not",
            ),
            (
                format!(
                    "{base}[uplink]\nbroker = \"mqtts://feed\"\nca_file = \"ca.pem\"\nregion = \"310104\"\nga_code = \"31010510000042\"\n"
                ),
                "key `uplink.ga_code`: 31010510000042 belongs to region 310105, but the feed goes to region 310104",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn an_uplink_resolves_its_broker_files_and_defaults() {
        let text = format!(
            "{}\n[uplink]\nbroker = \"mqtts://feed.example\"\nca_file = \"ca.pem\"\nregion = \"310104\"\nprotocol = \"5\"\n",
            DEFAULT_CONFIG
        );
        let uplink = Config::parse(Path::new("/etc/netbar/agent.toml"), &text).unwrap().uplink.unwrap();
        assert_eq!((uplink.host.as_str(), uplink.port, uplink.protocol), ("feed.example", 8883, MqttVersion::V5));
        assert_eq!(uplink.tls.map(|tls| tls.ca_file), Some(PathBuf::from("/etc/netbar/ca.pem")));
        assert_eq!(
            (uplink.summary_period, uplink.records, uplink.outbox_max),
            (Duration::from_secs(300), Disclosure::Pseudonymised, 100_000)
        );
        assert_eq!(uplink.prefix.as_str(), "netbar/feed");
        assert_eq!(uplink.ga_code, None);
        // The [uplink] section is the text's last.
        let coded = format!("{text}ga_code = \"31010410000042\"\n");
        let uplink_coded = Config::parse(Path::new("agent.toml"), &coded).unwrap().uplink.unwrap();
        assert_eq!(uplink_coded.ga_code.map(|code| code.to_string()).as_deref(), Some("31010410000042"));
        let insecure =
            text.replace("mqtts://feed.example", "mqtt://feed.example:1884").replace("ca_file = \"ca.pem\"\n", "insecure = true\n");
        let uplink = Config::parse(Path::new("agent.toml"), &insecure).unwrap().uplink.unwrap();
        assert_eq!((uplink.port, uplink.tls), (1884, None));
        assert!(parse(DEFAULT_CONFIG).unwrap().uplink.is_none(), "no feed unless configured");
    }
}
