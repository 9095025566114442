//! Reading configuration written in TOML, the same way everywhere.
//!
//! The agent's and the collector's configuration files and custom policies
//! all refuse unknown keys and report an error as the key it is about and
//! the reason, so a person can find the line. Pure: the caller reads the file.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// What is wrong with a TOML document: the key (empty for the document as a
/// whole) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
pub struct SettingsError {
    /// The key's path (`telemetry.interval`, `sensors[0].source.type`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// What is wrong with a settings file: the file, the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong in it.
    pub error: SettingsError,
}

impl FileError {
    /// An error about `key` (empty for the file as a whole) in `path`.
    pub fn new(path: &std::path::Path, key: impl Into<String>, reason: impl Into<String>) -> FileError {
        FileError { path: path.to_owned(), error: SettingsError { key: key.into(), reason: reason.into() } }
    }
}

/// Parses `text` as a `T`, naming the key of the first error.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, SettingsError> {
    let text = without_bom(text);
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|error| SettingsError { key: String::new(), reason: error.to_string().trim().to_owned() })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        SettingsError { key: if key == "." { String::new() } else { key }, reason: error.into_inner().message().to_owned() }
    })
}

/// `text` without the byte order mark Windows' Notepad and PowerShell 5's
/// `-Encoding UTF8` write at the start of a UTF-8 file.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// A key an older format of a configuration file had, and where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    /// The old key's path (`uplink.records`).
    pub key: &'static str,
    /// The format version that retired it.
    pub since: u32,
    /// Its new path, when it was renamed (None: removed).
    pub now: Option<&'static str>,
    /// What to do instead, for a removed key.
    pub advice: &'static str,
}

/// Parses `text`, a file in format `version = N` (a file without the key is
/// format 1), as a `T` of format `current`. A file of an older format is
/// read as it was meant: a retired key is taken under its new name and a
/// notice says how to update the file. In a file of the current format a
/// retired key is an error saying what became of it; a file of a newer
/// format is refused. Returns the value and the notices.
pub fn from_versioned_toml<T: DeserializeOwned>(text: &str, current: u32, retired: &[Retired]) -> Result<(T, Vec<String>), SettingsError> {
    let whole = |reason: String| SettingsError { key: String::new(), reason };
    let mut table: toml::Table = without_bom(text).parse().map_err(|error: toml::de::Error| whole(error.to_string().trim().to_owned()))?;
    let version = match table.remove("version") {
        None => 1,
        Some(toml::Value::Integer(version)) if (1..=i64::from(current)).contains(&version) => version as u32,
        Some(toml::Value::Integer(version)) if version > i64::from(current) => {
            let reason = format!(
                "is {version}: this file is for a newer netbar, which reads formats up to {current}; upgrade netbar or write the file for format {current}"
            );
            return Err(SettingsError { key: "version".into(), reason });
        }
        Some(other) => {
            return Err(SettingsError { key: "version".into(), reason: format!("is {other}: a format number from 1 to {current}") });
        }
    };
    let mut notices = Vec::new();
    for old in retired {
        let Some(value) = take(&mut table, old.key) else { continue };
        let fate = match old.now {
            Some(now) => format!("was renamed `{now}` in format {}", old.since),
            None => format!("was removed in format {}: {}", old.since, old.advice),
        };
        if version >= old.since {
            return Err(SettingsError { key: old.key.into(), reason: fate });
        }
        match old.now {
            Some(now) if take(&mut table.clone(), now).is_some() => {
                return Err(SettingsError { key: old.key.into(), reason: format!("{fate}, and `{now}` is set too: keep one") });
            }
            Some(now) => {
                put(&mut table, now, value);
                notices.push(format!(
                    "key `{}` {fate}; read as `{now}` (write `{now}` and `version = {current}` to update the file)",
                    old.key
                ));
            }
            None => notices.push(format!("key `{}` {fate}; ignored", old.key)),
        }
    }
    let text = toml::to_string(&table).map_err(|error| whole(error.to_string()))?;
    Ok((from_toml(&text)?, notices))
}

