//! The venue's live state and its rules: pure logic with one owner.
//!
//! [`Venue`] is driven by inputs (a station's message, a check-in at the
//! desk, the clock) and answers with [`Effect`]s: commands to stations and
//! entries for the registration log (incidents among them). It reads no
//! clock and does no I/O, so every rule is tested with a table of instants;
//! the runtime around it applies the effects (and stores log entries before
//! it acknowledges anything).
//!
//! Time-bound decisions are driven by the decision's `until`: [`Venue::next_deadline`]
//! says when the venue next needs the clock, and [`Venue::tick`] acts on what
//! is due. Nothing polls.
//!
//! The venue outlives the process through its log: [`Venue::restore`]
//! rebuilds it at start-up from the entries that keep something open
//! (check-ins, sessions, holds, incidents), and the stations then say what
//! they hold. A station's report (its status when it connects, its
//! telemetry) that disagrees with the venue twice in a row is acted on: the
//! venue's sessions are the truth, the station is brought in line, and an
//! unlocked station without a session is unregistered use.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use netbar_protocol::identity::Document;
use netbar_protocol::messages::*;
use netbar_protocol::policy::{self, Circumstances, Policy};
use netbar_protocol::{Message, StationId};
use serde_json::json;

use crate::journal::{self, CheckOutCause, EndCause, IncidentEntry, LogEntry, Matter, Replayed, StaffAction};

/// What the venue asks the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Send a command to a station.
    Command { station: StationId, action: Action },
    /// Append an entry to the registration log (an incident's transition
    /// is stored, and later forwarded to the regulator).
    Record(LogEntry),
}

/// The thresholds of the safety rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thresholds {
    pub(crate) curfew_warning: SignedDuration,
    pub(crate) exit_grace: SignedDuration,
    pub(crate) station_silent_after: SignedDuration,
    pub(crate) overheat_celsius: f64,
    pub(crate) co_alarm_ppm: f64,
    pub(crate) licensed_stations: u32,
    pub(crate) staff: u32,
    /// A check-in with no session for this long ends (the customer left
    /// without checking out); so does a session at a station not heard
    /// from for this long.
    pub(crate) check_in_expires_after: SignedDuration,
}

/// An incident and its history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Incident {
    pub(crate) id: String,
    pub(crate) kind: IncidentKind,
    pub(crate) severity: Severity,
    pub(crate) station: Option<StationId>,
    pub(crate) sensor: Option<netbar_protocol::SensorId>,
    pub(crate) detail: String,
    pub(crate) opened: Timestamp,
    pub(crate) acknowledged: Option<(String, Timestamp)>,
    pub(crate) resolved: Option<(String, Timestamp, String)>,
}

/// Why an incident transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransitionError {
    #[error("no incident {0}")]
    Unknown(String),
    #[error("incident {0} is resolved already")]
    Resolved(String),
}

/// The outcome of a check-in at the desk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum CheckInOutcome {
    /// Admitted: the ticket to type at a station, valid until `until` if the decision has an end.
    Admitted { ticket: String, until: Option<Timestamp>, age: i32 },
    /// Refused, with reason codes.
    Refused { reasons: Vec<String>, age: Option<i32> },
}

/// What the venue knows of a station.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Station {
    pub(crate) online: bool,
    pub(crate) lock_state: LockState,
    pub(crate) last_seen: Timestamp,
    pub(crate) telemetry: Option<Telemetry>,
    pub(crate) session: Option<Session>,
    /// Why the agent or staff locked it, until the next session starts:
    /// "unregistered", "staff" or "policy".
    pub(crate) held: Option<String>,
    /// Rebuilt at start-up and not heard from since: expected to report
    /// within the silence limit, or it is a finding.
    pub(crate) awaited: bool,
    /// Reports in a row that disagreed with what the venue holds.
    pub(crate) disagreements: u8,
}

impl Station {
    fn new(now: Timestamp, online: bool) -> Station {
        Station {
            online,
            lock_state: LockState::Unknown,
            last_seen: now,
            telemetry: None,
            session: None,
            held: None,
            awaited: false,
            disagreements: 0,
        }
    }
}

/// How full the venue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Occupancy {
    pub(crate) online: u32,
    pub(crate) sessions: u32,
    pub(crate) customers: u32,
}

/// An open session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) ticket: String,
    pub(crate) started: Timestamp,
    /// When the policy decision behind it ends.
    pub(crate) until: Option<Timestamp>,
    pub(crate) warned: bool,
    /// The station said it holds this session (it started it, or reported it).
    pub(crate) confirmed: bool,
}

/// What the desk adds to a document at a check-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AtTheDesk {
    /// The name on the document, when the cashier typed it.
    pub(crate) name: Option<String>,
    /// Who checked the customer in.
    pub(crate) cashier: String,
}

/// An admitted customer.
#[derive(Debug, Clone, PartialEq)]
struct Ticket {
    document: String,
    birth_date: jiff::civil::Date,
    guardian: bool,
    /// What the desk said of school, where the policy asks.
    student: Option<bool>,
    station: Option<StationId>,
    /// Since when the customer has had no session (checked in, or left a station).
    idle_since: Timestamp,
}

/// What a restart rebuilt from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Restored {
    pub(crate) tickets: usize,
    pub(crate) sessions: usize,
    pub(crate) holds: usize,
    pub(crate) incidents_open: usize,
    pub(crate) incidents: usize,
}

/// How many reports in a row must disagree with the venue before it acts:
/// one report may have left the station before a command reached it.
const DISAGREEMENTS_BEFORE_ACTING: u8 = 2;

/// How long an unlock may go unconfirmed by its station before the session
/// is ended rather than sent again (a station whose unlock keeps failing,
/// a customer long gone).
const UNLOCK_CONFIRMED_WITHIN: SignedDuration = SignedDuration::from_mins(2);

/// The venue.
#[derive(Debug)]
pub(crate) struct Venue {
    policy: Policy,
    zone: TimeZone,
    thresholds: Thresholds,
    incidents: BTreeMap<u64, Incident>,
    next_incident: u64,
    /// When each exit door was first seen locked, while it still is.
    exits_locked: BTreeMap<netbar_protocol::SensorId, (StationId, Timestamp, bool)>,
    /// Detectors alarming now (smoke, heat, carbon monoxide).
    alarming: std::collections::BTreeSet<netbar_protocol::SensorId>,
    stations: BTreeMap<StationId, Station>,
    /// Active check-ins by ticket code.
    tickets: HashMap<String, Ticket>,
    /// Ticket codes by normalised document number: one active check-in each.
    by_document: HashMap<String, String>,
    sessions_started: u64,
    /// (when, customers present, sessions open): a sample a minute, for a day.
    history: std::collections::VecDeque<(Timestamp, u32, u32)>,
}

