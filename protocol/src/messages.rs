//! The bodies of every message kind.
//!
//! Each body refuses unknown fields, so a typo on the sender's side is an error
//! and not a silently dropped value. Ranges that JSON types cannot express
//! (a percentage above 100, a disk with more free than total space) are
//! checked by each body's `validate`, which the decoder calls after parsing.

use jiff::Timestamp;
use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decode::Violation;
use crate::envelope::MessageId;
use crate::ids::{GaCode, SensorId, StationId};

/// Longest free text accepted in any message (a notice, a reason), in
/// characters, as JSON Schema's `maxLength` counts them: a notice in Chinese
/// or Korean may be as long as one in English.
pub const MAX_TEXT: usize = 1024;

/// How the reason of a [`Delivery::Rejected`] begins when the message's
/// sequence number is older than every one the agent keeps for the station
/// (a replay, or a station whose spool was reset); the newest number the
/// agent accepted follows, so the station numbers its messages after it
/// and sends them again.
pub const STALE_SEQUENCE: &str = "stale_sequence: the newest accepted is";

/// The reason of a stale-sequence rejection giving `newest`.
pub fn stale_sequence(newest: u64) -> String {
    format!("{STALE_SEQUENCE} {newest}")
}

/// The newest accepted sequence number a stale-sequence rejection gives.
pub fn stale_sequence_newest(reason: &str) -> Option<u64> {
    reason.strip_prefix(STALE_SEQUENCE)?.trim().parse().ok()
}
/// Most entries a list in a message may hold (disks, temperatures, reasons…).
pub const MAX_LIST: usize = 64;
/// Most entries a single delivery acknowledgement may hold.
pub const MAX_ACK_ENTRIES: usize = 256;

fn ensure(ok: bool, field: &str, reason: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok { Ok(()) } else { Err(Violation::new(field, reason())) }
}

fn text(field: &str, value: &str) -> Result<(), Violation> {
    let length = value.chars().count();
    ensure(length <= MAX_TEXT, field, || format!("is {length} characters long, at most {MAX_TEXT} allowed"))
}

fn list<T>(field: &str, items: &[T], max: usize) -> Result<(), Violation> {
    ensure(items.len() <= max, field, || format!("holds {} entries, at most {max} allowed", items.len()))
}

fn token(field: &str, value: &str) -> Result<(), Violation> {
    crate::ids::check_id("value", value).map_err(|error| Violation::new(field, error.to_string()))
}

/// Whether a station is reachable, and what it holds. `online` is published
/// retained when the collector connects and again whenever its lock state or
/// session changes, so the agent learns the station's truth the moment it
/// subscribes (after its own restart, too); `offline` is its MQTT last will,
/// so the broker publishes it when the collector vanishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StationStatus {
    /// True when the collector is connected.
    pub online: bool,
    /// The collector's version.
    pub version: String,
    /// What this station can do ("lock", "notify", "sensor_bridge", …).
    pub capabilities: Vec<String>,
    /// The lock screen's state as the station observes it (`unknown` when
    /// absent: collectors before this field).
    #[serde(default)]
    pub lock_state: LockState,
    /// The session open at the station, as the agent issued it; absent when
    /// none. The collector keeps it on disk across its own restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl StationStatus {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        text("version", &self.version)?;
        list("capabilities", &self.capabilities, MAX_LIST)?;
        for (index, capability) in self.capabilities.iter().enumerate() {
            token(&format!("capabilities[{index}]"), capability)?;
        }
        if let Some(session) = &self.session {
            token("session", session)?;
        }
        Ok(())
    }
}

/// Whether a station's screen is locked, as the station itself observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// The lock screen is up; nobody can use the station.
    Locked,
    /// The station is usable.
    Unlocked,
    /// The collector cannot tell (it lost the display session, for instance).
    #[default]
    Unknown,
}

/// A temperature sensor inside a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Temperature {
    /// The sensor's label as the hardware reports it ("CPU", "GPU").
    pub label: String,
    /// Degrees Celsius, from -50 to 150.
    pub celsius: f64,
}

/// One mounted disk of a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Where it is mounted ("C:\\", "/").
    pub mount: String,
    /// Free bytes.
    pub free_bytes: u64,
    /// Total bytes; never below `free_bytes`.
    pub total_bytes: u64,
}

