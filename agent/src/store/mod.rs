//! The registration log: append-only, hash-chained, durable, in SQLite.
//!
//! Every entry's hash covers the previous entry's hash, its own position,
//! time, kind and body, so an entry edited, inserted or removed in the
//! database file breaks the chain at that entry and `records verify` names
//! it. Inside the program there is no path that alters or deletes an entry
//! younger than the retention period: besides the store offering no such
//! operation, triggers in the database refuse UPDATE on any entry and DELETE
//! on a young one. Old entries are purged on a schedule; the last purged
//! entry's position and hash stay behind as a checkpoint the chain is
//! verified from.
//!
//! Appends commit with WAL and `synchronous = FULL`: once [`Store::append_all`]
//! returns, the entry survives a kill -9 or a power cut. When the disk is
//! full or the file cannot be written, it returns an error and nothing is
//! acknowledged.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use netbar_protocol::StationKey;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::journal::{LogEntry, Matter, Replayed};

mod outbox;
mod redact;
mod registry;
pub(crate) mod thread;

pub(crate) use redact::{Pending, kept_number};

/// A certificate the venue CA issued (times in RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    /// The serial number in hex.
    pub(crate) serial: String,
    /// The common name: a station's id, `netbar-agent`, or the broker's name.
    pub(crate) subject: String,
    /// `station`, `agent` or `broker`.
    pub(crate) usage: String,
    pub(crate) issued_at: String,
    pub(crate) not_after: String,
    pub(crate) revoked_at: Option<String>,
}

/// The hash before the first entry.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the store refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The disk is full: nothing was written.
    #[error("the disk holding the registration log is full; nothing was recorded")]
    Full,
    /// The database cannot be written (read-only, locked, gone).
    #[error("the registration log cannot be written: {0}")]
    Unwritable(String),
    /// Written by a newer netbar: not touched.
    #[error(
        "the database has schema version {found}, written by a newer netbar; this one knows up to {known}: upgrade netbar-agent, or restore a backup made by this version"
    )]
    Newer { found: usize, known: usize },
    /// Any other database error.
    #[error("registration log database error: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(
                ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure,
            ) => StoreError::Unwritable(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// One entry of the log, as committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) at: Timestamp,
    pub(crate) entry: LogEntry,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// The log's file holds less than was committed: entries were removed (or
/// the last one replaced) outside the program. Found at opening by the
/// anchor, which keeps the highest position and hash ever committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Truncation {
    /// The last entry the file holds (or its checkpoint).
    pub(crate) log_end: (u64, String),
    /// The last entry ever committed.
    pub(crate) anchor: (u64, String),
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((end, _), (anchor, hash)) = (&self.log_end, &self.anchor);
        if end < anchor {
            write!(
                f,
                "the registration log ends at entry {end} but entry {anchor} was committed (hash {hash}): entries {}..{anchor} were removed from the file",
                end + 1
            )
        } else {
            write!(f, "entry {anchor} of the registration log is not the one committed (its hash was {hash}): it was replaced in the file")
        }
    }
}

/// The first entry that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadEntry {
    pub(crate) seq: u64,
    pub(crate) reason: String,
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.reason)
    }
}

/// The outcome of a verification that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Entries checked.
    pub(crate) entries: u64,
    /// The checkpoint the chain starts from (0 and the genesis hash when nothing was purged).
    pub(crate) from: (u64, String),
    /// The last entry's position and hash.
    pub(crate) head: (u64, String),
    /// The redactions the log records, by entry: what was cut and chained
    /// again (every entry, those included, verified as it now is).
    pub(crate) redactions: Vec<(u64, crate::journal::Redaction)>,
}

/// What a restart replays: entries in log order, and the entries that
/// could not be read.
#[derive(Debug)]
pub(crate) struct OpenMatters {
    pub(crate) entries: Vec<Replayed>,
    pub(crate) unreadable: Vec<String>,
}

/// The log compared with heads the regulator received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeadsChecked {
    /// Heads found in the log with the same hash.
    pub(crate) matched: u64,
    /// Heads older than the checkpoint (purged after their retention period).
    pub(crate) purged: u64,
    /// Heads that do not match, each in words.
    pub(crate) findings: Vec<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated, the body as a JSON column.
    Csv,
}

/// The columns of a CSV export. `at` is the instant as stored and hashed
/// (UTC), so an auditor re-verifies the chain from the export as it is;
/// `at_local` is the same instant in the venue's zone with its offset,
/// what the law's local time reads, added last so that the columns before
/// it keep their places.
const CSV_HEADER: &str = "seq,at,kind,body,prev_hash,hash,at_local";

/// A message queued for the regulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    /// Its place in the venue's feed: contiguous from 1, across restarts.
    pub(crate) seq: u64,
    /// The regulator channel it goes on ("summary", "incident", "record").
    pub(crate) channel: String,
    /// The encoded envelope.
    pub(crate) payload: Vec<u8>,
}

/// Builds a message for the outbox from its sequence number and the log's
/// head at that moment: the channel and the encoded envelope, or nothing.
pub(crate) type Outbound = Box<dyn FnOnce(u64, Head<'_>) -> Option<(&'static str, Vec<u8>)> + Send>;

/// An entry to append: when, and what.
pub(crate) type NewEntry<'a> = (Timestamp, &'a LogEntry);

/// The log entry a message for the regulator goes with, or the log's head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) index: u64,
    pub(crate) hash: &'a str,
    /// The hash before it (empty when only the head is known).
    pub(crate) prev_hash: &'a str,
}

/// The outbox at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct OutboxStatus {
    /// Messages not yet acknowledged by the regulator's broker.
    pub(crate) pending: u64,
    /// When the oldest of them was queued.
    pub(crate) oldest: Option<Timestamp>,
    /// The last sequence number given out.
    pub(crate) last_seq: u64,
    /// The highest sequence number the regulator's broker acknowledged.
    pub(crate) last_acked: u64,
    /// Whether the agent was connected to the regulator, and since when.
    pub(crate) connected: bool,
    pub(crate) since: Option<Timestamp>,
}

/// The hash of an entry.
fn entry_hash(prev_hash: &str, seq: u64, at: &str, kind: &str, body: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [prev_hash, &seq.to_string(), at, kind, body] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    netbar_protocol::auth::hex(&hasher.finalize())
}

/// The store; one task owns it.
#[derive(Debug)]
pub(crate) struct Store {
    connection: Connection,
    /// Where the next entry chains on: the last entry committed.
    head: (u64, String),
    /// Messages in the outbox.
    pending: u64,
    /// Found at opening: entries committed but missing from the file.
    truncation: Option<Truncation>,
}

/// What a migration does that SQL cannot (reading the log to fill a new
/// table), in the migration's transaction.
type MigrationCode = fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>;

/// One step of the schema: SQL, then its code, in one transaction.
struct Migration {
    sql: &'static str,
    then: Option<MigrationCode>,
}

/// The schema's migrations, in order: the database's `user_version` is the
/// number of those applied. Never edit one that has shipped; add the next.
/// Every statement is idempotent, so a database from before the numbering
/// (user_version 0, the tables of migration 1 present) takes them all.
const MIGRATIONS: &[Migration] = &[
    Migration { sql: MIGRATION_1, then: None },
    Migration { sql: MIGRATION_2, then: None },
    Migration { sql: MIGRATION_3, then: None },
    Migration { sql: MIGRATION_4, then: Some(replay_into_live_and_anchor) },
    Migration { sql: MIGRATION_5, then: None },
];

