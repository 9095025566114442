//! `netbar-agent`: the venue agent on the cashier PC.
//!
//! `run` is the daemon (bus, venue rules, registration log, API, regulator
//! feed); the other subcommands are tools around it: `check-id`, `records`,
//! `enroll`, `pki`, `user`, `uplink`, `regulator tail` (the regulator's side of
//! the feed), service installation and configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bus;
mod check_id;
mod config;
mod console;
mod demo;
mod enroll;
mod feed;
mod http;
mod instance;
mod journal;
mod pki;
#[path = "../../collector/src/private.rs"]
mod private;
mod records;
mod refusals;
mod regulator;
mod run;
#[path = "../../collector/src/service.rs"]
mod service;
mod store;
mod synthetic;
#[path = "../../collector/src/transport.rs"]
mod transport;
mod uplink;
mod users;
mod venue;

/// The netbar venue agent.
#[derive(Debug, Parser)]
#[command(name = "netbar-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate identity document numbers and decide access under a policy.
    CheckId(check_id::Args),
    /// Export or verify the registration log.
    #[command(subcommand)]
    Records(records::Command),
    /// Run the agent: the bus, the venue's rules and the registration log.
    Run {
        /// The configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
    /// Install and start the system service (systemd on Linux, the service
    /// control manager on Windows) running with the given --config.
    InstallService {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// Where to write the systemd unit.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: std::path::PathBuf,
        /// Only write the unit; do not call systemctl.
        #[arg(long)]
        no_systemctl: bool,
    },
    /// Stop and remove the system service.
    UninstallService {
        /// Where the systemd unit is.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: std::path::PathBuf,
        /// Only remove the unit; do not call systemctl.
        #[arg(long)]
        no_systemctl: bool,
    },
    /// Entry point for the Windows service control manager.
    #[command(hide = true)]
    Service {
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
    /// Enroll a station or a sensor.
    Enroll {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: enroll::Command,
    },
    /// The venue's certificate authority: `pki init`, `pki broker`, `pki crl`, `pki list`.
    Pki {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: pki::Command,
    },
    /// Manage console users.
    User {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: users::Command,
    },
    /// The regulator feed: `uplink status`.
    Uplink {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: uplink::Command,
    },
    /// A whole venue on this machine: the agent with its embedded broker on
    /// free ports, simulated stations and customers, until Ctrl-C.
    Demo(demo::Args),
    /// The regulator's side: `regulator tail` follows a district's feed.
    #[command(subcommand)]
    Regulator(regulator::Command),
    /// Print the configuration with every key at its default, commented.
    PrintConfig,
    /// Check the configuration file and exit.
    CheckConfig {
        /// The configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
}

/// How the agent is installed as a service.
pub(crate) const SERVICE: service::Service = service::Service {
    name: "netbar-agent",
    description: "netbar venue agent",
    arguments: "run --config {config}",
    windows_arguments: "service --config {config}",
    memory_max: "512M",
    open_files: 65536,
    cpu_weight: 100,
    user: "netbar",
    // The default `[data] dir`.
    state_directory: "netbar",
};

/// The --config given on the command line, for the service entry point.
static CONFIG_PATH: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Runs the agent until `shutdown` resolves: `run` and the Windows service
/// both come here. A Windows service has no console, so it logs to files.
pub(crate) fn run_service(as_service: bool, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let loaded = config::Config::load(&config::locate(CONFIG_PATH.get().and_then(|path| path.as_deref())))?;
    let level = std::env::var("NETBAR_LOG").ok().and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok());
    // rumqttd logs every connection and subscription at info: at the scale of
    // a venue that drowns the agent's own log, so it is held to warnings.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level.unwrap_or(tracing_subscriber::filter::LevelFilter::INFO))
        .with_target("rumqttd", tracing_subscriber::filter::LevelFilter::WARN);
    let log_dir = loaded.config.log.dir.clone().or_else(|| {
        (cfg!(windows) && as_service)
            .then(|| netbar_protocol::settings::system_path("logs", true, std::env::var_os("ProgramData").map(Into::into)))
    });
    let _guard = match log_dir {
        None => {
            let _ =
                tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).with(filter).try_init();
            None
        }
        Some(dir) => {
            private::log_folder(&dir)?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("netbar-agent")
                .filename_suffix("log")
                .max_log_files(loaded.config.log.keep_files.max(1))
                .build(&dir)
                .map_err(|error| anyhow::anyhow!("cannot log to {}: {error}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer);
            let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
            Some(guard)
        }
    };
    for notice in &loaded.notices {
        tracing::warn!("configuration: {notice}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run::run(loaded, shutdown))
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (what systemd sends).
async fn shutdown_signal() {
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

fn check_config(explicit: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckId(args) => check_id::run(args),
        Command::Records(command) => records::run(command),
        Command::Run { config } => {
            let _ = CONFIG_PATH.set(config);
            run_service(false, shutdown_signal()).map(|()| ExitCode::SUCCESS)
        }
        Command::InstallService { config, unit_dir, no_systemctl } => {
            // Refuse to install a service that would fail at start.
            let path = config::locate(config.as_deref());
            config::Config::load(&path).map_err(anyhow::Error::from).and_then(|_| {
                let installed = service::install(&SERVICE, &service::Target { unit_dir, systemctl: !no_systemctl }, &path)?;
                println!("installed {}", installed.display());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::UninstallService { unit_dir, no_systemctl } => {
            service::uninstall(&SERVICE, &service::Target { unit_dir, systemctl: !no_systemctl }).map(|removed| {
                println!("removed {}", removed.display());
                ExitCode::SUCCESS
            })
        }
        Command::Service { config } => {
            let _ = CONFIG_PATH.set(config);
            #[cfg(windows)]
            {
                service::run_dispatcher().map(|()| ExitCode::SUCCESS)
            }
            #[cfg(not(windows))]
            {
                Err(anyhow::anyhow!("`service` is the Windows service entry point; on Linux, systemd runs `run`"))
            }
        }
        Command::Enroll { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| enroll::run(&loaded, what)),
        Command::Pki { config, what } => {
            config::Config::load(&config::locate(config.as_deref())).map_err(anyhow::Error::from).and_then(|loaded| pki::run(&loaded, what))
        }
        Command::User { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| users::run(&loaded, what)),
        Command::Uplink { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| uplink::run_command(&loaded, what)),
        Command::Regulator(what) => regulator::run_command(what),
        Command::Demo(args) => demo::run(args),
        Command::PrintConfig => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => check_config(config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("netbar-agent: {error:#}");
            ExitCode::from(1)
        }
    }
}