/// A periodic report of a station's hardware and use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Busy share of all cores, 0 to 100.
    pub cpu_percent: f64,
    /// Memory in use, bytes; never above `memory_total_bytes`.
    pub memory_used_bytes: u64,
    /// Installed memory, bytes.
    pub memory_total_bytes: u64,
    /// Seconds since the station booted.
    pub uptime_secs: u64,
    /// Temperatures the hardware exposes; empty when it exposes none.
    pub temperatures: Vec<Temperature>,
    /// Mounted disks.
    pub disks: Vec<Disk>,
    /// Users logged in at the console.
    pub interactive_users: u32,
    /// Milliseconds since the last keyboard or mouse input; absent when the
    /// collector cannot see input.
    pub input_idle_ms: Option<u64>,
    /// User applications running.
    pub apps_running: u32,
    /// The lock screen's state.
    pub lock_state: LockState,
    /// The session open at the station, if any.
    pub session: Option<String>,
}

impl Telemetry {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        ensure((0.0..=100.0).contains(&self.cpu_percent), "cpu_percent", || format!("is {}, must be between 0 and 100", self.cpu_percent))?;
        ensure(self.memory_used_bytes <= self.memory_total_bytes, "memory_used_bytes", || {
            format!("is {}, above memory_total_bytes {}", self.memory_used_bytes, self.memory_total_bytes)
        })?;
        list("temperatures", &self.temperatures, MAX_LIST)?;
        for (index, temperature) in self.temperatures.iter().enumerate() {
            text(&format!("temperatures[{index}].label"), &temperature.label)?;
            ensure((-50.0..=150.0).contains(&temperature.celsius), &format!("temperatures[{index}].celsius"), || {
                format!("is {}, must be between -50 and 150", temperature.celsius)
            })?;
        }
        list("disks", &self.disks, MAX_LIST)?;
        for (index, disk) in self.disks.iter().enumerate() {
            text(&format!("disks[{index}].mount"), &disk.mount)?;
            ensure(disk.free_bytes <= disk.total_bytes, &format!("disks[{index}].free_bytes"), || {
                format!("is {}, above total_bytes {}", disk.free_bytes, disk.total_bytes)
            })?;
        }
        if let Some(session) = &self.session {
            token("session", session)?;
        }
        Ok(())
    }
}

/// A customer typed a ticket (the code the front desk printed) at a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Chosen by the station; the agent's answer (unlock or refuse) names it.
    pub request_id: String,
    /// The ticket as typed.
    pub ticket: String,
}

impl LoginRequest {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        token("request_id", &self.request_id)?;
        text("ticket", &self.ticket)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The customer logged out.
    Logout,
    /// The paid time ran out.
    TimeUp,
    /// The access policy ended it (a curfew began, for instance).
    Policy,
    /// Staff ended it.
    Staff,
    /// The station shut down or lost power.
    Shutdown,
}

/// A session started or ended at a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionEvent {
    /// The station unlocked for a session.
    Started {
        /// The session's id, as the agent issued it in the unlock command.
        session_id: String,
    },
    /// The session is over and the station locked again.
    Ended {
        /// The session's id.
        session_id: String,
        /// Why it ended.
        reason: EndReason,
    },
}

impl SessionEvent {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        match self {
            SessionEvent::Started { session_id } | SessionEvent::Ended { session_id, .. } => token("session_id", session_id),
        }
    }
}

/// What showed that someone uses a station that has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Keyboard or mouse input.
    Input,
    /// Someone logged in at the operating system's console.
    InteractiveLogin,
    /// User applications are running.
    Applications,
}

/// Someone tried to get round the station's lock screen: the collector
/// locked the station with the operating system's own lock and started the
/// lock screen again; the agent opens an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tamper {
    /// What happened to the lock screen.
    pub what: TamperKind,
    /// The session open at the station then, if any.
    pub session: Option<String>,
    /// What the collector saw, for staff.
    pub detail: String,
}

impl Tamper {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        if let Some(session) = &self.session {
            token("session", session)?;
        }
        text("detail", &self.detail)
    }
}

/// What happened to a station's lock screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TamperKind {
    /// It ended while it should have been showing (killed, closed).
    LockScreenStopped,
    /// It stopped answering (suspended, hung).
    LockScreenHung,
}

/// Signs of use at a station without an open session: the agent treats the
/// station as used by someone nobody registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// What was seen; at least one.
    pub evidence: Vec<Evidence>,
    /// When the activity was first seen.
    pub since: Timestamp,
}

impl Activity {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        ensure(!self.evidence.is_empty(), "evidence", || "is empty; at least one sign of use is required".to_owned())?;
        list("evidence", &self.evidence, MAX_LIST)
    }
}

