//! The command line: the daemon (`run`, the services) and the tools around
//! it, one module each. Nothing outside this folder uses it.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use netbar_host::service::AGENT as SERVICE;

use crate::config::{self, Config};

pub(crate) mod check_id;
mod city;
#[cfg(feature = "demo")]
mod demo;
mod enroll;
pub(crate) mod pki;
mod records;
mod regulator;
mod service;
pub(crate) mod synthetic;
mod uplink;
mod users;

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
    #[cfg(feature = "demo")]
    Demo(demo::Args),
    /// The regulator's side: `regulator tail` follows a district's feed.
    #[command(subcommand)]
    Regulator(regulator::Command),
    /// Print the configuration with every key at its default, commented.
    PrintConfig {
        /// Windows' defaults (folders under %ProgramData%\netbar), whatever this system is.
        #[arg(long)]
        windows: bool,
    },
    /// Check the configuration file and exit.
    CheckConfig {
        /// The configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Generate(netbar_manual::Generate),
}

/// Runs the command line's command; the exit code to leave with.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckId(args) => check_id::run(args),
        Command::Records(command) => records::run(command),
        Command::Run { config } => service::run(config.as_deref(), false, netbar_host::shutdown()).map(|()| ExitCode::SUCCESS),
        Command::InstallService { config, unit_dir, no_systemctl } => {
            // Refuse to install a service that would fail at start.
            let path = config::locate(config.as_deref());
            Config::load(&path).map_err(anyhow::Error::from).and_then(|_| {
                let installed =
                    netbar_host::service::install(&SERVICE, &netbar_host::service::Target { unit_dir, systemctl: !no_systemctl }, &path)?;
                println!("installed {}", installed.display());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::UninstallService { unit_dir, no_systemctl } => {
            netbar_host::service::uninstall(&SERVICE, &netbar_host::service::Target { unit_dir, systemctl: !no_systemctl }).map(|removed| {
                println!("removed {}", removed.display());
                ExitCode::SUCCESS
            })
        }
        Command::Service { config } => {
            #[cfg(windows)]
            {
                netbar_host::service::run_dispatcher(&SERVICE, Box::new(move |stop| service::run(config.as_deref(), true, stop)))
                    .map(|()| ExitCode::SUCCESS)
            }
            #[cfg(not(windows))]
            {
                let _ = config;
                Err(anyhow::anyhow!("`service` is the Windows service entry point; on Linux, systemd runs `run`"))
            }
        }
        Command::Enroll { config, what } => {
            Config::load(&config::locate(config.as_deref())).map_err(anyhow::Error::from).and_then(|loaded| enroll::run(&loaded, what))
        }
        Command::Pki { config, what } => {
            Config::load(&config::locate(config.as_deref())).map_err(anyhow::Error::from).and_then(|loaded| pki::run(&loaded, what))
        }
        Command::User { config, what } => {
            Config::load(&config::locate(config.as_deref())).map_err(anyhow::Error::from).and_then(|loaded| users::run(&loaded, what))
        }
        Command::Uplink { config, what } => {
            Config::load(&config::locate(config.as_deref())).map_err(anyhow::Error::from).and_then(|loaded| uplink::run(&loaded, what))
        }
        Command::Regulator(what) => regulator::run(what),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
        Command::PrintConfig { windows } => {
            print!("{}", config::default_text(windows));
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => service::check_config(config.as_deref()),
        Command::Generate(what) => what.run(Cli::command()).map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("netbar-agent: {error:#}");
            ExitCode::from(1)
        }
    }
}
