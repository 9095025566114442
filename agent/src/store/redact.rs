//! Cutting out of the log what may not be kept, where an earlier release
//! kept it: resident registration numbers (개인정보 보호법 제24조의2 forbids
//! any venue to keep them; numbers held had to be destroyed), and where the
//! policy keeps no numbers or names (Korea's), passport numbers and names.
//!
//! The only path that changes a committed entry, and it changes only the
//! `number` and `name` of check-ins. A hash chain over a number cannot keep
//! its hashes and forget the number: with the rest of the entry known, the
//! hash of a number whose last six digits are missing gives them back after
//! a million tries. So the entries from the first one cut to the head are
//! chained again, in the same transaction as the cut, the anchor moved with
//! them, and a [`Redaction`] entry appended on the new chain says which
//! entries were cut and which were chained again; the caller adds the
//! entries that tell the regulator (an incident opened and resolved) in
//! the same transaction. Nothing else changes: before anything is written
//! the chain must verify as it is (a broken log is refused, so a redaction
//! never launders an edit), and afterwards `records verify` checks every
//! entry as before and names the redactions. Messages waiting in the outbox
//! for the regulator are cut the same way (by the caller, who knows their
//! shape), those of entries long purged too. Then the file is vacuumed and
//! its write-ahead log truncated, so no page holds what was cut; a vacuum
//! the process did not live to finish is done at the next start.
//!
//! What a redaction cannot reach: copies made before it (`records backup`),
//! and what the regulator received before it. The regulator's heads of the
//! entries chained again no longer match; `records verify --heads` names
//! each, with the redaction that explains it if the venue made one.

use jiff::Timestamp;
use netbar_protocol::identity::KR_KEPT;
use netbar_protocol::policy::Registration;
use rusqlite::{OptionalExtension, params};

use super::{NewEntry, Outbound, Store, StoreError, entry_hash};
use crate::journal::{CheckIn, LogEntry, Rechained, Redaction};

/// The append-only trigger, exactly as migration 1 creates it: dropped
/// and created again around the re-chaining, in its transaction.
const APPEND_ONLY_TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS log_append_only BEFORE UPDATE ON log
BEGIN
    SELECT RAISE(ABORT, 'the registration log is append-only');
END;";

/// Set in a redaction's transaction, cleared once the file is vacuumed.
const VACUUM_PENDING: &str = "redaction_vacuum_pending";

/// The counters that say up to which entry and which outbox message the
/// log was checked against a registration rule (one pair per rule, so a
/// venue that moves to a stricter policy is checked again from the start).
fn checked_through(registration: Registration) -> (String, String) {
    let rule = format!("number={},name={}", registration.keep_number, registration.keep_name);
    (format!("redaction_checked:{rule}"), format!("redaction_checked_outbox:{rule}"))
}

/// A document number as it may be kept: a Korean resident registration
/// number never beyond `YYMMDD-G`, whatever the policy; any other number
/// only where the policy keeps numbers.
pub(crate) fn kept_number(document_kind: &str, number: &str, registration: Registration) -> String {
    match document_kind {
        "kr_resident_registration" => number.chars().take(KR_KEPT).collect(),
        _ if registration.keep_number => number.to_owned(),
        _ => String::new(),
    }
}

/// A pending message of the outbox, and the log as the redaction left it,
/// for the caller to cut the message the same way.
pub(crate) struct Pending<'a> {
    pub(crate) payload: &'a [u8],
    /// The new hash of an entry chained again, with the one before it;
    /// `None` for an entry not chained again.
    pub(crate) rechained: &'a dyn Fn(u64) -> Option<(String, String)>,
    /// The check-in at a position of the log as it is now (cut); `None`
    /// when the log no longer holds it (purged after its retention).
    pub(crate) check_in: &'a dyn Fn(u64) -> Option<CheckIn>,
    pub(crate) registration: Registration,
}

/// Cuts a pending message; `None` leaves it as it is.
pub(crate) type CutMessage<'a> = &'a mut dyn FnMut(Pending<'_>) -> Option<Vec<u8>>;

/// The entries that tell of a redaction (for the regulator), made by the
/// caller once the redaction is known.
pub(crate) type Announce<'a> = &'a dyn Fn(&Redaction) -> Vec<(LogEntry, Option<Outbound>)>;

/// Why a redaction was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedactError {
    /// The chain does not verify as it is: cutting it would hide that.
    #[error(
        "the registration log does not verify ({0}); nothing was redacted, so that the break stays visible: restore a backup or ask the venue's IT support"
    )]
    Broken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RedactError {
    fn from(error: rusqlite::Error) -> RedactError {
        RedactError::Store(error.into())
    }
}

