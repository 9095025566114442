//! What the agent tells the regulator: the messages of the feed, built
//! from the venue's events and queued in the outbox by the store.
//!
//! Compliance level in each summary (documented for regulators in the
//! README):
//! - red: an open critical incident, or an open incident nobody has
//!   acknowledged;
//! - yellow: an open incident (acknowledged), a sensor or station silent,
//!   the outbox half full or more, or the venue's store failing;
//! - green: none of these.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use netbar_protocol::messages::{
    Compliance, IncidentEvent, IncidentKind, IncidentTransition, LogHead, Person, ReasonCount, RegistrationRecord, Severity,
    SeverityCounts, Summary,
};
use netbar_protocol::{Envelope, GaCode, Message, MessageId, Sender, VenueId};
use sha2::Sha256;

use crate::clock::Clock;
use crate::config::AGENT;
use crate::config::Disclosure;
use crate::journal::{CheckIn, CheckInOutcome, IncidentEntry, LogEntry};
use crate::store::{self, Head, Outbound, Pending};

pub(crate) mod sender;
pub(crate) mod window;

/// What the feed needs to build its messages.
#[derive(Clone)]
pub(crate) struct Feed {
    pub(crate) venue: VenueId,
    pub(crate) clock: Clock,
    pub(crate) disclosure: Disclosure,
    /// The venue's key for pseudonyms: the same person gets the same hash
    /// at this venue, and no one without the key can find the number.
    pub(crate) pseudonym_key: [u8; 32],
    pub(crate) outbox_max: u64,
    /// The venue's GA 557-2005 code, carried in every summary.
    pub(crate) ga_code: Option<GaCode>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("venue", &self.venue).field("disclosure", &self.disclosure).finish_non_exhaustive()
    }
}

impl Feed {
    /// Reads the venue's pseudonym key from `path`, creating it (readable by
    /// the agent's user only) on first use.
    pub(crate) fn pseudonym_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
        use anyhow::Context;
        if !path.exists() {
            let key: [u8; 32] = rand::random();
            let text = netbar_protocol::auth::hex(&key);
            netbar_host::private::write_private(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let text = text.trim();
        let mut key = [0u8; 32];
        anyhow::ensure!(text.len() == 64, "{}: not 64 hexadecimal characters", path.display());
        for (index, byte) in key.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).with_context(|| format!("{}: not hexadecimal", path.display()))?;
        }
        Ok(key)
    }

    fn envelope(&self, seq: u64, message: impl Into<Message>) -> Vec<u8> {
        let id = MessageId::from_parts(Timestamp::now(), rand::random());
        netbar_protocol::encode(&Envelope::new(id, self.clock.now(), self.venue.clone(), Sender::agent(AGENT), seq, message)).into_bytes()
    }

    fn person_hash(&self, number: &str) -> String {
        pseudonym(&self.pseudonym_key, number)
    }

    /// The message for the regulator a log entry causes, if any.
    pub(crate) fn outbound(&self, entry: &LogEntry, at: Timestamp) -> Option<Outbound> {
        match entry {
            LogEntry::CheckIn(check_in) if self.disclosure != Disclosure::None => {
                let (feed, check_in) = (self.clone(), check_in.clone());
                Some(Box::new(move |seq, head: Head<'_>| Some(("record", feed.envelope(seq, feed.record(at, &check_in, head))))))
            }
            LogEntry::Incident(IncidentEntry { incident, transition }) => {
                let event = IncidentEvent { incident_id: incident.clone(), at, transition: transition.clone() };
                let feed = self.clone();
                Some(Box::new(move |seq, _| Some(("incident", feed.envelope(seq, event)))))
            }
            _ => None,
        }
    }

    fn record(&self, at: Timestamp, check_in: &CheckIn, head: Head<'_>) -> RegistrationRecord {
        let person = match self.disclosure {
            Disclosure::None => Person::None,
            Disclosure::Pseudonymised => {
                Person::Pseudonymised { person_hash: self.person_hash(&check_in.number), birth_year: check_in.birth_date.year() }
            }
            Disclosure::Full => Person::Full {
                document_kind: check_in.document_kind.clone(),
                number: check_in.number.clone(),
                name: check_in.name.clone().unwrap_or_default(),
                birth_date: check_in.birth_date,
            },
        };
        RegistrationRecord {
            index: head.index,
            prev_hash: head.prev_hash.to_owned(),
            hash: head.hash.to_owned(),
            at,
            station: None,
            allowed: check_in.outcome == CheckInOutcome::Admitted,
            reasons: check_in.reasons.clone(),
            person,
        }
    }

    /// A summary, queued on its own: the log's head is filled in by the store.
    pub(crate) fn summary(&self, summary: Summary) -> Outbound {
        let feed = self.clone();
        Box::new(move |seq, head: Head<'_>| {
            let summary = Summary { log_head: LogHead { index: head.index, hash: head.hash.to_owned() }, ..summary };
            Some(("summary", feed.envelope(seq, summary)))
        })
    }
}

