//! Console accounts: `netbar-agent user add NAME --role cashier|manager`,
//! passwords hashed with Argon2id, read from standard input.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::config::Loaded;
use crate::store::Store;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Checks customers in and out, sees the floor, acknowledges incidents.
    Cashier,
    /// Everything a cashier does, plus resolving incidents and commanding stations.
    Manager,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Cashier => "cashier",
            Role::Manager => "manager",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "cashier" => Some(Role::Cashier),
            "manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

/// `user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Add a console user (or set an existing one's role and password); the
    /// password is read from the first line of standard input.
    Add {
        /// The user's name.
        name: String,
        /// The user's role.
        #[arg(long, value_enum)]
        role: Role,
    },
}

/// Hashes a password for storage.
pub(crate) fn hash(password: &str) -> anyhow::Result<String> {
    Ok(Argon2::default().hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?.to_string())
}

/// Whether `password` matches the stored `hash`.
pub(crate) fn verify(password: &str, hash: &str) -> bool {
    argon2::password_hash::phc::PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsE", &stored));
        assert!(!verify("correct horse", "not a hash"));
    }
}
