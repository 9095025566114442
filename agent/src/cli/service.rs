//! `run`, the Windows service's entry and `check-config`: the daemon as the
//! service manager starts it, with its logging set up first.

use std::process::ExitCode;

use netbar_host::service::AGENT as SERVICE;

use crate::config;

/// Runs the agent until `shutdown` resolves: `run` and the Windows service
/// both come here. A Windows service has no console, so it logs to files.
pub(super) fn run(
    config: Option<&std::path::Path>,
    as_service: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let path = config::locate(config);
    let loaded = config::Config::load(&path)?;
    let service_config = as_service.then_some(path.as_path());
    let _guard = netbar_host::logging::init(SERVICE.name, loaded.config.log.dir.as_deref(), service_config, loaded.config.log.keep_files)?;
    for notice in &loaded.notices {
        tracing::warn!("configuration: {notice}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(crate::daemon::run(crate::daemon::Parts::open(loaded)?, shutdown))
}

pub(super) fn check_config(explicit: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let path = config::locate(explicit);
    let loaded = config::Config::load(&path)?;
    for notice in &loaded.notices {
        println!("{}: {notice}", path.display());
    }
    println!(
        "configuration is valid: venue {} in {}, policy {}, registration log {}",
        loaded.config.venue.id,
        loaded.zone.iana_name().unwrap_or("(unnamed zone)"),
        loaded.policy.name,
        loaded.database().display()
    );
    Ok(ExitCode::SUCCESS)
}
