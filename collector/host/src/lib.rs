//! `netbar-host`: what netbar's two daemons, the venue agent and the station
//! collector, need from the machine they run on, written once for both.
//!
//! - [`service`]: installing, removing and running as a system service
//!   (systemd on Linux, the service control manager on Windows), with a
//!   service that cannot start saying why and exiting with an error;
//! - [`private`]: files only their owner may read (keys, logs);
//! - [`transport`]: TLS settings from PEM files, and reconnection backoff;
//! - [`logging`] and [`shutdown`]: where logs go, and when to stop;
//! - `win32` (Windows only): the system calls no maintained crate wraps
//!   (the Event Log, CPU time, the users' sessions), the one module of the
//!   project where unsafe code is allowed.
//!
//! Nothing here knows about venues or stations.

pub mod logging;
pub mod private;
pub mod service;
pub mod transport;
#[cfg(windows)]
pub mod win32;

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
