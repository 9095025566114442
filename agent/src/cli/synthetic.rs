//! A venue's worth of made-up history, written through the real store:
//! what the start-up benchmark opens (`records synthesize`, hidden).
//!
//! Each day brings `per_day` check-in attempts (one in twenty refused),
//! each admitted customer a session at a station and a check-out, and a
//! few incidents acknowledged and resolved. The last hours are as a busy
//! evening leaves them: customers still checked in, sessions still open,
//! stations held, incidents open. Nothing here is a real person.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use netbar_protocol::StationId;
use netbar_protocol::identity::BirthDateSource;
use netbar_protocol::messages::{IncidentKind, IncidentTransition, Severity};

use crate::journal::{
    CheckIn, CheckInOutcome, CheckOut, EndCause, IncidentEntry, LogEntry, SessionEnd, SessionStart, StaffAction, StaffCommand,
};
use crate::store::{Store, StoreError};

/// Entries committed in one transaction.
const BATCH: usize = 5_000;

/// Writes the history into a new database at `path`; the entries written.
pub(crate) fn write(path: &Path, days: u32, per_day: u32, stations: u32, now: Timestamp) -> Result<u64, StoreError> {
    let mut store = Store::open(path, 60)?;
    let mut pending: Vec<(Timestamp, LogEntry)> = Vec::with_capacity(BATCH);
    // What happens later in a customer's stay, by time: written when the
    // log's clock gets there, so the log runs in time order as a real one.
    let mut later: std::collections::BTreeMap<(Timestamp, u64), LogEntry> = std::collections::BTreeMap::new();
    let mut counter = 0;
    let mut schedule = |later: &mut std::collections::BTreeMap<(Timestamp, u64), LogEntry>, at: Timestamp, entry: LogEntry| {
        counter += 1;
        later.insert((at, counter), entry);
    };
    let mut written = 0;
    let mut flush = |store: &mut Store, pending: &mut Vec<(Timestamp, LogEntry)>| -> Result<(), StoreError> {
        let entries = pending.iter().map(|(at, entry)| ((*at, entry), None)).collect();
        store.append_uplinked(entries, u64::MAX)?;
        written += pending.len() as u64;
        pending.clear();
        Ok(())
    };
    let start = now - SignedDuration::from_hours(24 * i64::from(days));
    let total = u64::from(days) * u64::from(per_day);
    let step = SignedDuration::from_hours(24 * i64::from(days)) / i32::try_from(total.max(1)).unwrap_or(i32::MAX);
    // The last attempts stay open: the venue as a restart finds it.
    let still_here = u64::from(stations.min(per_day)) * 3 / 4;
    let station = |n: u64| -> StationId {
        // Ids made here are always valid.
        format!("st-{:03}", n % u64::from(stations) + 1).parse().unwrap_or_else(|_| unreachable!())
    };
    for n in 0..total {
        let at = start + step * i32::try_from(n).unwrap_or(i32::MAX);
        while let Some(entry) = later.first_entry().filter(|entry| entry.key().0 <= at) {
            let ((due, _), entry) = entry.remove_entry();
            pending.push((due, entry));
        }
        let ticket = format!("T{n:07}");
        let refused = n % 20 == 19;
        pending.push((at, check_in(format!("SYN{n:09}"), (!refused).then(|| ticket.clone()))));
        if !refused {
            let session = format!("s-{}-{n}", at.as_second());
            let seat = station(n);
            pending.push((
                at,
                LogEntry::SessionStart(SessionStart {
                    session: session.clone(),
                    station: seat.clone(),
                    ticket: ticket.clone(),
                    until: None,
                    at,
                }),
            ));
            if total - n > still_here {
                let end = at + SignedDuration::from_mins(90);
                let reason = if n % 50 == 7 { EndCause::Staff } else { EndCause::Logout };
                schedule(
                    &mut later,
                    end,
                    LogEntry::SessionEnd(SessionEnd { session, station: seat, ticket: ticket.clone(), reason, at: end }),
                );
                schedule(&mut later, end, LogEntry::CheckOut(CheckOut { ticket, reason: None }));
            } else if n % 40 == 0 {
                let lock =
                    StaffCommand { station: seat, action: Some(StaffAction::Lock), by: "manager".into(), at, ticket: None, text: None };
                pending.push((at, LogEntry::StaffCommand(lock)));
            }
        }
        // About twenty incidents a day; the last few still open.
        if n % 100 == 50 {
            let id = format!("i-{}-{n}", at.as_second());
            let opened = IncidentTransition::Opened {
                incident_kind: IncidentKind::UnregisteredUse,
                severity: Severity::Warning,
                station: Some(station(n + 1)),
                sensor: None,
                detail: format!("station {} in use without a registration", station(n + 1)),
            };
            pending.push((at, LogEntry::Incident(IncidentEntry { incident: id.clone(), transition: opened })));
            pending.push((
                at,
                LogEntry::Incident(IncidentEntry {
                    incident: id.clone(),
                    transition: IncidentTransition::Acknowledged { by: "cashier".into() },
                }),
            ));
            if total - n > still_here {
                let resolved = IncidentTransition::Resolved { by: "manager".into(), note: "customer registered".into() };
                schedule(
                    &mut later,
                    at + SignedDuration::from_mins(5),
                    LogEntry::Incident(IncidentEntry { incident: id, transition: resolved }),
                );
            }
        }
        if pending.len() >= BATCH {
            flush(&mut store, &mut pending)?;
        }
    }
    pending.extend(later.into_iter().map(|((due, _), entry)| (due, entry)));
    flush(&mut store, &mut pending)?;
    Ok(written)
}

/// A made-up check-in of document `number`: an adult admitted with
/// `ticket`, or without one a 14-year-old refused.
pub(crate) fn check_in(number: String, ticket: Option<String>) -> LogEntry {
    let refused = ticket.is_none();
    LogEntry::CheckIn(CheckIn {
        outcome: if refused { CheckInOutcome::Refused } else { CheckInOutcome::Admitted },
        document_kind: "other".into(),
        number,
        birth_date: jiff::civil::date(if refused { 2012 } else { 1990 }, 1, 1),
        birth_date_source: BirthDateSource::EnteredByHand,
        age: if refused { 14 } else { 36 },
        guardian: false,
        ticket,
        reasons: if refused { vec!["under_age".into()] } else { vec![] },
        until: None,
        name: None,
        student: None,
        by: None,
    })
}
