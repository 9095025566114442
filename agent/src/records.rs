//! `netbar-agent records`: what an inspector asks for.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use jiff::civil::Date;

use crate::store::{Format, Store};

/// `records` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Write the entries between two dates (UTC days, `--to` inclusive).
    Export {
        /// The registration log database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: Date,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        to: Date,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
    },
    /// Check the hash chain; exits 1 and names the first bad entry if broken.
    Verify {
        /// The registration log database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// Copy the database while the agent runs (SQLite's online backup),
    /// then verify the copy's chain.
    Backup {
        /// The registration log database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The copy to write (refused if it exists).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Put a verified backup in place of the database. Stop the agent first.
    Restore {
        /// The backup to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The database to replace.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
}

fn open(db: &std::path::Path) -> anyhow::Result<Store> {
    anyhow::ensure!(db.is_file(), "{} does not exist", db.display());
    // Read as it is: a tool that reads a log (a copy, a backup, an old
    // release's) does not migrate it.
    Store::inspect(db).with_context(|| format!("cannot open {}", db.display()))
}

fn day_start(date: Date) -> anyhow::Result<Timestamp> {
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

/// Runs a `records` subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Export { db, from, to, format } => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            let store = open(&db)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let count = store.export(day_start(from)?, day_start(to.tomorrow()?)?, format, &mut out)?;
            out.flush()?;
            eprintln!("{count} entries exported");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { db } => verify(&db),
        Command::Backup { db, to } => {
            anyhow::ensure!(db.is_file(), "{} does not exist", db.display());
            anyhow::ensure!(!to.exists(), "{} exists already; choose a new file", to.display());
            let pages = crate::store::backup(&db, &to).with_context(|| format!("cannot back {} up to {}", db.display(), to.display()))?;
            eprintln!("{} pages copied to {}", pages, to.display());
            verify(&to)
        }
        Command::Restore { from, db } => {
            anyhow::ensure!(from.is_file(), "{} does not exist", from.display());
            if verify(&from)? != ExitCode::SUCCESS {
                anyhow::bail!("{} is damaged; nothing was restored", from.display());
            }
            crate::store::backup(&from, &db).with_context(|| format!("cannot restore {} to {}", from.display(), db.display()))?;
            eprintln!("{} restored to {}", from.display(), db.display());
            verify(&db)
        }
    }
}

/// Verifies the chain of `db`: success, or 1 naming the first bad entry.
fn verify(db: &std::path::Path) -> anyhow::Result<ExitCode> {
    let store = open(db)?;
    match store.verify()? {
        Ok(verified) => {
            println!(
                "registration log intact: {} entries from checkpoint {} to entry {} (hash {})",
                verified.entries, verified.from.0, verified.head.0, verified.head.1
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(bad) => {
            println!("registration log BROKEN at {bad}");
            Ok(ExitCode::from(1))
        }
    }
}