/// The pseudonym of a document number under the venue's key.
fn pseudonym(key: &[u8; 32], number: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(number.as_bytes());
    netbar_protocol::auth::hex(&mac.finalize().into_bytes())
}

/// A message waiting in the outbox, cut as a redaction cut the log (see
/// `store::redact`): a record carries the hashes of its entry as chained
/// again, its number cut as the log's would be, no name where the policy
/// keeps none, and a pseudonym made again from its entry's number as cut
/// (with `pseudonym_key`); where its entry was purged and the policy keeps
/// no numbers, no pseudonym at all (it may be of a whole number). A summary
/// whose head was chained again carries the new hash. `None` when nothing
/// changes.
pub(crate) fn cut_queued(pending: Pending<'_>, pseudonym_key: Option<&[u8; 32]>) -> Option<Vec<u8>> {
    let mut envelope = netbar_protocol::decode(pending.payload).ok()?;
    let before = envelope.message.clone();
    let registration = pending.registration;
    match &mut envelope.message {
        Message::Record(record) => {
            if let Some((prev_hash, hash)) = (pending.rechained)(record.index) {
                (record.prev_hash, record.hash) = (prev_hash, hash);
            }
            let entry = (pending.check_in)(record.index);
            record.person = match std::mem::replace(&mut record.person, Person::None) {
                Person::Full { document_kind, number, name, birth_date } => Person::Full {
                    number: store::kept_number(&document_kind, &number, registration),
                    name: if registration.keep_name { name } else { String::new() },
                    document_kind,
                    birth_date,
                },
                Person::Pseudonymised { person_hash, birth_year } => match (entry, pseudonym_key) {
                    (Some(check_in), Some(key)) => Person::Pseudonymised { person_hash: pseudonym(key, &check_in.number), birth_year },
                    (None, _) if !registration.keep_number => Person::None,
                    _ => Person::Pseudonymised { person_hash, birth_year },
                },
                Person::None => Person::None,
            };
        }
        Message::Summary(summary) => {
            if let Some((_, hash)) = (pending.rechained)(summary.log_head.index) {
                summary.log_head.hash = hash;
            }
        }
        _ => return None,
    }
    (envelope.message != before).then(|| netbar_protocol::encode(&envelope).into_bytes())
}

/// The summary period under way: since when, and what happened in it.
#[derive(Debug, Default)]
pub(crate) struct Period {
    pub(crate) start: Timestamp,
    pub(crate) tally: Tally,
}

/// How the venue and its store stand as a period ends.
#[derive(Debug)]
pub(crate) struct Standing {
    pub(crate) stations_enrolled: u32,
    pub(crate) sensors_enrolled: u32,
    pub(crate) stations_online: u32,
    pub(crate) sessions_open: u32,
    pub(crate) customers_present: u32,
    /// Open incidents: each one's severity, and whether it was acknowledged.
    pub(crate) open: Vec<(Severity, bool)>,
    /// Sensors silent now.
    pub(crate) silent: u32,
    /// Messages in the outbox; None when the store cannot say.
    pub(crate) pending: Option<u64>,
    pub(crate) store_error: Option<String>,
}