/// Ticket codes: six characters without look-alikes (no 0/O, 1/I/L).
const TICKET_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// The counter at the end of an id made here ("i-1764000000-7" → 7).
fn counter_of(id: &str) -> u64 {
    id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

impl Venue {
    pub(crate) fn new(policy: Policy, zone: TimeZone, thresholds: Thresholds) -> Venue {
        Venue {
            policy,
            zone,
            thresholds,
            incidents: BTreeMap::new(),
            next_incident: 0,
            exits_locked: BTreeMap::new(),
            alarming: std::collections::BTreeSet::new(),
            stations: BTreeMap::new(),
            tickets: HashMap::new(),
            by_document: HashMap::new(),
            sessions_started: 0,
            history: std::collections::VecDeque::new(),
        }
    }

    /// A station as the venue knows it.
    #[cfg(test)]
    pub(crate) fn station(&self, id: &StationId) -> Option<&Station> {
        self.stations.get(id)
    }

    /// Rebuilds the venue from the log at start-up: `entries` in log order,
    /// each with the matters it still keeps open (see
    /// [`LogEntry::liveness`]) or marked as the recent incident history. Stations are rebuilt offline; one with a session is awaited
    /// (a finding if it does not report in time), and each says what it
    /// holds when it reports. Deadlines are derived again from `now` by
    /// [`Venue::next_deadline`]: a curfew that passed while the agent was
    /// down ends its session at the first tick.
    pub(crate) fn restore(&mut self, now: Timestamp, entries: impl IntoIterator<Item = Replayed>) -> Restored {
        for Replayed { at, entry, keeps: matters, recent } in entries {
            let keeps = |matter: &Matter| matters.contains(matter);
            match entry {
                LogEntry::CheckIn(check_in) => {
                    let Some(code) = check_in.ticket.filter(|code| keeps(&Matter::Ticket(code.clone()))) else { continue };
                    if self.policy.registration.one_check_in_per_document {
                        self.by_document.insert(check_in.number.clone(), code.clone());
                    }
                    let ticket = Ticket {
                        document: check_in.number,
                        birth_date: check_in.birth_date,
                        guardian: check_in.guardian,
                        student: check_in.student,
                        station: None,
                        idle_since: at,
                    };
                    self.tickets.insert(code, ticket);
                }
                LogEntry::SessionStart(start) if keeps(&Matter::Session(start.station.clone())) => {
                    self.sessions_started = self.sessions_started.max(counter_of(&start.session));
                    if let Some(ticket) = self.tickets.get_mut(&start.ticket) {
                        ticket.station = Some(start.station.clone());
                    }
                    let station = self.restored_station(start.station, now);
                    station.awaited = true;
                    station.held = None;
                    station.session = Some(Session {
                        id: start.session,
                        ticket: start.ticket,
                        started: start.at,
                        until: start.until,
                        warned: false,
                        confirmed: true,
                    });
                }
                LogEntry::SessionEnd(end) => {
                    if let Some(ticket) = self.tickets.get_mut(&end.ticket).filter(|_| keeps(&Matter::Ticket(end.ticket.clone()))) {
                        ticket.idle_since = ticket.idle_since.max(at);
                    }
                    if keeps(&Matter::Hold(end.station.clone())) {
                        self.restored_station(end.station, now).held = Some(end.reason.code().to_owned());
                    }
                }
                LogEntry::StaffCommand(command) if keeps(&Matter::Hold(command.station.clone())) => {
                    self.restored_station(command.station, now).held = Some("staff".to_owned());
                }
                LogEntry::Incident(IncidentEntry { incident: id, transition }) => match transition {
                    IncidentTransition::Opened { incident_kind, severity, station, sensor, detail } => {
                        if let Some(station) = station.as_ref().filter(|station| keeps(&Matter::Hold((*station).clone()))) {
                            self.restored_station(station.clone(), now).held = Some("unregistered".to_owned());
                        }
                        // Open, or opened within the recent history; not an
                        // entry kept only for the hold it set.
                        if !recent && !keeps(&Matter::Incident(id.clone())) {
                            continue;
                        }
                        self.next_incident = self.next_incident.max(counter_of(&id)) + 1;
                        let incident = Incident {
                            id,
                            kind: incident_kind,
                            severity,
                            station,
                            sensor,
                            detail,
                            opened: at,
                            acknowledged: None,
                            resolved: None,
                        };
                        self.incidents.insert(self.next_incident, incident);
                    }
                    IncidentTransition::Acknowledged { by } => {
                        if let Some(incident) = self.incidents.values_mut().find(|incident| incident.id == id) {
                            incident.acknowledged = Some((by, at));
                        }
                    }
                    IncidentTransition::Resolved { by, note } => {
                        if let Some(incident) = self.incidents.values_mut().find(|incident| incident.id == id) {
                            incident.resolved = Some((by, at, note));
                        }
                    }
                },
                _ => {}
            }
        }
        let sessions = self.stations.values().filter(|station| station.session.is_some()).count();
        Restored {
            tickets: self.tickets.len(),
            sessions,
            holds: self.stations.values().filter(|station| station.held.is_some()).count(),
            incidents_open: self.incidents.values().filter(|incident| incident.resolved.is_none()).count(),
            incidents: self.incidents.len(),
        }
    }

    /// A station rebuilt from the log, offline until it reports.
    fn restored_station(&mut self, id: StationId, now: Timestamp) -> &mut Station {
        self.stations.entry(id).or_insert_with(|| Station::new(now, false))
    }

    /// Checks a customer in. `random` draws the ticket code (the caller owns
    /// the random number generator). What is recorded of the person is what
    /// the policy's registration keeps: under a policy that keeps no numbers
    /// (Korea's), a number the desk let through whole is cut here too.
    pub(crate) fn check_in(
        &mut self,
        now: Timestamp,
        document: &Document,
        circumstances: Circumstances,
        desk: AtTheDesk,
        mut random: impl FnMut() -> u64,
    ) -> (CheckInOutcome, Vec<Effect>) {
        let registration = self.policy.registration;
        let document = registration.kept(document);
        let name = desk.name.filter(|_| registration.keep_name);
        let decision = policy::evaluate(&self.policy, document.birth_date, now, &self.zone, circumstances);
        let mut reasons: Vec<String> = decision.reasons.iter().map(|reason| reason.code().to_owned()).collect();
        if registration.one_check_in_per_document && self.by_document.contains_key(&document.number) {
            reasons.push("already_checked_in".to_owned());
        }
        let record = |outcome, ticket: Option<&str>, reasons: &[String]| {
            Effect::Record(LogEntry::CheckIn(journal::CheckIn {
                outcome,
                document_kind: document.kind.as_str().to_owned(),
                number: document.number.clone(),
                birth_date: document.birth_date,
                birth_date_source: document.birth_date_source,
                age: decision.age,
                guardian: circumstances.guardian,
                ticket: ticket.map(str::to_owned),
                reasons: reasons.to_vec(),
                until: decision.until,
                name: name.clone(),
                student: circumstances.student,
                by: Some(desk.cashier.clone()),
            }))
        };
        if !reasons.is_empty() {
            let effects = vec![record(journal::CheckInOutcome::Refused, None, &reasons)];
            return (CheckInOutcome::Refused { reasons, age: Some(decision.age) }, effects);
        }
        let ticket = loop {
            let mut value = random();
            let code: String = (0..6)
                .map(|_| {
                    let index = (value % TICKET_ALPHABET.len() as u64) as usize;
                    value /= TICKET_ALPHABET.len() as u64;
                    char::from(TICKET_ALPHABET[index])
                })
                .collect();
            if !self.tickets.contains_key(&code) {
                break code;
            }
        };
        self.tickets.insert(
            ticket.clone(),
            Ticket {
                document: document.number.clone(),
                birth_date: document.birth_date,
                guardian: circumstances.guardian,
                student: circumstances.student,
                station: None,
                idle_since: now,
            },
        );
        if registration.one_check_in_per_document {
            self.by_document.insert(document.number.clone(), ticket.clone());
        }
        let effects = vec![record(journal::CheckInOutcome::Admitted, Some(&ticket), &[])];
        (CheckInOutcome::Admitted { ticket, until: decision.until, age: decision.age }, effects)
    }

    /// Opens an incident unless one of the same kind for the same place is
    /// still open.
    fn open_incident(
        &mut self,
        now: Timestamp,
        kind: IncidentKind,
        severity: Severity,
        station: Option<&StationId>,
        sensor: Option<&netbar_protocol::SensorId>,
        detail: String,
    ) -> Vec<Effect> {
        let open = self.incidents.values().any(|incident| {
            incident.resolved.is_none()
                && incident.kind == kind
                && incident.station.as_ref() == station
                && incident.sensor.as_ref() == sensor
        });
        if open {
            return Vec::new();
        }
        self.next_incident += 1;
        let id = format!("i-{}-{}", now.as_second(), self.next_incident);
        let incident = Incident {
            id: id.clone(),
            kind,
            severity,
            station: station.cloned(),
            sensor: sensor.cloned(),
            detail: detail.clone(),
            opened: now,
            acknowledged: None,
            resolved: None,
        };
        self.incidents.insert(self.next_incident, incident);
        vec![Effect::Record(LogEntry::Incident(IncidentEntry {
            incident: id,
            transition: IncidentTransition::Opened {
                incident_kind: kind,
                severity,
                station: station.cloned(),
                sensor: sensor.cloned(),
                detail,
            },
        }))]
    }

    /// Entries that were committed are missing from the registration log's
    /// file: a critical incident, until staff resolve it.
    pub(crate) fn records_tampered(&mut self, now: Timestamp, detail: String) -> Vec<Effect> {
        self.open_incident(now, IncidentKind::RecordsTampered, Severity::Critical, None, None, detail)
    }

    /// The incidents, newest first.
    pub(crate) fn incidents(&self) -> Vec<&Incident> {
        self.incidents.values().rev().collect()
    }

    /// Stations online, sessions open and customers checked in, now.
    pub(crate) fn occupancy(&self) -> Occupancy {
        Occupancy {
            online: self.stations.values().filter(|station| station.online).count() as u32,
            sessions: self.stations.values().filter(|station| station.session.is_some()).count() as u32,
            customers: self.tickets.len() as u32,
        }
    }

    /// Keeps one point of the occupancy history (the console's chart);
    /// points older than a day go.
    pub(crate) fn sample_occupancy(&mut self, now: Timestamp) {
        let occupancy = self.occupancy();
        self.history.push_back((now, occupancy.customers, occupancy.sessions));
        while self.history.front().is_some_and(|(at, ..)| now.duration_since(*at) > SignedDuration::from_hours(24)) {
            self.history.pop_front();
        }
    }

    /// The occupancy history through the last day, ending with `now`:
    /// (when, customers present, sessions open).
    pub(crate) fn occupancy_history(&self, now: Timestamp) -> Vec<(Timestamp, u32, u32)> {
        let occupancy = self.occupancy();
        self.history.iter().copied().chain([(now, occupancy.customers, occupancy.sessions)]).collect()
    }

    /// What a summary's compliance level is worked out from: the open
    /// incidents' severities (and whether each was acknowledged), and the
    /// sensors silent now.
    pub(crate) fn compliance_inputs(&self) -> (Vec<(netbar_protocol::messages::Severity, bool)>, u32) {
        let open = self.incidents.values().filter(|incident| incident.resolved.is_none());
        let severities = open.clone().map(|incident| (incident.severity, incident.acknowledged.is_some())).collect();
        let silent = open.filter(|incident| incident.kind == IncidentKind::SensorFault).count() as u32;
        (severities, silent)
    }

    /// One incident, by its id.
    pub(crate) fn incident(&self, id: &str) -> Option<&Incident> {
        self.incidents.values().find(|incident| incident.id == id)
    }

    /// Puts an incident back as it was before a transition whose log entry
    /// could not be committed.
    pub(crate) fn restore_incident(&mut self, before: Incident) {
        if let Some(incident) = self.incidents.values_mut().find(|incident| incident.id == before.id) {
            *incident = before;
        }
    }

    /// Staff acknowledges or resolves an incident.
    pub(crate) fn transition(
        &mut self,
        now: Timestamp,
        id: &str,
        by: &str,
        resolve: Option<String>,
    ) -> Result<Vec<Effect>, TransitionError> {
        let incident =
            self.incidents.values_mut().find(|incident| incident.id == id).ok_or_else(|| TransitionError::Unknown(id.to_owned()))?;
        if incident.resolved.is_some() {
            return Err(TransitionError::Resolved(id.to_owned()));
        }
        let transition = match resolve {
            None => {
                incident.acknowledged = Some((by.to_owned(), now));
                IncidentTransition::Acknowledged { by: by.to_owned() }
            }
            Some(note) => {
                incident.resolved = Some((by.to_owned(), now, note.clone()));
                IncidentTransition::Resolved { by: by.to_owned(), note }
            }
        };
        let resolved_evacuation = matches!(transition, IncidentTransition::Resolved { .. }) && incident.kind.evacuates();
        let mut effects = vec![Effect::Record(LogEntry::Incident(IncidentEntry { incident: id.to_owned(), transition }))];
        // The last fire or gas incident resolved: the notices come down.
        if resolved_evacuation && self.evacuating().is_none() {
            let online: Vec<StationId> = self.stations.iter().filter(|(_, station)| station.online).map(|(id, _)| id.clone()).collect();
            effects.extend(online.into_iter().map(|station| Effect::Command { station, action: Action::AllClear }));
        }
        Ok(effects)
    }

    /// An evacuation notice for `incident` to every station that is online.
    fn evacuate(&self, incident: &str) -> Vec<Effect> {
        let online: Vec<&StationId> = self.stations.iter().filter(|(_, station)| station.online).map(|(id, _)| id).collect();
        online.into_iter().map(|station| evacuation_notice(station, incident)).collect()
    }

    /// The open fire or gas incident stations must be evacuated for, if any.
    fn evacuating(&self) -> Option<&Incident> {
        self.incidents.values().find(|incident| incident.resolved.is_none() && incident.kind.evacuates())
    }

    /// What a station that (re)appears must be told: the evacuation notice
    /// while one is on (it may have restarted and lost it), else that all
    /// is clear (it may have been away when the incident was resolved).
    fn evacuation_state(&self, station: &StationId) -> Effect {
        match self.evacuating() {
            Some(incident) => evacuation_notice(station, &incident.id),
            None => Effect::Command { station: station.clone(), action: Action::AllClear },
        }
    }

    fn on_sensor(&mut self, now: Timestamp, station: &StationId, reading: &SensorReading) -> Vec<Effect> {
        let sensor = Some(&reading.sensor);
        let mut effects = Vec::new();
        if reading.tamper {
            let detail = format!("sensor {} reports its casing opened or removed", reading.sensor);
            effects.extend(self.open_incident(now, IncidentKind::SensorFault, Severity::Warning, Some(station), sensor, detail));
        }
        let (kind, detail) = match (&reading.reading, reading.sensor_kind) {
            (Reading::Alarm { active: true }, SensorKind::Smoke | SensorKind::Heat) => {
                (IncidentKind::Fire, format!("{:?} detector {} alarms", reading.sensor_kind, reading.sensor))
            }
            (Reading::Alarm { active: true }, SensorKind::CarbonMonoxide) => {
                (IncidentKind::CarbonMonoxide, format!("carbon monoxide detector {} alarms", reading.sensor))
            }
            (Reading::Ppm { value }, SensorKind::CarbonMonoxide) if *value >= self.thresholds.co_alarm_ppm => {
                (IncidentKind::CarbonMonoxide, format!("carbon monoxide at {value} ppm at {}", reading.sensor))
            }
            (Reading::Celsius { value }, SensorKind::Heat) if *value >= self.thresholds.overheat_celsius => {
                (IncidentKind::Fire, format!("heat detector {} reads {value} °C", reading.sensor))
            }
            (Reading::Door { locked, .. }, SensorKind::Door) => {
                if *locked {
                    self.exits_locked.entry(reading.sensor.clone()).or_insert((station.clone(), now, false));
                } else {
                    self.exits_locked.remove(&reading.sensor);
                }
                return effects;
            }
            (Reading::Persons { value }, SensorKind::PeopleCounter) => {
                let allowed = self.tickets.len() as u64 + u64::from(self.thresholds.staff);
                if u64::from(*value) > allowed {
                    let detail = format!(
                        "{value} people counted at the door, {} checked in plus {} staff",
                        self.tickets.len(),
                        self.thresholds.staff
                    );
                    effects.extend(self.open_incident(now, IncidentKind::Overcrowded, Severity::Warning, Some(station), sensor, detail));
                }
                return effects;
            }
            (Reading::Silent { since }, _) => {
                let detail =
                    format!("sensor {} silent since {}: a safety measure is switched off", reading.sensor, at_venue(&self.zone, *since));
                effects.extend(self.open_incident(now, IncidentKind::SensorFault, Severity::Warning, Some(station), sensor, detail));
                return effects;
            }
            _ => {
                // A detector's all-clear: its next alarm is a new onset.
                self.alarming.remove(&reading.sensor);
                return effects;
            }
        };
        effects.extend(self.open_incident(now, kind, Severity::Critical, Some(station), sensor, detail));
        // Every onset of an alarm evacuates, even while an earlier incident
        // of that detector is still open (acknowledged, not yet resolved):
        // a standing alarm repeated does not.
        if self.alarming.insert(reading.sensor.clone())
            && let Some(incident) = self.evacuating().map(|incident| incident.id.clone())
        {
            effects.extend(self.evacuate(&incident));
        }
        effects
    }

    /// Takes back an admission whose log entry could not be stored: the
    /// customer was never told, so the ticket never existed.
    pub(crate) fn cancel_check_in(&mut self, ticket: &str) {
        if let Some(entry) = self.tickets.remove(ticket) {
            self.by_document.remove(&entry.document);
        }
    }

    /// The stations as the console shows them.
    pub(crate) fn stations_json(&self) -> serde_json::Value {
        let stations: Vec<serde_json::Value> = self
            .stations
            .iter()
            .map(|(id, station)| {
                json!({
                    "id": id.as_str(),
                    "online": station.online,
                    "lock_state": station.lock_state,
                    "last_seen": station.last_seen,
                    "session": station.session.as_ref().map(|s| json!({ "id": s.id, "ticket": s.ticket, "started": s.started, "until": s.until })),
                    "held": station.held,
                    "cpu_percent": station.telemetry.as_ref().map(|t| t.cpu_percent),
                })
            })
            .collect();
        json!({ "stations": stations })
    }

    /// The open sessions as the console shows them.
    pub(crate) fn sessions_json(&self) -> serde_json::Value {
        let sessions: Vec<serde_json::Value> = self
            .stations
            .iter()
            .filter_map(|(id, station)| station.session.as_ref().map(|s| (id, s)))
            .map(|(id, s)| json!({ "station": id.as_str(), "id": s.id, "ticket": s.ticket, "started": s.started, "until": s.until }))
            .collect();
        json!({ "sessions": sessions })
    }

    /// A command from staff to a known station; a lock ends its session.
    pub(crate) fn staff_command(&mut self, now: Timestamp, station: &StationId, action: Action, by: &str) -> Option<Vec<Effect>> {
        if !self.stations.contains_key(station) {
            return None;
        }
        let (kind, text) = match &action {
            Action::Lock { .. } => (Some(StaffAction::Lock), None),
            Action::Notify { text, .. } => (Some(StaffAction::Notify), Some(text.clone())),
            _ => (None, None),
        };
        let mut effects = match action {
            Action::Lock { .. } => self.end_session(now, station, EndCause::Staff),
            other => vec![Effect::Command { station: station.clone(), action: other }],
        };
        effects.push(Effect::Record(LogEntry::StaffCommand(journal::StaffCommand {
            station: station.clone(),
            action: kind,
            by: by.to_owned(),
            at: now,
            ticket: None,
            text,
        })));
        Some(effects)
    }

    /// Ends a check-in: the ticket stops working and an open session on it ends.
    pub(crate) fn check_out(&mut self, now: Timestamp, ticket: &str) -> Option<Vec<Effect>> {
        let station = self.tickets.get(ticket)?.station.clone();
        // The session ends first, then the check-in: the check-out is the
        // last word on the ticket.
        let mut effects = match station {
            Some(station) => self.end_session(now, &station, EndCause::CheckedOut),
            None => Vec::new(),
        };
        let entry = self.tickets.remove(ticket)?;
        self.by_document.remove(&entry.document);
        effects.push(Effect::Record(LogEntry::CheckOut(journal::CheckOut { ticket: ticket.to_owned(), reason: None })));
        Some(effects)
    }

    /// Staff at the desk opens a station for a checked-in customer's
    /// ticket, as if it had been typed at the station. `None` for an
    /// unknown station; the refusal's message when the ticket may not be used.
    pub(crate) fn open_for(&mut self, now: Timestamp, station: &StationId, ticket: &str, by: &str) -> Option<Result<Vec<Effect>, String>> {
        if !self.stations.contains_key(station) {
            return None;
        }
        let request = LoginRequest { request_id: format!("desk-{}", now.as_millisecond()), ticket: ticket.to_owned() };
        let mut effects = self.login(now, station, &request);
        if let Some(Effect::Command { action: Action::RefuseLogin { message, .. }, .. }) = effects.first() {
            return Some(Err(message.clone()));
        }
        effects.push(Effect::Record(LogEntry::StaffCommand(journal::StaffCommand {
            station: station.clone(),
            action: Some(StaffAction::Open),
            by: by.to_owned(),
            at: now,
            ticket: Some(request.ticket),
            text: None,
        })));
        Some(Ok(effects))
    }

    /// Every station as the console's floor map shows it: free, in session,
    /// locked (held by staff or the rules), offline or alarm (an incident at
    /// it of warning severity or above, not yet acknowledged; a critical one
    /// until resolved).
    pub(crate) fn floor(&self) -> Vec<serde_json::Value> {
        self.stations
            .iter()
            .map(|(id, station)| {
                // An alarm until staff acknowledged it; a critical one until it is resolved.
                let alarm = self.incidents.values().find(|incident| {
                    incident.resolved.is_none()
                        && incident.station.as_ref() == Some(id)
                        && incident.severity >= Severity::Warning
                        && (incident.acknowledged.is_none() || incident.severity == Severity::Critical)
                });
                let state = match (alarm, station.online, &station.session, &station.held) {
                    (Some(_), ..) => "alarm",
                    (None, false, ..) => "offline",
                    (None, true, Some(_), _) => "in_session",
                    (None, true, None, Some(_)) => "locked",
                    (None, true, None, None) => "free",
                };
                json!({
                    "id": id.as_str(),
                    "state": state,
                    "held": station.held,
                    "alarm": alarm.map(|incident| &incident.detail),
                    "session": station.session.as_ref().map(|s| json!({ "ticket": s.ticket, "started": s.started, "until": s.until })),
                    "cpu_percent": station.telemetry.as_ref().map(|t| t.cpu_percent),
                })
            })
            .collect()
    }

    /// Locks a station and ends its session for `cause`.
    fn end_session(&mut self, now: Timestamp, station: &StationId, cause: EndCause) -> Vec<Effect> {
        let mut effects = vec![Effect::Command { station: station.clone(), action: Action::Lock { reason: cause.code().to_owned() } }];
        effects.extend(self.close_session(now, station, cause));
        effects
    }

    /// Ends a station's session for `cause` without locking it (the station
    /// locked itself, unlocks for another session, or is gone).
    fn close_session(&mut self, now: Timestamp, station: &StationId, cause: EndCause) -> Vec<Effect> {
        if cause.holds()
            && let Some(entry) = self.stations.get_mut(station)
        {
            entry.held = Some(cause.code().to_owned());
        }
        let mut effects = Vec::new();
        if let Some(session) = self.stations.get_mut(station).and_then(|s| s.session.take()) {
            effects.push(Effect::Record(LogEntry::SessionEnd(journal::SessionEnd {
                session: session.id,
                station: station.clone(),
                ticket: session.ticket.clone(),
                reason: cause,
                at: now,
            })));
            if let Some(ticket) = self.tickets.get_mut(&session.ticket) {
                ticket.station = None;
                ticket.idle_since = now;
            }
        }
        effects
    }

    /// A station in use that nobody registered: held, locked, and an
    /// incident unless one is open for it.
    fn unregistered(&mut self, now: Timestamp, station: &StationId, detail: String) -> Vec<Effect> {
        if let Some(entry) = self.stations.get_mut(station) {
            entry.held = Some("unregistered".into());
        }
        let mut effects = vec![Effect::Command { station: station.clone(), action: Action::Lock { reason: "unregistered".into() } }];
        effects.extend(self.open_incident(now, IncidentKind::UnregisteredUse, Severity::Warning, Some(station), None, detail));
        effects
    }

    /// A station's report of its lock state and the session it holds (its
    /// status on connecting, its telemetry), compared with what the venue
    /// holds. Twice in a row in disagreement, the venue acts: a session it
    /// holds and the station confirmed before is ended (the station lost
    /// it); one the station never confirmed is sent again; a session the
    /// venue does not hold is locked; an unlocked station without a session
    /// is unregistered use.
    fn reconcile(&mut self, now: Timestamp, station: &StationId, lock_state: LockState, reported: Option<&str>) -> Vec<Effect> {
        let Some(entry) = self.stations.get_mut(station) else { return Vec::new() };
        let held = entry.session.as_ref().map(|session| session.id.as_str());
        let agrees = reported == held && !(held.is_none() && lock_state == LockState::Unlocked);
        if agrees {
            entry.disagreements = 0;
            if let Some(session) = entry.session.as_mut() {
                session.confirmed = true;
            }
            return Vec::new();
        }
        entry.disagreements = entry.disagreements.saturating_add(1);
        if entry.disagreements < DISAGREEMENTS_BEFORE_ACTING {
            return Vec::new();
        }
        entry.disagreements = 0;
        match (entry.session.clone(), reported) {
            // Never confirmed and not yet long: the unlock may have been lost.
            (Some(session), _) if !session.confirmed && now.duration_since(session.started) < UNLOCK_CONFIRMED_WITHIN => {
                vec![Effect::Command {
                    station: station.clone(),
                    action: Action::Unlock { session_id: session.id, request_id: None, until: session.until },
                }]
            }
            // The station does not hold it (and locks whatever it holds instead).
            (Some(_), _) => self.end_session(now, station, EndCause::NotAtStation),
            (None, Some(_)) => vec![Effect::Command { station: station.clone(), action: Action::Lock { reason: "session_ended".into() } }],
            (None, None) => self.unregistered(now, station, format!("station {station} is unlocked without a registered session")),
        }
    }

    /// A message from a station (already authenticated and checked to come
    /// from `station`).
    pub(crate) fn on_message(&mut self, now: Timestamp, station: &StationId, message: &Message) -> Vec<Effect> {
        let was_online = self.stations.get(station).is_some_and(|entry| entry.online);
        let entry = self.stations.entry(station.clone()).or_insert_with(|| Station::new(now, true));
        entry.last_seen = now;
        entry.awaited = false;
        match message {
            Message::StationStatus(status) => {
                let appeared = status.online && !was_online;
                entry.online = status.online;
                if !status.online {
                    return Vec::new();
                }
                entry.lock_state = status.lock_state;
                let mut effects = self.reconcile(now, station, status.lock_state, status.session.as_deref());
                if appeared {
                    effects.push(self.evacuation_state(station));
                }
                effects
            }
            Message::Telemetry(telemetry) => {
                entry.online = true;
                entry.lock_state = telemetry.lock_state;
                entry.telemetry = Some(telemetry.clone());
                let mut effects = self.reconcile(now, station, telemetry.lock_state, telemetry.session.as_deref());
                let hottest = telemetry.temperatures.iter().map(|t| t.celsius).fold(f64::NEG_INFINITY, f64::max);
                if hottest >= self.thresholds.overheat_celsius {
                    let detail = format!("station {station} at {hottest} °C");
                    effects.extend(self.open_incident(now, IncidentKind::SensorFault, Severity::Notice, Some(station), None, detail));
                }
                effects
            }
            Message::SensorReading(reading) => {
                let reading = reading.clone();
                self.on_sensor(now, station, &reading)
            }
            Message::CommandAck(ack) => {
                entry.lock_state = ack.lock_state;
                Vec::new()
            }
            Message::LoginRequest(request) => self.login(now, station, request),
            Message::SessionEvent(SessionEvent::Ended { session_id, reason }) => {
                let ended = entry.session.as_ref().is_some_and(|session| session.id == *session_id);
                if ended {
                    // The station locked itself already; no second lock.
                    return self.close_session(now, station, EndCause::from(*reason));
                }
                Vec::new()
            }
            Message::SessionEvent(SessionEvent::Started { session_id }) => {
                if let Some(session) = entry.session.as_mut().filter(|session| session.id == *session_id) {
                    session.confirmed = true;
                }
                Vec::new()
            }
            Message::Tamper(tamper) => {
                let detail = match tamper.what {
                    TamperKind::LockScreenStopped => format!("the lock screen at station {station} was stopped: {}", tamper.detail),
                    TamperKind::LockScreenHung => format!("the lock screen at station {station} stopped answering: {}", tamper.detail),
                };
                self.open_incident(now, IncidentKind::LockScreenTampered, Severity::Warning, Some(station), None, detail)
            }
            Message::Activity(activity) if entry.session.is_none() => {
                let detail = format!("station {station} in use without a registration ({:?})", activity.evidence);
                self.unregistered(now, station, detail)
            }
            _ => Vec::new(),
        }
    }

    fn login(&mut self, now: Timestamp, station: &StationId, request: &LoginRequest) -> Vec<Effect> {
        // The codes and facts go with the English message: the lock screen
        // words them in the customer's language.
        let refuse = |reasons: Vec<&str>, message: String, elsewhere: Option<StationId>, allowed_from: Option<Timestamp>| {
            vec![Effect::Command {
                station: station.clone(),
                action: Action::RefuseLogin {
                    request_id: request.request_id.clone(),
                    reasons: reasons.into_iter().map(str::to_owned).collect(),
                    message,
                    station: elsewhere,
                    allowed_from,
                },
            }]
        };
        let code = request.ticket.trim().to_ascii_uppercase();
        let Some(ticket) = self.tickets.get(&code) else {
            return refuse(vec!["unknown_ticket"], "This ticket is not valid. Please ask at the front desk.".into(), None, None);
        };
        if let Some(other) = ticket.station.as_ref().filter(|other| *other != station) {
            let message = format!("This ticket is in use at station {other}.");
            return refuse(vec!["ticket_in_use"], message, Some(other.clone()), None);
        }
        let decision = policy::evaluate(
            &self.policy,
            ticket.birth_date,
            now,
            &self.zone,
            Circumstances { guardian: ticket.guardian, student: ticket.student },
        );
        if !decision.allowed {
            let reasons: Vec<&str> = decision.reasons.iter().map(|reason| reason.code()).collect();
            let message = "Access is not allowed at this time. Please ask at the front desk.".into();
            return refuse(reasons, message, None, decision.until);
        }
        // The same ticket again at the station that holds its session (a
        // login sent again after a restart, say): the same session, not a
        // second one.
        if let Some(session) = self.stations.get(station).and_then(|entry| entry.session.as_ref()).filter(|session| session.ticket == code)
        {
            return vec![Effect::Command {
                station: station.clone(),
                action: Action::Unlock {
                    session_id: session.id.clone(),
                    request_id: Some(request.request_id.clone()),
                    until: session.until,
                },
            }];
        }
        self.sessions_started += 1;
        let session_id = format!("s-{}-{}", now.as_second(), self.sessions_started);
        if let Some(ticket) = self.tickets.get_mut(&code) {
            ticket.station = Some(station.clone());
        }
        let mut effects = Vec::new();
        if self.stations.get(station).is_some_and(|entry| entry.session.is_some()) {
            // Another ticket's session at this station ends first (the
            // station ends it too when it unlocks for the new one).
            effects.extend(self.close_session(now, station, EndCause::Staff));
        }
        if let Some(entry) = self.stations.get_mut(station) {
            entry.session = Some(Session {
                id: session_id.clone(),
                ticket: code.clone(),
                started: now,
                until: decision.until,
                warned: false,
                confirmed: false,
            });
            entry.held = None;
            entry.disagreements = 0;
        }
        let open_sessions = self.stations.values().filter(|s| s.session.is_some()).count() as u64;
        if open_sessions > u64::from(self.thresholds.licensed_stations) {
            let detail = format!("{open_sessions} sessions open, the venue is licensed for {}", self.thresholds.licensed_stations);
            effects.extend(self.open_incident(now, IncidentKind::Overcrowded, Severity::Warning, None, None, detail));
        }
        effects.extend([
            Effect::Command {
                station: station.clone(),
                action: Action::Unlock {
                    session_id: session_id.clone(),
                    request_id: Some(request.request_id.clone()),
                    until: decision.until,
                },
            },
            Effect::Record(LogEntry::SessionStart(journal::SessionStart {
                session: session_id,
                station: station.clone(),
                ticket: code,
                until: decision.until,
                at: now,
            })),
        ]);
        effects
    }

    /// When the venue next needs the clock: a curfew warning or a session's
    /// end, an exit locked beyond its grace, a station gone silent (or not
    /// heard from since a restart).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        let sessions = self.stations.values().filter_map(|station| station.session.as_ref()).filter_map(|session| {
            let until = session.until?;
            Some(if session.warned { until } else { until - self.thresholds.curfew_warning })
        });
        let exits =
            self.exits_locked.values().filter(|(_, _, reported)| !reported).map(|(_, since, _)| *since + self.thresholds.exit_grace);
        let silence = self
            .stations
            .values()
            .filter(|station| station.online || station.awaited)
            .map(|station| station.last_seen + self.thresholds.station_silent_after);
        let expiry = self.thresholds.check_in_expires_after;
        let idle = self.tickets.values().filter(|ticket| ticket.station.is_none()).map(|ticket| ticket.idle_since + expiry);
        let unheard =
            self.stations.values().filter(|station| !station.online && station.session.is_some()).map(|station| station.last_seen + expiry);
        sessions.chain(exits).chain(silence).chain(idle).chain(unheard).min()
    }

    /// Whether the venue is open at `now` (always, unless the policy enforces business hours).
    fn open_at(&self, now: Timestamp) -> bool {
        policy::open(&self.policy, now, &self.zone)
    }

    /// Acts on the safety deadlines due at `now`.
    fn safety_tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        let open = self.open_at(now);
        let due: Vec<_> = self
            .exits_locked
            .iter()
            .filter(|(_, (_, since, reported))| !reported && now >= *since + self.thresholds.exit_grace)
            .map(|(sensor, (station, since, _))| (sensor.clone(), station.clone(), *since))
            .collect();
        for (sensor, station, since) in due {
            if let Some(entry) = self.exits_locked.get_mut(&sensor) {
                entry.2 = true;
            }
            if open {
                let detail = format!("emergency exit {sensor} locked since {} while the venue is open", at_venue(&self.zone, since));
                effects.extend(self.open_incident(
                    now,
                    IncidentKind::ExitBlocked,
                    Severity::Critical,
                    Some(&station),
                    Some(&sensor),
                    detail,
                ));
            }
        }
        let silent: Vec<StationId> = self
            .stations
            .iter()
            .filter(|(_, station)| (station.online || station.awaited) && now >= station.last_seen + self.thresholds.station_silent_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            let Some(station) = self.stations.get_mut(&id) else { continue };
            let detail = if station.awaited {
                format!(
                    "the collector of station {id} has not reported since the agent restarted at {}",
                    at_venue(&self.zone, station.last_seen)
                )
            } else {
                format!(
                    "the collector of station {id} is silent since {}: a safety measure is switched off",
                    at_venue(&self.zone, station.last_seen)
                )
            };
            station.online = false;
            station.awaited = false;
            effects.extend(self.open_incident(now, IncidentKind::SensorFault, Severity::Warning, Some(&id), None, detail));
        }
        effects
    }

    /// Acts on what is due at `now`: warnings before a window closes, and
    /// sessions whose decision has ended.
    pub(crate) fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut effects = self.safety_tick(now);
        let mut ending = Vec::new();
        for (id, station) in &mut self.stations {
            let Some(session) = station.session.as_mut() else { continue };
            let Some(until) = session.until else { continue };
            if now >= until {
                ending.push(id.clone());
            } else if !session.warned && now >= until - self.thresholds.curfew_warning {
                session.warned = true;
                let minutes = (until.duration_since(now).as_secs() + 59) / 60;
                effects.push(Effect::Command {
                    station: id.clone(),
                    action: Action::Notify {
                        level: NoticeLevel::Warning,
                        text: format!("Your session ends in {minutes} minute(s) under the venue's rules. Please save your work."),
                        ends: Some(until),
                        incident: None,
                    },
                });
            }
        }
        for station in ending {
            effects.extend(self.end_session(now, &station, EndCause::Policy));
        }
        effects.extend(self.expire(now));
        effects
    }

    /// Ends what nobody will end any more: sessions at stations not heard
    /// from for `check_in_expires_after` (gone with their PC), then
    /// check-ins with no session for as long (the customer left without
    /// checking out), each with its reason recorded.
    fn expire(&mut self, now: Timestamp) -> Vec<Effect> {
        let expiry = self.thresholds.check_in_expires_after;
        let mut effects = Vec::new();
        let unheard: Vec<StationId> = self
            .stations
            .iter()
            .filter(|(_, station)| !station.online && station.session.is_some() && now >= station.last_seen + expiry)
            .map(|(id, _)| id.clone())
            .collect();
        for station in unheard {
            effects.extend(self.close_session(now, &station, EndCause::NotAtStation));
        }
        let expired: Vec<String> = self
            .tickets
            .iter()
            .filter(|(_, ticket)| ticket.station.is_none() && now >= ticket.idle_since + expiry)
            .map(|(code, _)| code.clone())
            .collect();
        for code in expired {
            if let Some(ticket) = self.tickets.remove(&code) {
                self.by_document.remove(&ticket.document);
            }
            effects.push(Effect::Record(LogEntry::CheckOut(journal::CheckOut { ticket: code, reason: Some(CheckOutCause::Expired) })));
        }
        effects
    }
}

