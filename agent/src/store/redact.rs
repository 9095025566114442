//! Cutting out of the log what the policy may not keep, where an earlier
//! release kept it: a Korean venue's resident registration numbers (개인정보
//! 보호법 제24조의2 forbids keeping them; numbers held had to be destroyed),
//! passport numbers and names.
//!
//! The only path that changes a committed entry, and it changes only the
//! `number` and `name` of check-ins. A hash chain over a number cannot keep
//! its hashes and forget the number: with the rest of the entry known, the
//! hash of a number whose last six digits are missing gives them back after
//! a million tries. So the entries from the first one cut to the head are
//! chained again, in the same transaction as the cut, the anchor moved with
//! them, and a [`Redaction`] entry appended on the new chain says which
//! entries were cut and which were chained again. Nothing else changes:
//! before anything is written the chain must verify as it is (a broken log
//! is refused, so a redaction never launders an edit), and afterwards
//! `records verify` checks every entry as before and names the redactions.
//! Messages waiting in the outbox for the regulator are cut the same way
//! (by the caller, who knows their shape). Then the file is vacuumed and the
//! write-ahead log truncated, so no page of it holds a number any more.
//!
//! What a redaction cannot reach: copies made before it (`records backup`),
//! and what the regulator received before it. The regulator's heads of the
//! entries chained again no longer match; `records verify --heads` names
//! them as chained again by the redaction, not as tampering.

use jiff::Timestamp;
use netbar_protocol::identity::KR_KEPT;
use netbar_protocol::policy::Registration;
use rusqlite::params;

use super::{Store, StoreError, entry_hash};
use crate::journal::{CheckIn, LogEntry, Redaction};

/// The append-only trigger, exactly as migration 1 creates it: dropped
/// and created again around the re-chaining, in its transaction.
const APPEND_ONLY_TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS log_append_only BEFORE UPDATE ON log
BEGIN
    SELECT RAISE(ABORT, 'the registration log is append-only');
END;";

/// The counter that says up to which entry the log was checked against a
/// registration rule (one counter per rule, so a venue that moves to a
/// stricter policy is checked again from the start).
fn checked_through(registration: Registration) -> String {
    format!("redaction_checked:number={},name={}", registration.keep_number, registration.keep_name)
}

/// A pending message of the outbox, and the log as the redaction left it,
/// for the caller to cut the message the same way.
pub(crate) struct Pending<'a> {
    pub(crate) payload: &'a [u8],
    /// The new hash of an entry chained again, with the one before it, and
    /// the entry as cut; `None` for an entry not chained again.
    pub(crate) rechained: &'a dyn Fn(u64) -> Option<(String, String, Option<CheckIn>)>,
}

/// Cuts a pending message; `None` leaves it as it is.
pub(crate) type CutMessage<'a> = &'a mut dyn FnMut(Pending<'_>) -> Option<Vec<u8>>;

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
    if !registration.keep_number {
        kept.number = match check_in.document_kind.as_str() {
            "kr_resident_registration" => check_in.number.chars().take(KR_KEPT).collect(),
            _ => String::new(),
        };
    }
    if !registration.keep_name {
        kept.name = None;
    }
    (kept != *check_in).then_some(kept)
}

