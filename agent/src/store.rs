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

use std::fmt;
use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use netbar_protocol::StationKey;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

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

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) at: Timestamp,
    pub(crate) kind: String,
    pub(crate) body: serde_json::Value,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
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
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated, the body as a JSON column.
    Csv,
}

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

/// An entry to append: when, what kind, its body.
pub(crate) type NewEntry<'a> = (Timestamp, &'a str, &'a serde_json::Value);

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
    head: (u64, String),
}

/// The schema's migrations, in order: the database's `user_version` is the
/// number of those applied. Never edit one that has shipped; add the next.
/// Every statement is idempotent, so a database from before the numbering
/// (user_version 0, the tables of migration 1 present) takes them all.
const MIGRATIONS: &[&str] = &[
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
",
    // 2: the regulator feed's outbox and link state.
    "CREATE TABLE IF NOT EXISTS outbox (
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
",
    // 3: revoked stations, and the certificates the venue CA issued.
    "ALTER TABLE stations ADD COLUMN revoked_at TEXT;
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    usage TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    not_after TEXT NOT NULL,
    revoked_at TEXT
);
",
];

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
        transaction.execute_batch(migration)?;
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
            crate::private::hand_over(&file, false).map_err(|e| StoreError::Unwritable(format!("{e:#}")))?;
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
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer { found: version, known: SCHEMA_VERSION });
        }
        Store::with_head(connection)
    }

    /// The store over `connection`, its head read.
    fn with_head(connection: Connection) -> Result<Store, StoreError> {
        let head = connection
            .query_row("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1", [], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
            .optional()?;
        let head = match head {
            Some(head) => head,
            None => Store::checkpoint_of(&connection)?,
        };
        Ok(Store { connection, head })
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
    pub(crate) fn append(&mut self, at: Timestamp, kind: &str, body: &serde_json::Value) -> Result<Entry, StoreError> {
        let mut entries = self.append_all(&[(at, kind, body)])?;
        entries.pop().ok_or_else(|| StoreError::Unwritable("nothing was appended".into()))
    }

    /// Appends entries in order and commits them durably together (one
    /// transaction, one sync): all of them or, on error, none.
    #[cfg(test)]
    pub(crate) fn append_all(&mut self, entries: &[(Timestamp, &str, &serde_json::Value)]) -> Result<Vec<Entry>, StoreError> {
        self.append_uplinked(entries.iter().map(|&entry| (entry, None)).collect(), u64::MAX)
    }

    /// Like [`Store::append_all`], each entry with the message for the
    /// regulator it causes, queued in the same transaction (see
    /// [`Store::enqueue`]; `limit` bounds the outbox).
    pub(crate) fn append_uplinked(&mut self, entries: Vec<(NewEntry<'_>, Option<Outbound>)>, limit: u64) -> Result<Vec<Entry>, StoreError> {
        let transaction = self.connection.transaction()?;
        let mut head = self.head.clone();
        let mut appended = Vec::with_capacity(entries.len());
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO log (seq, at, at_unix, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for ((at, kind, body), uplink) in entries {
                let seq = head.0 + 1;
                let at_text = at.to_string();
                let body_text = body.to_string();
                let hash = entry_hash(&head.1, seq, &at_text, kind, &body_text);
                insert.execute(params![seq as i64, at_text, at.as_second(), kind, body_text, head.1, hash])?;
                if let Some(build) = uplink {
                    Store::enqueue(&transaction, Head { index: seq, hash: &hash, prev_hash: &head.1 }, limit, at, build)?;
                }
                appended.push(Entry { seq, at, kind: kind.to_owned(), body: body.clone(), prev_hash: head.1, hash: hash.clone() });
                head = (seq, hash);
            }
        }
        transaction.commit()?;
        self.head = head;
        Ok(appended)
    }

    /// Queues a message for the regulator inside `transaction`; its
    /// sequence number is the next of the feed. `Ok(None)` when `build`
    /// makes nothing or the outbox is full (incidents are queued even then).
    fn enqueue(
        transaction: &rusqlite::Transaction<'_>,
        head: Head<'_>,
        limit: u64,
        at: Timestamp,
        build: Outbound,
    ) -> Result<Option<u64>, StoreError> {
        let last: i64 = transaction.query_row("SELECT last_seq FROM uplink WHERE id = 1", [], |row| row.get(0))?;
        let seq = last as u64 + 1;
        let Some((channel, payload)) = build(seq, head) else { return Ok(None) };
        let pending = transaction.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0))? as u64;
        if pending >= limit && channel != "incident" {
            tracing::error!(channel, pending, limit, "the regulator outbox is full: this message is NOT queued");
            return Ok(None);
        }
        // Loud well before it fills: at half, then every tenth more.
        if limit < u64::MAX && (5..10).any(|tenths| pending + 1 == limit / 10 * tenths) {
            tracing::warn!(pending = pending + 1, limit, "the regulator outbox is filling up: is the regulator's broker reachable?");
        }
        transaction.execute(
            "INSERT INTO outbox (seq, channel, payload, queued_unix) VALUES (?1, ?2, ?3, ?4)",
            params![seq as i64, channel, payload, at.as_second()],
        )?;
        transaction.execute("UPDATE uplink SET last_seq = ?1 WHERE id = 1", params![seq as i64])?;
        Ok(Some(seq))
    }

    /// Queues a message for the regulator on its own (a summary).
    pub(crate) fn enqueue_alone(&mut self, at: Timestamp, limit: u64, build: Outbound) -> Result<Option<u64>, StoreError> {
        let transaction = self.connection.transaction()?;
        let head = Head { index: self.head.0, hash: &self.head.1, prev_hash: "" };
        let seq = Store::enqueue(&transaction, head, limit, at, build)?;
        transaction.commit()?;
        Ok(seq)
    }

    /// Up to `limit` queued messages after sequence number `after`, in order.
    pub(crate) fn queued_after(&self, after: u64, limit: usize) -> Result<Vec<Queued>, StoreError> {
        let mut statement =
            self.connection.prepare_cached("SELECT seq, channel, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = statement.query_map(params![after as i64, limit as i64], |row| {
            Ok(Queued { seq: row.get::<_, i64>(0)? as u64, channel: row.get(1)?, payload: row.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes messages the regulator's broker acknowledged.
    pub(crate) fn acknowledged(&mut self, seqs: &[u64]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        {
            let mut delete = transaction.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                delete.execute(params![*seq as i64])?;
            }
        }
        if let Some(highest) = seqs.iter().max() {
            transaction.execute("UPDATE uplink SET last_acked = max(last_acked, ?1) WHERE id = 1", params![*highest as i64])?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Notes whether the agent is connected to the regulator.
    pub(crate) fn set_connected(&mut self, connected: bool, at: Timestamp) -> Result<(), StoreError> {
        self.connection.execute("UPDATE uplink SET connected = ?1, changed_unix = ?2 WHERE id = 1", params![connected, at.as_second()])?;
        Ok(())
    }

    /// The outbox at a glance.
    pub(crate) fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let (pending, oldest): (i64, Option<i64>) =
            self.connection.query_row("SELECT count(*), min(queued_unix) FROM outbox", [], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let (last_seq, last_acked, connected, changed): (i64, i64, bool, i64) =
            self.connection.query_row("SELECT last_seq, last_acked, connected, changed_unix FROM uplink WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        Ok(OutboxStatus {
            pending: pending as u64,
            oldest: oldest.and_then(|at| Timestamp::from_second(at).ok()),
            last_seq: last_seq as u64,
            last_acked: last_acked as u64,
            connected,
            since: (changed > 0).then(|| Timestamp::from_second(changed).ok()).flatten(),
        })
    }

    /// Checks the whole chain from the checkpoint; the first bad entry otherwise.
    pub(crate) fn verify(&self) -> Result<Result<Verified, BadEntry>, StoreError> {
        let from = Store::checkpoint_of(&self.connection)?;
        let mut statement = self.connection.prepare("SELECT seq, at, kind, body, prev_hash, hash FROM log ORDER BY seq")?;
        let mut rows = statement.query([])?;
        let (mut expected_seq, mut prev) = (from.0 + 1, from.1.clone());
        let mut entries = 0;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let (at, kind, body): (String, String, String) = (row.get(1)?, row.get(2)?, row.get(3)?);
            let (prev_hash, hash): (String, String) = (row.get(4)?, row.get(5)?);
            let bad = |reason: String| Ok(Err(BadEntry { seq, reason }));
            if seq != expected_seq {
                return bad(format!("entry {expected_seq} is missing (found {seq} next)"));
            }
            if prev_hash != prev {
                return bad("its previous-hash does not match the entry before it".into());
            }
            if entry_hash(&prev_hash, seq, &at, &kind, &body) != hash {
                return bad("its content does not match its hash: the entry was altered".into());
            }
            prev = hash;
            expected_seq += 1;
            entries += 1;
        }
        Ok(Ok(Verified { entries, from, head: (expected_seq - 1, prev) }))
    }

    /// Removes entries older than the retention period at `now`, leaving a
    /// checkpoint at the last removed entry. Returns how many were removed.
    pub(crate) fn purge(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        let days = i64::from(self.retention_days()?);
        let cutoff = now.as_second() - days * 86_400;
        let transaction = self.connection.transaction()?;
        let last: Option<(i64, String)> = transaction
            .query_row("SELECT seq, hash FROM log WHERE at_unix < ?1 ORDER BY seq DESC LIMIT 1", params![cutoff], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        let Some((seq, hash)) = last else { return Ok(0) };
        // Purge whole prefixes only, so the checkpoint is one position.
        let removed = transaction.execute("DELETE FROM log WHERE seq <= ?1", params![seq])?;
        transaction.execute(
            "INSERT INTO checkpoint (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![seq, hash],
        )?;
        transaction.commit()?;
        Ok(removed)
    }

    /// Writes the entries between `from` (inclusive) and `to` (exclusive).
    pub(crate) fn export(&self, from: Timestamp, to: Timestamp, format: Format, out: &mut dyn Write) -> Result<u64, ExportError> {
        let mut statement = self
            .connection
            .prepare("SELECT seq, at, kind, body, prev_hash, hash FROM log WHERE at_unix >= ?1 AND at_unix < ?2 ORDER BY seq")?;
        let mut rows = statement.query(params![from.as_second(), to.as_second()])?;
        if format == Format::Csv {
            writeln!(out, "seq,at,kind,body,prev_hash,hash")?;
        }
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let (seq, at, kind, body, prev_hash, hash): (i64, String, String, String, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
            match format {
                Format::Jsonl => {
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                    let line =
                        serde_json::json!({ "seq": seq, "at": at, "kind": kind, "body": body, "prev_hash": prev_hash, "hash": hash });
                    writeln!(out, "{line}")?;
                }
                Format::Csv => writeln!(out, "{seq},{at},{},{},{prev_hash},{hash}", csv_field(&kind), csv_field(&body))?,
            }
            count += 1;
        }
        Ok(count)
    }

    /// Enrolls a station with `key`, or gives an enrolled one a new key when
    /// `rekey` is set. Returns false when the station exists and `rekey` is not set.
    pub(crate) fn enroll_station(&mut self, id: &str, key: &StationKey, at: Timestamp, rekey: bool) -> Result<bool, StoreError> {
        let sql = if rekey {
            "INSERT INTO stations (id, key, enrolled_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET key = excluded.key, enrolled_at = excluded.enrolled_at, revoked_at = NULL"
        } else {
            "INSERT INTO stations (id, key, enrolled_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING"
        };
        Ok(self.connection.execute(sql, params![id, key.to_hex(), at.to_string()])? == 1)
    }

    /// Enrolls a sensor bridged by an enrolled station. Returns false when the
    /// station is not enrolled.
    pub(crate) fn enroll_sensor(&mut self, id: &str, station: &str, kind: &str, at: Timestamp) -> Result<bool, StoreError> {
        let known: bool = self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM stations WHERE id = ?1 AND revoked_at IS NULL)",
            params![station],
            |row| row.get(0),
        )?;
        if !known {
            return Ok(false);
        }
        self.connection.execute(
            "INSERT INTO sensors (id, station, kind, enrolled_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET station = excluded.station, kind = excluded.kind",
            params![id, station, kind, at.to_string()],
        )?;
        Ok(true)
    }

    /// Revokes a station: its key stops working and its certificates are
    /// marked revoked. Returns the revoked certificates' serials (hex), or
    /// None when no such station is enrolled and not revoked yet.
    pub(crate) fn revoke_station(&mut self, id: &str, at: Timestamp) -> Result<Option<Vec<String>>, StoreError> {
        let transaction = self.connection.transaction()?;
        let at = at.to_string();
        if transaction.execute("UPDATE stations SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, at])? == 0 {
            return Ok(None);
        }
        transaction.execute(
            "UPDATE certificates SET revoked_at = ?2 WHERE subject = ?1 AND usage = 'station' AND revoked_at IS NULL",
            params![id, at],
        )?;
        let serials = {
            let mut statement =
                transaction.prepare("SELECT serial FROM certificates WHERE subject = ?1 AND usage = 'station' ORDER BY serial")?;
            statement.query_map(params![id], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?
        };
        transaction.commit()?;
        Ok(Some(serials))
    }

    /// Notes a certificate the venue CA issued.
    pub(crate) fn issued(&mut self, certificate: &Issued) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO certificates (serial, subject, usage, issued_at, not_after) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![certificate.serial, certificate.subject, certificate.usage, certificate.issued_at, certificate.not_after],
        )?;
        Ok(())
    }

    /// Every certificate the venue CA issued, oldest first.
    pub(crate) fn certificates(&self) -> Result<Vec<Issued>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT serial, subject, usage, issued_at, not_after, revoked_at FROM certificates ORDER BY issued_at, serial")?;
        let rows = statement.query_map([], |row| {
            Ok(Issued {
                serial: row.get(0)?,
                subject: row.get(1)?,
                usage: row.get(2)?,
                issued_at: row.get(3)?,
                not_after: row.get(4)?,
                revoked_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every enrolled station and its key (revoked ones left out).
    pub(crate) fn stations(&self) -> Result<Vec<(String, StationKey)>, StoreError> {
        let mut statement = self.connection.prepare("SELECT id, key FROM stations WHERE revoked_at IS NULL ORDER BY id")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        let mut stations = Vec::new();
        for row in rows {
            let (id, key) = row?;
            match StationKey::from_hex(&key) {
                Ok(key) => stations.push((id, key)),
                Err(error) => return Err(StoreError::Database(format!("station {id}: stored key unreadable: {error}"))),
            }
        }
        Ok(stations)
    }

    /// Every enrolled sensor: id, bridging station, kind.
    pub(crate) fn sensors(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut statement = self.connection.prepare("SELECT id, station, kind FROM sensors ORDER BY id")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a console user, or replaces an existing one's role and password hash.
    pub(crate) fn put_user(&mut self, name: &str, role: &str, hash: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO users (name, role, hash) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash",
            params![name, role, hash],
        )?;
        Ok(())
    }

    /// A console user's role and password hash.
    pub(crate) fn user(&self, name: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT role, hash FROM users WHERE name = ?1", params![name], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    /// Runs raw SQL on the connection, for tests that play the intruder or
    /// the careless program.
    #[cfg(test)]
    fn raw(&self, sql: &str) -> Result<usize, rusqlite::Error> {
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

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("netbar-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
        fn db(&self) -> std::path::PathBuf {
            self.0.join("log.sqlite")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn appends_chain_and_survive_reopening() {
        let scratch = Scratch::new("chain");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let first = store.append(at("2026-11-22T10:00:00Z"), "check_in", &json!({"allowed": true})).unwrap();
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
        let second = store.append(at("2026-11-22T10:01:00Z"), "session_start", &json!({"station": "st-1"})).unwrap();
        assert_eq!(second.prev_hash, first.hash);
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.head(), (2, second.hash.as_str()));
        let third = store.append(at("2026-11-22T10:02:00Z"), "session_end", &json!({})).unwrap();
        assert_eq!(third.prev_hash, second.hash);
        let verified = store.verify().unwrap().unwrap();
        assert_eq!((verified.entries, verified.head), (3, (3, third.hash)));
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
        let (a, b) = (json!({ "n": 1 }), json!({ "n": 2 }));
        let at = at("2026-11-22T10:00:00Z");
        let batch = store.append_all(&[(at, "check_in", &a), (at, "ticket", &b)]).unwrap();
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(batch[1].prev_hash, batch[0].hash);
        // A batch whose second entry cannot be written leaves nothing behind.
        store.raw("CREATE TRIGGER refuse_bad BEFORE INSERT ON log WHEN NEW.kind = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END").unwrap();
        assert!(store.append_all(&[(at, "check_in", &a), (at, "bad", &b)]).is_err());
        assert_eq!(store.head(), (2, batch[1].hash.as_str()));
        assert_eq!(store.append(at, "check_in", &a).unwrap().seq, 3);
        assert_eq!(store.verify().unwrap().unwrap().entries, 3);
    }

    #[test]
    fn the_outbox_numbers_contiguously_across_restarts_and_is_bounded() {
        let scratch = Scratch::new("outbox");
        let at = at("2026-11-25T10:00:00Z");
        let message = |channel: &'static str| -> Outbound {
            Box::new(move |seq, head: Head<'_>| Some((channel, format!("{seq}@{}", head.index).into_bytes())))
        };
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let body = json!({});
        // An entry and its message commit together; the message sees the entry.
        store.append_uplinked(vec![((at, "check_in", &body), Some(message("record")))], 3).unwrap();
        assert_eq!(store.enqueue_alone(at, 3, message("summary")).unwrap(), Some(2));
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.enqueue_alone(at, 3, message("summary")).unwrap(), Some(3));
        // Full: a summary is refused (and said so), an incident still goes in.
        assert_eq!(store.enqueue_alone(at, 3, message("summary")).unwrap(), None);
        assert_eq!(store.enqueue_alone(at, 3, message("incident")).unwrap(), Some(4));
        let queued = store.queued_after(0, 10).unwrap();
        assert_eq!(
            queued.iter().map(|q| (q.seq, q.channel.as_str())).collect::<Vec<_>>(),
            [(1, "record"), (2, "summary"), (3, "summary"), (4, "incident")]
        );
        assert_eq!(queued[0].payload, b"1@1");
        assert_eq!(store.queued_after(2, 1).unwrap()[0].seq, 3);
        store.acknowledged(&[1, 3]).unwrap();
        let status = store.outbox_status().unwrap();
        assert_eq!((status.pending, status.last_seq, status.last_acked, status.oldest), (2, 4, 3, Some(at)));
        store.acknowledged(&[2, 4]).unwrap();
        drop(store);
        // Empty again after a restart, the feed goes on from 5.
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.enqueue_alone(at, 3, message("summary")).unwrap(), Some(5));
    }

    #[test]
    fn edits_in_the_file_are_found_and_named() {
        let scratch = Scratch::new("edit");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for n in 0..5 {
            store.append(at("2026-11-22T10:00:00Z"), "check_in", &json!({ "n": n })).unwrap();
        }
        // An intruder with the file drops the triggers and edits entry 3.
        store.raw("DROP TRIGGER log_append_only").unwrap();
        store.raw("UPDATE log SET body = '{\"n\":99}' WHERE seq = 3").unwrap();
        assert_eq!(store.verify().unwrap().unwrap_err().seq, 3);
        assert!(store.verify().unwrap().unwrap_err().to_string().contains("entry 3: its content does not match its hash"));
        // Or removes entry 2 entirely.
        let scratch = Scratch::new("remove");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        for n in 0..4 {
            store.append(at("2026-11-22T10:00:00Z"), "check_in", &json!({ "n": n })).unwrap();
        }
        store.raw("DROP TRIGGER log_keep_young").unwrap();
        store.raw("DELETE FROM log WHERE seq = 2").unwrap();
        let bad = store.verify().unwrap().unwrap_err();
        assert_eq!(bad, BadEntry { seq: 3, reason: "entry 2 is missing (found 3 next)".into() });
    }

    #[test]
    fn young_records_cannot_be_altered_or_deleted_by_the_program() {
        let scratch = Scratch::new("young");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(Timestamp::now(), "check_in", &json!({})).unwrap();
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
    fn purge_keeps_a_checkpoint_the_chain_verifies_from() {
        let scratch = Scratch::new("purge");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let now = Timestamp::now();
        let old = now - jiff::SignedDuration::from_hours(24 * 90);
        for n in 0..3 {
            store.append(old, "check_in", &json!({ "n": n })).unwrap();
        }
        let young = store.append(now - jiff::SignedDuration::from_hours(24), "check_in", &json!({ "n": 3 })).unwrap();
        assert_eq!(store.purge(now).unwrap(), 3);
        let verified = store.verify().unwrap().unwrap();
        assert_eq!(verified.entries, 1);
        assert_eq!(verified.from.0, 3);
        assert_eq!(verified.head, (4, young.hash.clone()));
        assert_eq!(store.purge(now).unwrap(), 0, "nothing young goes");
        drop(store);
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.append(now, "check_in", &json!({})).unwrap().prev_hash, young.hash);
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
        store.append(at("2026-11-20T10:00:00Z"), "check_in", &json!({"name": "a,\"b\""})).unwrap();
        store.append(at("2026-11-21T10:00:00Z"), "ticket", &json!({"code": "K7Q"})).unwrap();
        store.append(at("2026-11-22T10:00:00Z"), "check_in", &json!({})).unwrap();
        let mut jsonl = Vec::new();
        let count = store.export(at("2026-11-20T00:00:00Z"), at("2026-11-22T00:00:00Z"), Format::Jsonl, &mut jsonl).unwrap();
        assert_eq!(count, 2);
        let lines: Vec<serde_json::Value> = String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[1]["body"]["code"], "K7Q");
        let mut csv = Vec::new();
        store.export(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"), Format::Csv, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.starts_with("seq,at,kind,body,prev_hash,hash\n1,2026-11-20T10:00:00Z,check_in,\"{\"\"name\"\":\"\"a,\\\"\"b\\\"\"\"\"}\","),
            "{csv}"
        );
    }
}
