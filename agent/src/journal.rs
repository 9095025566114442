//! What the registration log holds: one typed enum of entry kinds.
//!
//! An entry is stored as its kind (a column) and its body (JSON text the
//! hash covers). Everything that writes or reads entries goes through
//! [`LogEntry`]: the venue's rules produce them, the store writes them, the
//! feed turns some into messages for the regulator, and replay at start-up
//! rebuilds the venue from them. Bodies are written as they always were, so
//! a log written by an earlier release reads back as the same types and its
//! hashes still verify.
//!
//! [`LogEntry::liveness`] says which entries a restart must replay: an
//! admitted check-in until its check-out, a session's start until its end,
//! a station's hold until its next session, an incident's transitions until
//! it is resolved. The store keeps that set in the same transaction as the
//! entries (see `Store::live`), so start-up reads the venue's open matters,
//! not its whole history.

use jiff::Timestamp;
use jiff::civil::Date;
use netbar_protocol::StationId;
use netbar_protocol::identity::BirthDateSource;
use netbar_protocol::messages::{IncidentKind, IncidentTransition};
use serde::{Deserialize, Serialize};

/// One entry of the registration log, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub(crate) enum LogEntry {
    /// A check-in attempt at the desk, admitted or refused.
    CheckIn(CheckIn),
    /// A check-in ended at the desk: the ticket stops working.
    CheckOut(CheckOut),
    /// A station unlocked for a ticket.
    SessionStart(SessionStart),
    /// A session ended, and why.
    SessionEnd(SessionEnd),
    /// Staff locked, messaged or opened a station.
    StaffCommand(StaffCommand),
    /// An incident opened, acknowledged or resolved.
    Incident(IncidentEntry),
    /// Someone saw or exported registration records.
    PersonalDataAccess(DataAccess),
    /// What the policy may not keep was cut out of entries written before.
    Redaction(Redaction),
}

/// Whether a check-in admitted the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckInOutcome {
    Admitted,
    Refused,
}

/// A check-in attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckIn {
    pub(crate) outcome: CheckInOutcome,
    /// The document kind's code ("cn_resident_id", …).
    pub(crate) document_kind: String,
    /// The normalised document number.
    pub(crate) number: String,
    pub(crate) birth_date: Date,
    pub(crate) birth_date_source: BirthDateSource,
    /// Age at the decision (never used again: age is computed per decision).
    pub(crate) age: i32,
    pub(crate) guardian: bool,
    /// The ticket handed over, when admitted.
    pub(crate) ticket: Option<String>,
    /// Reason codes of a refusal.
    pub(crate) reasons: Vec<String>,
    /// When the decision behind the admission ends, if it does.
    pub(crate) until: Option<Timestamp>,
    /// The name on the document, when the desk typed it and the policy
    /// keeps names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// What the desk said of the person's enrolment, where the policy
    /// counts students as minors (absent: it said nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) student: Option<bool>,
    /// The cashier who checked the document (absent in entries written
    /// before releases recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) by: Option<String>,
}

/// Why a check-in ended without the desk (absent: the desk checked it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckOutCause {
    /// No session for the venue's `rules.check_in_expires_after`: the
    /// customer left without checking out.
    Expired,
}

/// A check-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckOut {
    pub(crate) ticket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<CheckOutCause>,
}

/// A session's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionStart {
    pub(crate) session: String,
    pub(crate) station: StationId,
    pub(crate) ticket: String,
    /// When the station must lock again under the policy, if ever.
    pub(crate) until: Option<Timestamp>,
    pub(crate) at: Timestamp,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndCause {
    /// The customer logged out at the station.
    Logout,
    /// The station's own deadline passed.
    TimeUp,
    /// The policy's window closed (a curfew).
    Policy,
    /// Staff locked the station.
    Staff,
    /// The station shut down or lost power.
    Shutdown,
    /// The customer was checked out at the desk.
    CheckedOut,
    /// The station reported, after a restart or an outage, that it no
    /// longer holds the session.
    NotAtStation,
    /// A reason this release does not know (written by a later one).
    #[serde(other)]
    Other,
}

