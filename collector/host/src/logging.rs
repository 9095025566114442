//! Where a daemon's log goes: standard error (the terminal, or systemd's
//! journal), or daily files in a folder only the service may read (a
//! Windows service has no console).

use std::path::Path;

/// Keeps the file writer's thread; dropping it flushes what is buffered.
pub type Guard = tracing_appender::non_blocking::WorkerGuard;

/// Starts logging at the level `NETBAR_LOG` names (default info), to
/// standard error or to files `<name>.<date>.log` in `dir`, keeping
/// `keep_files` of them. Without a `dir`, a Windows service (which has no
/// standard error) logs to `logs` beside the configuration file it was
/// started with (`service_config`): where install.ps1 put it,
/// `%ProgramData%\netbar`, whatever the service account's environment says.
/// A level, not a directive language: the regex engine behind per-target
/// filters costs more memory than the collector's own code.
pub fn init(name: &str, dir: Option<&Path>, service_config: Option<&Path>, keep_files: usize) -> anyhow::Result<Option<Guard>> {
    let service_dir = service_config.filter(|_| cfg!(windows) && dir.is_none()).map(|config| crate::beside(config, "logs"));
    let dir = dir.or(service_dir.as_deref());
    let level = std::env::var("NETBAR_LOG")
        .ok()
        .and_then(|level| level.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let Some(dir) = dir else {
        // Colours for a terminal only: not into the journal or a file.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = tracing_subscriber::fmt().with_max_level(level).with_ansi(ansi).with_writer(std::io::stderr).try_init();
        return Ok(None);
    };
    crate::private::log_folder(dir)?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(name)
        .filename_suffix("log")
        .max_log_files(keep_files.max(1))
        .build(dir)
        .map_err(|error| anyhow::anyhow!("cannot log to {}: {error}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let _ = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(writer).try_init();
    Ok(Some(guard))
}