/// Removes the value at a dotted path.
fn take(table: &mut toml::Table, path: &str) -> Option<toml::Value> {
    match path.split_once('.') {
        None => table.remove(path),
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(inner)) => take(inner, rest),
            _ => None,
        },
    }
}

/// Sets the value at a dotted path, making the tables on the way.
fn put(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = table.entry(head).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                put(inner, rest, value);
            }
        }
    }
}

/// Durations written as a number of seconds (fractions allowed), from 0.01 s
/// to a day: `#[serde(with = "netbar_protocol::settings::seconds")]`.
pub mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if !(0.01..=86_400.0).contains(&value) {
            return Err(serde::de::Error::custom(format!("{value} seconds is out of range (0.01 to 86400)")));
        }
        Ok(Duration::from_secs_f64(value))
    }
}

/// Where a daemon's logs go: the `[log]` section of both configurations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A directory for daily-rotated log files; standard error (the journal
    /// under systemd) when absent. A Windows service defaults to `logs`
    /// beside its configuration file (`%ProgramData%\netbar\logs`).
    pub dir: Option<PathBuf>,
    /// How many daily files to keep.
    pub keep_files: usize,
}

impl Default for Log {
    fn default() -> Self {
        Log { dir: None, keep_files: 14 }
    }
}

/// The system-wide path of a netbar configuration file: `/etc/netbar/NAME`,
/// or `%ProgramData%\netbar\NAME` on Windows (the caller passes the value of
/// `ProgramData`).
pub fn system_path(name: &str, windows: bool, program_data: Option<PathBuf>) -> PathBuf {
    if windows {
        program_data.unwrap_or_else(|| PathBuf::from(r"C:\ProgramData")).join("netbar").join(name)
    } else {
        PathBuf::from("/etc/netbar").join(name)
    }
}