impl EndCause {
    /// Whether the station stays held (locked until its next session).
    pub(crate) fn holds(self) -> bool {
        matches!(self, EndCause::Staff | EndCause::Policy)
    }

    /// The code sent to a station in its lock command.
    pub(crate) fn code(self) -> &'static str {
        match self {
            EndCause::Logout => "logout",
            EndCause::TimeUp => "time_up",
            EndCause::Policy => "policy",
            EndCause::Staff => "staff",
            EndCause::Shutdown => "shutdown",
            EndCause::CheckedOut => "checked_out",
            EndCause::NotAtStation => "not_at_station",
            EndCause::Other => "other",
        }
    }
}

impl From<netbar_protocol::messages::EndReason> for EndCause {
    fn from(reason: netbar_protocol::messages::EndReason) -> EndCause {
        use netbar_protocol::messages::EndReason;
        match reason {
            EndReason::Logout => EndCause::Logout,
            EndReason::TimeUp => EndCause::TimeUp,
            EndReason::Policy => EndCause::Policy,
            EndReason::Staff => EndCause::Staff,
            EndReason::Shutdown => EndCause::Shutdown,
        }
    }
}

/// A session's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionEnd {
    pub(crate) session: String,
    pub(crate) station: StationId,
    pub(crate) ticket: String,
    pub(crate) reason: EndCause,
    pub(crate) at: Timestamp,
}

/// What staff did to a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StaffAction {
    Lock,
    Notify,
    Open,
}

/// A staff command. Entries of releases before the action was written
/// carry none (a lock or a notice, not told apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StaffCommand {
    pub(crate) station: StationId,
    #[serde(default)]
    pub(crate) action: Option<StaffAction>,
    pub(crate) by: String,
    pub(crate) at: Timestamp,
    /// The ticket a station was opened for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ticket: Option<String>,
    /// The notice shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
}

/// An incident's transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IncidentEntry {
    /// The incident's id, shared by its transitions.
    pub(crate) incident: String,
    pub(crate) transition: IncidentTransition,
}

/// Someone saw or exported registration records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DataAccess {
    pub(crate) by: String,
    /// "view" or "export".
    pub(crate) action: String,
    pub(crate) from: Date,
    pub(crate) to: Date,
    pub(crate) at: Timestamp,
}

/// Document numbers and names that entries written earlier hold and the
/// policy may not keep (개인정보 보호법 제24조의2 for Korean resident
/// registration numbers), cut out of them. The entries from the first of
/// them to the log's head then were chained again: their old hashes, each
/// a function of a number with a million possible endings, would give the
/// numbers back to anyone who tried them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Redaction {
    /// The entries cut.
    pub(crate) entries: Vec<u64>,
    /// The entries chained again, when entries were cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rechained: Option<Rechained>,
    /// Messages waiting for the regulator that were cut the same way.
    pub(crate) outbox: u64,
    /// The policy whose registration rules were applied.
    pub(crate) policy: String,
    /// Who ran it: a user, or the upgrade at start-up.
    pub(crate) by: String,
    pub(crate) at: Timestamp,
}

impl Redaction {
    /// In words: "entries 1, 2 cut, entries 1 to 5 chained again, 2
    /// messages for the regulator cut".
    pub(crate) fn described(&self) -> String {
        let mut parts = Vec::new();
        if !self.entries.is_empty() {
            let seqs: Vec<String> = self.entries.iter().map(u64::to_string).collect();
            parts.push(format!("entries {} cut", seqs.join(", ")));
        }
        if let Some(Rechained { from, to }) = self.rechained {
            parts.push(format!("entries {from} to {to} chained again"));
        }
        if self.outbox > 0 {
            parts.push(format!("{} messages for the regulator cut", self.outbox));
        }
        parts.join(", ")
    }
}

