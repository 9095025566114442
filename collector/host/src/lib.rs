//! `netbar-host`: what netbar's two daemons, the venue agent and the station
//! collector, need from the machine they run on, written once for both.
//!
//! - [`service`]: installing, removing and running as a system service
//!   (systemd on Linux, the service control manager on Windows), with a
//!   service that cannot start saying why and exiting with an error;
//! - [`private`]: files only their owner may read (keys, logs);
//! - [`transport`]: TLS settings from PEM files, and reconnection backoff;
//! - [`session`]: starting a program in the customer's desktop session;
//! - [`system_path`] and [`default_config`]: this machine's netbar folder
//!   (`/etc/netbar`, or `%ProgramData%\netbar` on Windows);
//! - [`logging`] and [`shutdown`]: where logs go, and when to stop;
//! - `win32` (Windows only): the system calls no maintained crate wraps
//!   (the Event Log, CPU time, the users' sessions), the one module of the
//!   project where unsafe code is allowed.
//!
//! Nothing here knows about venues or stations.

pub mod logging;
pub mod private;
pub mod service;
pub mod session;
pub mod transport;
#[cfg(windows)]
pub mod win32;

/// A file of this machine's netbar folder: `/etc/netbar/NAME`, or
/// `%ProgramData%\netbar\NAME` on Windows.
pub fn system_path(name: &str) -> std::path::PathBuf {
    netbar_protocol::settings::system_path(name, cfg!(windows), program_data())
}

/// A daemon's default configuration text as `print-config` prints it: with
/// this platform's folders, or Windows' when `windows` (under
/// `%ProgramData%\netbar`, `C:\ProgramData` when printed elsewhere).
pub fn default_config(text: &str, windows: bool) -> String {
    netbar_protocol::settings::for_platform(text, windows || cfg!(windows), program_data())
}

/// The folder `name` next to the file `config`.
pub fn beside(config: &std::path::Path, name: &str) -> std::path::PathBuf {
    config.parent().unwrap_or_else(|| std::path::Path::new(".")).join(name)
}

/// `%ProgramData%` on Windows; nothing elsewhere.
fn program_data() -> Option<std::path::PathBuf> {
    if cfg!(windows) { std::env::var_os("ProgramData").map(Into::into) } else { None }
}

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix
/// (what systemd sends). The Windows service's stop request comes through
/// [`service::run_dispatcher`] instead.
pub async fn shutdown() {
    #[cfg(unix)]
    {
        let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
