//! `netbar-agent`: the venue agent on the cashier PC.
//!
//! For now it offers `check-id`, which validates identity documents and
//! applies the venue's access policy, one JSON line per number.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod broker;
mod check_id;
mod config;
mod enroll;
mod http;
mod records;
mod run;
// Until `netbar-agent run` (issue 4, in progress) appends and purges, only
// `records` and the tests use the writing side; the expectation fails the
// build as soon as it is used, so this cannot outlive its reason.
mod store;
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
    /// Enroll a station or a sensor.
    Enroll {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: enroll::Command,
    },
    /// Manage console users.
    User {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: users::Command,
    },
    /// Print the configuration with every key at its default, commented.
    PrintConfig,
    /// Check the configuration file and exit.
    CheckConfig {
        /// The configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
}

fn run_agent(explicit: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::Config::load(&config::locate(explicit))?;
    let level = std::env::var("NETBAR_LOG").ok().and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok());
    // rumqttd logs every connection and subscription at info: at the scale of
    // a venue that drowns the agent's own log, so it is held to warnings.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level.unwrap_or(tracing_subscriber::filter::LevelFilter::INFO))
        .with_target("rumqttd", tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).with(filter).try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run::run(loaded, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
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
    let loaded = config::Config::load(&config::locate(explicit))?;
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
        Command::Run { config } => run_agent(config.as_deref()),
        Command::Enroll { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| enroll::run(&loaded, what)),
        Command::User { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| users::run(&loaded, what)),
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