/// The entries a redaction chained again: from the first it cut to the
/// log's head before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rechained {
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// Why an entry read back is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("entry of kind {kind:?} unreadable: {error}")]
pub(crate) struct UnreadableEntry {
    kind: String,
    error: serde_json::Error,
}

/// Something an entry keeps open until a later entry closes it: what a
/// restart replays, stored as a key beside the entry's position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Matter {
    /// A check-in, by ticket: its check-in, and its sessions' ends (when
    /// the customer last left a station).
    Ticket(String),
    /// The session open at a station.
    Session(StationId),
    /// Why a station is locked until its next session.
    Hold(StationId),
    /// An incident not yet resolved: its opening and acknowledgement.
    Incident(String),
}

/// How the key of a hold begins (the store's purge passes holds over).
pub(crate) const HOLD_KEY: &str = "hold:";

impl Matter {
    /// The key the store keeps.
    pub(crate) fn key(&self) -> String {
        match self {
            Matter::Ticket(code) => format!("ticket:{code}"),
            Matter::Session(station) => format!("session:{station}"),
            Matter::Hold(station) => format!("{HOLD_KEY}{station}"),
            Matter::Incident(id) => format!("incident:{id}"),
        }
    }

    /// The matter a stored key names.
    pub(crate) fn from_key(key: &str) -> Option<Matter> {
        let (kind, name) = key.split_once(':')?;
        Some(match kind {
            "ticket" => Matter::Ticket(name.to_owned()),
            "session" => Matter::Session(name.parse().ok()?),
            "hold" => Matter::Hold(name.parse().ok()?),
            "incident" => Matter::Incident(name.to_owned()),
            _ => return None,
        })
    }
}

impl LogEntry {
    /// The kind, as the log's `kind` column holds it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            LogEntry::CheckIn(_) => "check_in",
            LogEntry::CheckOut(_) => "check_out",
            LogEntry::SessionStart(_) => "session_start",
            LogEntry::SessionEnd(_) => "session_end",
            LogEntry::StaffCommand(_) => "staff_command",
            LogEntry::Incident(_) => "incident",
            LogEntry::PersonalDataAccess(_) => "personal_data_access",
            LogEntry::Redaction(_) => "redaction",
        }
    }

    /// The body as the log stores it (the text its hash covers).
    pub(crate) fn body_text(&self) -> String {
        // Plain data with string keys always serialises; the body is what
        // the adjacent tag puts under "body".
        serde_json::to_value(self).map(|mut tagged| tagged["body"].take().to_string()).unwrap_or_default()
    }

    /// Reads an entry back from its kind and body text.
    pub(crate) fn from_parts(kind: &str, body: &str) -> Result<LogEntry, UnreadableEntry> {
        let unreadable = |error| UnreadableEntry { kind: kind.to_owned(), error };
        let tagged = format!("{{\"kind\":{},\"body\":{body}}}", serde_json::to_string(kind).map_err(unreadable)?);
        serde_json::from_str(&tagged).map_err(unreadable)
    }

    /// What this entry does to the matters a restart replays: those it
    /// closes, then those it opens (or adds itself to).
    pub(crate) fn liveness(&self) -> (Vec<Matter>, Vec<Matter>) {
        match self {
            LogEntry::CheckIn(CheckIn { outcome: CheckInOutcome::Admitted, ticket: Some(code), .. }) => {
                (vec![], vec![Matter::Ticket(code.clone())])
            }
            LogEntry::CheckOut(CheckOut { ticket: code, .. }) => (vec![Matter::Ticket(code.clone())], vec![]),
            LogEntry::SessionStart(start) => (
                vec![Matter::Hold(start.station.clone()), Matter::Session(start.station.clone())],
                vec![Matter::Session(start.station.clone())],
            ),
            LogEntry::SessionEnd(end) => {
                let (mut closes, mut opens) = (vec![Matter::Session(end.station.clone())], vec![Matter::Ticket(end.ticket.clone())]);
                if end.reason.holds() {
                    closes.push(Matter::Hold(end.station.clone()));
                    opens.push(Matter::Hold(end.station.clone()));
                }
                (closes, opens)
            }
            LogEntry::StaffCommand(StaffCommand { station, action: Some(StaffAction::Lock), .. }) => {
                (vec![Matter::Hold(station.clone())], vec![Matter::Hold(station.clone())])
            }
            LogEntry::Incident(IncidentEntry { incident: id, transition }) => match transition {
                IncidentTransition::Opened { incident_kind: IncidentKind::UnregisteredUse, station: Some(station), .. } => {
                    (vec![Matter::Hold(station.clone())], vec![Matter::Incident(id.clone()), Matter::Hold(station.clone())])
                }
                IncidentTransition::Opened { .. } | IncidentTransition::Acknowledged { .. } => (vec![], vec![Matter::Incident(id.clone())]),
                IncidentTransition::Resolved { .. } => (vec![Matter::Incident(id.clone())], vec![]),
            },
            _ => (vec![], vec![]),
        }
    }
}

