//! Writing secrets: keys are readable by their owner only from the moment
//! the file exists (created with mode 0600, never loosened after writing).
//!
//! A service reads its keys as its own user (`netbar` for the agent,
//! `netbar-collector` for the collector, both in group `netbar`), while an
//! administrator makes them as root. So when root writes into a folder that
//! belongs to a service, the file is handed over: in the agent's state
//! folder (owned by `netbar`) a key becomes `netbar`'s, mode 0600; in
//! `/etc/netbar` (root's, group `netbar`, 0750, as the packages make it) a
//! key stays root's and the group may read it, mode 0640. Nobody else ever
//! can.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `text` to `path`, readable by the owner only (and by a service's
/// group, see the module's note; on Windows the file inherits its folder's
/// access list).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // A file there already keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
    }
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))?;
    hand_over(path, true)
}

/// Writes a file that is not secret (a certificate, a revocation list),
/// handed over like a key but readable by all.
pub fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    hand_over(path, false)
}

/// Creates a folder (and its parents), handed over like a file.
pub fn create_folder(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    hand_over(path, false)
}

/// Makes `dir` (and its parents) a folder of logs that only its owner may
/// enter, and narrows the files an earlier run left in it: logs name
/// customers' tickets and stations, and the rotating writer makes its
/// files with the process's default mode.
pub fn log_folder(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let narrow = |path: &Path, mode: u32| -> anyhow::Result<()> {
            let current = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
            if current & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot restrict {}", path.display()))?;
            }
            Ok(())
        };
        narrow(dir, 0o700)?;
        for file in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten() {
            if file.file_type().is_ok_and(|kind| kind.is_file()) {
                narrow(&file.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

/// When root wrote `path` into a folder of someone else's, gives it to them.
#[cfg(unix)]
pub fn hand_over(path: &Path, private: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(folder) =
        path.parent().and_then(|parent| std::fs::metadata(if parent.as_os_str().is_empty() { Path::new(".") } else { parent }).ok())
    else {
        return Ok(());
    };
    let file = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if file.uid() != 0 || (folder.uid() == 0 && folder.gid() == 0) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()))
        .with_context(|| format!("cannot give {} to its folder's owner", path.display()))?;
    if private && folder.uid() == 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
            .with_context(|| format!("cannot let the service's group read {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn hand_over(_path: &Path, _private: bool) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn keys_are_owner_only_even_over_a_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("netbar-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "secret").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        write_private(&dir.join("new"), "fresh").unwrap();
        assert_eq!(std::fs::metadata(dir.join("new")).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Run as root (as CI is), a key written into a service's folder
    /// becomes the service's; into root's folder shared with a service's
    /// group, the group may read it.
    #[test]
    fn root_hands_keys_to_the_folders_service() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("netbar-hand-over-{}", std::process::id()));
        let (service, shared) = (dir.join("service"), dir.join("shared"));
        std::fs::create_dir_all(&service).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        if std::fs::metadata(&dir).unwrap().uid() != 0 {
            // Only root can give files away; as anyone else the key simply stays theirs.
            write_private(&service.join("k"), "x").unwrap();
            assert_eq!(std::fs::metadata(service.join("k")).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        std::os::unix::fs::chown(&service, Some(4242), Some(4243)).unwrap();
        std::os::unix::fs::chown(&shared, Some(0), Some(4244)).unwrap();
        write_private(&service.join("k"), "x").unwrap();
        let key = std::fs::metadata(service.join("k")).unwrap();
        assert_eq!((key.uid(), key.gid(), key.permissions().mode() & 0o777), (4242, 4243, 0o600));
        write_private(&shared.join("k"), "x").unwrap();
        let key = std::fs::metadata(shared.join("k")).unwrap();
        assert_eq!((key.uid(), key.gid(), key.permissions().mode() & 0o777), (0, 4244, 0o640));
        write_public(&service.join("c.pem"), "x").unwrap();
        let certificate = std::fs::metadata(service.join("c.pem")).unwrap();
        assert_eq!((certificate.uid(), certificate.permissions().mode() & 0o004), (4242, 0o004));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_folder_is_its_owners_only_with_what_is_in_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("netbar-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let yesterday = dir.join("netbar-agent.2026-11-29.log");
        std::fs::write(&yesterday, "yesterday").unwrap();
        std::fs::set_permissions(&yesterday, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        log_folder(&dir).unwrap();
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&yesterday)), (0o700, 0o600));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
