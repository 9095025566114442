//! The session a station holds, kept on disk beside the spool.
//!
//! The agent reconciles every station on (re)connect from what the station
//! says it holds, so the collector must not forget its session when it
//! restarts (a crash, an update) while the customer plays on. The file is
//! written to a temporary name, synced and renamed, so a crash leaves the
//! old session or the new one, never half of either.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// An open session, as the agent's unlock command gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    /// The session's id.
    pub(crate) id: String,
    /// When the station must lock on its own, if ever.
    pub(crate) until: Option<Timestamp>,
}

const FILE: &str = "session.json";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The session held when the collector last stopped, if any. A file that
/// cannot be read is moved aside (`session.json.damaged`) with a warning:
/// the agent then treats the station as holding nothing.
pub(crate) fn load(dir: &Path) -> Option<Held> {
    let text = fs::read_to_string(path(dir)).ok()?;
    match serde_json::from_str(&text) {
        Ok(held) => Some(held),
        Err(error) => {
            tracing::warn!(%error, file = %path(dir).display(), "the saved session is unreadable; moved aside");
            let _ = fs::rename(path(dir), dir.join(format!("{FILE}.damaged")));
            None
        }
    }
}

/// Keeps `held` (or that there is none) on disk, durably.
pub(crate) fn save(dir: &Path, held: Option<&Held>) -> io::Result<()> {
    let Some(held) = held else {
        return match fs::remove_file(path(dir)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
    };
    fs::create_dir_all(dir)?;
    let temporary = dir.join(format!("{FILE}.tmp"));
    let mut file = fs::File::create(&temporary)?;
    file.write_all(serde_json::to_string(held).map_err(io::Error::other)?.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_survives_a_restart_and_a_damaged_file_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("netbar-held-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&dir), None);
        let held = Held { id: "s-1764000000-3".into(), until: Some("2026-11-22T13:00:00Z".parse().unwrap()) };
        save(&dir, Some(&held)).unwrap();
        assert_eq!(load(&dir), Some(held));
        save(&dir, None).unwrap();
        assert_eq!(load(&dir), None);
        save(&dir, None).unwrap();
        fs::write(path(&dir), "{\"id\":").unwrap();
        assert_eq!(load(&dir), None);
        assert!(dir.join("session.json.damaged").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
