//! One agent per data directory.
//!
//! `run` holds an exclusive lock on `agent.lock` in the data directory for
//! as long as it runs; the operating system lets go of it when the process
//! ends, however it ends (kill -9, a power cut). A second agent on the same
//! directory is refused before it touches anything, and the tools that read
//! the database (`uplink status`) learn from the lock whether an agent is
//! running, so a flag stored by an agent that crashed is never taken for
//! the truth.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.lock")
}

/// Takes the data directory for this process; the lock is held while the
/// returned file is.
pub(crate) fn hold(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = lock_path(data_dir);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another netbar-agent is running on {} (process {}); stop it first",
                data_dir.display(),
                holder.trim().parse::<u32>().map_or_else(|_| "unknown".to_owned(), |pid| pid.to_string())
            );
        }
        Err(TryLockError::Error(error)) => return Err(error).with_context(|| format!("cannot lock {}", path.display())),
    }
    // The process id is for people reading the file; a full disk that
    // cannot take it does not stop the agent.
    if let Err(error) = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id())).and_then(|()| file.flush()) {
        tracing::warn!(%error, file = %path.display(), "cannot write the process id into the lock file");
    }
    Ok(file)
}

/// Whether an agent runs on `data_dir` now.
pub(crate) fn running(data_dir: &Path) -> bool {
    let Ok(file) = File::open(lock_path(data_dir)) else { return false };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_data_directory_and_the_tools_can_tell() {
        let dir = std::env::temp_dir().join(format!("netbar-instance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!running(&dir), "nothing ran here yet");
        let held = hold(&dir).unwrap();
        assert!(running(&dir));
        let second = hold(&dir).unwrap_err().to_string();
        assert!(second.contains("another netbar-agent is running") && second.contains(&std::process::id().to_string()), "{second}");
        drop(held);
        assert!(!running(&dir), "the lock goes with the process's file");
        drop(hold(&dir).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