impl Store {
    /// Cuts out of every check-in what `registration` may not keep, chains
    /// the log again from the first entry cut, cuts the pending messages
    /// with `cut_message`, and records it all in one [`Redaction`] entry,
    /// in one transaction; then vacuums the file. `None` when nothing had to
    /// be cut (the log is then only marked as checked). Entries already
    /// checked against the same rule are not read again.
    pub(crate) fn redact(
        &mut self,
        now: Timestamp,
        registration: Registration,
        (policy, by): (&str, &str),
        cut_message: CutMessage<'_>,
    ) -> Result<Option<(u64, Redaction)>, RedactError> {
        if registration.keep_number && registration.keep_name {
            return Ok(None);
        }
        let counter = checked_through(registration);
        let since: i64 =
            self.connection
                .query_row("SELECT coalesce((SELECT value FROM counters WHERE name = ?1), 0)", params![counter], |row| row.get(0))?;
        let mut cuts: Vec<(u64, CheckIn)> = Vec::new();
        {
            let mut statement = self.connection.prepare("SELECT seq, body FROM log WHERE kind = 'check_in' AND seq > ?1 ORDER BY seq")?;
            let mut rows = statement.query(params![since])?;
            while let Some(row) = rows.next()? {
                let (seq, body): (i64, String) = (row.get(0)?, row.get(1)?);
                if let Ok(LogEntry::CheckIn(check_in)) = LogEntry::from_parts("check_in", &body)
                    && let Some(kept) = cut(&check_in, registration)
                {
                    cuts.push((seq as u64, kept));
                }
            }
        }
        let head = self.head.clone();
        if cuts.is_empty() {
            self.connection.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![counter, head.0 as i64],
            )?;
            return Ok(None);
        }
        match self.verify()? {
            Ok(_) if self.truncation.is_none() => {}
            Ok(_) => return Err(RedactError::Broken(self.truncation.as_ref().map(ToString::to_string).unwrap_or_default())),
            Err(bad) => return Err(RedactError::Broken(bad.to_string())),
        }
        let from = cuts[0].0;
        let cut_entries: std::collections::BTreeMap<u64, CheckIn> = cuts.into_iter().collect();
        let transaction = self.connection.transaction().map_err(StoreError::from)?;
        // The new chain, from the entry before the first cut.
        let mut rechained: std::collections::BTreeMap<u64, (String, String)> = std::collections::BTreeMap::new();
        {
            let mut prev: String =
                transaction.query_row("SELECT prev_hash FROM log WHERE seq = ?1", params![from as i64], |row| row.get(0))?;
            transaction.execute_batch("DROP TRIGGER log_append_only;")?;
            let mut rows_statement = transaction.prepare("SELECT seq, at, kind, body FROM log WHERE seq >= ?1 ORDER BY seq")?;
            let rows: Vec<(i64, String, String, String)> = rows_statement
                .query_map(params![from as i64], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let mut update = transaction.prepare("UPDATE log SET body = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1")?;
            for (seq, at, kind, body) in rows {
                let body = match cut_entries.get(&(seq as u64)) {
                    Some(kept) => LogEntry::CheckIn(kept.clone()).body_text(),
                    None => body,
                };
                let hash = entry_hash(&prev, seq as u64, &at, &kind, &body);
                update.execute(params![seq, body, prev, hash])?;
                rechained.insert(seq as u64, (prev, hash.clone()));
                prev = hash;
            }
            transaction.execute_batch(APPEND_ONLY_TRIGGER)?;
        }
        let new_head = rechained.last_key_value().map(|(seq, (_, hash))| (*seq, hash.clone())).unwrap_or(head.clone());
        // The anchor follows the new chain; it never goes back, and it does
        // not here: the same position, another hash.
        transaction.execute("UPDATE anchor SET hash = ?2 WHERE id = 1 AND seq = ?1", params![new_head.0 as i64, new_head.1])?;
        // The messages waiting for the regulator.
        let mut outbox = 0;
        {
            let lookup =
                |index: u64| rechained.get(&index).map(|(prev, hash)| (prev.clone(), hash.clone(), cut_entries.get(&index).cloned()));
            let pending: Vec<(i64, Vec<u8>)> = transaction
                .prepare("SELECT seq, payload FROM outbox ORDER BY seq")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut update = transaction.prepare("UPDATE outbox SET payload = ?2 WHERE seq = ?1")?;
            for (seq, payload) in pending {
                if let Some(cut) = cut_message(Pending { payload: &payload, rechained: &lookup }) {
                    update.execute(params![seq, cut])?;
                    outbox += 1;
                }
            }
        }
        let redaction = Redaction {
            entries: cut_entries.keys().copied().collect(),
            from,
            to: new_head.0,
            outbox,
            policy: policy.to_owned(),
            by: by.to_owned(),
            at: now,
        };
        let entry = LogEntry::Redaction(redaction.clone());
        let (seq, at_text, body) = (new_head.0 + 1, now.to_string(), entry.body_text());
        let hash = entry_hash(&new_head.1, seq, &at_text, entry.kind(), &body);
        transaction.execute(
            "INSERT INTO log (seq, at, at_unix, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![seq as i64, at_text, now.as_second(), entry.kind(), body, new_head.1, hash],
        )?;
        transaction.execute(
            "INSERT INTO anchor (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![seq as i64, hash],
        )?;
        transaction.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![counter, seq as i64],
        )?;
        transaction.commit().map_err(StoreError::from)?;
        self.head = (seq, hash);
        // No page of the file, and nothing in the write-ahead log, keeps
        // what was cut: the pages are rewritten, the log emptied.
        self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(Some((seq, redaction)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Scratch, at, out};
    use super::*;
    use crate::journal::CheckInOutcome;
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
            let (_, hash, cut) = (pending.rechained)(index)?;
            seen.push(index);
            Some(format!("number {} at {index} {hash}", cut?.number).into_bytes())
        };
        let (seq, redaction) = store.redact(at("2026-12-01T00:00:00Z"), KR, ("kr", "records redact"), &mut cut).unwrap().unwrap();
        assert_eq!((seq, redaction.entries.as_slice(), redaction.from, redaction.to, redaction.outbox), (5, &[2, 3][..], 2, 4, 2));
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
        assert_eq!((verified.entries, verified.head.0), (5, 5));
        assert_eq!(verified.redactions, vec![(5, redaction)]);
        // The entry before the first cut keeps its hash; the others were chained again.
        let heads = store.check_heads(&old_heads).unwrap();
        assert_eq!((heads.matched, heads.rechained, heads.findings.len()), (1, 1, 0), "{heads:?}");
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
        let queued = store.queued_after(0, 10).unwrap();
        assert!(String::from_utf8_lossy(&queued[0].payload).starts_with("number 900101-1 at 2 "), "{queued:?}");
        drop(store);

        // Once is enough: a second run finds nothing, and new entries chain on.
        let mut store = Store::open(&scratch.db(), 60).unwrap();
        assert_eq!(store.redact(at("2026-12-02T00:00:00Z"), KR, ("kr", "again"), &mut |_| None).unwrap(), None);
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
        let error = store.redact(at("2026-12-01T00:00:00Z"), KR, ("kr", "t"), &mut |_| None).unwrap_err();
        assert!(error.to_string().contains("entry 1: its content does not match its hash"), "{error}");
        assert!(contains(&files(&scratch.db()), "1234568"), "left as it was");
        // A policy that keeps everything has nothing to cut, and reads nothing.
        let everything = Registration::default();
        assert_eq!(store.redact(at("2026-12-01T00:00:00Z"), everything, ("cn", "t"), &mut |_| None).unwrap(), None);
    }
}