// 5: the sequence numbers accepted from each station (the newest
// SEQUENCES_KEPT of each), so a message captured once is refused after any
// restart.
// The agent's commands are numbered too: `command_seq` is the end of the
// block of numbers the running agent may use (never reused, whatever the
// clock does).
const MIGRATION_5: &str = "CREATE TABLE IF NOT EXISTS accepted (
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (station, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// How many of each station's newest accepted sequence numbers are kept.
pub(crate) const SEQUENCES_KEPT: usize = 1024;

const MIGRATION_1: &str =
    // 1: the registration log, enrollment and users (first release).
    "
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    at_unix INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_at ON log (at_unix);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retention (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stations (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    enrolled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sensors (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL REFERENCES stations (id),
    kind TEXT NOT NULL,
    enrolled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS log_append_only BEFORE UPDATE ON log
BEGIN
    SELECT RAISE(ABORT, 'the registration log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS log_keep_young BEFORE DELETE ON log
WHEN OLD.at_unix > CAST(strftime('%s', 'now') AS INTEGER) - (SELECT days FROM retention WHERE id = 1) * 86400
BEGIN
    SELECT RAISE(ABORT, 'registration records younger than the retention period cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS retention_never_shorter BEFORE UPDATE ON retention
WHEN NEW.days < OLD.days
BEGIN
    SELECT RAISE(ABORT, 'the retention period of existing records cannot be shortened');
END;
";

// 2: the regulator feed's outbox and link state.
const MIGRATION_2: &str = "CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    queued_unix INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    last_acked INTEGER NOT NULL,
    connected INTEGER NOT NULL,
    changed_unix INTEGER NOT NULL
);
INSERT OR IGNORE INTO uplink (id, last_seq, last_acked, connected, changed_unix) VALUES (1, 0, 0, 0, 0);
";

// 3: revoked stations, and the certificates the venue CA issued.
const MIGRATION_3: &str = "ALTER TABLE stations ADD COLUMN revoked_at TEXT;
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    usage TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    not_after TEXT NOT NULL,
    revoked_at TEXT
);
";

// 4: what a restart replays (the entries that keep something open: a
// check-in, a session, a station's hold, an incident) from the position
// the upgrade starts at, the anchor (the highest position and hash ever
// committed, which never goes back, so a log whose tail was removed from
// the file is found out), and where the next summary's period starts.
const MIGRATION_4: &str = "CREATE TABLE IF NOT EXISTS live (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE INDEX IF NOT EXISTS live_seq ON live (seq);
CREATE TABLE IF NOT EXISTS live_since (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
ALTER TABLE uplink ADD COLUMN period_start TEXT;
CREATE TABLE IF NOT EXISTS anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS anchor_never_back BEFORE UPDATE ON anchor
WHEN NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'the anchor of the registration log never goes back');
END;
";

/// Migration 4's code: the open matters are kept from the next entry on
/// and the anchor starts at the head. Earlier entries are not replayed:
/// the release that wrote them forgot every open matter at each of its
/// restarts, so what they leave open (tickets of customers long gone,
/// incidents nobody could resolve) is not brought back by the upgrade.
fn replay_into_live_and_anchor(transaction: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let (seq, hash) = log_end(transaction)?;
    transaction.execute("INSERT OR IGNORE INTO live_since (id, seq) VALUES (1, ?1)", params![seq as i64 + 1])?;
    transaction.execute("INSERT OR IGNORE INTO anchor (id, seq, hash) VALUES (1, ?1, ?2)", params![seq as i64, hash])?;
    Ok(())
}

/// The open matters a replay of the log gives (from where they are kept
/// on): key → the entries that keep it open. Entries that do not read as
/// ours are passed over.
fn live_by_replay(connection: &Connection) -> Result<std::collections::BTreeMap<String, Vec<u64>>, StoreError> {
    let mut live: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    let mut statement =
        connection.prepare("SELECT seq, kind, body FROM log WHERE seq >= (SELECT seq FROM live_since WHERE id = 1) ORDER BY seq")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (seq, kind, body): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let Ok(entry) = LogEntry::from_parts(&kind, &body) else { continue };
        let (closes, opens) = entry.liveness();
        for matter in closes {
            live.remove(&matter.key());
        }
        for matter in opens {
            live.entry(matter.key()).or_default().push(seq as u64);
        }
    }
    Ok(live)
}

/// The newest [`SEQUENCES_KEPT`] sequence numbers accepted from each station.
fn accepted_sequences(connection: &Connection) -> Result<HashMap<String, Vec<u64>>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT station, seq FROM (SELECT station, seq, row_number() OVER (PARTITION BY station ORDER BY seq DESC) AS n FROM accepted) WHERE n <= ?1",
    )?;
    let mut accepted: HashMap<String, Vec<u64>> = HashMap::new();
    let mut rows = statement.query(params![SEQUENCES_KEPT as i64])?;
    while let Some(row) = rows.next()? {
        let (station, seq): (String, i64) = (row.get(0)?, row.get(1)?);
        accepted.entry(station).or_default().push(seq as u64);
    }
    Ok(accepted)
}

/// The last entry the file holds, or the checkpoint when it holds none.
fn log_end(connection: &Connection) -> Result<(u64, String), StoreError> {
    let head = connection
        .query_row("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1", [], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
        .optional()?;
    match head {
        Some(head) => Ok(head),
        None => Store::checkpoint_of(connection),
    }
}

/// The anchor, where the schema has one.
fn anchor_of(connection: &Connection) -> Result<Option<(u64, String)>, StoreError> {
    let has_table: bool =
        connection
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'anchor')", [], |row| row.get(0))?;
    if !has_table {
        return Ok(None);
    }
    Ok(connection
        .query_row("SELECT seq, hash FROM anchor WHERE id = 1", [], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
        .optional()?)
}

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Copies the database `from` to `to` page by page with SQLite's online
/// backup, while others go on writing `from`; `to` is readable by its owner
/// only. Returns the pages copied.
pub(crate) fn backup(from: &Path, to: &Path) -> Result<u64, StoreError> {
    // Opened for writing only so that SQLite may create the WAL index; the
    // backup reads.
    let source = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut target = Connection::open(to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(|e| StoreError::Unwritable(e.to_string()))?;
    }
    let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
    backup.run_to_completion(256, std::time::Duration::from_millis(5), None)?;
    let pages = backup.progress().pagecount;
    Ok(u64::try_from(pages).unwrap_or(0))
}

/// Brings the database to [`SCHEMA_VERSION`], one migration per
/// transaction; refuses a database written by a newer netbar.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer { found: version, known: SCHEMA_VERSION });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration.sql)?;
        if let Some(then) = migration.then {
            then(&transaction)?;
        }
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        transaction.commit()?;
        if version > 0 || index > 0 {
            tracing::info!(from = index, to = index + 1, "database schema migrated");
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating) the log at `path`, keeping records `retention_days`.
    pub(crate) fn open(path: &Path, retention_days: u32) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unwritable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut connection = Connection::open(path)?;
        // What is deleted or overwritten (an acknowledged message, a purged
        // or redacted entry) is overwritten with zeros in the file, not left
        // in a free page.
        connection.pragma_update(None, "secure_delete", "ON")?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut connection)?;
        // Personal data: the owner's only (a database of an older build is
        // narrowed too). Made by root (`enroll`, `user add`)
        // in the service's folder, the files become the service's; SQLite
        // gives journal files made later the database's owner.
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            let Ok(metadata) = std::fs::metadata(&file) else { continue };
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if metadata.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| StoreError::Unwritable(format!("cannot restrict {}: {e}", file.display())))?;
                }
            }
            #[cfg(not(unix))]
            let _ = metadata;
            netbar_host::private::hand_over(&file, false).map_err(|e| StoreError::Unwritable(format!("{e:#}")))?;
        }
        // A longer retention is always accepted; a shorter one would let
        // young records be purged, and the trigger refuses it.
        connection.execute(
            "INSERT INTO retention (id, days) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET days = excluded.days WHERE excluded.days > days",
            params![retention_days],
        )?;
        Store::with_head(connection)
    }

    /// Opens an existing log to read it (`records export`, `verify`): no
    /// migration, no retention written, nothing created. A log of an older
    /// schema reads as it is; one of a newer schema is refused.
    pub(crate) fn inspect(path: &Path) -> Result<Store, StoreError> {
        let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        connection.pragma_update(None, "secure_delete", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer { found: version, known: SCHEMA_VERSION });
        }
        Store::with_head(connection)
    }

    /// The store over `connection`, its head read. Where the anchor is
    /// ahead of the file (entries removed from it), the store chains on
    /// from the anchor, so a position once committed is never given out
    /// again with another hash, and [`Store::truncation`] says what is missing.
    fn with_head(connection: Connection) -> Result<Store, StoreError> {
        let end = log_end(&connection)?;
        let anchor = anchor_of(&connection)?;
        let truncation = anchor
            .filter(|anchor| anchor.0 > end.0 || (anchor.0 == end.0 && anchor.1 != end.1))
            .map(|anchor| Truncation { log_end: end.clone(), anchor });
        let head = truncation.as_ref().map_or(end, |truncation| truncation.anchor.clone());
        let pending =
            connection.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0)).optional().ok().flatten().unwrap_or(0)
                as u64;
        Ok(Store { connection, head, pending, truncation })
    }

    /// Entries committed but missing from the file, found at opening.
    pub(crate) fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    fn checkpoint_of(connection: &Connection) -> Result<(u64, String), StoreError> {
        let checkpoint = connection
            .query_row("SELECT seq, hash FROM checkpoint WHERE id = 1", [], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
            .optional()?;
        Ok(checkpoint.unwrap_or((0, GENESIS.to_owned())))
    }

    /// The retention period in force, in days.
    pub(crate) fn retention_days(&self) -> Result<u32, StoreError> {
        Ok(self.connection.query_row("SELECT days FROM retention WHERE id = 1", [], |row| row.get(0))?)
    }

    /// The last entry's position and hash.
    pub(crate) fn head(&self) -> (u64, &str) {
        (self.head.0, &self.head.1)
    }

    /// Appends an entry and commits it durably before returning.
    #[cfg(test)]
    pub(crate) fn append(&mut self, at: Timestamp, entry: &LogEntry) -> Result<Entry, StoreError> {
        let mut entries = self.append_all(&[(at, entry)])?;
        entries.pop().ok_or_else(|| StoreError::Unwritable("nothing was appended".into()))
    }

    /// Appends entries in order and commits them durably together (one
    /// transaction, one sync): all of them or, on error, none.
    #[cfg(test)]
    pub(crate) fn append_all(&mut self, entries: &[NewEntry<'_>]) -> Result<Vec<Entry>, StoreError> {
        self.append_uplinked(entries.iter().map(|&entry| (entry, None)).collect(), u64::MAX)
    }

    /// Like [`Store::append_all`], each entry with the message for the
    /// regulator it causes, queued in the same transaction (see
    /// [`Store::enqueue`]; `limit` is where summaries start to be merged).
    /// The live set and the anchor move in the same transaction too.
    pub(crate) fn append_uplinked(&mut self, entries: Vec<(NewEntry<'_>, Option<Outbound>)>, limit: u64) -> Result<Vec<Entry>, StoreError> {
        self.append_accepting(entries, &[], limit)
    }

    /// Appends entries and notes the stations' sequence numbers accepted
    /// with them, in one transaction.
    pub(crate) fn append_accepting(
        &mut self,
        entries: Vec<(NewEntry<'_>, Option<Outbound>)>,
        accepted: &[(String, u64)],
        limit: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let transaction = self.connection.transaction()?;
        {
            let mut accept = transaction.prepare_cached("INSERT OR IGNORE INTO accepted (station, seq) VALUES (?1, ?2)")?;
            for (station, seq) in accepted {
                // Stored as the same 64 bits: SQLite integers are signed.
                accept.execute(params![station, *seq as i64])?;
            }
        }
        let mut head = self.head.clone();
        let mut pending = self.pending;
        let appended = Store::insert_entries(&transaction, &mut head, entries, limit, &mut pending)?;
        transaction.commit()?;
        self.head = head;
        self.pending = pending;
        Ok(appended)
    }

    /// Writes `entries` after `head` inside `transaction`, chained, with
    /// the open matters they open and close and the messages they cause,
    /// and moves the anchor to the last; `head` and `pending` follow.
    fn insert_entries(
        transaction: &rusqlite::Transaction<'_>,
        head: &mut (u64, String),
        entries: Vec<(NewEntry<'_>, Option<Outbound>)>,
        limit: u64,
        pending: &mut u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut appended = Vec::with_capacity(entries.len());
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO log (seq, at, at_unix, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            let mut close = transaction.prepare_cached("DELETE FROM live WHERE key = ?1")?;
            let mut open = transaction.prepare_cached("INSERT OR IGNORE INTO live (key, seq) VALUES (?1, ?2)")?;
            for ((at, entry), uplink) in entries {
                let seq = head.0 + 1;
                let at_text = at.to_string();
                let (kind, body_text) = (entry.kind(), entry.body_text());
                let hash = entry_hash(&head.1, seq, &at_text, kind, &body_text);
                insert.execute(params![seq as i64, at_text, at.as_second(), kind, body_text, head.1, hash])?;
                let (closes, opens) = entry.liveness();
                for matter in closes {
                    close.execute(params![matter.key()])?;
                }
                for matter in opens {
                    open.execute(params![matter.key(), seq as i64])?;
                }
                if let Some(build) = uplink {
                    Store::enqueue(transaction, Head { index: seq, hash: &hash, prev_hash: &head.1 }, limit, at, build, pending)?;
                }
                appended.push(Entry { seq, at, entry: entry.clone(), prev_hash: std::mem::take(&mut head.1), hash: hash.clone() });
                *head = (seq, hash);
            }
        }
        if !appended.is_empty() {
            transaction
                .prepare_cached(
                    "INSERT INTO anchor (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )?
                .execute(params![head.0 as i64, head.1])?;
        }
        Ok(appended)
    }

    /// The entries a restart replays to rebuild the venue, in log order:
    /// those that keep something open, each with the matters it keeps open
    /// (see [`LogEntry::liveness`]), and every incident transition since
    /// `history_since` (the console's recent history) with none. Entries
    /// that do not read as ours are reported, not replayed.
    pub(crate) fn open_matters(&self, history_since: Timestamp) -> Result<OpenMatters, StoreError> {
        type Row = (u64, String, String, String, Option<String>);
        let to_row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Row> {
            Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
        };
        let mut rows: Vec<Row> = Vec::new();
        // The open matters drive the join (CROSS JOIN keeps SQLite from
        // scanning the whole log instead): start-up reads what is open, not
        // the history.
        let mut live = self.connection.prepare(
            "SELECT log.seq, log.at, log.kind, log.body, live.key FROM live CROSS JOIN log ON log.seq = live.seq ORDER BY live.seq",
        )?;
        for row in live.query_map([], to_row)? {
            rows.push(row?);
        }
        let mut history =
            self.connection.prepare("SELECT seq, at, kind, body, NULL FROM log WHERE at_unix >= ?1 AND kind = 'incident' ORDER BY seq")?;
        for row in history.query_map(params![history_since.as_second()], to_row)? {
            rows.push(row?);
        }
        let mut found: std::collections::BTreeMap<u64, Replayed> = std::collections::BTreeMap::new();
        let mut unreadable = Vec::new();
        for (seq, at, kind, body, key) in rows {
            let matter = match key.as_deref().map(Matter::from_key) {
                None => None,
                Some(Some(matter)) => Some(matter),
                Some(None) => {
                    unreadable.push(format!("entry {seq}: open matter {key:?} unreadable"));
                    continue;
                }
            };
            let recent = key.is_none();
            if let Some(replayed) = found.get_mut(&seq) {
                replayed.keeps.extend(matter);
                replayed.recent |= recent;
                continue;
            }
            let Ok(at) = at.parse::<Timestamp>() else {
                unreadable.push(format!("entry {seq}: time {at:?} unreadable"));
                continue;
            };
            match LogEntry::from_parts(&kind, &body) {
                Ok(entry) => {
                    found.insert(seq, Replayed { at, entry, keeps: matter.into_iter().collect(), recent });
                }
                Err(error) => unreadable.push(format!("entry {seq}: {error}")),
            }
        }
        Ok(OpenMatters { entries: found.into_values().collect(), unreadable })
    }

    /// Checks the whole chain from the checkpoint; the first bad entry otherwise.
    pub(crate) fn verify(&self) -> Result<Result<Verified, BadEntry>, StoreError> {
        let from = Store::checkpoint_of(&self.connection)?;
        let mut statement = self.connection.prepare("SELECT seq, at, kind, body, prev_hash, hash FROM log ORDER BY seq")?;
        let mut rows = statement.query([])?;
        let (mut expected_seq, mut prev) = (from.0 + 1, from.1.clone());
        let mut entries = 0;
        let mut redactions = Vec::new();
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let (at, kind, body): (String, String, String) = (row.get(1)?, row.get(2)?, row.get(3)?);
            let (prev_hash, hash): (String, String) = (row.get(4)?, row.get(5)?);
            let bad = |reason: String| Ok(Err(BadEntry { seq, reason }));
            if seq != expected_seq {
                let missing = if seq == expected_seq + 1 {
                    format!("entry {expected_seq} is")
                } else {
                    format!("entries {expected_seq}..{} are", seq - 1)
                };
                return bad(format!("{missing} missing (found {seq} next)"));
            }
            if prev_hash != prev {
                return bad("its previous-hash does not match the entry before it".into());
            }
            if entry_hash(&prev_hash, seq, &at, &kind, &body) != hash {
                return bad("its content does not match its hash: the entry was altered".into());
            }
            if kind == "redaction"
                && let Ok(LogEntry::Redaction(redaction)) = LogEntry::from_parts(&kind, &body)
            {
                redactions.push((seq, redaction));
            }
            prev = hash;
            expected_seq += 1;
            entries += 1;
        }
        let head = (expected_seq - 1, prev);
        if let Some(anchor) = anchor_of(&self.connection)?
            && (anchor.0 > head.0 || (anchor.0 == head.0 && anchor.1 != head.1))
        {
            let truncation = Truncation { log_end: head.clone(), anchor };
            return Ok(Err(BadEntry { seq: head.0 + u64::from(truncation.anchor.0 > head.0), reason: truncation.to_string() }));
        }
        if let Some(disagreement) = self.live_disagreement()? {
            return Ok(Err(disagreement));
        }
        Ok(Ok(Verified { entries, from, head, redactions }))
    }

    /// Whether the table of open matters (what a restart replays) is what a
    /// replay of the log gives; the first key that differs otherwise.
    fn live_disagreement(&self) -> Result<Option<BadEntry>, StoreError> {
        let has_table: bool =
            self.connection
                .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'live')", [], |row| row.get(0))?;
        if !has_table {
            return Ok(None);
        }
        let replayed = live_by_replay(&self.connection)?;
        let mut table: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
        let mut statement = self.connection.prepare("SELECT key, seq FROM live ORDER BY key, seq")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
        for row in rows {
            let (key, seq) = row?;
            table.entry(key).or_default().push(seq);
        }
        let keys: std::collections::BTreeSet<&String> = replayed.keys().chain(table.keys()).collect();
        for key in keys {
            let (from_log, stored) = (replayed.get(key), table.get(key));
            if from_log != stored {
                let seq = from_log.or(stored).and_then(|seqs| seqs.first()).copied().unwrap_or(0);
                return Ok(Some(BadEntry {
                    seq,
                    reason: format!(
                        "the venue's open matters disagree with the log at {key}: stored {:?}, the log gives {:?}",
                        stored.cloned().unwrap_or_default(),
                        from_log.cloned().unwrap_or_default()
                    ),
                }));
            }
        }
        Ok(None)
    }

    /// Compares the log with heads (position, hash) the regulator received
    /// from this venue: each must be in the log with the same hash, unless
    /// purged after its retention period.
    pub(crate) fn check_heads(&self, heads: &[(u64, String)]) -> Result<HeadsChecked, StoreError> {
        let checkpoint = Store::checkpoint_of(&self.connection)?;
        let end = log_end(&self.connection)?;
        // The ranges redactions chained again, by the entry that says so.
        let mut rechained: Vec<(u64, u64, u64, crate::journal::Redaction)> = Vec::new();
        let mut redactions = self.connection.prepare("SELECT seq, body FROM log WHERE kind = 'redaction' ORDER BY seq")?;
        for row in redactions.query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?)))? {
            let (seq, body) = row?;
            if let Ok(LogEntry::Redaction(redaction)) = LogEntry::from_parts("redaction", &body)
                && let Some(range) = redaction.rechained
            {
                rechained.push((range.from, range.to, seq, redaction));
            }
        }
        let mut checked = HeadsChecked::default();
        let mut statement = self.connection.prepare_cached("SELECT hash FROM log WHERE seq = ?1")?;
        for (index, hash) in heads {
            if *index == 0 {
                continue;
            }
            if *index < checkpoint.0 {
                checked.purged += 1;
                continue;
            }
            let found: Option<String> = if *index == checkpoint.0 {
                Some(checkpoint.1.clone())
            } else {
                statement.query_row(params![*index as i64], |row| row.get(0)).optional()?
            };
            let redaction = rechained.iter().find(|(from, to, ..)| (*from..=*to).contains(index));
            match (found, redaction) {
                (Some(found), _) if found == *hash => checked.matched += 1,
                // Not excused: a forged redaction entry must not explain a
                // rewrite away. Said, for whoever compares it with the
                // regulator's records_redacted incident.
                (Some(found), Some((.., seq, redaction))) => checked.findings.push(format!(
                    "entry {index} has hash {found}, but the regulator received {hash}: chained again by the redaction recorded at entry {seq} ({}, by {}); if the regulator has no records_redacted incident of it, the log was rewritten",
                    redaction.at, redaction.by
                )),
                (Some(found), None) => checked
                    .findings
                    .push(format!("entry {index} has hash {found}, but the regulator received {hash}: the log was rewritten")),
                (None, _) if *index > end.0 => checked.findings.push(format!(
                    "the regulator received entry {index} (hash {hash}), but the log ends at entry {}: the log was truncated",
                    end.0
                )),
                (None, _) => {
                    checked.findings.push(format!("entry {index} (hash {hash}, received by the regulator) is missing from the log"))
                }
            }
        }
        Ok(checked)
    }

    /// Removes entries older than the retention period at `now`, leaving a
    /// checkpoint at the last removed entry. Returns how many were removed.
    /// An entry that keeps a check-in, a session or an incident open stays,
    /// and so does everything after it (said in the log); a station's hold
    /// does not keep records (it is only the station's label).
    pub(crate) fn purge(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        // Each station's accepted sequence numbers beyond the newest kept.
        self.connection.execute(
            "DELETE FROM accepted AS a WHERE seq < (SELECT b.seq FROM accepted AS b WHERE b.station = a.station ORDER BY b.seq DESC LIMIT 1 OFFSET ?1)",
            params![SEQUENCES_KEPT as i64 - 1],
        )?;
        let days = i64::from(self.retention_days()?);
        let cutoff = now.as_second() - days * 86_400;
        let transaction = self.connection.transaction()?;
        let oldest_open: Option<(i64, String)> = transaction
            .query_row(
                "SELECT seq, key FROM live WHERE substr(key, 1, length(?1)) != ?1 ORDER BY seq LIMIT 1",
                params![crate::journal::HOLD_KEY],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let bound = oldest_open.as_ref().map_or(i64::MAX, |(seq, _)| *seq);
        let last: Option<(i64, String)> = transaction
            .query_row(
                "SELECT seq, hash FROM log WHERE at_unix < ?1 AND seq < ?2 ORDER BY seq DESC LIMIT 1",
                params![cutoff, bound],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((seq, key)) = &oldest_open {
            let held_back: bool = transaction.query_row(
                "SELECT EXISTS (SELECT 1 FROM log WHERE seq > ?1 AND at_unix < ?2)",
                params![seq, cutoff],
                |row| row.get(0),
            )?;
            if held_back {
                tracing::warn!(entry = seq, matter = %key, "records past the retention period are kept while this is open: close it (resolve the incident, check the customer out)");
            }
        }
        let Some((seq, hash)) = last else { return Ok(0) };
        // Purge whole prefixes only, so the checkpoint is one position.
        let removed = transaction.execute("DELETE FROM log WHERE seq <= ?1", params![seq])?;
        // Holds kept only by entries now gone are forgotten with them.
        transaction.execute("DELETE FROM live WHERE seq <= ?1", params![seq])?;
        transaction.execute(
            "INSERT INTO checkpoint (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![seq, hash],
        )?;
        transaction.commit()?;
        Ok(removed)
    }

    /// Writes the entries between `from` (inclusive) and `to` (exclusive),
    /// each with its time as stored (`at`, UTC: what the hash covers) and in
    /// `zone`, the venue's, with its offset (`at_local`).
    pub(crate) fn export(
        &self,
        from: Timestamp,
        to: Timestamp,
        zone: &jiff::tz::TimeZone,
        format: Format,
        out: &mut dyn Write,
    ) -> Result<u64, ExportError> {
        let mut statement = self
            .connection
            .prepare("SELECT seq, at, kind, body, prev_hash, hash FROM log WHERE at_unix >= ?1 AND at_unix < ?2 ORDER BY seq")?;
        let mut rows = statement.query(params![from.as_second(), to.as_second()])?;
        if format == Format::Csv {
            writeln!(out, "{CSV_HEADER}")?;
        }
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let (seq, at, kind, body, prev_hash, hash): (i64, String, String, String, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
            let at_local = local_time(&at, zone);
            match format {
                Format::Jsonl => {
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                    let line = serde_json::json!({
                        "seq": seq, "at": at, "at_local": at_local, "kind": kind, "body": body, "prev_hash": prev_hash, "hash": hash
                    });
                    writeln!(out, "{line}")?;
                }
                Format::Csv => {
                    writeln!(out, "{seq},{at},{},{},{prev_hash},{hash},{at_local}", csv_field(&kind), csv_field(&body))?;
                }
            }
            count += 1;
        }
        Ok(count)
    }

    /// Lets the database grow by `pages` pages at most: the disk as full
    /// as SQLite sees it (SQLITE_FULL), for tests of a full disk.
    #[cfg(test)]
    pub(crate) fn fill_disk_after(&self, pages: i64) {
        let used: i64 = self.connection.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap_or(0);
        let _ = self.connection.pragma_update(None, "max_page_count", used + pages);
    }

    /// Runs raw SQL on the connection, for tests that play the intruder or
    /// the careless program.
    #[cfg(test)]
    pub(super) fn raw(&self, sql: &str) -> Result<usize, rusqlite::Error> {
        self.connection.execute(sql, [])
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

impl From<rusqlite::Error> for ExportError {
    fn from(error: rusqlite::Error) -> ExportError {
        ExportError::Store(error.into())
    }
}

/// The period of the days `from` to `to` (inclusive) in `zone`: from the
/// start of the first to the start of the day after the last, what an
/// export or a search of the records covers.
pub(crate) fn days(
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    zone: &jiff::tz::TimeZone,
) -> Result<(Timestamp, Timestamp), jiff::Error> {
    let start = |date: jiff::civil::Date| date.to_zoned(zone.clone()).map(|zoned| zoned.timestamp());
    Ok((start(from)?, start(to.tomorrow()?)?))
}

/// A stored time (RFC 3339, UTC) in `zone` with its offset, as
/// 2026-11-20T18:00:00+08:00; empty when the stored text is no instant.
fn local_time(at: &str, zone: &jiff::tz::TimeZone) -> String {
    at.parse::<Timestamp>().map(|instant| instant.display_with_offset(zone.to_offset(instant)).to_string()).unwrap_or_default()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use crate::journal::{CheckIn, CheckInOutcome, CheckOut, IncidentEntry};
    use netbar_protocol::messages::{IncidentKind, IncidentTransition, Severity};

    use super::*;

    pub(super) struct Scratch(std::path::PathBuf);

    impl Scratch {
        pub(super) fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("netbar-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
        pub(super) fn db(&self) -> std::path::PathBuf {
            self.0.join("log.sqlite")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A plain entry: a check-out of ticket T{n}.
    pub(super) fn out(n: u32) -> LogEntry {
        LogEntry::CheckOut(CheckOut { ticket: format!("T{n}"), reason: None })
    }

    fn admitted(ticket: &str) -> LogEntry {
        LogEntry::CheckIn(CheckIn {
            outcome: CheckInOutcome::Admitted,
            document_kind: "other".into(),
            number: format!("P-{ticket}"),
            birth_date: jiff::civil::date(1990, 1, 1),
            birth_date_source: netbar_protocol::identity::BirthDateSource::EnteredByHand,
            age: 36,
            guardian: false,
            ticket: Some(ticket.into()),
            reasons: vec![],
            until: None,
            name: None,
            student: None,
            by: None,
        })
    }

    fn incident(id: &str, transition: IncidentTransition) -> LogEntry {
        LogEntry::Incident(IncidentEntry { incident: id.into(), transition })
    }

    fn fire() -> IncidentTransition {
        IncidentTransition::Opened {
            incident_kind: IncidentKind::Fire,
            severity: Severity::Critical,
            station: Some("st-1".parse().unwrap()),
            sensor: None,
            detail: "smoke".into(),
        }
    }

    /// Regression: the ids seen from each station lived in memory, so a
    /// captured smoke alarm sent again after a restart opened a new incident.
    #[test]
    fn accepted_sequence_numbers_survive_reopening_and_are_pruned_to_the_newest() {
        let scratch = Scratch::new("accepted");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let big = 1_764_000_000_000_000u64;
        let accepted: Vec<(String, u64)> = (0..SEQUENCES_KEPT as u64 + 10).map(|n| ("st-1".to_owned(), big + n)).collect();
        store.append_accepting(vec![((at("2026-11-22T10:00:00Z"), &out(1)), None)], &accepted, u64::MAX).unwrap();
        store.append_accepting(vec![], &[("st-2".to_owned(), 7)], u64::MAX).unwrap();
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let kept = store.accepted_sequences().unwrap();
        assert_eq!(kept["st-2"], vec![7]);
        assert_eq!(kept["st-1"].len(), SEQUENCES_KEPT, "the newest kept");
        assert_eq!(kept["st-1"].iter().min(), Some(&(big + 10)));
        store.purge(at("2026-11-22T11:00:00Z")).unwrap();
        let rows: i64 = store.connection.query_row("SELECT count(*) FROM accepted", [], |row| row.get(0)).unwrap();
        assert_eq!(rows, SEQUENCES_KEPT as i64 + 1, "older numbers pruned");
        // The agent's command numbers never go back, whatever the clock says.
        let first = store.reserve_command_numbers(big, 100).unwrap();
        assert_eq!(first, big);
        assert_eq!(store.reserve_command_numbers(5, 100).unwrap(), big + 100, "a clock set back changes nothing");
        assert_eq!(store.reserve_command_numbers(big * 2, 100).unwrap(), big * 2);
    }

    #[test]
    fn appends_chain_and_survive_reopening() {
        let scratch = Scratch::new("chain");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let first = store.append(at("2026-11-22T10:00:00Z"), &admitted("K7QM2A")).unwrap();
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
        let second = store.append(at("2026-11-22T10:01:00Z"), &out(1)).unwrap();
        assert_eq!(second.prev_hash, first.hash);
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.head(), (2, second.hash.as_str()));
        let third = store.append(at("2026-11-22T10:02:00Z"), &out(2)).unwrap();
        assert_eq!(third.prev_hash, second.hash);
        let verified = store.verify().unwrap().unwrap();
        assert_eq!((verified.entries, verified.head), (3, (3, third.hash)));
        // Read back as the types they were written as.
        let mut export = Vec::new();
        store.export(at("2026-11-22T00:00:00Z"), at("2026-11-23T00:00:00Z"), &jiff::tz::TimeZone::UTC, Format::Jsonl, &mut export).unwrap();
        let line: serde_json::Value = serde_json::from_str(String::from_utf8(export).unwrap().lines().next().unwrap()).unwrap();
        let entry = LogEntry::from_parts(line["kind"].as_str().unwrap(), &line["body"].to_string()).unwrap();
        assert_eq!(entry, admitted("K7QM2A"));
    }

    #[cfg(unix)]
    #[test]
    fn the_database_is_its_owners_only_even_when_an_older_build_made_it_readable() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("mode");
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        drop(Store::open(&scratch.db(), 60).unwrap());
        assert_eq!(mode(&scratch.db()), 0o600);
        std::fs::set_permissions(scratch.db(), std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&scratch.db(), 60).unwrap());
        assert_eq!(mode(&scratch.db()), 0o600);
    }

    #[test]
    fn a_batch_commits_whole_or_not_at_all() {
        let scratch = Scratch::new("batch");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let at = at("2026-11-22T10:00:00Z");
        let batch = store.append_all(&[(at, &admitted("A")), (at, &out(2))]).unwrap();
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(batch[1].prev_hash, batch[0].hash);
        // A batch whose second entry cannot be written leaves nothing behind:
        // no entry, no open matter, no anchor moved.
        store
            .raw("CREATE TRIGGER refuse_bad BEFORE INSERT ON log WHEN NEW.body LIKE '%T99%' BEGIN SELECT RAISE(ABORT, 'no'); END")
            .unwrap();
        assert!(store.append_all(&[(at, &admitted("B")), (at, &out(99))]).is_err());
        assert_eq!(store.head(), (2, batch[1].hash.as_str()));
        assert_eq!(store.append(at, &out(3)).unwrap().seq, 3);
        assert_eq!(store.verify().unwrap().unwrap().entries, 3);
        let open = store.open_matters(at).unwrap();
        assert_eq!(open.entries.len(), 1, "only A's check-in keeps something open: {:?}", open.entries);
    }

    #[test]
    fn the_outbox_numbers_contiguously_across_restarts_and_never_drops_a_record_or_an_incident() {
        let scratch = Scratch::new("outbox");
        let at = at("2026-11-25T10:00:00Z");
        let message = |channel: &'static str| -> Outbound {
            Box::new(move |seq, head: Head<'_>| Some((channel, format!("{seq}@{}", head.index).into_bytes())))
        };
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        // An entry and its message commit together; the message sees the entry.
        store.append_uplinked(vec![((at, &out(1)), Some(message("record")))], 3).unwrap();
        assert_eq!(store.enqueue_alone(at, 3, message("summary"), None).unwrap(), Some(2));
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.pending(), 2, "counted again at opening");
        assert_eq!(store.enqueue_alone(at, 3, message("summary"), None).unwrap(), Some(3));
        // At the bound a summary is not queued and takes no number...
        assert_eq!(store.enqueue_alone(at, 3, message("summary"), None).unwrap(), None);
        // ...while incidents and records still are, beyond it.
        assert_eq!(store.enqueue_alone(at, 3, message("incident"), None).unwrap(), Some(4));
        store.append_uplinked(vec![((at, &out(2)), Some(message("record")))], 3).unwrap();
        let queued = store.queued_after(0, 10).unwrap();
        assert_eq!(
            queued.iter().map(|q| (q.seq, q.channel.as_str())).collect::<Vec<_>>(),
            [(1, "record"), (2, "summary"), (3, "summary"), (4, "incident"), (5, "record")]
        );
        assert_eq!(queued[0].payload, b"1@1");
        assert_eq!(store.queued_after(2, 1).unwrap()[0].seq, 3);
        store.acknowledged(&[1, 3]).unwrap();
        let status = store.outbox_status().unwrap();
        assert_eq!((status.pending, status.last_seq, status.last_acked, status.oldest), (3, 5, 3, Some(at)));
        store.acknowledged(&[2, 4, 5, 5]).unwrap();
        assert_eq!(store.pending(), 0, "a removal acknowledged twice counts once");
        drop(store);
        // Empty again after a restart, the feed goes on from 6.
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.enqueue_alone(at, 3, message("summary"), None).unwrap(), Some(6));
    }

    /// Regression: when the disk fills up, SQLite's SQLITE_FULL is a
    /// refusal the cashier reads ("the disk ... is full"), nothing is half
    /// written, and the log goes on once there is room again.
    #[test]
    fn a_full_disk_refuses_clearly_and_keeps_everything_committed() {
        let scratch = Scratch::new("full");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let at = at("2026-11-25T10:00:00Z");
        store.fill_disk_after(2);
        let mut committed = 0;
        let error = loop {
            let big = LogEntry::CheckOut(CheckOut { ticket: format!("{committed:04}{}", "x".repeat(2000)), reason: None });
            match store.append(at, &big) {
                Ok(_) => committed += 1,
                Err(error) => break error,
            }
            assert!(committed < 1000, "the database never filled up");
        };
        assert!(matches!(error, StoreError::Full), "{error:?}");
        assert_eq!(error.to_string(), "the disk holding the registration log is full; nothing was recorded");
        assert_eq!(store.head().0, committed);
        store.connection.pragma_update(None, "max_page_count", 1_000_000).unwrap();
        store.append(at, &out(1)).unwrap();
        assert_eq!(store.verify().unwrap().unwrap().entries, committed + 1);
    }

    #[test]
    fn edits_in_the_file_are_found_and_named() {
        let scratch = Scratch::new("edit");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for n in 0..5 {
            store.append(at("2026-11-22T10:00:00Z"), &out(n)).unwrap();
        }
        // An intruder with the file drops the triggers and edits entry 3.
        store.raw("DROP TRIGGER log_append_only").unwrap();
        store.raw("UPDATE log SET body = '{\"ticket\":\"T99\"}' WHERE seq = 3").unwrap();
        assert_eq!(store.verify().unwrap().unwrap_err().seq, 3);
        assert!(store.verify().unwrap().unwrap_err().to_string().contains("entry 3: its content does not match its hash"));
        // Or removes entries 2 and 3 entirely.
        let scratch = Scratch::new("remove");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for n in 0..4 {
            store.append(at("2026-11-22T10:00:00Z"), &out(n)).unwrap();
        }
        store.raw("DROP TRIGGER log_keep_young").unwrap();
        store.raw("DELETE FROM log WHERE seq IN (2, 3)").unwrap();
        let bad = store.verify().unwrap().unwrap_err();
        assert_eq!(bad, BadEntry { seq: 4, reason: "entries 2..3 are missing (found 4 next)".into() });
    }

    /// Regression: deleting the log's last entries (and restoring the
    /// triggers) passed `records verify`, and the agent then gave the same
    /// positions out again with other hashes.
    #[test]
    fn a_truncated_tail_is_caught_by_the_anchor_and_no_position_is_given_out_twice() {
        let scratch = Scratch::new("truncate");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let now = Timestamp::now();
        let entries: Vec<Entry> = (0..5).map(|n| store.append(now, &out(n)).unwrap()).collect();
        store.raw("DROP TRIGGER log_keep_young").unwrap();
        store.raw("DELETE FROM log WHERE seq > 3").unwrap();
        drop(store);
        let bad = Store::inspect(&scratch.db()).unwrap().verify().unwrap().unwrap_err();
        assert_eq!(bad.seq, 4);
        assert!(
            bad.reason.contains("ends at entry 3 but entry 5 was committed") && bad.reason.contains("entries 4..5 were removed"),
            "{bad}"
        );
        // The agent opening it chains on from the anchor: 6, after 5's hash.
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let truncation = store.truncation().unwrap().clone();
        assert_eq!((truncation.log_end.0, truncation.anchor), (3, (5, entries[4].hash.clone())));
        let next = store.append(now, &out(9)).unwrap();
        assert_eq!((next.seq, next.prev_hash.as_str()), (6, entries[4].hash.as_str()));
        assert!(store.verify().unwrap().unwrap_err().reason.contains("entries 4..5 are missing"));
        // The anchor refuses to go back even by hand.
        let back = store.raw("UPDATE anchor SET seq = 1").unwrap_err().to_string();
        assert!(back.contains("never goes back"), "{back}");
        // The last entry replaced by another with the same position.
        let scratch = Scratch::new("rechain");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for n in 0..3 {
            store.append(now, &out(n)).unwrap();
        }
        store.raw("DROP TRIGGER log_keep_young").unwrap();
        store.raw("DELETE FROM log WHERE seq = 3").unwrap();
        store.raw("DROP TRIGGER anchor_never_back").unwrap();
        drop(store);
        let forger = Store::open(&scratch.db(), 60).unwrap();
        assert!(forger.truncation().is_some());
        forger.raw("UPDATE anchor SET seq = 2, hash = (SELECT hash FROM log WHERE seq = 2)").unwrap();
        drop(forger);
        let mut forger = Store::open(&scratch.db(), 60).unwrap();
        forger.append(now, &out(7)).unwrap();
        // Only the heads the regulator holds can tell now.
        let heads: Vec<(u64, String)> = vec![(2, entries_hash(&scratch, 2)), (3, "f".repeat(64)), (9, "e".repeat(64))];
        let checked = forger.check_heads(&heads).unwrap();
        assert_eq!(checked.matched, 1);
        assert_eq!(checked.findings.len(), 2, "{:?}", checked.findings);
        assert!(checked.findings[0].contains("entry 3 has hash") && checked.findings[0].contains("rewritten"), "{:?}", checked.findings);
        assert!(checked.findings[1].contains("the log ends at entry 3: the log was truncated"), "{:?}", checked.findings);
    }

    fn entries_hash(scratch: &Scratch, seq: u64) -> String {
        let store = Store::inspect(&scratch.db()).unwrap();
        store.connection.query_row("SELECT hash FROM log WHERE seq = ?1", params![seq as i64], |row| row.get(0)).unwrap()
    }

    #[test]
    fn open_matters_are_what_a_replay_of_the_log_gives() {
        let scratch = Scratch::new("live");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let t0 = at("2026-11-25T10:00:00Z");
        store.append(t0, &admitted("AAA")).unwrap();
        store.append(t0, &admitted("BBB")).unwrap();
        store.append(t0, &LogEntry::CheckOut(CheckOut { ticket: "AAA".into(), reason: None })).unwrap();
        store.append(t0, &incident("i-1-1", fire())).unwrap();
        store.append(t0, &incident("i-1-1", IncidentTransition::Acknowledged { by: "li".into() })).unwrap();
        store.append(t0, &incident("i-1-2", fire())).unwrap();
        store.append(t0, &incident("i-1-2", IncidentTransition::Resolved { by: "wang".into(), note: "ok".into() })).unwrap();
        // Unregistered use at st-3, resolved: the entry stays for st-3's
        // hold alone, not for its incident.
        let unregistered = IncidentTransition::Opened {
            incident_kind: IncidentKind::UnregisteredUse,
            severity: Severity::Warning,
            station: Some("st-3".parse().unwrap()),
            sensor: None,
            detail: "x".into(),
        };
        store.append(t0, &incident("i-1-3", unregistered)).unwrap();
        store.append(t0, &incident("i-1-3", IncidentTransition::Resolved { by: "wang".into(), note: "ok".into() })).unwrap();
        let open = store.open_matters(t0 + jiff::SignedDuration::from_hours(1)).unwrap();
        let kept: Vec<(u64, Vec<String>)> = open
            .entries
            .iter()
            .map(|replayed| (u64::from(matches!(replayed.entry, LogEntry::CheckIn(_))), replayed.keeps.iter().map(Matter::key).collect()))
            .collect();
        assert_eq!(
            kept,
            [
                (1, vec!["ticket:BBB".to_owned()]),
                (0, vec!["incident:i-1-1".to_owned()]),
                (0, vec!["incident:i-1-1".to_owned()]),
                (0, vec!["hold:st-3".to_owned()]),
            ],
            "BBB's check-in, i-1-1 opened and acknowledged, and st-3's hold"
        );
        // With a day's history, the resolved incidents come back too, as history.
        let history = store.open_matters(t0 - jiff::SignedDuration::from_hours(24)).unwrap();
        assert_eq!(history.entries.len(), 7);
        assert_eq!(history.entries.iter().filter(|replayed| replayed.keeps.is_empty()).count(), 3);
        assert_eq!(history.entries.iter().filter(|replayed| replayed.recent).count(), 6, "every incident transition, not BBB's check-in");
        assert!(store.verify().unwrap().is_ok(), "the table agrees with a replay");
        // An intruder who deletes a check-in from the table is named by verify.
        store.raw("DELETE FROM live WHERE key = 'ticket:BBB'").unwrap();
        let bad = store.verify().unwrap().unwrap_err();
        assert!(bad.reason.contains("disagree with the log at ticket:BBB"), "{bad}");
    }

    #[test]
    fn young_records_cannot_be_altered_or_deleted_by_the_program() {
        let scratch = Scratch::new("young");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(Timestamp::now(), &out(1)).unwrap();
        let update = store.raw("UPDATE log SET kind = 'x'").unwrap_err().to_string();
        assert!(update.contains("append-only"), "{update}");
        let delete = store.raw("DELETE FROM log").unwrap_err().to_string();
        assert!(delete.contains("younger than the retention period"), "{delete}");
        let shorten = store.raw("UPDATE retention SET days = 1").unwrap_err().to_string();
        assert!(shorten.contains("cannot be shortened"), "{shorten}");
        // Opening with a shorter retention keeps the longer one.
        drop(store);
        let store = Store::open(&scratch.db(), 7).unwrap();
        assert_eq!(store.retention_days().unwrap(), 60);
        assert_eq!(store.verify().unwrap().unwrap().entries, 1);
    }

    #[test]
    fn purge_keeps_a_checkpoint_the_chain_verifies_from_and_every_open_matter() {
        let scratch = Scratch::new("purge");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let now = Timestamp::now();
        let old = now - jiff::SignedDuration::from_hours(24 * 90);
        for n in 0..3 {
            store.append(old, &out(n)).unwrap();
        }
        // A customer checked in long ago and never checked out.
        store.append(old, &admitted("OLD")).unwrap();
        store.append(old, &out(4)).unwrap();
        let young = store.append(now - jiff::SignedDuration::from_hours(24), &out(5)).unwrap();
        assert_eq!(store.purge(now).unwrap(), 3, "up to the open check-in, not beyond");
        let verified = store.verify().unwrap().unwrap();
        assert_eq!((verified.entries, verified.from.0), (3, 3));
        assert_eq!(verified.head, (6, young.hash.clone()));
        assert_eq!(store.open_matters(now).unwrap().entries.len(), 1, "the check-in is still there to replay");
        store.append(now, &LogEntry::CheckOut(CheckOut { ticket: "OLD".into(), reason: None })).unwrap();
        assert_eq!(store.purge(now).unwrap(), 2, "checked out: its old entries may go");
        assert_eq!(store.purge(now).unwrap(), 0, "nothing young goes");
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.append(now, &out(8)).unwrap().prev_hash.len(), 64);
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn enrollment() {
        let scratch = Scratch::new("enroll");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let now = Timestamp::now();
        let (first, second) = (StationKey::from_bytes([1; 32]), StationKey::from_bytes([2; 32]));
        assert!(store.enroll_station("st-1", &first, now, false).unwrap());
        assert!(!store.enroll_station("st-1", &second, now, false).unwrap(), "enrolled already: not replaced");
        assert_eq!(store.stations().unwrap(), vec![("st-1".to_owned(), first)]);
        assert!(store.enroll_station("st-1", &second, now, true).unwrap(), "a new key on request");
        assert_eq!(store.stations().unwrap(), vec![("st-1".to_owned(), second)]);
        assert!(!store.enroll_sensor("smoke-1", "st-9", "smoke", now).unwrap(), "the station must be enrolled");
        assert!(store.enroll_sensor("smoke-1", "st-1", "smoke", now).unwrap());
        assert_eq!(store.sensors().unwrap(), vec![("smoke-1".into(), "st-1".into(), "smoke".into())]);
    }

    #[test]
    fn export_between_dates() {
        let scratch = Scratch::new("export");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(at("2026-11-20T10:00:00Z"), &LogEntry::CheckOut(CheckOut { ticket: "a,\"b\"".into(), reason: None })).unwrap();
        store.append(at("2026-11-21T10:00:00Z"), &LogEntry::CheckOut(CheckOut { ticket: "K7Q".into(), reason: None })).unwrap();
        store.append(at("2026-11-22T10:00:00Z"), &out(3)).unwrap();
        let shanghai = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let mut jsonl = Vec::new();
        let count = store.export(at("2026-11-20T00:00:00Z"), at("2026-11-22T00:00:00Z"), &shanghai, Format::Jsonl, &mut jsonl).unwrap();
        assert_eq!(count, 2);
        let lines: Vec<serde_json::Value> = String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[1]["body"]["ticket"], "K7Q");
        assert_eq!((&lines[1]["at"], &lines[1]["at_local"]), (&"2026-11-21T10:00:00Z".into(), &"2026-11-21T18:00:00+08:00".into()));
        let mut csv = Vec::new();
        store.export(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"), &shanghai, Format::Csv, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.starts_with(
                "seq,at,kind,body,prev_hash,hash,at_local\n1,2026-11-20T10:00:00Z,check_out,\"{\"\"ticket\"\":\"\"a,\\\"\"b\\\"\"\"\"}\","
            ),
            "{csv}"
        );
        assert!(csv.ends_with(",2026-11-20T18:00:00+08:00\n"), "{csv}");
    }

    /// Across a change of clocks each entry carries the offset of its own
    /// instant: Berlin's summer time ends at 03:00 on 2026-10-25, so 02:30
    /// happens twice, once at +02:00 and once at +01:00.
    #[test]
    fn an_export_across_the_change_of_clocks_carries_each_entrys_offset() {
        let scratch = Scratch::new("export-dst");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for instant in ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T12:00:00Z"] {
            store.append(at(instant), &out(1)).unwrap();
        }
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let mut csv = Vec::new();
        store.export(at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"), &berlin, Format::Csv, &mut csv).unwrap();
        let local: Vec<String> = csv_rows(&String::from_utf8(csv).unwrap()).into_iter().skip(1).map(|row| row[6].clone()).collect();
        assert_eq!(local, ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T13:00:00+01:00"]);
    }

    /// The columns of a CSV export, each row a list of its fields.
    fn csv_rows(text: &str) -> Vec<Vec<String>> {
        let (mut rows, mut row, mut field, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
        let mut characters = text.chars().peekable();
        while let Some(character) = characters.next() {
            match (quoted, character) {
                (true, '"') if characters.peek() == Some(&'"') => {
                    field.push('"');
                    characters.next();
                }
                (true, '"') | (false, '"') => quoted = !quoted,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (_, other) => field.push(other),
            }
        }
        rows
    }

    /// An auditor re-verifies the chain from a CSV export alone: each
    /// row's hash is that of its previous hash, position, `at` (as stored,
    /// UTC), kind and body, whatever the venue's zone adds beside it.
    #[test]
    fn a_csv_export_is_enough_to_verify_the_chain() {
        let scratch = Scratch::new("export-verify");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(at("2026-11-20T15:59:59.5Z"), &admitted("K7QM2A")).unwrap();
        store.append(at("2026-11-20T16:00:00Z"), &LogEntry::CheckOut(CheckOut { ticket: "a,\"b\"\n".into(), reason: None })).unwrap();
        store.append(at("2026-11-21T01:00:00Z"), &out(3)).unwrap();
        let shanghai = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let mut csv = Vec::new();
        assert_eq!(store.export(at("2026-11-20T00:00:00Z"), at("2026-11-22T00:00:00Z"), &shanghai, Format::Csv, &mut csv).unwrap(), 3);
        let rows = csv_rows(&String::from_utf8(csv).unwrap());
        assert_eq!(rows[0], CSV_HEADER.split(',').collect::<Vec<_>>());
        let mut previous = GENESIS.to_owned();
        for row in &rows[1..] {
            let [seq, at, kind, body, prev_hash, hash, _] = row.as_slice() else { panic!("{row:?}") };
            assert_eq!(*prev_hash, previous, "{row:?}");
            assert_eq!(entry_hash(prev_hash, seq.parse().unwrap(), at, kind, body), *hash, "{row:?}");
            previous = hash.clone();
        }
        let local: Vec<&str> = rows[1..].iter().map(|row| row[6].as_str()).collect();
        assert_eq!(local, ["2026-11-20T23:59:59.5+08:00", "2026-11-21T00:00:00+08:00", "2026-11-21T09:00:00+08:00"]);
    }

    /// Regression: any one old open matter stopped the retention purge for
    /// good. A station's hold does not keep records; an open incident does
    /// (and the log says which one holds them back).
    #[test]
    fn a_stations_hold_does_not_keep_old_records() {
        let scratch = Scratch::new("purge-hold");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let now = Timestamp::now();
        let old = now - jiff::SignedDuration::from_hours(24 * 90);
        let lock = crate::journal::StaffCommand {
            station: "st-9".parse().unwrap(),
            action: Some(crate::journal::StaffAction::Lock),
            by: "wang".into(),
            at: old,
            ticket: None,
            text: None,
        };
        store.append(old, &LogEntry::StaffCommand(lock)).unwrap();
        store.append(old, &out(1)).unwrap();
        store.append(old, &incident("i-1-1", fire())).unwrap();
        store.append(old, &out(2)).unwrap();
        store.append(now, &out(3)).unwrap();
        assert_eq!(store.purge(now).unwrap(), 2, "the hold's entry goes; the open incident stops the purge there");
        assert!(store.verify().unwrap().is_ok(), "the forgotten hold is gone from the open matters too");
        let open = store.open_matters(now).unwrap();
        assert_eq!(
            open.entries.iter().map(|replayed| replayed.keeps.iter().map(Matter::key).collect::<Vec<_>>()).collect::<Vec<_>>(),
            [["incident:i-1-1"]]
        );
        store.append(now, &incident("i-1-1", IncidentTransition::Resolved { by: "wang".into(), note: "ok".into() })).unwrap();
        assert_eq!(store.purge(now).unwrap(), 2);
    }

    /// The summary period under way survives a restart: where it started,
    /// and what happened since, from the log.
    #[test]
    fn the_summary_period_and_its_counts_come_back_from_the_log() {
        let scratch = Scratch::new("period");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let t0 = at("2026-11-25T10:00:00Z");
        assert_eq!(store.period_start().unwrap(), None, "no feed yet");
        store.begin_period(t0 - jiff::SignedDuration::from_hours(1)).unwrap();
        store.begin_period(t0).unwrap();
        assert_eq!(store.period_start().unwrap(), Some(t0 - jiff::SignedDuration::from_hours(1)), "the first start stands");
        store.append(t0, &admitted("AAA")).unwrap();
        let summary: Outbound = Box::new(|_, _| Some(("summary", b"s".to_vec())));
        let end = t0 + jiff::SignedDuration::from_millis(1500);
        assert!(store.enqueue_alone(end, 10, summary, Some(end)).unwrap().is_some());
        store.append(end, &admitted("BBB")).unwrap();
        store.append(end, &out(1)).unwrap();
        store.append(end + jiff::SignedDuration::from_secs(1), &incident("i-1-1", fire())).unwrap();
        drop(store);
        let store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.period_start().unwrap(), Some(end));
        let counted = store.counted_since(end).unwrap();
        assert_eq!(counted.len(), 2, "BBB's check-in and the incident, not AAA's (before) nor the check-out: {counted:?}");
        // A summary not queued (over the bound) does not move the period.
        let mut store = store;
        let summary: Outbound = Box::new(|_, _| Some(("summary", b"s".to_vec())));
        assert_eq!(store.enqueue_alone(end, 0, summary, Some(t0 + jiff::SignedDuration::from_hours(1))).unwrap(), None);
        assert_eq!(store.period_start().unwrap(), Some(end));
    }
}
