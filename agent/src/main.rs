//! `netbar-agent`: the venue agent on the cashier PC.
//!
//! For now it offers `check-id`, which validates identity documents and
//! applies the venue's access policy, one JSON line per number.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check_id;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckId(args) => check_id::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("netbar-agent: {error:#}");
            ExitCode::from(1)
        }
    }
}