/// A check-in as the registration rule keeps it, if that differs.
fn cut(check_in: &CheckIn, registration: Registration) -> Option<CheckIn> {
    let mut kept = check_in.clone();
    kept.number = kept_number(&check_in.document_kind, &check_in.number, registration);
    if !registration.keep_name {
        kept.name = None;
    }
    (kept != *check_in).then_some(kept)
}

/// A counter's value, 0 when it was never set.
fn counter(connection: &rusqlite::Connection, name: &str) -> Result<i64, rusqlite::Error> {
    connection.query_row("SELECT coalesce((SELECT value FROM counters WHERE name = ?1), 0)", params![name], |row| row.get(0))
}

fn set_counter(connection: &rusqlite::Connection, name: &str, value: i64) -> Result<(), rusqlite::Error> {
    connection
        .execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )
        .map(drop)
}

impl Store {
    /// Cuts out of every check-in what `registration` may not keep (and a
    /// Korean resident registration number beyond `YYMMDD-G` whatever it
    /// says), chains the log again from the first entry cut, cuts the
    /// pending messages with `cut_message`, and records it all in one
    /// [`Redaction`] entry followed by `announce`'s, in one transaction;
    /// then vacuums the file. `None` when nothing had to be cut (the log is
    /// then only marked as checked). Entries and messages already checked
    /// against the same rule are not read again.
    pub(crate) fn redact(
        &mut self,
        now: Timestamp,
        registration: Registration,
        (policy, by): (&str, &str),
        cut_message: CutMessage<'_>,
        announce: Announce<'_>,
    ) -> Result<Option<(u64, Redaction)>, RedactError> {
        self.finish_vacuum()?;
        let (log_counter, outbox_counter) = checked_through(registration);
        let since = counter(&self.connection, &log_counter)?;
        let mut cuts: std::collections::BTreeMap<u64, CheckIn> = std::collections::BTreeMap::new();
        let mut unreadable = Vec::new();
        {
            let mut statement = self.connection.prepare("SELECT seq, body FROM log WHERE kind = 'check_in' AND seq > ?1 ORDER BY seq")?;
            let mut rows = statement.query(params![since])?;
            while let Some(row) = rows.next()? {
                let (seq, body): (i64, String) = (row.get(0)?, row.get(1)?);
                match LogEntry::from_parts("check_in", &body) {
                    Ok(LogEntry::CheckIn(check_in)) => {
                        if let Some(kept) = cut(&check_in, registration) {
                            cuts.insert(seq as u64, kept);
                        }
                    }
                    _ => unreadable.push(seq),
                }
            }
        }
        if !unreadable.is_empty() {
            tracing::error!(entries = ?unreadable, "check-ins of the registration log that do not read cannot be checked for what the policy may not keep");
        }
        if !cuts.is_empty() {
            match self.verify()? {
                Ok(_) if self.truncation.is_none() => {}
                Ok(_) => return Err(RedactError::Broken(self.truncation.as_ref().map(ToString::to_string).unwrap_or_default())),
                Err(bad) => return Err(RedactError::Broken(bad.to_string())),
            }
        }
        let outbox_since = if cuts.is_empty() { counter(&self.connection, &outbox_counter)? } else { 0 };
        let transaction = self.connection.transaction().map_err(StoreError::from)?;
        // The new chain, from the entry before the first cut.
        let mut rechained: std::collections::BTreeMap<u64, (String, String)> = std::collections::BTreeMap::new();
        let mut head = self.head.clone();
        if let Some((&from, _)) = cuts.first_key_value() {
            let mut prev: String =
                transaction.query_row("SELECT prev_hash FROM log WHERE seq = ?1", params![from as i64], |row| row.get(0))?;
            transaction.execute_batch("DROP TRIGGER log_append_only;")?;
            let rows: Vec<(i64, String, String, String)> = transaction
                .prepare("SELECT seq, at, kind, body FROM log WHERE seq >= ?1 ORDER BY seq")?
                .query_map(params![from as i64], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let mut update = transaction.prepare("UPDATE log SET body = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1")?;
            for (seq, at, kind, body) in rows {
                let body = match cuts.get(&(seq as u64)) {
                    Some(kept) => LogEntry::CheckIn(kept.clone()).body_text(),
                    None => body,
                };
                let hash = entry_hash(&prev, seq as u64, &at, &kind, &body);
                update.execute(params![seq, body, prev, hash])?;
                rechained.insert(seq as u64, (prev, hash.clone()));
                prev = hash;
            }
            transaction.execute_batch(APPEND_ONLY_TRIGGER)?;
            if let Some((seq, (_, hash))) = rechained.last_key_value() {
                head = (*seq, hash.clone());
            }
            // The anchor follows the new chain (the same position, another
            // hash): it never goes back, and it does not here.
            transaction.execute("UPDATE anchor SET hash = ?2 WHERE id = 1 AND seq = ?1", params![head.0 as i64, head.1])?;
        }
        // The messages waiting for the regulator: all of them after a
        // re-chaining (their hashes changed), else those not yet checked.
        let mut outbox = 0;
        let mut last_message = outbox_since;
        {
            let pending: Vec<(i64, Vec<u8>)> = transaction
                .prepare("SELECT seq, payload FROM outbox WHERE seq > ?1 ORDER BY seq")?
                .query_map(params![outbox_since], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut update = transaction.prepare("UPDATE outbox SET payload = ?2 WHERE seq = ?1")?;
            let lookup = |index: u64| rechained.get(&index).cloned();
            let check_in = |index: u64| {
                cuts.get(&index).cloned().or_else(|| {
                    let body: Option<String> = transaction
                        .query_row("SELECT body FROM log WHERE seq = ?1 AND kind = 'check_in'", params![index as i64], |row| row.get(0))
                        .optional()
                        .ok()
                        .flatten();
                    match body.and_then(|body| LogEntry::from_parts("check_in", &body).ok()) {
                        Some(LogEntry::CheckIn(check_in)) => Some(check_in),
                        _ => None,
                    }
                })
            };
            for (seq, payload) in pending {
                last_message = seq;
                let pending = Pending { payload: &payload, rechained: &lookup, check_in: &check_in, registration };
                if let Some(cut) = cut_message(pending).filter(|cut| *cut != payload) {
                    update.execute(params![seq, cut])?;
                    outbox += 1;
                }
            }
        }
        let mut redacted = None;
        if !cuts.is_empty() || outbox > 0 {
            let redaction = Redaction {
                entries: cuts.keys().copied().collect(),
                rechained: rechained
                    .first_key_value()
                    .zip(rechained.last_key_value())
                    .map(|((from, _), (to, _))| Rechained { from: *from, to: *to }),
                outbox,
                policy: policy.to_owned(),
                by: by.to_owned(),
                at: now,
            };
            let entry = LogEntry::Redaction(redaction.clone());
            // The announcement's entries follow it, each with its message.
            let (told, messages): (Vec<LogEntry>, Vec<Option<Outbound>>) = announce(&redaction).into_iter().unzip();
            let entries: Vec<(NewEntry<'_>, Option<Outbound>)> =
                std::iter::once(((now, &entry), None)).chain(told.iter().map(|told| (now, told)).zip(messages)).collect();
            let mut pending = self.pending;
            let written = Store::insert_entries(&transaction, &mut head, entries, u64::MAX, &mut pending)?;
            self.pending = pending;
            redacted = written.first().map(|written| (written.seq, redaction));
            set_counter(&transaction, VACUUM_PENDING, 1)?;
        }
        set_counter(&transaction, &log_counter, head.0 as i64)?;
        set_counter(&transaction, &outbox_counter, last_message)?;
        transaction.commit().map_err(StoreError::from)?;
        self.head = head;
        self.finish_vacuum()?;
        Ok(redacted)
    }

    /// Vacuums the file and empties the write-ahead log where a redaction
    /// asked for it: no page keeps what was cut. Done again at the next
    /// start when the process did not live to finish it.
    fn finish_vacuum(&mut self) -> Result<(), StoreError> {
        if counter(&self.connection, VACUUM_PENDING)? == 0 {
            return Ok(());
        }
        self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        self.connection.execute("DELETE FROM counters WHERE name = ?1", params![VACUUM_PENDING])?;
        self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Scratch, at, out};
    use super::*;
    use crate::journal::CheckInOutcome;
    use crate::journal::Rechained;
    use crate::store::{Head, Outbound};

    #[test]
    fn the_trigger_is_the_one_migration_1_creates() {
        assert!(super::super::MIGRATION_1.contains(APPEND_ONLY_TRIGGER));
    }

    const KR: Registration = Registration { keep_number: false, keep_name: false, one_check_in_per_document: false };

    fn korean(number: &str, name: Option<&str>) -> LogEntry {
        LogEntry::CheckIn(CheckIn {
            outcome: CheckInOutcome::Refused,
            document_kind: "kr_resident_registration".into(),
            number: number.into(),
            birth_date: jiff::civil::date(1990, 1, 1),
            birth_date_source: netbar_protocol::identity::BirthDateSource::Document,
            age: 36,
            guardian: false,
            ticket: None,
            reasons: vec!["youth_hours".into()],
            until: None,
            name: name.map(str::to_owned),
            student: None,
            by: None,
        })
    }

    /// A message for the outbox naming the entry it goes with.
    fn message(text: &'static str) -> Outbound {
        Box::new(move |_, head: Head<'_>| Some(("record", format!("{text} {} {}", head.index, head.hash).into_bytes())))
    }

    /// Every byte of the database and its write-ahead log.
    fn files(db: &std::path::Path) -> Vec<u8> {
        ["", "-wal"].iter().flat_map(|suffix| std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default()).collect()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
    }

    /// 개인정보 보호법 제24조의2: a Korean venue's log, written by a release
    /// that kept whole resident registration numbers, is cut to YYMMDD-G, and
    /// the chain still proves everything else.
    #[test]
    fn a_redaction_cuts_the_numbers_rechains_the_log_and_is_itself_in_the_chain() {
        let scratch = Scratch::new("redact");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        let before = store.append(at("2026-11-22T09:00:00Z"), &out(1)).unwrap();
        let first = korean("900101-1234568", Some("김철수"));
        let second = korean("110505-3123452", None);
        let queued: Vec<(crate::store::NewEntry<'_>, Option<Outbound>)> = vec![
            ((at("2026-11-22T10:00:00Z"), &first), Some(message("number 900101-1234568 at"))),
            ((at("2026-11-22T10:01:00Z"), &second), Some(message("number 110505-3123452 at"))),
        ];
        store.append_uplinked(queued, u64::MAX).unwrap();
        let last = store.append(at("2026-11-22T10:02:00Z"), &out(2)).unwrap();
        let old_heads: Vec<(u64, String)> = vec![(1, before.hash.clone()), (4, last.hash.clone())];
        assert!(contains(&files(&scratch.db()), "1234568"));

        // The pending messages are cut by the caller, who is given the new chain.
        let mut seen = Vec::new();
        let mut cut = |pending: Pending<'_>| {
            let text = String::from_utf8_lossy(pending.payload).into_owned();
            let index: u64 = text.split(' ').nth(3).unwrap().parse().unwrap();
            let (_, hash) = (pending.rechained)(index)?;
            seen.push(index);
            Some(format!("number {} at {index} {hash}", (pending.check_in)(index)?.number).into_bytes())
        };
        // The caller tells the regulator in the same transaction.
        let told = |redaction: &Redaction| vec![(out(redaction.entries.len() as u32 + 100), Some(message("told")))];
        let (seq, redaction) = store.redact(at("2026-12-01T00:00:00Z"), KR, ("kr", "records redact"), &mut cut, &told).unwrap().unwrap();
        assert_eq!(
            (seq, redaction.entries.as_slice(), redaction.rechained, redaction.outbox),
            (5, &[2, 3][..], Some(Rechained { from: 2, to: 4 }), 2)
        );
        assert_eq!(redaction.described(), "entries 2, 3 cut, entries 2 to 4 chained again, 2 messages for the regulator cut");
        assert_eq!(seen, vec![2, 3]);
        drop(store);

        // Nothing of the numbers or the name is left in the file or its log.
        let bytes = files(&scratch.db());
        for gone in ["1234568", "3123452", "김철수"] {
            assert!(!contains(&bytes, gone), "{gone} is still in the database");
        }
        let store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.truncation(), None, "the anchor moved with the chain");
        let verified = store.verify().unwrap().unwrap();
        assert_eq!((verified.entries, verified.head.0), (6, 6), "the redaction and what told of it");
        assert_eq!(verified.redactions, vec![(5, redaction)]);
        let queued = store.queued_after(0, 10).unwrap();
        assert_eq!(queued.len(), 3, "{queued:?}");
        assert!(String::from_utf8_lossy(&queued[2].payload).starts_with("told 6 "), "{queued:?}");
        // The entry before the first cut keeps its hash; the others were
        // chained again, which the regulator's heads show, with the
        // redaction named but not taken for an excuse.
        let heads = store.check_heads(&old_heads).unwrap();
        assert_eq!((heads.matched, heads.findings.len()), (1, 1), "{heads:?}");
        assert!(
            heads.findings[0].contains("entry 4 has hash")
                && heads.findings[0].contains("chained again by the redaction recorded at entry 5"),
            "{heads:?}"
        );
        let exported = {
            let mut out = Vec::new();
            store
                .export(
                    at("2026-11-01T00:00:00Z"),
                    at("2026-12-31T00:00:00Z"),
                    &jiff::tz::TimeZone::UTC,
                    super::super::Format::Jsonl,
                    &mut out,
                )
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(exported.contains("\"number\":\"900101-1\"") && exported.contains("\"number\":\"110505-3\""), "{exported}");
        assert!(String::from_utf8_lossy(&queued[0].payload).starts_with("number 900101-1 at 2 "), "{queued:?}");
        drop(store);

        // Once is enough: a second run finds nothing, and new entries chain on.
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.redact(at("2026-12-02T00:00:00Z"), KR, ("kr", "again"), &mut |_| None, &|_| vec![]).unwrap(), None);
        store.append(at("2026-12-02T00:00:01Z"), &out(3)).unwrap();
        assert!(store.verify().unwrap().is_ok());
    }

    /// A log that does not verify is not cut: cutting it would chain the
    /// edit in, and the break would no longer show.
    #[test]
    fn a_log_that_does_not_verify_is_not_redacted() {
        let scratch = Scratch::new("redact-broken");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(at("2026-11-22T10:00:00Z"), &korean("900101-1234568", None)).unwrap();
        store.append(at("2026-11-22T10:01:00Z"), &out(1)).unwrap();
        store.raw("DROP TRIGGER log_append_only").unwrap();
        store.raw("UPDATE log SET body = replace(body, 'refused', 'admitted') WHERE seq = 1").unwrap();
        let error = store.redact(at("2026-12-01T00:00:00Z"), KR, ("kr", "t"), &mut |_| None, &|_| vec![]).unwrap_err();
        assert!(error.to_string().contains("entry 1: its content does not match its hash"), "{error}");
        assert!(contains(&files(&scratch.db()), "1234568"), "left as it was");
        // A policy that keeps everything still cuts a resident registration
        // number, and so it too refuses a broken log.
        let everything = Registration::default();
        assert!(store.redact(at("2026-12-01T00:00:00Z"), everything, ("cn", "t"), &mut |_| None, &|_| vec![]).is_err());
    }

    /// A redaction whose process died before the vacuum: the next start
    /// vacuums, so no free page keeps what was cut.
    #[test]
    fn a_vacuum_the_process_did_not_finish_is_done_at_the_next_start() {
        let scratch = Scratch::new("redact-vacuum");
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        store.append(at("2026-11-22T10:00:00Z"), &korean("900101-1234568", None)).unwrap();
        // As the redaction's transaction leaves it when the process is killed after its commit.
        set_counter(&store.connection, VACUUM_PENDING, 1).unwrap();
        store.raw("DROP TRIGGER log_append_only").unwrap();
        store.raw("UPDATE log SET body = replace(body, '900101-1234568', '900101-1') WHERE seq = 1").unwrap();
        store.raw(APPEND_ONLY_TRIGGER).unwrap();
        assert!(contains(&files(&scratch.db()), "1234568"), "the old page and its log frame");
        // A Chinese venue's policy: nothing of its own to cut, but the vacuum is owed.
        assert_eq!(
            store.redact(at("2026-12-01T00:00:00Z"), Registration::default(), ("cn", "t"), &mut |_| None, &|_| vec![]).unwrap(),
            None
        );
        drop(store);
        assert!(!contains(&files(&scratch.db()), "1234568"));
    }
}