/// An instant as the venue's clock reads it, with its offset
/// (2026-11-20T18:00:00+08:00): what an incident's words say, since the
/// console, the log and the law read the venue's time.
fn at_venue(zone: &TimeZone, at: Timestamp) -> String {
    at.display_with_offset(zone.to_offset(at)).to_string()
}

/// The evacuation notice for `incident` at `station`.
fn evacuation_notice(station: &StationId, incident: &str) -> Effect {
    Effect::Command {
        station: station.clone(),
        action: Action::Notify {
            level: NoticeLevel::Evacuation,
            text: "EMERGENCY: leave the building now by the nearest exit. Follow staff instructions.".into(),
            ends: None,
            incident: Some(incident.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use netbar_protocol::identity::{BirthDateSource, DocumentKind, Sex};

    use super::*;

    fn document(number: &str, birth: jiff::civil::Date) -> Document {
        Document {
            kind: DocumentKind::KrResidentRegistration,
            number: number.to_owned(),
            birth_date: birth,
            sex: Sex::Male,
            birth_date_source: BirthDateSource::Document,
            converted_from_legacy: false,
            check_digit_matches: Some(true),
            permanent_residence: None,
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            curfew_warning: SignedDuration::from_mins(10),
            exit_grace: SignedDuration::from_secs(60),
            // Long, so that the rules under test own the timer; the silence
            // test sets its own.
            station_silent_after: SignedDuration::from_hours(3),
            overheat_celsius: 95.0,
            co_alarm_ppm: 50.0,
            licensed_stations: 2,
            staff: 1,
            check_in_expires_after: SignedDuration::from_hours(12),
        }
    }

    fn venue(preset: &str, zone: &str) -> Venue {
        Venue::new(Policy::preset(preset).unwrap(), TimeZone::get(zone).unwrap(), thresholds())
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn st(id: &str) -> StationId {
        id.parse().unwrap()
    }

    fn login(venue: &mut Venue, now: Timestamp, station: &str, ticket: &str) -> Vec<Effect> {
        venue.on_message(now, &st(station), &Message::LoginRequest(LoginRequest { request_id: "r-1".into(), ticket: ticket.into() }))
    }

    fn ticket_of(outcome: &CheckInOutcome) -> String {
        match outcome {
            CheckInOutcome::Admitted { ticket, .. } => ticket.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_in_login_session_and_check_out() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        let (outcome, effects) =
            venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 12345);
        let ticket = ticket_of(&outcome);
        assert_eq!(ticket.len(), 6);
        assert!(matches!(&effects[..], [Effect::Record(LogEntry::CheckIn(record))] if record.outcome == journal::CheckInOutcome::Admitted));
        // One document, one active check-in.
        let (again, _) = venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 999);
        assert_eq!(again, CheckInOutcome::Refused { reasons: vec!["already_checked_in".into()], age: Some(36) });

        let effects = login(&mut venue, now, "st-1", &ticket.to_lowercase());
        assert!(matches!(&effects[0], Effect::Command { action: Action::Unlock { until: None, .. }, .. }), "{effects:?}");
        assert!(matches!(&effects[1], Effect::Record(LogEntry::SessionStart(_))));
        assert!(venue.station(&st("st-1")).unwrap().session.is_some());
        // The same ticket at another station is refused.
        let other = login(&mut venue, now, "st-2", &ticket);
        assert!(
            matches!(&other[0], Effect::Command { action: Action::RefuseLogin { reasons, station: Some(at), message, .. }, .. }
                if reasons == &["ticket_in_use"] && at.as_str() == "st-1" && message.contains("station st-1")),
            "{other:?}"
        );
        // An unknown ticket too.
        let unknown = login(&mut venue, now, "st-2", "ZZZZZZ");
        assert!(
            matches!(&unknown[0], Effect::Command { action: Action::RefuseLogin { reasons, .. }, .. } if reasons == &["unknown_ticket"])
        );

        let effects = venue.check_out(now, &ticket).unwrap();
        assert!(effects.iter().any(|e| matches!(e, Effect::Command { action: Action::Lock { .. }, .. })));
        assert!(effects.iter().any(|e| matches!(e, Effect::Record(LogEntry::SessionEnd(_)))));
        assert!(venue.station(&st("st-1")).unwrap().session.is_none());
        assert!(matches!(login(&mut venue, now, "st-1", &ticket)[0], Effect::Command { action: Action::RefuseLogin { .. }, .. }));
    }

    fn recorded_check_in(effects: &[Effect]) -> journal::CheckIn {
        match effects {
            [Effect::Record(LogEntry::CheckIn(record))] => record.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// 개인정보 보호법 제24조의2 (no resident registration number), 제24조 and
    /// 제16조 (no other identifier, the least data): under `kr` a whole number
    /// that reaches the venue is cut to YYMMDD-G, no name is kept, and the
    /// cashier is; without numbers no one-document rule can hold, so two
    /// people born the same day are both admitted. Under `cn` (第二十三条)
    /// number, name and cashier are all kept, and one document checks in once.
    #[test]
    fn a_korean_check_in_keeps_seven_digits_and_the_cashier_and_no_name() {
        let now = at("2026-11-22T03:00:00Z"); // noon in Seoul
        let desk = || AtTheDesk { name: Some("김철수".into()), cashier: "kim".into() };
        let mut korean = venue("kr", "Asia/Seoul");
        let (first, effects) = korean.check_in(now, &document("900101-1234568", date(1990, 1, 1)), Circumstances::default(), desk(), || 1);
        let record = recorded_check_in(&effects);
        assert_eq!((record.number.as_str(), record.name.as_deref(), record.by.as_deref()), ("900101-1", None, Some("kim")));
        assert_eq!((record.document_kind.as_str(), record.birth_date), ("kr_resident_registration", date(1990, 1, 1)));
        assert!(!format!("{effects:?}").contains("234568"));
        let (second, _) = korean.check_in(now, &document("900101-1765432", date(1990, 1, 1)), Circumstances::default(), desk(), || 2);
        assert!(matches!((&first, &second), (CheckInOutcome::Admitted { .. }, CheckInOutcome::Admitted { .. })), "{second:?}");

        let mut chinese = venue("cn", "Asia/Shanghai");
        let number = "11010519491231002X";
        let card = netbar_protocol::identity::validate_cn(number, date(2026, 11, 22)).unwrap();
        let (_, effects) = chinese.check_in(now, &card, Circumstances::default(), desk(), || 3);
        let record = recorded_check_in(&effects);
        assert_eq!((record.number.as_str(), record.name.as_deref(), record.by.as_deref()), (number, Some("김철수"), Some("kim")));
        let (again, _) = chinese.check_in(now, &card, Circumstances::default(), desk(), || 4);
        assert!(matches!(again, CheckInOutcome::Refused { ref reasons, .. } if reasons == &["already_checked_in"]));
    }

    /// Under a policy whose students count as youths (Korea's until 2023),
    /// what the desk said of school goes with the ticket, into the log, and
    /// back after a restart: "not a student" admits an 18-year-old at night
    /// then and there, the presumption does not.
    #[test]
    fn what_the_desk_said_of_school_holds_at_the_station_and_after_a_restart() {
        let policy = || Policy::from_toml(include_str!("../../../protocol/policies/kr-until-2023.toml")).unwrap();
        let zone = TimeZone::get("Asia/Seoul").unwrap();
        let afternoon = at("2027-01-15T06:00:00Z"); // 15:00 in Seoul
        let night = at("2027-01-15T14:00:00Z"); // 23:00
        let eighteen = date(2008, 6, 15);
        let mut before = Venue::new(policy(), zone.clone(), thresholds());
        let not_a_student = Circumstances { guardian: false, student: Some(false) };
        let (left_school, effects) = before.check_in(afternoon, &document("080615-3", eighteen), not_a_student, AtTheDesk::default(), || 1);
        assert!(matches!(left_school, CheckInOutcome::Admitted { until: None, .. }), "{left_school:?}");
        assert_eq!(recorded_check_in(&effects).student, Some(false));
        let replayed = |effects: &[Effect], ticket: &str| Replayed {
            at: afternoon,
            entry: match &effects[0] {
                Effect::Record(entry) => entry.clone(),
                other => panic!("{other:?}"),
            },
            keeps: vec![Matter::Ticket(ticket.to_owned())],
            recent: false,
        };
        let presumed = Circumstances::default();
        let (in_school, presumed_effects) =
            before.check_in(afternoon, &document("080615-4", eighteen), presumed, AtTheDesk::default(), || 2);
        assert!(matches!(in_school, CheckInOutcome::Admitted { until: Some(_), .. }), "admitted until 22:00: {in_school:?}");
        let (left_school, in_school) = (ticket_of(&left_school), ticket_of(&in_school));
        let mut after = Venue::new(policy(), zone, thresholds());
        after.restore(night, [replayed(&effects, &left_school), replayed(&presumed_effects, &in_school)]);
        for venue in [&mut before, &mut after] {
            let admitted = login(venue, night, "st-1", &left_school);
            assert!(matches!(&admitted[0], Effect::Command { action: Action::Unlock { until: None, .. }, .. }), "{admitted:?}");
            let refused = login(venue, night, "st-2", &in_school);
            assert!(
                matches!(&refused[0], Effect::Command { action: Action::RefuseLogin { reasons, .. }, .. } if reasons == &["youth_hours"]),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_minor_is_refused_with_the_reason_and_recorded() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let (outcome, effects) = venue.check_in(
            at("2026-11-22T12:00:00Z"),
            &document("M1", date(2010, 3, 3)),
            Circumstances::default(),
            AtTheDesk::default(),
            || 1,
        );
        assert_eq!(outcome, CheckInOutcome::Refused { reasons: vec!["under_age".into()], age: Some(16) });
        assert!(
            matches!(&effects[..], [Effect::Record(LogEntry::CheckIn(record))] if record.outcome == journal::CheckInOutcome::Refused && record.reasons == ["under_age"])
        );
    }

    #[test]
    fn a_curfew_warns_then_ends_the_session_on_time() {
        // A Korean youth at 21:00 KST: allowed until 22:00 (13:00Z).
        let mut venue = venue("kr", "Asia/Seoul");
        let now = at("2026-11-22T12:00:00Z");
        let (outcome, _) = venue.check_in(now, &document("Y1", date(2012, 6, 1)), Circumstances::default(), AtTheDesk::default(), || 7);
        let ticket = ticket_of(&outcome);
        let effects = login(&mut venue, now, "st-3", &ticket);
        let end = at("2026-11-22T13:00:00Z");
        assert!(matches!(&effects[0], Effect::Command { action: Action::Unlock { until: Some(until), .. }, .. } if *until == end));
        // The clock is needed ten minutes before, then at the end; not before.
        assert_eq!(venue.next_deadline(), Some(at("2026-11-22T12:50:00Z")));
        assert!(venue.tick(at("2026-11-22T12:49:59Z")).is_empty());
        let warning = venue.tick(at("2026-11-22T12:50:00Z"));
        assert!(
            matches!(&warning[..], [Effect::Command { action: Action::Notify { level: NoticeLevel::Warning, text, ends: Some(ends), .. }, .. }] if text.contains("10 minute") && *ends == end)
        );
        assert_eq!(venue.next_deadline(), Some(end));
        assert!(venue.tick(at("2026-11-22T12:59:59Z")).is_empty());
        let ended = venue.tick(end);
        assert!(matches!(&ended[0], Effect::Command { action: Action::Lock { reason }, .. } if reason == "policy"));
        assert!(matches!(&ended[1], Effect::Record(LogEntry::SessionEnd(end)) if end.reason == EndCause::Policy));
        // No session left: only the station's silence deadline remains.
        assert_eq!(venue.next_deadline(), Some(now + SignedDuration::from_hours(3)));
        // Logging in again after 22:00 is refused for the youth hours.
        let late = login(&mut venue, at("2026-11-22T13:05:00Z"), "st-3", &ticket);
        // With when the youth may play again: 09:00 in Seoul.
        assert!(
            matches!(&late[0], Effect::Command { action: Action::RefuseLogin { reasons, allowed_from: Some(from), .. }, .. }
                if reasons == &["youth_hours"] && *from == at("2026-11-23T00:00:00Z")),
            "{late:?}"
        );
    }

    #[test]
    fn unregistered_use_is_locked_with_an_incident() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let activity = Message::Activity(Activity { evidence: vec![Evidence::Applications], since: at("2026-11-22T12:00:00Z") });
        let effects = venue.on_message(at("2026-11-22T12:00:01Z"), &st("st-9"), &activity);
        assert!(matches!(&effects[0], Effect::Command { action: Action::Lock { reason }, .. } if reason == "unregistered"));
        assert!(matches!(
            &effects[1],
            Effect::Record(LogEntry::Incident(IncidentEntry {
                transition: IncidentTransition::Opened { incident_kind: IncidentKind::UnregisteredUse, .. },
                ..
            }))
        ));
        // Still in use a moment later: locked again, but no second incident.
        let again = venue.on_message(at("2026-11-22T12:00:05Z"), &st("st-9"), &activity);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn the_floor_map_shows_each_station_as_the_desk_needs_it() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        let state = |venue: &Venue, id: &str| {
            venue.floor().into_iter().find(|s| s["id"] == id).map(|s| s["state"].as_str().unwrap_or_default().to_owned())
        };
        online(&mut venue, now, "st-1");
        online(&mut venue, now, "st-2");
        assert_eq!(state(&venue, "st-1").as_deref(), Some("free"));
        let (outcome, _) = venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 12345);
        let CheckInOutcome::Admitted { ticket, .. } = outcome else { panic!("{outcome:?}") };
        assert!(venue.open_for(now, &st("st-1"), &ticket, "li").is_some_and(|opened| opened.is_ok()));
        assert_eq!(state(&venue, "st-1").as_deref(), Some("in_session"));
        assert!(venue.open_for(now, &st("st-2"), &ticket, "li").is_some_and(|opened| opened.is_err()), "the ticket is in use");
        assert!(venue.open_for(now, &st("st-404"), &ticket, "li").is_none());

        // Used without a registration: an alarm until acknowledged, then locked.
        let activity = Message::Activity(Activity { evidence: vec![Evidence::Applications], since: now });
        venue.on_message(now, &st("st-2"), &activity);
        assert_eq!(state(&venue, "st-2").as_deref(), Some("alarm"));
        let id = venue.incidents()[0].id.clone();
        venue.transition(now, &id, "li", None).unwrap();
        assert_eq!(state(&venue, "st-2").as_deref(), Some("locked"));
        venue.on_message(
            now,
            &st("st-2"),
            &Message::StationStatus(StationStatus {
                online: false,
                version: "1".into(),
                capabilities: Vec::new(),
                lock_state: LockState::Unknown,
                session: None,
            }),
        );
        assert_eq!(state(&venue, "st-2").as_deref(), Some("offline"));
    }

    fn reading(sensor: &str, sensor_kind: SensorKind, reading: Reading) -> Message {
        Message::SensorReading(SensorReading {
            sensor: sensor.parse().unwrap(),
            sensor_kind,
            reading,
            battery_percent: None,
            tamper: false,
        })
    }

    fn online(venue: &mut Venue, now: Timestamp, station: &str) {
        let status = Message::StationStatus(StationStatus {
            online: true,
            version: "t".into(),
            capabilities: vec![],
            lock_state: LockState::Locked,
            session: None,
        });
        venue.on_message(now, &st(station), &status);
    }

    #[test]
    fn a_lock_screen_tampered_with_opens_an_incident() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        online(&mut venue, now, "st-1");
        let tamper = Message::Tamper(Tamper { what: TamperKind::LockScreenHung, session: None, detail: "no answer for 1200 ms".into() });
        let effects = venue.on_message(now, &st("st-1"), &tamper);
        assert!(
            matches!(&effects[..], [Effect::Record(LogEntry::Incident(IncidentEntry { transition: IncidentTransition::Opened { incident_kind: IncidentKind::LockScreenTampered, severity: Severity::Warning, detail, .. }, .. }))]
                if detail.contains("st-1 stopped answering: no answer for 1200 ms")),
            "{effects:?}"
        );
    }

    #[test]
    fn smoke_opens_a_critical_incident_and_evacuates_every_station() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        for station in ["st-1", "st-2", "st-3"] {
            online(&mut venue, now, station);
        }
        let effects = venue.on_message(now, &st("st-2"), &reading("smoke-1", SensorKind::Smoke, Reading::Alarm { active: true }));
        let Effect::Record(LogEntry::Incident(IncidentEntry {
            incident: id,
            transition: IncidentTransition::Opened { incident_kind, severity, .. },
        })) = &effects[0]
        else {
            panic!("{effects:?}")
        };
        assert_eq!((*incident_kind, *severity), (IncidentKind::Fire, Severity::Critical));
        let notices = effects
            .iter()
            .filter(|e| matches!(e, Effect::Command { action: Action::Notify { level: NoticeLevel::Evacuation, incident: Some(of), .. }, .. } if of == id))
            .count();
        assert_eq!(notices, 3, "every online station, naming the incident");
        // A station that comes (back) online meanwhile is evacuated too.
        let status = |online| {
            Message::StationStatus(StationStatus {
                online,
                version: "t".into(),
                capabilities: vec![],
                lock_state: LockState::Locked,
                session: None,
            })
        };
        let back = venue.on_message(now, &st("st-4"), &status(true));
        assert!(
            matches!(&back[..], [Effect::Command { action: Action::Notify { level: NoticeLevel::Evacuation, incident: Some(of), .. }, .. }] if of == id),
            "{back:?}"
        );
        // The standing alarm does not open a second incident.
        assert!(venue.on_message(now, &st("st-2"), &reading("smoke-1", SensorKind::Smoke, Reading::Alarm { active: true })).is_empty());
        // Acknowledged, then resolved; a resolved one cannot change again.
        let id = id.clone();
        assert!(
            matches!(&venue.transition(now, &id, "li", None).unwrap()[0], Effect::Record(LogEntry::Incident(IncidentEntry { transition: IncidentTransition::Acknowledged { by }, .. })) if by == "li")
        );
        // A transition that could not be recorded is taken back.
        let before = venue.incident(&id).unwrap().clone();
        venue.transition(now, &id, "wang", Some("not recorded".into())).unwrap();
        venue.restore_incident(before);
        assert_eq!(venue.incident(&id).map(|incident| incident.resolved.is_none()), Some(true));
        let resolved = venue.transition(now, &id, "wang", Some("false alarm: toast".into())).unwrap();
        // Resolved: the notices come down at every online station.
        let clear = resolved.iter().filter(|e| matches!(e, Effect::Command { action: Action::AllClear, .. })).count();
        assert_eq!(clear, 4, "{resolved:?}");
        assert_eq!(venue.transition(now, &id, "li", None), Err(TransitionError::Resolved(id.clone())));
        // A station away when it was resolved hears it when it is back.
        venue.on_message(now, &st("st-4"), &status(false));
        let back = venue.on_message(now, &st("st-4"), &status(true));
        assert!(matches!(&back[..], [Effect::Command { action: Action::AllClear, .. }]), "{back:?}");
        assert_eq!(venue.transition(now, "i-x", "li", None), Err(TransitionError::Unknown("i-x".into())));
        let co = venue.on_message(now, &st("st-1"), &reading("co-1", SensorKind::CarbonMonoxide, Reading::Ppm { value: 80.0 }));
        assert!(matches!(
            &co[0],
            Effect::Record(LogEntry::Incident(IncidentEntry {
                transition: IncidentTransition::Opened { incident_kind: IncidentKind::CarbonMonoxide, .. },
                ..
            }))
        ));
        assert!(venue.on_message(now, &st("st-1"), &reading("co-2", SensorKind::CarbonMonoxide, Reading::Ppm { value: 20.0 })).is_empty());
    }

    #[test]
    fn a_locked_exit_beyond_its_grace_and_a_silent_collector_are_incidents() {
        let quick = Thresholds { station_silent_after: SignedDuration::from_secs(120), ..thresholds() };
        let mut venue2 = Venue::new(Policy::preset("cn").unwrap(), TimeZone::get("Asia/Shanghai").unwrap(), quick);
        let mut venue = venue("cn", "Asia/Shanghai");
        let t0 = at("2026-11-22T12:00:00Z");
        online(&mut venue, t0, "st-1");
        let locked = reading("door-1", SensorKind::Door, Reading::Door { open: false, locked: true });
        assert!(venue.on_message(t0, &st("st-1"), &locked).is_empty());
        assert_eq!(venue.next_deadline(), Some(t0 + SignedDuration::from_secs(60)));
        assert!(venue.tick(t0 + SignedDuration::from_secs(59)).is_empty());
        let due = venue.tick(t0 + SignedDuration::from_secs(60));
        assert!(matches!(
            &due[..],
            [Effect::Record(LogEntry::Incident(IncidentEntry {
                transition: IncidentTransition::Opened { incident_kind: IncidentKind::ExitBlocked, severity: Severity::Critical, .. },
                ..
            }))]
        ));
        // Its words give the venue's time, as the console and the law read it.
        assert!(format!("{due:?}").contains("door-1 locked since 2026-11-22T20:00:00+08:00 while"), "{due:?}");
        // Unlocked in time, nothing is raised.
        online(&mut venue2, t0, "st-1");
        venue2.on_message(t0, &st("st-1"), &locked);
        venue2.on_message(
            t0 + SignedDuration::from_secs(30),
            &st("st-1"),
            &reading("door-1", SensorKind::Door, Reading::Door { open: false, locked: false }),
        );
        assert!(venue2.tick(t0 + SignedDuration::from_secs(61)).is_empty());
        // The station's collector falls silent for longer than allowed
        // (last heard at t0 + 30 s).
        assert!(venue2.tick(t0 + SignedDuration::from_secs(149)).is_empty());
        let late = t0 + SignedDuration::from_secs(150);
        let silent = venue2.tick(late);
        assert!(
            matches!(
                &silent[..],
                [Effect::Record(LogEntry::Incident(IncidentEntry {
                    transition: IncidentTransition::Opened { incident_kind: IncidentKind::SensorFault, .. },
                    ..
                }))]
            ),
            "{silent:?}"
        );
        assert!(format!("{silent:?}").contains("is silent since 2026-11-22T20:00:30+08:00:"), "{silent:?}");
        assert_eq!(venue2.next_deadline(), None, "an offline station needs no timer");
    }

    #[test]
    fn more_people_than_admitted_is_overcrowding() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 1);
        // One customer plus one staff: two people are fine, three are not.
        assert!(
            venue.on_message(now, &st("st-1"), &reading("door-count", SensorKind::PeopleCounter, Reading::Persons { value: 2 })).is_empty()
        );
        let effects = venue.on_message(now, &st("st-1"), &reading("door-count", SensorKind::PeopleCounter, Reading::Persons { value: 3 }));
        assert!(matches!(
            &effects[..],
            [Effect::Record(LogEntry::Incident(IncidentEntry {
                transition: IncidentTransition::Opened { incident_kind: IncidentKind::Overcrowded, .. },
                ..
            }))]
        ));
    }

    fn report(lock_state: LockState, session: Option<&str>) -> Message {
        let Message::Telemetry(mut telemetry) = netbar_protocol::examples::body(netbar_protocol::Kind::Telemetry) else { unreachable!() };
        telemetry.lock_state = lock_state;
        telemetry.session = session.map(str::to_owned);
        telemetry.temperatures.clear();
        Message::Telemetry(telemetry)
    }

    fn connected(lock_state: LockState, session: Option<&str>) -> Message {
        Message::StationStatus(StationStatus {
            online: true,
            version: "t".into(),
            capabilities: vec![],
            lock_state,
            session: session.map(str::to_owned),
        })
    }

    /// Writes every log entry among `effects` to `store`, as the agent does.
    fn record(store: &mut crate::store::Store, now: Timestamp, effects: &[Effect]) {
        for effect in effects {
            if let Effect::Record(entry) = effect {
                store.append(now, entry).unwrap();
            }
        }
    }

    /// A venue rebuilt at `now` from what `store` holds, as `run` does.
    fn restarted(store: &crate::store::Store, preset: &str, zone: &str, now: Timestamp) -> (Venue, Restored) {
        let mut venue = venue(preset, zone);
        let matters = store.open_matters(now - SignedDuration::from_hours(24)).unwrap();
        assert!(matters.unreadable.is_empty(), "{:?}", matters.unreadable);
        let restored = venue.restore(now, matters.entries);
        (venue, restored)
    }

    fn scratch_store(name: &str) -> (std::path::PathBuf, crate::store::Store) {
        let dir = std::env::temp_dir().join(format!("netbar-venue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::Store::open(&dir.join("log.sqlite"), 60).unwrap();
        (dir, store)
    }

    fn floor_state(venue: &Venue, id: &str) -> String {
        venue.floor().into_iter().find(|s| s["id"] == id).map(|s| s["state"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
    }

    /// Regression: after a restart of the agent the sessions, tickets and
    /// incidents were gone (check-out answered unknown_ticket, the fire
    /// incident could not be acknowledged, the same card was admitted twice).
    #[test]
    fn a_restart_rebuilds_tickets_sessions_holds_and_incidents_from_the_log() {
        let (dir, mut store) = scratch_store("restart");
        let mut before = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        for station in ["st-1", "st-2", "st-3", "st-4"] {
            online(&mut before, now, station);
        }
        let (first, effects) =
            before.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 11);
        record(&mut store, now, &effects);
        let (second, effects) =
            before.check_in(now, &document("B2", date(1991, 2, 2)), Circumstances::default(), AtTheDesk::default(), || 22);
        record(&mut store, now, &effects);
        let (gone, effects) =
            before.check_in(now, &document("C3", date(1992, 3, 3)), Circumstances::default(), AtTheDesk::default(), || 33);
        record(&mut store, now, &effects);
        let (first, second) = (ticket_of(&first), ticket_of(&second));
        record(&mut store, now, &login(&mut before, now, "st-1", &first));
        record(&mut store, now, &before.check_out(now, &ticket_of(&gone)).unwrap());
        record(&mut store, now, &before.staff_command(now, &st("st-2"), Action::Lock { reason: "staff".into() }, "wang").unwrap());
        let activity = Message::Activity(Activity { evidence: vec![Evidence::Input], since: now });
        record(&mut store, now, &before.on_message(now, &st("st-3"), &activity));
        let smoke = before.on_message(now, &st("st-4"), &reading("smoke-1", SensorKind::Smoke, Reading::Alarm { active: true }));
        record(&mut store, now, &smoke);
        let fire = before.incidents().into_iter().find(|i| i.kind == IncidentKind::Fire).unwrap().id.clone();
        record(&mut store, now, &before.transition(now, &fire, "li", None).unwrap());
        let overcrowded = before.incidents().into_iter().find(|i| i.kind == IncidentKind::UnregisteredUse).unwrap().id.clone();
        record(&mut store, now, &before.transition(now, &overcrowded, "li", Some("spoke to them".into())).unwrap());

        let later = now + SignedDuration::from_mins(5);
        let (mut after, restored) = restarted(&store, "cn", "Asia/Shanghai", later);
        assert_eq!(
            restored,
            Restored { tickets: 2, sessions: 1, holds: 2, incidents_open: 1, incidents: 2 },
            "st-2 held by staff, st-3 for unregistered use"
        );
        assert_eq!(after.occupancy(), Occupancy { online: 0, sessions: 1, customers: 2 });
        assert_eq!(after.sessions_json(), before.sessions_json());
        let incident = after.incident(&fire).unwrap();
        assert_eq!((incident.kind, incident.acknowledged.as_ref().map(|(by, _)| by.as_str())), (IncidentKind::Fire, Some("li")));
        assert!(after.incident(&overcrowded).is_some_and(|incident| incident.resolved.is_some()), "the day's history");
        // The same card is not admitted twice; the other customer checks out.
        let (again, _) = after.check_in(later, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 44);
        assert!(matches!(again, CheckInOutcome::Refused { ref reasons, .. } if reasons == &["already_checked_in"]));
        assert!(after.check_out(later, &second).is_some());
        // The ticket in use stays in use at its station.
        let elsewhere = login(&mut after, later, "st-3", &first);
        assert!(
            matches!(&elsewhere[0], Effect::Command { action: Action::RefuseLogin { reasons, .. }, .. } if reasons == &["ticket_in_use"])
        );
        // The stations say what they hold: the floor is true again.
        assert_eq!(floor_state(&after, "st-1"), "offline");
        let session = after.sessions_json()["sessions"][0]["id"].as_str().unwrap().to_owned();
        // Adopted, and told of the fire still open.
        let evacuated = |effects: Vec<Effect>| matches!(&effects[..], [Effect::Command { action: Action::Notify { level: NoticeLevel::Evacuation, incident: Some(of), .. }, .. }] if *of == fire);
        assert!(evacuated(after.on_message(later, &st("st-1"), &connected(LockState::Unlocked, Some(&session)))), "adopted");
        assert_eq!(floor_state(&after, "st-1"), "in_session");
        assert!(evacuated(after.on_message(later, &st("st-2"), &connected(LockState::Locked, None))));
        assert_eq!(floor_state(&after, "st-2"), "locked");
        assert!(after.transition(later, &fire, "wang", Some("aired".into())).is_ok());
        // New incident ids do not collide with restored ones.
        let co = after.on_message(later, &st("st-4"), &reading("co-1", SensorKind::CarbonMonoxide, Reading::Ppm { value: 90.0 }));
        let Effect::Record(LogEntry::Incident(IncidentEntry { incident: id, .. })) = &co[0] else { panic!("{co:?}") };
        assert!(id != &fire && id != &overcrowded, "{id}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A store in which a customer born on `birth` checked in at `now` and
    /// sat down at st-1, at a venue of `preset` in `zone`.
    fn seated(name: &str, preset: &str, zone: &str, now: Timestamp, birth: jiff::civil::Date) -> (std::path::PathBuf, crate::store::Store) {
        let (dir, mut store) = scratch_store(name);
        let mut before = venue(preset, zone);
        online(&mut before, now, "st-1");
        let (outcome, effects) = before.check_in(now, &document("Y1", birth), Circumstances::default(), AtTheDesk::default(), || 7);
        record(&mut store, now, &effects);
        record(&mut store, now, &login(&mut before, now, "st-1", &ticket_of(&outcome)));
        (dir, store)
    }

    #[test]
    fn a_curfew_that_passed_while_the_agent_was_down_ends_at_the_first_tick() {
        let (dir, store) = seated("curfew", "kr", "Asia/Seoul", at("2026-11-22T12:30:00Z"), date(2012, 6, 1));
        // The agent is down from 12:40 until 13:05 (22:05 in Seoul).
        let back = at("2026-11-22T13:05:00Z");
        let (mut after, _) = restarted(&store, "kr", "Asia/Seoul", back);
        assert!(after.next_deadline().is_some_and(|deadline| deadline <= back));
        let ended = after.tick(back);
        assert!(matches!(&ended[0], Effect::Command { action: Action::Lock { reason }, .. } if reason == "policy"), "{ended:?}");
        assert!(matches!(&ended[1], Effect::Record(LogEntry::SessionEnd(end)) if end.reason == EndCause::Policy && end.at == back));
        assert_eq!(after.occupancy().sessions, 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What the venue does when a station's reports disagree with it: each
    /// case is the venue's session at the station (and whether the station
    /// confirmed it), then two reports in a row, then the effects.
    #[test]
    fn stations_are_reconciled_after_two_reports_that_disagree() {
        let now = at("2026-11-22T12:00:00Z");
        let setup = |confirmed: Option<bool>| {
            let mut venue = venue("cn", "Asia/Shanghai");
            online(&mut venue, now, "st-1");
            if let Some(confirmed) = confirmed {
                let (outcome, _) =
                    venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 5);
                login(&mut venue, now, "st-1", &ticket_of(&outcome));
                if confirmed {
                    let id = venue.station(&st("st-1")).unwrap().session.as_ref().unwrap().id.clone();
                    venue.on_message(now, &st("st-1"), &Message::SessionEvent(SessionEvent::Started { session_id: id }));
                }
            }
            venue
        };
        let session_of = |venue: &Venue| venue.station(&st("st-1")).and_then(|s| s.session.as_ref()).map(|s| s.id.clone());
        type Expect = fn(&[Effect], Option<&str>) -> bool;
        type Case<'a> = (&'a str, Option<bool>, (LockState, Option<&'a str>), Expect);
        let cases: Vec<Case<'_>> = vec![
            (
                "confirmed session gone from the station: ended there",
                Some(true),
                (LockState::Locked, None),
                |effects, _| matches!(effects, [Effect::Command { action: Action::Lock { .. }, .. }, Effect::Record(LogEntry::SessionEnd(end))] if end.reason == EndCause::NotAtStation),
            ),
            (
                "unlock never confirmed: sent again",
                Some(false),
                (LockState::Locked, None),
                |effects, session| matches!(effects, [Effect::Command { action: Action::Unlock { session_id, request_id: None, .. }, .. }] if Some(session_id.as_str()) == session),
            ),
            (
                "another session at the station: the venue's ends, the station locks",
                Some(true),
                (LockState::Unlocked, Some("s-other")),
                |effects, _| matches!(effects, [Effect::Command { action: Action::Lock { .. }, .. }, Effect::Record(LogEntry::SessionEnd(end))] if end.reason == EndCause::NotAtStation),
            ),
            (
                "a session the venue does not hold: locked",
                None,
                (LockState::Unlocked, Some("s-ended")),
                |effects, _| matches!(effects, [Effect::Command { action: Action::Lock { reason }, .. }] if reason == "session_ended"),
            ),
            ("unlocked without a session: unregistered use", None, (LockState::Unlocked, None), |effects, _| {
                matches!(
                    effects,
                    [
                        Effect::Command { action: Action::Lock { reason }, .. },
                        Effect::Record(LogEntry::Incident(IncidentEntry {
                            transition: IncidentTransition::Opened { incident_kind: IncidentKind::UnregisteredUse, .. },
                            ..
                        }))
                    ] if reason == "unregistered"
                )
            }),
        ];
        for (name, session, (lock_state, reported), expect) in cases {
            let mut venue = setup(session);
            let held = session_of(&venue);
            let first = venue.on_message(now, &st("st-1"), &report(lock_state, reported));
            assert!(first.is_empty(), "{name}: one report may be stale: {first:?}");
            let second = venue.on_message(now, &st("st-1"), &connected(lock_state, reported));
            assert!(expect(&second, held.as_deref()), "{name}: {second:?}");
            // A stale report followed by one that agrees changes nothing.
            let mut venue = setup(session);
            let held = session_of(&venue);
            assert!(venue.on_message(now, &st("st-1"), &report(lock_state, reported)).is_empty());
            let agreeing = if held.is_some() { LockState::Unlocked } else { LockState::Locked };
            assert!(venue.on_message(now, &st("st-1"), &report(agreeing, held.as_deref())).is_empty(), "{name}");
            assert!(venue.on_message(now, &st("st-1"), &report(lock_state, reported)).is_empty(), "{name}: the count starts again");
        }
    }

    /// Regression: a login sent again (a station's spool after a restart)
    /// opened a second session on the same ticket at the same station and
    /// left the first one open in the log.
    #[test]
    fn a_login_sent_again_gets_the_same_session() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        online(&mut venue, now, "st-1");
        let (outcome, _) = venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 5);
        let ticket = ticket_of(&outcome);
        let first = login(&mut venue, now, "st-1", &ticket);
        let Effect::Command { action: Action::Unlock { session_id, .. }, .. } = &first[0] else { panic!("{first:?}") };
        let again = login(&mut venue, now + SignedDuration::from_secs(30), "st-1", &ticket);
        assert!(
            matches!(&again[..], [Effect::Command { action: Action::Unlock { session_id: same, .. }, .. }] if same == session_id),
            "{again:?}"
        );
        assert_eq!(venue.occupancy().sessions, 1);
    }

    #[test]
    fn a_station_not_heard_from_after_a_restart_is_a_finding() {
        let (dir, store) = seated("awaited", "cn", "Asia/Shanghai", at("2026-11-22T12:00:00Z"), date(1990, 1, 1));
        let back = at("2026-11-22T13:00:00Z");
        let (mut after, _) = restarted(&store, "cn", "Asia/Shanghai", back);
        let limit = back + SignedDuration::from_hours(3);
        assert_eq!(after.next_deadline(), Some(limit));
        assert!(after.tick(limit - SignedDuration::from_secs(1)).is_empty());
        let silent = after.tick(limit);
        assert!(
            matches!(&silent[..], [Effect::Record(LogEntry::Incident(IncidentEntry { transition: IncidentTransition::Opened { detail, .. }, .. }))] if detail.contains("has not reported since the agent restarted")),
            "{silent:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Regression: an unregistered-use incident resolved days ago came back
    /// open after a restart (its entry was still kept for the station's
    /// hold), showing an alarm and holding back any new incident there.
    #[test]
    fn an_entry_kept_for_a_hold_does_not_bring_its_resolved_incident_back() {
        let (dir, mut store) = scratch_store("hold-only");
        let mut before = venue("cn", "Asia/Shanghai");
        let monday = at("2026-11-23T12:00:00Z");
        for station in ["st-3", "st-4"] {
            online(&mut before, monday, station);
        }
        let activity = Message::Activity(Activity { evidence: vec![Evidence::Input], since: monday });
        record(&mut store, monday, &before.on_message(monday, &st("st-3"), &activity));
        let id = before.incidents()[0].id.clone();
        record(&mut store, monday, &before.transition(monday, &id, "wang", Some("spoke to them".into())).unwrap());
        // st-4: unregistered use, then a registered customer (the hold ends);
        // the incident stays open.
        record(&mut store, monday, &before.on_message(monday, &st("st-4"), &activity));
        let (outcome, effects) =
            before.check_in(monday, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 9);
        record(&mut store, monday, &effects);
        record(&mut store, monday, &login(&mut before, monday, "st-4", &ticket_of(&outcome)));
        record(&mut store, monday, &before.check_out(monday, &ticket_of(&outcome)).unwrap());

        let wednesday = at("2026-11-25T12:00:00Z");
        let (after, restored) = restarted(&store, "cn", "Asia/Shanghai", wednesday);
        assert_eq!(restored.incidents_open, 1, "{:?}", after.incidents());
        assert!(after.incident(&id).is_none(), "resolved on Monday: neither open nor in the last day's history");
        assert_eq!(after.station(&st("st-3")).and_then(|s| s.held.clone()).as_deref(), Some("unregistered"));
        assert_eq!(after.station(&st("st-4")).and_then(|s| s.held.clone()), None, "its hold ended with the session");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Regression: smoke again at a detector whose earlier fire incident was
    /// acknowledged but not yet resolved raised no evacuation notice.
    #[test]
    fn every_onset_of_an_alarm_evacuates_even_with_its_incident_still_open() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        online(&mut venue, now, "st-1");
        let smoke = |active| reading("smoke-1", SensorKind::Smoke, Reading::Alarm { active });
        let notices = |effects: &[Effect]| {
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Command { action: Action::Notify { level: NoticeLevel::Evacuation, .. }, .. }))
                .count()
        };
        assert_eq!(notices(&venue.on_message(now, &st("st-1"), &smoke(true))), 1);
        assert_eq!(notices(&venue.on_message(now, &st("st-1"), &smoke(true))), 0, "the same alarm repeated");
        let id = venue.incidents()[0].id.clone();
        venue.transition(now, &id, "li", None).unwrap();
        assert!(venue.on_message(now, &st("st-1"), &smoke(false)).is_empty());
        let again = venue.on_message(now, &st("st-1"), &smoke(true));
        assert_eq!(notices(&again), 1, "a new onset: {again:?}");
        assert!(!again.iter().any(|e| matches!(e, Effect::Record(_))), "the open incident covers it");
    }

    /// A customer who left without checking out does not stay checked in
    /// for ever (their document would be refused the next day), and a
    /// session at a station gone for good ends.
    #[test]
    fn check_ins_and_sessions_nobody_will_end_expire_with_their_reason() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        online(&mut venue, now, "st-1");
        let (left, _) = venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 1);
        let (playing, _) = venue.check_in(now, &document("B2", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 2);
        login(&mut venue, now, "st-1", &ticket_of(&playing));
        let limit = now + SignedDuration::from_hours(12);
        assert_eq!(venue.next_deadline(), Some(now + SignedDuration::from_hours(3)), "the station's silence first");
        online(&mut venue, limit - SignedDuration::from_secs(1), "st-1");
        let expired = venue.tick(limit);
        assert!(
            matches!(&expired[..], [Effect::Record(LogEntry::CheckOut(out))] if out.ticket == ticket_of(&left) && out.reason == Some(CheckOutCause::Expired)),
            "{expired:?}"
        );
        let (again, _) = venue.check_in(limit, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 3);
        assert!(matches!(again, CheckInOutcome::Admitted { .. }), "{again:?}");
        // st-1 goes away with its customer's session and never comes back.
        let status =
            StationStatus { online: false, version: "t".into(), capabilities: vec![], lock_state: LockState::Unknown, session: None };
        venue.on_message(limit, &st("st-1"), &Message::StationStatus(status));
        let gone = venue.tick(limit + SignedDuration::from_hours(12));
        assert!(
            gone.iter().any(|e| matches!(e, Effect::Record(LogEntry::SessionEnd(end)) if end.reason == EndCause::NotAtStation)),
            "{gone:?}"
        );
        assert!(!gone.iter().any(|e| matches!(e, Effect::Command { .. })), "nobody to command");
    }

    #[test]
    fn an_unlock_never_confirmed_is_sent_again_for_a_while_then_the_session_ends() {
        let mut venue = venue("cn", "Asia/Shanghai");
        let now = at("2026-11-22T12:00:00Z");
        online(&mut venue, now, "st-1");
        let (outcome, _) = venue.check_in(now, &document("A1", date(1990, 1, 1)), Circumstances::default(), AtTheDesk::default(), || 1);
        login(&mut venue, now, "st-1", &ticket_of(&outcome));
        let later = now + SignedDuration::from_mins(3);
        venue.on_message(later, &st("st-1"), &report(LockState::Locked, None));
        let ended = venue.on_message(later, &st("st-1"), &report(LockState::Locked, None));
        assert!(matches!(&ended[1], Effect::Record(LogEntry::SessionEnd(end)) if end.reason == EndCause::NotAtStation), "{ended:?}");
        assert_eq!(venue.occupancy().sessions, 0);
    }
}
