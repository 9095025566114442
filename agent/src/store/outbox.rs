//! The regulator outbox: messages queued in the transaction that caused
//! them, numbered contiguously, removed only once acknowledged; the
//! summary period; the link's state as last noted.

use super::*;

impl Store {
    /// Queues a message for the regulator inside `transaction`; its
    /// sequence number is the next of the feed. Records and incidents are
    /// always queued: the disk is their only bound. A summary is not queued
    /// while the outbox holds `limit` messages or more (`Ok(None)`): the
    /// caller folds its period into the next one, so nothing is lost and no
    /// number is skipped. `Ok(None)` too when `build` makes nothing.
    pub(super) fn enqueue(
        transaction: &rusqlite::Transaction<'_>,
        head: Head<'_>,
        limit: u64,
        at: Timestamp,
        build: Outbound,
        pending: &mut u64,
    ) -> Result<Option<u64>, StoreError> {
        let last: i64 = transaction.query_row("SELECT last_seq FROM uplink WHERE id = 1", [], |row| row.get(0))?;
        let seq = last as u64 + 1;
        let Some((channel, payload)) = build(seq, head) else { return Ok(None) };
        if *pending >= limit && channel == "summary" {
            tracing::warn!(
                pending = *pending,
                limit,
                "the regulator outbox is over its bound: this period's summary is merged into the next"
            );
            return Ok(None);
        }
        // Loud well before the bound: at half, then every tenth more, then at the bound.
        if limit < u64::MAX && ((5..10).any(|tenths| *pending + 1 == limit / 10 * tenths) || *pending + 1 == limit) {
            tracing::warn!(
                pending = *pending + 1,
                limit,
                "the regulator outbox is filling up (nothing is dropped; summaries merge from the bound on): is the regulator's broker reachable?"
            );
        }
        transaction.execute(
            "INSERT INTO outbox (seq, channel, payload, queued_unix) VALUES (?1, ?2, ?3, ?4)",
            params![seq as i64, channel, payload, at.as_second()],
        )?;
        transaction.execute("UPDATE uplink SET last_seq = ?1 WHERE id = 1", params![seq as i64])?;
        *pending += 1;
        Ok(Some(seq))
    }

    /// Queues a message for the regulator on its own (a summary); when it
    /// is queued, `period_end` (the end of the period it covers) is where
    /// the next summary's period starts, kept in the same transaction.
    pub(crate) fn enqueue_alone(
        &mut self,
        at: Timestamp,
        limit: u64,
        build: Outbound,
        period_end: Option<Timestamp>,
    ) -> Result<Option<u64>, StoreError> {
        let transaction = self.connection.transaction()?;
        let head = Head { index: self.head.0, hash: &self.head.1, prev_hash: "" };
        let mut pending = self.pending;
        let seq = Store::enqueue(&transaction, head, limit, at, build, &mut pending)?;
        if let (Some(_), Some(end)) = (seq, period_end) {
            transaction.execute("UPDATE uplink SET period_start = ?1 WHERE id = 1", params![end.to_string()])?;
        }
        transaction.commit()?;
        self.pending = pending;
        Ok(seq)
    }

    /// Starts the first summary period at `at`, unless one is under way.
    pub(crate) fn begin_period(&mut self, at: Timestamp) -> Result<(), StoreError> {
        self.connection.execute("UPDATE uplink SET period_start = ?1 WHERE id = 1 AND period_start IS NULL", params![at.to_string()])?;
        Ok(())
    }

    /// Where the next summary's period starts: the end of the last one
    /// queued (or the first period's start), if there is a feed.
    pub(crate) fn period_start(&self) -> Result<Option<Timestamp>, StoreError> {
        let text: Option<String> = self.connection.query_row("SELECT period_start FROM uplink WHERE id = 1", [], |row| row.get(0))?;
        Ok(text.and_then(|text| text.parse().ok()))
    }

    /// The check-ins and incident transitions since `since`, in log order:
    /// what a summary period counts.
    pub(crate) fn counted_since(&self, since: Timestamp) -> Result<Vec<LogEntry>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT at, kind, body FROM log WHERE at_unix >= ?1 AND kind IN ('check_in', 'incident') ORDER BY seq")?;
        let mut rows = statement.query(params![since.as_second()])?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            let (at, kind, body): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            if at.parse::<Timestamp>().is_ok_and(|at| at >= since)
                && let Ok(entry) = LogEntry::from_parts(&kind, &body)
            {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Messages in the outbox, not yet acknowledged by the regulator's broker.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
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
        let mut removed = 0;
        {
            let mut delete = transaction.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                removed += delete.execute(params![*seq as i64])? as u64;
            }
        }
        if let Some(highest) = seqs.iter().max() {
            transaction.execute("UPDATE uplink SET last_acked = max(last_acked, ?1) WHERE id = 1", params![*highest as i64])?;
        }
        transaction.commit()?;
        self.pending = self.pending.saturating_sub(removed);
        Ok(())
    }

    /// Notes whether the agent is connected to the regulator, and since
    /// when (the moment it last changed).
    pub(crate) fn set_connected(&mut self, connected: bool, at: Timestamp) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE uplink SET connected = ?1, changed_unix = ?2 WHERE id = 1 AND connected != ?1",
            params![connected, at.as_second()],
        )?;
        Ok(())
    }

    /// The outbox at a glance.
    pub(crate) fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let oldest: Option<i64> =
            self.connection.query_row("SELECT queued_unix FROM outbox ORDER BY seq LIMIT 1", [], |row| row.get(0)).optional()?;
        let (last_seq, last_acked, connected, changed): (i64, i64, bool, i64) =
            self.connection.query_row("SELECT last_seq, last_acked, connected, changed_unix FROM uplink WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        Ok(OutboxStatus {
            pending: self.pending,
            oldest: oldest.and_then(|at| Timestamp::from_second(at).ok()),
            last_seq: last_seq as u64,
            last_acked: last_acked as u64,
            connected,
            since: (changed > 0).then(|| Timestamp::from_second(changed).ok()).flatten(),
        })
    }
}