/// What a safety sensor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// Smoke detector.
    Smoke,
    /// Heat detector.
    Heat,
    /// Room thermometer.
    Temperature,
    /// Carbon monoxide detector.
    CarbonMonoxide,
    /// Emergency exit door contact.
    Door,
    /// People counter at the entrance.
    PeopleCounter,
}

/// A sensor's measurement, tagged by unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "unit", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reading {
    /// A detector's state.
    Alarm {
        /// True while the detector alarms.
        active: bool,
    },
    /// A temperature, -50 to 150 °C.
    Celsius {
        /// Degrees Celsius.
        value: f64,
    },
    /// A gas concentration, 0 to 10,000 parts per million.
    Ppm {
        /// Parts per million.
        value: f64,
    },
    /// An exit door's contact.
    Door {
        /// True when the door is open.
        open: bool,
        /// True when the door is locked; an emergency exit must never be.
        locked: bool,
    },
    /// People inside, as counted at the entrance.
    Persons {
        /// Head count.
        value: u32,
    },
    /// The bridge lost the sensor: it has sent nothing since `since`.
    Silent {
        /// Last time the sensor was heard.
        since: Timestamp,
    },
}

/// A reading of a safety sensor, bridged by a station's collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SensorReading {
    /// The sensor, as enrolled.
    pub sensor: SensorId,
    /// What it measures.
    pub sensor_kind: SensorKind,
    /// The measurement.
    pub reading: Reading,
    /// Battery charge in percent, 0 to 100, for battery-powered sensors.
    pub battery_percent: Option<u8>,
    /// True when the sensor reports its casing opened or removed.
    pub tamper: bool,
}

impl SensorReading {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        if let Some(battery) = self.battery_percent {
            ensure(battery <= 100, "battery_percent", || format!("is {battery}, must be between 0 and 100"))?;
        }
        let fits = match (&self.reading, self.sensor_kind) {
            (Reading::Silent { .. }, _) => true,
            (Reading::Alarm { .. }, SensorKind::Smoke | SensorKind::Heat | SensorKind::CarbonMonoxide) => true,
            (Reading::Celsius { value }, SensorKind::Heat | SensorKind::Temperature) => {
                ensure((-50.0..=150.0).contains(value), "reading.value", || format!("is {value} °C, must be between -50 and 150"))?;
                true
            }
            (Reading::Ppm { value }, SensorKind::CarbonMonoxide) => {
                ensure((0.0..=10_000.0).contains(value), "reading.value", || format!("is {value} ppm, must be between 0 and 10000"))?;
                true
            }
            (Reading::Door { .. }, SensorKind::Door) => true,
            (Reading::Persons { .. }, SensorKind::PeopleCounter) => true,
            _ => false,
        };
        ensure(fits, "reading.unit", || format!("does not fit a sensor of kind {:?}", self.sensor_kind))
    }
}

/// How urgent a notice on a station's screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Leave the building now.
    Evacuation,
}

/// What the agent orders a station to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Put the lock screen up.
    Lock {
        /// A reason code shown to staff ("unregistered", "curfew", …).
        reason: String,
    },
    /// Open a session.
    Unlock {
        /// The session the station must report in its session events.
        session_id: String,
        /// The login request this answers, if the customer typed a ticket.
        request_id: Option<String>,
        /// When the station must lock again on its own even if it hears
        /// nothing more (paid time, curfew); absent for no limit.
        until: Option<Timestamp>,
    },
    /// Refuse a login request.
    RefuseLogin {
        /// The login request refused.
        request_id: String,
        /// Reason codes.
        reasons: Vec<String>,
        /// What the customer reads.
        message: String,
        /// For `ticket_in_use`: the station the ticket is in use at.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        station: Option<StationId>,
        /// When the refusal stops holding (a window opens, the venue
        /// opens), if anything ahead changes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowed_from: Option<Timestamp>,
    },
    /// Show a notice on the screen.
    Notify {
        /// How urgent it is.
        level: NoticeLevel,
        /// What the customer reads.
        text: String,
        /// For the warning before a session ends: when it ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends: Option<Timestamp>,
        /// For an evacuation: the incident; the notice stays up until an
        /// `all_clear`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<String>,
    },
    /// Every evacuation notice may come down: no fire or gas incident is
    /// open any more.
    AllClear,
}

/// An order from the agent to one station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Chosen by the agent; the acknowledgement names it.
    pub command_id: String,
    /// What to do.
    pub action: Action,
}