impl Feed {
    /// The summary of `period` as it ends at `now`.
    pub(crate) fn summarise(&self, period: &Period, standing: Standing, now: Timestamp) -> Summary {
        let Period { start, tally } = period;
        let half_full = standing.pending.is_some_and(|pending| half_full(pending, self.outbox_max));
        Summary {
            from: *start,
            to: now.max(*start + jiff::SignedDuration::from_millis(1)),
            stations_enrolled: standing.stations_enrolled.max(standing.stations_online),
            stations_online: standing.stations_online,
            sessions_open: standing.sessions_open,
            customers_present: standing.customers_present,
            registrations: tally.admitted,
            refusals: tally.refusals(),
            unregistered_use: tally.unregistered_use,
            incidents_opened: tally.opened,
            incidents_acknowledged: tally.acknowledged,
            incidents_resolved: tally.resolved,
            incidents_open: standing.open.len() as u32,
            incidents_open_by_severity: by_severity(&standing.open),
            sensors_enrolled: standing.sensors_enrolled,
            sensors_silent: standing.silent.min(standing.sensors_enrolled),
            compliance: compliance(&standing.open, standing.silent, half_full, standing.store_error.is_some()),
            // Filled in by the store with the head at the moment it queues the summary.
            log_head: LogHead { index: 0, hash: crate::store::GENESIS.to_owned() },
            store_error: standing.store_error,
            ga_code: self.ga_code.clone(),
        }
    }
}

/// What happened during a summary period, counted from the venue's effects.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) admitted: u32,
    pub(crate) refusals: BTreeMap<String, u32>,
    pub(crate) unregistered_use: u32,
    pub(crate) opened: u32,
    pub(crate) acknowledged: u32,
    pub(crate) resolved: u32,
}

impl Tally {
    pub(crate) fn observe(&mut self, entry: &LogEntry) {
        match entry {
            LogEntry::CheckIn(check_in) => match check_in.outcome {
                CheckInOutcome::Admitted => self.admitted += 1,
                CheckInOutcome::Refused => {
                    for reason in &check_in.reasons {
                        *self.refusals.entry(reason.clone()).or_default() += 1;
                    }
                }
            },
            LogEntry::Incident(IncidentEntry { transition, .. }) => match transition {
                IncidentTransition::Opened { incident_kind, .. } => {
                    self.opened += 1;
                    if *incident_kind == IncidentKind::UnregisteredUse {
                        self.unregistered_use += 1;
                    }
                }
                IncidentTransition::Acknowledged { .. } => self.acknowledged += 1,
                IncidentTransition::Resolved { .. } => self.resolved += 1,
            },
            _ => {}
        }
    }

    pub(crate) fn refusals(&self) -> Vec<ReasonCount> {
        self.refusals.iter().map(|(reason, count)| ReasonCount { reason: reason.clone(), count: *count }).collect()
    }
}

/// The compliance level from what is open (see the module's rules).
pub(crate) fn compliance(open: &[(Severity, bool)], silent: u32, outbox_half_full: bool, store_failing: bool) -> Compliance {
    if open.iter().any(|(severity, acknowledged)| *severity == Severity::Critical || !acknowledged) {
        Compliance::Red
    } else if !open.is_empty() || silent > 0 || outbox_half_full || store_failing {
        Compliance::Yellow
    } else {
        Compliance::Green
    }
}

/// Whether `pending` messages fill the outbox half or more: a warning at
/// the desk, yellow at the regulator. One rule for the console and the
/// summary.
pub(crate) fn half_full(pending: u64, outbox_max: u64) -> bool {
    pending.saturating_mul(2) >= outbox_max
}