/// A default configuration's text as it should read on this platform: on
/// Windows the Unix paths in it become folders of `%ProgramData%\netbar`
/// (the caller passes the value of `ProgramData`), written with forward
/// slashes, which TOML takes as they are and Windows accepts.
pub fn for_platform(text: &str, windows: bool, program_data: Option<PathBuf>) -> String {
    if !windows {
        return text.to_owned();
    }
    let base = system_path("", true, program_data).to_string_lossy().replace('\\', "/");
    let base = base.trim_end_matches('/');
    // Longest first: the collector's spool lies inside /var/lib.
    let folders = [
        ("/var/lib/netbar-collector/spool", format!("{base}/spool")),
        ("/var/lib/netbar", format!("{base}/data")),
        ("/var/log/netbar", format!("{base}/logs")),
        ("/etc/netbar", base.to_owned()),
    ];
    // Only settings, written or commented out (`# key = value`): the prose
    // around them names each platform's folders itself.
    let setting = |line: &str| {
        let line = line.trim_start_matches(['#', ' ']);
        line.split_once('=').is_some_and(|(key, _)| {
            let key = key.trim_end();
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
    };
    text.split_inclusive('\n')
        .map(|line| {
            if setting(line) {
                folders.iter().fold(line.to_owned(), |line, (unix, windows)| line.replace(unix, windows))
            } else {
                line.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(with = "seconds")]
        every: Duration,
        inner: Inner,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
    }

    const RETIRED: &[Retired] = &[
        Retired { key: "inner.socket", since: 2, now: Some("inner.port"), advice: "" },
        Retired { key: "turbo", since: 3, now: None, advice: "it is always on" },
    ];

    fn versioned(text: &str) -> Result<(Example, Vec<String>), SettingsError> {
        from_versioned_toml(text, 3, RETIRED)
    }

    #[test]
    fn an_older_format_is_read_as_meant_with_a_notice() {
        let (example, notices) = versioned("every = 1\nturbo = true\n[inner]\nsocket = 80\n").unwrap();
        assert_eq!(example.inner, Inner { port: 80 });
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(notices[0].contains("key `inner.socket` was renamed `inner.port` in format 2; read as `inner.port`"), "{notices:?}");
        assert!(notices[1].contains("key `turbo` was removed in format 3: it is always on; ignored"), "{notices:?}");
        // Format 2 had the rename already, not the removal.
        let (_, notices) = versioned("version = 2\nevery = 1\nturbo = true\n[inner]\nport = 80\n").unwrap();
        assert_eq!(notices.len(), 1);
        let (example, notices) = versioned("version = 3\nevery = 1\n[inner]\nport = 81\n").unwrap();
        assert_eq!((example.inner.port, notices.len()), (81, 0));
    }

    #[test]
    fn a_retired_key_in_the_current_format_and_a_newer_format_are_refused() {
        let error = versioned("version = 3\nevery = 1\n[inner]\nsocket = 80\n").unwrap_err();
        assert_eq!((error.key.as_str(), error.reason.as_str()), ("inner.socket", "was renamed `inner.port` in format 2"));
        let error = versioned("every = 1\n[inner]\nsocket = 80\nport = 80\n").unwrap_err();
        assert!(error.reason.contains("and `inner.port` is set too"), "{error}");
        let error = versioned("version = 4\nevery = 1\n[inner]\nport = 80\n").unwrap_err();
        assert_eq!(error.key, "version");
        assert!(error.reason.contains("for a newer netbar, which reads formats up to 3"), "{error}");
        assert_eq!(versioned("version = \"3\"\nevery = 1\n").unwrap_err().key, "version");
        // Other errors still name their key.
        assert_eq!(versioned("version = 3\nevery = 1\n[inner]\nport = 99999\n").unwrap_err().key, "inner.port");
    }

    #[test]
    fn errors_name_the_key() {
        let ok: Example = from_toml("every = 0.5\n[inner]\nport = 1\n").unwrap();
        assert_eq!(ok, Example { every: Duration::from_millis(500), inner: Inner { port: 1 } });
        let cases = [
            ("every = 0\n[inner]\nport = 1\n", "key `every`: 0 seconds is out of range (0.01 to 86400)"),
            ("every = 1\n[inner]\nport = 70000\n", "key `inner.port`: invalid value"),
            ("every = 1\n[inner]\nport = 1\nhost = 2\n", "key `inner.host`: unknown field `host`"),
            ("every = 1\n", "missing field `inner`"),
            ("every = = 1\n", "TOML parse error"),
        ];
        for (text, expected) in cases {
            let error = from_toml::<Example>(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_no_error() {
        let parsed: Inner = from_toml("\u{feff}port = 8\n").unwrap();
        assert_eq!(parsed.port, 8);
        let (parsed, notices): (Inner, _) = from_versioned_toml("\u{feff}version = 1\nport = 9\n", 1, &[]).unwrap();
        assert_eq!((parsed.port, notices.len()), (9, 0));
    }

    #[test]
    fn default_texts_name_the_platforms_folders() {
        let text = "dir = \"/var/lib/netbar\"\n# dir = \"/var/log/netbar\"\n# ca = \"/etc/netbar/ca.pem\"\n# spool = \"/var/lib/netbar-collector/spool\"\n";
        assert_eq!(for_platform(text, false, None), text);
        let windows = for_platform(text, true, Some(PathBuf::from(r"D:\Data")));
        assert_eq!(
            windows,
            "dir = \"D:/Data/netbar/data\"\n# dir = \"D:/Data/netbar/logs\"\n# ca = \"D:/Data/netbar/ca.pem\"\n# spool = \"D:/Data/netbar/spool\"\n"
        );
        assert!(for_platform(text, true, None).starts_with("dir = \"C:/ProgramData/netbar/data\""));
        let prose = "# Looked for at /etc/netbar/agent.toml (Windows: %ProgramData%\\netbar\\agent.toml).\n";
        assert_eq!(for_platform(prose, true, None), prose);
    }

    #[test]
    fn system_paths() {
        assert_eq!(system_path("agent.toml", false, None), PathBuf::from("/etc/netbar/agent.toml"));
        assert_eq!(
            system_path("agent.toml", true, Some(PathBuf::from("D:/Data"))),
            PathBuf::from("D:/Data").join("netbar").join("agent.toml")
        );
    }
}