impl Command {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        token("command_id", &self.command_id)?;
        match &self.action {
            Action::Lock { reason } => token("action.reason", reason),
            Action::Unlock { session_id, request_id, .. } => {
                token("action.session_id", session_id)?;
                request_id.as_deref().map_or(Ok(()), |id| token("action.request_id", id))
            }
            Action::RefuseLogin { request_id, reasons, message, .. } => {
                token("action.request_id", request_id)?;
                list("action.reasons", reasons, MAX_LIST)?;
                for (index, reason) in reasons.iter().enumerate() {
                    token(&format!("action.reasons[{index}]"), reason)?;
                }
                text("action.message", message)
            }
            Action::Notify { text: notice, incident, .. } => {
                if let Some(incident) = incident {
                    token("action.incident", incident)?;
                }
                text("action.text", notice)
            }
            Action::AllClear => Ok(()),
        }
    }
}

/// How a command ended on the station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Done as ordered.
    Done,
    /// Could not be done; `error` says why.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// A station's report of how a command ended, with the lock state it really
/// has afterwards (which the agent trusts over its own expectation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAck {
    /// The command answered.
    pub command_id: String,
    /// How it ended.
    pub result: Outcome,
    /// The station's lock state after the command.
    pub lock_state: LockState,
}

impl CommandAck {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        token("command_id", &self.command_id)?;
        match &self.result {
            Outcome::Done => Ok(()),
            Outcome::Failed { error } => text("result.error", error),
        }
    }
}

/// What the receiver did with one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delivery {
    /// Stored durably for the first time.
    Stored,
    /// Already stored earlier; the sender may forget it all the same.
    Duplicate,
    /// Refused for good; resending will not help.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The receiver's verdict on one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryEntry {
    /// The message's id.
    pub id: MessageId,
    /// The message's sequence number.
    pub seq: u64,
    /// What happened to it.
    pub delivery: Delivery,
}

/// An application-level receipt: the sender may drop these messages from its
/// outbox, because the receiver has them on disk (or refused them for good).
/// MQTT's own acknowledgement only says the broker has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAck {
    /// One entry per message, at least one.
    pub entries: Vec<DeliveryEntry>,
}

impl DeliveryAck {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        ensure(!self.entries.is_empty(), "entries", || "is empty; at least one entry is required".to_owned())?;
        list("entries", &self.entries, MAX_ACK_ENTRIES)?;
        for (index, entry) in self.entries.iter().enumerate() {
            if let Delivery::Rejected { reason } = &entry.delivery {
                text(&format!("entries[{index}].delivery.reason"), reason)?;
            }
        }
        Ok(())
    }
}

/// The agent's own state, published retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    /// True while the agent runs; false as its last will.
    pub online: bool,
    /// The agent's version.
    pub version: String,
    /// The policy preset or file in force.
    pub policy: String,
    /// When the agent started.
    pub started: Timestamp,
}

impl AgentStatus {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        text("version", &self.version)?;
        text("policy", &self.policy)
    }
}

/// How a venue stands with the rules, at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// Nothing open, every sensor heard from, the outbox less than half full,
    /// the store healthy.
    Green,
    /// Something needs attention: an acknowledged incident still open, a
    /// sensor or station silent, the outbox half full or more, or the
    /// venue's store failing.
    Yellow,
    /// A critical incident is open, or an incident nobody acknowledged.
    Red,
}

/// Counts of incidents by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityCounts {
    /// Life at risk.
    pub critical: u32,
    /// To act on now.
    pub warning: u32,
    /// To look at today.
    pub notice: u32,
}

/// A count of refusals with one reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonCount {
    /// The reason code.
    pub reason: String,
    /// How many times.
    pub count: u32,
}

/// The head of the tamper-evident registration log: its last entry's index
/// and hash. A regulator comparing two summaries sees whether history was
/// rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    /// Index of the last entry, from 1; 0 for an empty log.
    pub index: u64,
    /// Its hash, lower-case hexadecimal SHA-256 (64 characters).
    pub hash: String,
}

fn check_hash(field: &str, hash: &str) -> Result<(), Violation> {
    ensure(hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), field, || {
        "must be 64 lower-case hexadecimal characters".to_owned()
    })
}

