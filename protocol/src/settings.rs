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
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|error| SettingsError { key: String::new(), reason: error.to_string().trim().to_owned() })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        SettingsError { key: if key == "." { String::new() } else { key }, reason: error.into_inner().message().to_owned() }
    })
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
    /// under systemd) when absent. A Windows service defaults to
    /// `%ProgramData%\netbar\logs`.
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
    fn system_paths() {
        assert_eq!(system_path("agent.toml", false, None), PathBuf::from("/etc/netbar/agent.toml"));
        assert_eq!(
            system_path("agent.toml", true, Some(PathBuf::from("D:/Data"))),
            PathBuf::from("D:/Data").join("netbar").join("agent.toml")
        );
    }
}
