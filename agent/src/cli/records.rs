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
    /// Write the entries between two dates (days in --tz, `--to` inclusive),
    /// each with its time as hashed (`at`, UTC) and in --tz with its offset
    /// (`at_local`).
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
        format: ExportFormat,
        /// The venue's time zone (its `venue.zone`, e.g. Asia/Shanghai):
        /// whose days --from and --to are, and whose local time `at_local` is.
        #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = crate::config::time_zone)]
        tz: jiff::tz::TimeZone,
    },
    /// Check the hash chain, and the log against the last entry ever
    /// committed (its anchor) and, with --heads, against the heads the
    /// regulator received; exits 1 and names the first problem if any.
    Verify {
        /// The registration log database (at an inspection: the venue's
        /// `records backup`).
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Heads the regulator received from this venue, one JSON object a
        /// line with `index` and `hash` (what `regulator tail --heads`
        /// writes): each must be in the log with the same hash.
        #[arg(long, value_name = "FILE")]
        heads: Option<PathBuf>,
        /// The venue whose heads to check, when the file holds several.
        #[arg(long, value_name = "ID")]
        venue: Option<String>,
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
    /// Write a venue's worth of made-up history into a new database (for
    /// the start-up benchmark and demonstrations; never a real venue's).
    #[command(hide = true)]
    Synthesize {
        /// The database to create (refused if it exists).
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Days of history, ending now.
        #[arg(long, default_value_t = 60)]
        days: u32,
        /// Check-in attempts a day.
        #[arg(long, default_value_t = 2000)]
        per_day: u32,
        /// Stations of the venue.
        #[arg(long, default_value_t = 400)]
        stations: u32,
    },
    /// Cut out of the log what the venue's policy may not keep, where an
    /// earlier release kept it (a Korean venue's resident registration
    /// numbers, 개인정보 보호법 제24조의2): the entries are cut, the chain
    /// from the first of them is made again, the redaction is itself an
    /// entry, and the file keeps no trace. The agent does the same at start;
    /// stop it first.
    Redact {
        /// The agent's configuration file (default: $NETBAR_AGENT_CONFIG, then the system path).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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

/// Runs a `records` subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Export { db, from, to, format, tz } => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            let store = open(&db)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let (start, end) = crate::store::days(from, to, &tz)?;
            let count = store.export(start, end, &tz, format.into(), &mut out)?;
            out.flush()?;
            eprintln!("{count} entries exported");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { db, heads, venue } => {
            let intact = verify(&db)?;
            match heads {
                None => Ok(intact),
                Some(heads) => {
                    let checked = verify_heads(&db, &heads, venue.as_deref())?;
                    Ok(if intact == ExitCode::SUCCESS { checked } else { intact })
                }
            }
        }
        Command::Backup { db, to } => {
            anyhow::ensure!(db.is_file(), "{} does not exist", db.display());
            anyhow::ensure!(!to.exists(), "{} exists already; choose a new file", to.display());
            let pages = crate::store::backup(&db, &to).with_context(|| format!("cannot back {} up to {}", db.display(), to.display()))?;
            eprintln!("{} pages copied to {}", pages, to.display());
            verify(&to)
        }
        Command::Synthesize { db, days, per_day, stations } => {
            anyhow::ensure!(!db.exists(), "{} exists already; choose a new file", db.display());
            anyhow::ensure!(stations > 0 && per_day > 0, "--stations and --per-day must be above 0");
            let started = std::time::Instant::now();
            let written = crate::cli::synthetic::write(&db, days, per_day, stations, Timestamp::now())?;
            eprintln!("{written} entries written to {} in {:.1} s", db.display(), started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Redact { config } => {
            let loaded = crate::config::Config::load(&crate::config::locate(config.as_deref()))?;
            let _instance = crate::instance::hold(&loaded.config.data.dir)?;
            let database = loaded.database();
            anyhow::ensure!(database.is_file(), "{} does not exist", database.display());
            let mut store =
                Store::open(&database, loaded.policy.retention_days).with_context(|| format!("cannot open {}", database.display()))?;
            match crate::daemon::redact(&mut store, &loaded, crate::clock::Clock::from_env()?, "records redact")? {
                Some((seq, redaction)) => {
                    println!("cut to what policy {} keeps: {}; recorded as entry {seq}", redaction.policy, redaction.described());
                    println!("backups made before this still hold what was cut: destroy them");
                }
                None => println!("nothing to cut: the log keeps nothing policy {} may not keep", loaded.policy.name),
            }
            drop(store);
            verify(&database)
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

/// Reads a heads file: the (index, hash) pairs of `venue`, or of the only
/// venue the file names.
fn read_heads(path: &std::path::Path, venue: Option<&str>) -> anyhow::Result<Vec<(u64, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut heads = Vec::new();
    let mut venues = std::collections::BTreeSet::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let bad = |what: &str| anyhow::anyhow!("{} line {}: {what}", path.display(), number + 1);
        let value: serde_json::Value = serde_json::from_str(line).map_err(|error| bad(&format!("not JSON: {error}")))?;
        let index = value["index"].as_u64().ok_or_else(|| bad("no `index` (a whole number)"))?;
        let hash = value["hash"].as_str().ok_or_else(|| bad("no `hash`"))?;
        let of = value["venue"].as_str();
        if venue.is_some_and(|wanted| of.is_some_and(|of| of != wanted)) {
            continue;
        }
        venues.extend(of.map(str::to_owned));
        heads.push((index, hash.to_owned()));
    }
    anyhow::ensure!(
        venue.is_some() || venues.len() <= 1,
        "{} holds the heads of {} venues ({}); name one with --venue",
        path.display(),
        venues.len(),
        venues.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(heads)
}

/// Checks `db` against the heads in `heads`: success, or 1 naming each
/// head the log does not hold as received.
fn verify_heads(db: &std::path::Path, heads: &std::path::Path, venue: Option<&str>) -> anyhow::Result<ExitCode> {
    let heads = read_heads(heads, venue)?;
    anyhow::ensure!(!heads.is_empty(), "no heads to check{}", venue.map(|venue| format!(" for venue {venue}")).unwrap_or_default());
    let checked = open(db)?.check_heads(&heads)?;
    for finding in &checked.findings {
        println!("NOT AS RECEIVED: {finding}");
    }
    println!(
        "heads the regulator received: {} match the log, {} purged after their retention period, {} do not match",
        checked.matched,
        checked.purged,
        checked.findings.len()
    );
    Ok(if checked.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
            for (seq, redaction) in &verified.redactions {
                println!(
                    "redacted at entry {seq} ({}, by {}, policy {}): {}",
                    redaction.at,
                    redaction.by,
                    redaction.policy,
                    redaction.described()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(bad) => {
            println!("registration log BROKEN at {bad}");
            Ok(ExitCode::from(1))
        }
    }
}

/// An export format as typed on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated, the body as a JSON column.
    Csv,
}

impl From<ExportFormat> for Format {
    fn from(format: ExportFormat) -> Format {
        match format {
            ExportFormat::Jsonl => Format::Jsonl,
            ExportFormat::Csv => Format::Csv,
        }
    }
}