/// The periodic venue summary for the regulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Start of the period covered (inclusive).
    pub from: Timestamp,
    /// End of the period covered (exclusive); after `from`.
    pub to: Timestamp,
    /// Stations enrolled.
    pub stations_enrolled: u32,
    /// Stations online at the end of the period.
    pub stations_online: u32,
    /// Sessions open at the end of the period.
    pub sessions_open: u32,
    /// Customers checked in and not yet checked out, at the end of the period.
    pub customers_present: u32,
    /// Customers registered (admitted) at the desk during the period.
    pub registrations: u32,
    /// Refusals during the period, by reason.
    pub refusals: Vec<ReasonCount>,
    /// Stations found in use without a registration during the period.
    pub unregistered_use: u32,
    /// Incidents opened during the period.
    pub incidents_opened: u32,
    /// Incidents acknowledged by staff during the period.
    pub incidents_acknowledged: u32,
    /// Incidents resolved during the period.
    pub incidents_resolved: u32,
    /// Incidents open at the end of the period.
    pub incidents_open: u32,
    /// The open incidents by severity.
    pub incidents_open_by_severity: SeverityCounts,
    /// Sensors enrolled.
    pub sensors_enrolled: u32,
    /// Sensors not heard from in time at the end of the period.
    pub sensors_silent: u32,
    /// The venue's state at a glance.
    pub compliance: Compliance,
    /// The registration log's head at the end of the period.
    pub log_head: LogHead,
    /// The venue's GA 557-2005 code, where its configuration gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga_code: Option<GaCode>,
    /// Why the venue's store (its registration log and outbox) is failing as
    /// the summary is made (a write failed and none has succeeded since):
    /// check-ins are refused while it cannot write. Absent when healthy;
    /// heartbeats say it every heartbeat period while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

impl Summary {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        ensure(self.from < self.to, "to", || format!("{} is not after from {}", self.to, self.from))?;
        ensure(self.stations_online <= self.stations_enrolled, "stations_online", || {
            format!("is {}, above stations_enrolled {}", self.stations_online, self.stations_enrolled)
        })?;
        let by_severity = &self.incidents_open_by_severity;
        let open = u64::from(by_severity.critical) + u64::from(by_severity.warning) + u64::from(by_severity.notice);
        ensure(open == u64::from(self.incidents_open), "incidents_open_by_severity", || {
            format!("adds up to {open}, not incidents_open {}", self.incidents_open)
        })?;
        ensure(self.sensors_silent <= self.sensors_enrolled, "sensors_silent", || {
            format!("is {}, above sensors_enrolled {}", self.sensors_silent, self.sensors_enrolled)
        })?;
        list("refusals", &self.refusals, MAX_LIST)?;
        for (index, refusal) in self.refusals.iter().enumerate() {
            token(&format!("refusals[{index}].reason"), &refusal.reason)?;
        }
        if let Some(error) = &self.store_error {
            text("store_error", error)?;
        }
        check_hash("log_head.hash", &self.log_head.hash)
    }
}

/// What kind of incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Smoke or heat detected.
    Fire,
    /// Carbon monoxide above the alarm level.
    CarbonMonoxide,
    /// An emergency exit locked.
    ExitBlocked,
    /// More people inside than the venue may hold.
    Overcrowded,
    /// A station used without a registration.
    UnregisteredUse,
    /// A minor found at a station outside what the policy allows.
    MinorPresent,
    /// A sensor silent or tampered with.
    SensorFault,
    /// A station or sensor whose identity did not match its enrolment.
    ForgedSender,
    /// The registration log was altered outside the program: entries that
    /// had been committed are missing from the file.
    RecordsTampered,
    /// A station's lock screen was killed or hung: someone tried to use the
    /// station without it.
    LockScreenTampered,
    /// What the venue may not keep (resident registration numbers, where
    /// the policy keeps none: other numbers and names) was cut out of its
    /// registration log, and the log chained again from the first entry
    /// cut: the regulator's heads of those entries no longer match.
    RecordsRedacted,
}

impl IncidentKind {
    /// Whether the incident calls for everyone to leave (fire, gas).
    pub fn evacuates(self) -> bool {
        matches!(self, IncidentKind::Fire | IncidentKind::CarbonMonoxide)
    }
}

/// How serious an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// To look at today.
    Notice,
    /// To act on now.
    Warning,
    /// Life at risk.
    Critical,
}

