//! `netbar-collector`: the station side of netbar.
//!
//! It reports the station's status, hardware and use to the venue agent over
//! MQTT, carries out the agent's commands, hands the lock screen's logins to
//! the agent and keeps what must arrive in an on-disk spool until the agent
//! acknowledges it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

mod actions;
mod config;
mod link;
mod local;
mod probe;
mod sensors;
mod spool;
mod station;

/// Reports a station's sessions, hardware and bridged sensors to the venue agent.
#[derive(Debug, Parser)]
#[command(name = "netbar-collector", version, about)]
struct Cli {
    /// The configuration file (default: $NETBAR_COLLECTOR_CONFIG, then the
    /// system path, then the user's config directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Print the configuration with every key at its default, commented.
    PrintConfig,
    /// Check the configuration file and exit.
    CheckConfig,
    /// Send a login ticket to the running collector, as the lock screen does.
    Login {
        /// The ticket the front desk printed.
        ticket: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("NETBAR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netbar-collector: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<config::Config> {
    let path = config::locate(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(config::Config::load(&path)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Some(Command::PrintConfig) => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
        Some(Command::CheckConfig) => {
            let config = load(&cli)?;
            println!("configuration is valid: station {} of venue {}", config.station.id, config.station.venue);
            Ok(())
        }
        Some(Command::Login { ref ticket }) => {
            let address = load(&cli).map(|config| config.local.listen).unwrap_or_else(|_| config::Config::default_listen());
            println!("{}", runtime.block_on(local::login(address, ticket))?);
            Ok(())
        }
        Some(Command::Run) | None => {
            let config = load(&cli)?;
            runtime.block_on(async move {
                let (logins, login_queue) = mpsc::channel(64);
                let listen = config.local.listen;
                tokio::spawn(async move {
                    if let Err(error) = local::serve(listen, logins).await {
                        tracing::error!("{error:#}");
                    }
                });
                station::run(config, login_queue, shutdown_signal()).await
            })
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (what systemd sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
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
