//! `netbar-agent`: the venue agent on the cashier PC.
//!
//! For now it offers `check-id`, which validates identity documents and
//! applies the venue's access policy, one JSON line per number.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg_attr(not(test), expect(dead_code, reason = "the embedded broker is started by `run`, which lands next"))]
mod broker;
mod check_id;
mod config;
mod enroll;
mod records;
// Until `netbar-agent run` (issue 4, in progress) appends and purges, only
// `records` and the tests use the writing side; the expectation fails the
// build as soon as it is used, so this cannot outlive its reason.
#[cfg_attr(not(test), expect(dead_code, reason = "appending and purging are used by `run`, which lands next"))]
mod store;
#[cfg_attr(not(test), expect(dead_code, reason = "the venue is driven by `run`, which lands next"))]
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
    /// Enroll a station or a sensor.
    Enroll {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        what: enroll::Command,
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
        Command::Enroll { config, what } => config::Config::load(&config::locate(config.as_deref()))
            .map_err(anyhow::Error::from)
            .and_then(|loaded| enroll::run(&loaded, what)),
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