/// A step in an incident's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "transition", rename_all = "snake_case", deny_unknown_fields)]
pub enum IncidentTransition {
    /// The incident was raised.
    Opened {
        /// What happened.
        incident_kind: IncidentKind,
        /// How serious it is.
        severity: Severity,
        /// The station where it happened, if any.
        station: Option<StationId>,
        /// The sensor that raised it, if any.
        sensor: Option<SensorId>,
        /// A description for people.
        detail: String,
    },
    /// Staff saw it and took charge.
    Acknowledged {
        /// Who, as the console knows them.
        by: String,
    },
    /// It is over.
    Resolved {
        /// Who closed it.
        by: String,
        /// What was done.
        note: String,
    },
}

/// An incident's transition, for the regulator; `incident_id` ties the
/// transitions of one incident together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentEvent {
    /// The incident's id, stable across its transitions.
    pub incident_id: String,
    /// When the transition happened at the venue.
    pub at: Timestamp,
    /// The transition.
    pub transition: IncidentTransition,
}

impl IncidentEvent {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        token("incident_id", &self.incident_id)?;
        match &self.transition {
            IncidentTransition::Opened { detail, .. } => text("transition.detail", detail),
            IncidentTransition::Acknowledged { by } => text("transition.by", by),
            IncidentTransition::Resolved { by, note } => {
                text("transition.by", by)?;
                text("transition.note", note)
            }
        }
    }
}

/// How much of a person a registration record carries, per the venue's
/// upload setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "disclosure", rename_all = "snake_case", deny_unknown_fields)]
pub enum Person {
    /// Nothing about the person.
    None,
    /// A keyed hash of the document number and the birth year: enough to
    /// match records of one person, not enough to name them.
    Pseudonymised {
        /// Lower-case hexadecimal SHA-256 (64 characters).
        person_hash: String,
        /// Year of birth.
        birth_year: i16,
    },
    /// The document as registered.
    Full {
        /// Document kind code ("cn_resident_id", …).
        document_kind: String,
        /// Normalised document number.
        number: String,
        /// Name as on the document.
        name: String,
        /// Birth date.
        birth_date: Date,
    },
}

/// One entry of the venue's registration log, chained by hash to the one
/// before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRecord {
    /// Position in the log, from 1.
    pub index: u64,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
    /// When the person was registered.
    pub at: Timestamp,
    /// The station assigned, if any.
    pub station: Option<StationId>,
    /// Whether access was granted.
    pub allowed: bool,
    /// Reason codes of the decision.
    pub reasons: Vec<String>,
    /// The person, as disclosed.
    pub person: Person,
}

impl RegistrationRecord {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        ensure(self.index >= 1, "index", || "is 0; the log counts from 1".to_owned())?;
        check_hash("prev_hash", &self.prev_hash)?;
        check_hash("hash", &self.hash)?;
        list("reasons", &self.reasons, MAX_LIST)?;
        for (index, reason) in self.reasons.iter().enumerate() {
            token(&format!("reasons[{index}]"), reason)?;
        }
        match &self.person {
            Person::None => Ok(()),
            Person::Pseudonymised { person_hash, birth_year } => {
                check_hash("person.person_hash", person_hash)?;
                ensure((1800..=9999).contains(birth_year), "person.birth_year", || {
                    format!("is {birth_year}, must be between 1800 and 9999")
                })
            }
            Person::Full { document_kind, number, name, .. } => {
                token("person.document_kind", document_kind)?;
                text("person.number", number)?;
                text("person.name", name)
            }
        }
    }
}

/// Proof of life of a venue's uplink, with what it still has to send. When
/// the venue's store cannot answer, the figures it would give are absent and
/// `store_error` says why: never zeros that look like good data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Messages waiting in the agent's outbox for the regulator; absent when
    /// the store cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_pending: Option<u64>,
    /// The registration log's head now; absent when the store cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_head: Option<LogHead>,
    /// Why the venue's store (registration log and outbox) is failing: a
    /// write failed and none has succeeded since (check-ins are refused
    /// meanwhile), or the store does not answer. Absent when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// The venue's GA 557-2005 code, where its configuration gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga_code: Option<GaCode>,
}

impl Heartbeat {
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        if let Some(error) = &self.store_error {
            text("store_error", error)?;
        }
        match &self.log_head {
            Some(head) => check_hash("log_head.hash", &head.hash),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_sequence_rejection_gives_back_its_number() {
        assert_eq!(stale_sequence_newest(&stale_sequence(1_764_000_000_000_123)), Some(1_764_000_000_000_123));
        assert_eq!(stale_sequence_newest("duplicate"), None);
        assert_eq!(stale_sequence_newest(STALE_SEQUENCE), None, "no number");
    }
}