/// An entry a restart replays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replayed {
    pub(crate) at: Timestamp,
    pub(crate) entry: LogEntry,
    /// The matters it still keeps open.
    pub(crate) keeps: Vec<Matter>,
    /// Whether it is an incident transition of the recent history.
    pub(crate) recent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies exactly as earlier releases wrote them (from
    /// tests/fixtures/netbar-32b41c6.sqlite and the code of that time).
    const EARLIER: &[(&str, &str)] = &[
        (
            "check_in",
            r#"{"age":76,"birth_date":"1949-12-31","birth_date_source":"document","document_kind":"cn_resident_id","guardian":false,"number":"11010519491231002X","outcome":"admitted","reasons":[],"ticket":"K7QM2A","until":null}"#,
        ),
        (
            "check_in",
            r#"{"age":16,"birth_date":"2010-01-15","birth_date_source":"document","document_kind":"cn_resident_id","guardian":false,"name":"李四","number":"310104201001151236","outcome":"refused","reasons":["under_age"],"ticket":null,"until":null}"#,
        ),
        ("check_out", r#"{"ticket":"K7QM2A"}"#),
        ("session_start", r#"{"at":"2026-11-22T12:00:00Z","session":"s-1-1","station":"st-1","ticket":"K7QM2A","until":null}"#),
        ("session_end", r#"{"at":"2026-11-22T13:00:00Z","reason":"checked_out","session":"s-1-1","station":"st-1","ticket":"K7QM2A"}"#),
        ("staff_command", r#"{"at":"2026-11-22T13:00:00Z","by":"wang","station":"st-1"}"#),
        ("staff_command", r#"{"action":"open","at":"2026-11-22T13:00:00Z","by":"li","station":"st-1","ticket":"K7QM2A"}"#),
        (
            "incident",
            r#"{"incident":"i-1-1","transition":{"detail":"x","incident_kind":"fire","sensor":"smoke-1","severity":"critical","station":"st-1","transition":"opened"}}"#,
        ),
        ("incident", r#"{"incident":"i-1-1","transition":{"by":"li","transition":"acknowledged"}}"#),
        ("personal_data_access", r#"{"action":"view","at":"2026-11-22T13:00:00Z","by":"wang","from":"2026-11-01","to":"2026-11-22"}"#),
    ];

    #[test]
    fn entries_of_earlier_releases_read_back_as_types_and_write_back_as_they_were() {
        for (kind, body) in EARLIER {
            let entry = LogEntry::from_parts(kind, body).unwrap_or_else(|error| panic!("{kind} {body}: {error}"));
            assert_eq!(entry.kind(), *kind);
            let again = LogEntry::from_parts(kind, &entry.body_text()).unwrap();
            assert_eq!(again, entry, "{kind}");
        }
        // A body written today is the same text as before for the kinds that did not change.
        let check_out = LogEntry::from_parts("check_out", r#"{"ticket":"K7QM2A"}"#).unwrap();
        assert_eq!(check_out.body_text(), r#"{"ticket":"K7QM2A"}"#);
        // A staff command of that time has no action: neither a lock nor a notice for sure.
        let old = LogEntry::from_parts("staff_command", EARLIER[5].1).unwrap();
        assert!(matches!(old, LogEntry::StaffCommand(StaffCommand { action: None, .. })));
        assert_eq!(old.liveness(), (vec![], vec![]));
        assert_eq!(Matter::from_key("ticket"), None);
        assert_eq!(Matter::from_key("station:st-1"), None);
    }

    #[test]
    fn an_unknown_kind_or_a_broken_body_is_an_error_naming_the_kind() {
        let error = LogEntry::from_parts("ticket", r#"{"code":"K7Q"}"#).unwrap_err().to_string();
        assert!(error.contains("\"ticket\""), "{error}");
        assert!(LogEntry::from_parts("check_out", r#"{"ticket":5}"#).is_err());
        assert!(LogEntry::from_parts("check_out", "not json").is_err());
        // A session ended for a reason a later release added still reads.
        let later = r#"{"at":"2026-11-22T13:00:00Z","reason":"maintenance","session":"s-1","station":"st-1","ticket":"T"}"#;
        assert!(matches!(LogEntry::from_parts("session_end", later), Ok(LogEntry::SessionEnd(SessionEnd { reason: EndCause::Other, .. }))));
    }

    fn check(kind: &str, body: &str, closes: &[&str], opens: &[&str]) {
        let entry = LogEntry::from_parts(kind, body).unwrap();
        let (closed, opened) = entry.liveness();
        let keys = |matters: Vec<Matter>| matters.iter().map(Matter::key).collect::<Vec<_>>();
        let strings = |keys: &[&str]| keys.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>();
        assert_eq!((keys(closed.clone()), keys(opened.clone())), (strings(closes), strings(opens)), "{kind} {body}");
        for matter in closed.into_iter().chain(opened) {
            assert_eq!(Matter::from_key(&matter.key()), Some(matter), "a key reads back as its matter");
        }
    }

    #[test]
    fn what_each_entry_keeps_open_for_a_restart() {
        check("check_in", EARLIER[0].1, &[], &["ticket:K7QM2A"]);
        check("check_in", EARLIER[1].1, &[], &[]);
        check("check_out", EARLIER[2].1, &["ticket:K7QM2A"], &[]);
        check("session_start", EARLIER[3].1, &["hold:st-1", "session:st-1"], &["session:st-1"]);
        check("session_end", EARLIER[4].1, &["session:st-1"], &["ticket:K7QM2A"]);
        check(
            "session_end",
            r#"{"at":"2026-11-22T13:00:00Z","reason":"policy","session":"s-1","station":"st-1","ticket":"T"}"#,
            &["session:st-1", "hold:st-1"],
            &["ticket:T", "hold:st-1"],
        );
        check("check_out", r#"{"reason":"expired","ticket":"T"}"#, &["ticket:T"], &[]);
        check(
            "staff_command",
            r#"{"action":"lock","at":"2026-11-22T13:00:00Z","by":"wang","station":"st-2"}"#,
            &["hold:st-2"],
            &["hold:st-2"],
        );
        check("staff_command", EARLIER[6].1, &[], &[]);
        check("incident", EARLIER[7].1, &[], &["incident:i-1-1"]);
        check("incident", EARLIER[8].1, &[], &["incident:i-1-1"]);
        check(
            "incident",
            r#"{"incident":"i-2-2","transition":{"detail":"x","incident_kind":"unregistered_use","sensor":null,"severity":"warning","station":"st-3","transition":"opened"}}"#,
            &["hold:st-3"],
            &["incident:i-2-2", "hold:st-3"],
        );
        check(
            "incident",
            r#"{"incident":"i-1-1","transition":{"by":"wang","note":"ok","transition":"resolved"}}"#,
            &["incident:i-1-1"],
            &[],
        );
        check("personal_data_access", EARLIER[9].1, &[], &[]);
    }
}
