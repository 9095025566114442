//! Console accounts: `netbar-agent user add NAME --role cashier|manager`,
//! passwords hashed with Argon2id, read from standard input.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Loaded;
use crate::http::auth::{Role, hash};
use crate::store::Store;

/// `user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Add a console user (or set an existing one's role and password); the
    /// password is read from the first line of standard input.
    Add {
        /// The user's name.
        name: String,
        /// The user's role.
        #[arg(long, value_parser = role)]
        role: Role,
    },
}

/// Runs a `user` subcommand.
pub(crate) fn run(loaded: &Loaded, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Add { name, role } => {
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)),
                "a user name is 1 to 64 letters, digits, '-', '_' or '.'"
            );
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(password.chars().count() >= 8, "the password must have at least 8 characters");
            let mut store = Store::open(&loaded.database(), loaded.policy.retention_days)?;
            store.put_user(&name, role.as_str(), &hash(password)?)?;
            println!("user {name} ({}) saved", role.as_str());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A role as typed on the command line.
fn role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: cashier or manager"))
}