/// Open incidents by severity.
fn by_severity(open: &[(Severity, bool)]) -> SeverityCounts {
    let count = |wanted| open.iter().filter(|(severity, _)| *severity == wanted).count() as u32;
    SeverityCounts { critical: count(Severity::Critical), warning: count(Severity::Warning), notice: count(Severity::Notice) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(disclosure: Disclosure) -> Feed {
        Feed {
            venue: "venue-1".parse().unwrap(),
            clock: Clock::default(),
            disclosure,
            pseudonym_key: [7; 32],
            outbox_max: 1000,
            ga_code: None,
        }
    }

    fn check_in(outcome: CheckInOutcome, reasons: &[&str]) -> LogEntry {
        LogEntry::CheckIn(CheckIn {
            outcome,
            document_kind: "cn_resident_id".into(),
            number: "11010519491231002X".into(),
            birth_date: jiff::civil::date(1949, 12, 31),
            birth_date_source: netbar_protocol::identity::BirthDateSource::Document,
            age: 76,
            guardian: false,
            ticket: None,
            reasons: reasons.iter().map(|reason| (*reason).to_owned()).collect(),
            until: None,
            name: None,
            student: None,
            by: None,
        })
    }

    /// Builds the outbox message for `effect` as the store would.
    fn built(feed: &Feed, effect: &LogEntry) -> Option<(&'static str, netbar_protocol::Envelope)> {
        let build = feed.outbound(effect, "2026-11-25T10:00:00Z".parse().unwrap())?;
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let (channel, payload) = build(7, Head { index: 3, hash: &b, prev_hash: &a })?;
        Some((channel, netbar_protocol::decode(&payload).unwrap()))
    }

    #[test]
    fn records_disclose_what_the_venue_chose() {
        let admitted = check_in(CheckInOutcome::Admitted, &[]);
        assert!(built(&feed(Disclosure::None), &admitted).is_none(), "no record leaves with disclosure none");
        let (channel, envelope) = built(&feed(Disclosure::Pseudonymised), &admitted).unwrap();
        assert_eq!((channel, envelope.seq), ("record", 7));
        let Message::Record(record) = envelope.message else { panic!("not a record") };
        assert_eq!((record.index, record.prev_hash.as_str(), record.allowed), (3, "a".repeat(64).as_str(), true));
        let Person::Pseudonymised { person_hash, birth_year } = &record.person else { panic!("{:?}", record.person) };
        assert_eq!(*birth_year, 1949);
        assert!(!person_hash.contains("11010519491231002X") && person_hash.len() == 64);
        // The same person hashes alike at this venue, differently under another key.
        let again = built(&feed(Disclosure::Pseudonymised), &admitted).unwrap().1;
        assert!(
            matches!(again.message, Message::Record(RegistrationRecord { person: Person::Pseudonymised { person_hash: ref h, .. }, .. }) if h == person_hash)
        );
        let other = Feed { pseudonym_key: [8; 32], ..feed(Disclosure::Pseudonymised) };
        assert!(
            !matches!(built(&other, &admitted).unwrap().1.message, Message::Record(RegistrationRecord { person: Person::Pseudonymised { person_hash: ref h, .. }, .. }) if h == person_hash)
        );
        let (_, full) = built(&feed(Disclosure::Full), &check_in(CheckInOutcome::Refused, &["under_age"])).unwrap();
        let Message::Record(record) = full.message else { panic!("not a record") };
        assert_eq!((record.allowed, record.reasons.as_slice()), (false, ["under_age".to_owned()].as_slice()));
        assert!(matches!(record.person, Person::Full { ref number, .. } if number == "11010519491231002X"));
    }

    /// The record of a Korean check-in as an earlier release queued it.
    fn queued_korean(feed: &Feed, index: u64) -> Vec<u8> {
        let mut entry = check_in(CheckInOutcome::Admitted, &[]);
        if let LogEntry::CheckIn(check_in) = &mut entry {
            (check_in.document_kind, check_in.number, check_in.name) =
                ("kr_resident_registration".into(), "900101-1234568".into(), Some("김철수".into()));
        }
        let build = feed.outbound(&entry, "2026-11-25T10:00:00Z".parse().unwrap()).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        build(7, Head { index, hash: &b, prev_hash: &a }).unwrap().1
    }

    /// 개인정보 보호법 제24조의2: records waiting in the outbox are cut as the
    /// log is: the new hashes of their entries, the number cut, no name
    /// under a policy that keeps none, the pseudonym made again from the
    /// number as cut; a pseudonym of an entry purged long ago is dropped.
    #[test]
    fn queued_records_are_cut_as_their_entries_were() {
        let kr = netbar_protocol::policy::Registration { keep_number: false, keep_name: false, one_check_in_per_document: false };
        let cut_entry = {
            let LogEntry::CheckIn(mut check_in) = check_in(CheckInOutcome::Admitted, &[]) else { unreachable!() };
            (check_in.document_kind, check_in.number) = ("kr_resident_registration".into(), "900101-1".into());
            check_in
        };
        let rechained = |index: u64| (index == 3).then(|| ("c".repeat(64), "d".repeat(64)));
        let present = |index: u64| (index == 3).then(|| cut_entry.clone());
        let cut = |payload: &[u8], check_in: &dyn Fn(u64) -> Option<CheckIn>| {
            let pending = Pending { payload, rechained: &rechained, check_in, registration: kr };
            cut_queued(pending, Some(&[7; 32])).map(|bytes| netbar_protocol::decode(&bytes).unwrap().message)
        };
        // In full: cut, no name, the new hashes.
        let full = cut(&queued_korean(&feed(Disclosure::Full), 3), &present);
        let Some(Message::Record(record)) = full else { panic!("{full:?}") };
        assert_eq!((record.prev_hash, record.hash), ("c".repeat(64), "d".repeat(64)));
        assert!(
            matches!(record.person, Person::Full { ref number, ref name, .. } if number == "900101-1" && name.is_empty()),
            "{:?}",
            record.person
        );
        // Pseudonymised: the pseudonym of the number as cut.
        let Some(Message::Record(record)) = cut(&queued_korean(&feed(Disclosure::Pseudonymised), 3), &present) else { panic!() };
        assert!(matches!(record.person, Person::Pseudonymised { ref person_hash, .. } if *person_hash == pseudonym(&[7; 32], "900101-1")));
        // Its entry purged: no pseudonym at all.
        let Some(Message::Record(record)) = cut(&queued_korean(&feed(Disclosure::Pseudonymised), 9), &|_| None) else { panic!() };
        assert_eq!(record.person, Person::None);
        // A record already as it may be, of an entry not chained again, stays as it is.
        let mut chinese = Vec::new();
        if let Some(build) =
            feed(Disclosure::Full).outbound(&check_in(CheckInOutcome::Admitted, &[]), "2026-11-25T10:00:00Z".parse().unwrap())
        {
            chinese = build(8, Head { index: 5, hash: &"b".repeat(64), prev_hash: &"a".repeat(64) }).unwrap().1;
        }
        let cn = netbar_protocol::policy::Registration::default();
        assert!(cut_queued(Pending { payload: &chinese, rechained: &rechained, check_in: &|_| None, registration: cn }, None).is_none());
    }

    #[test]
    fn incidents_always_go_up_and_are_tallied() {
        let opened = LogEntry::Incident(IncidentEntry {
            incident: "i-1".into(),
            transition: IncidentTransition::Opened {
                incident_kind: IncidentKind::UnregisteredUse,
                severity: Severity::Warning,
                station: None,
                sensor: None,
                detail: "x".into(),
            },
        });
        let (channel, envelope) = built(&feed(Disclosure::None), &opened).unwrap();
        assert_eq!(channel, "incident");
        assert!(matches!(envelope.message, Message::Incident(IncidentEvent { ref incident_id, .. }) if incident_id == "i-1"));
        let mut tally = Tally::default();
        for effect in [
            &opened,
            &check_in(CheckInOutcome::Admitted, &[]),
            &check_in(CheckInOutcome::Refused, &["under_age", "curfew"]),
            &check_in(CheckInOutcome::Refused, &["under_age"]),
        ] {
            tally.observe(effect);
        }
        assert_eq!((tally.admitted, tally.opened, tally.unregistered_use), (1, 1, 1));
        assert_eq!(
            tally.refusals(),
            [ReasonCount { reason: "curfew".into(), count: 1 }, ReasonCount { reason: "under_age".into(), count: 2 }]
        );
    }

    #[test]
    fn compliance_levels_follow_the_documented_rules() {
        assert_eq!(compliance(&[], 0, false, false), Compliance::Green);
        assert_eq!(compliance(&[], 1, false, false), Compliance::Yellow);
        assert_eq!(compliance(&[], 0, true, false), Compliance::Yellow);
        assert_eq!(compliance(&[], 0, false, true), Compliance::Yellow, "a failing store is never green");
        assert_eq!(compliance(&[(Severity::Warning, true)], 0, false, false), Compliance::Yellow);
        assert_eq!(compliance(&[(Severity::Notice, false)], 0, false, false), Compliance::Red);
        assert_eq!(compliance(&[(Severity::Critical, true)], 0, false, true), Compliance::Red);
        assert_eq!(
            by_severity(&[(Severity::Critical, true), (Severity::Notice, false)]),
            SeverityCounts { critical: 1, warning: 0, notice: 1 }
        );
    }
}
