//! Who may use a station, and when: the access policy as data, and its
//! evaluation as a pure function.
//!
//! A policy is a small TOML document (see `protocol/policies/` for the
//! presets). [`evaluate`] takes the policy, a person's birth date, an
//! instant, the venue's time zone and the circumstances, and returns a
//! [`Decision`]: allowed or not, why, and until when the decision holds, so
//! the agent can end a session when a curfew begins without polling.
//!
//! Age is never stored. It is computed for each decision from the birth date
//! and the local date in the venue's zone: a person comes of age at local
//! midnight of their birthday there, whatever UTC says.
//!
//! Besides who may enter and when, a policy says what the registration log
//! keeps of a person ([`Registration`]): where a law forbids keeping document
//! numbers (Korea), only what shows the check was done.

use std::fmt;

#[cfg(test)]
use jiff::SignedDuration;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

/// The access policy of a venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A name for logs and the console ("cn", "kr", "cn-shanghai").
    pub name: String,
    /// From this age on, a person is an adult, 1 to 30.
    pub adult_age: u8,
    /// How age is counted.
    #[serde(default)]
    pub age_counting: AgeCounting,
    /// When a person born on 29 February has a birthday in other years.
    #[serde(default)]
    pub leap_day: LeapDay,
    /// What minors may do.
    pub minors: Minors,
    /// The venue's opening hours, if the rules fix them.
    #[serde(default)]
    pub business_hours: Option<BusinessHours>,
    /// How long registration records are kept, in days.
    pub retention_days: u32,
    /// How much of a person a record sent to the regulator discloses.
    #[serde(default)]
    pub upload: Upload,
    /// Students who count as minors whatever their age, where the law says
    /// so (none of today's presets: see `policies/kr-until-2023.toml`).
    #[serde(default)]
    pub students: Option<Students>,
    /// What the registration log keeps of a person.
    #[serde(default)]
    pub registration: Registration,
    /// The language the console starts in where the venue's configuration
    /// names none.
    #[serde(default)]
    pub language: Option<crate::local::Language>,
    /// The documents the desk takes, the usual one first.
    #[serde(default = "every_document")]
    pub documents: Vec<DeskDocument>,
}

/// A document the desk takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeskDocument {
    /// A Chinese resident identity card or residence permit (a
    /// permanent-residence card typed here is taken as one too).
    CnId,
    /// A Chinese foreign permanent resident ID card.
    CnPrc,
    /// A Korean resident registration number.
    KrRrn,
    /// Any other document, its birth date typed by hand.
    Other,
}

impl DeskDocument {
    /// Every document, in the order of a policy that names none.
    pub const ALL: [DeskDocument; 4] = [DeskDocument::CnId, DeskDocument::CnPrc, DeskDocument::KrRrn, DeskDocument::Other];

    /// The code the console and the API use.
    pub fn code(self) -> &'static str {
        match self {
            DeskDocument::CnId => "cn_id",
            DeskDocument::CnPrc => "cn_prc",
            DeskDocument::KrRrn => "kr_rrn",
            DeskDocument::Other => "other",
        }
    }

    /// The document of a code.
    pub fn from_code(code: &str) -> Option<DeskDocument> {
        DeskDocument::ALL.into_iter().find(|document| document.code() == code)
    }

    /// The numbering scheme its number is validated against; `None` for a
    /// document whose number says nothing (its birth date is typed).
    pub fn numbering(self) -> Option<crate::identity::DocumentType> {
        use crate::identity::DocumentType;
        match self {
            DeskDocument::CnId => Some(DocumentType::CnId),
            DeskDocument::CnPrc => Some(DocumentType::CnPermanentResidence),
            DeskDocument::KrRrn => Some(DocumentType::KrRrn),
            DeskDocument::Other => None,
        }
    }
}

fn every_document() -> Vec<DeskDocument> {
    DeskDocument::ALL.to_vec()
}

/// Students who count as minors whatever their age: those the desk says are
/// enrolled, and, where the desk says nothing, those of the age at which
/// most are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Students {
    /// Where the desk does not say, a person born in year Y is presumed
    /// enrolled until this day (venue time) of year Y + `years_after_birth_year`.
    pub presumed_until: CohortDay,
}

/// A day of the year a number of years after a birth year: for a school
/// cohort, the day its last school year ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortDay {
    /// Years after the birth year, 1 to 40.
    pub years_after_birth_year: u8,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month (at most 28 in February).
    pub day: u8,
}

impl CohortDay {
    /// The day for a person born on `birth`.
    fn for_birth(self, birth: Date) -> Option<Date> {
        let year = birth.year().checked_add(i16::from(self.years_after_birth_year))?;
        Date::new(year, i8::try_from(self.month).ok()?, i8::try_from(self.day).ok()?).ok()
    }
}

/// What the registration log keeps of a person: the whole document (the
/// default, what China's 第二十三条 asks), or only what shows that a document
/// was checked (Korea, where 개인정보 보호법 제24조의2 forbids keeping resident
/// registration numbers). A Korean resident registration number is kept to
/// its first seven digits under every policy: no venue has a basis for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Whether the document number is kept. Without it the log keeps the
    /// document's kind and birth date, and of a Korean number only its first
    /// seven digits (`YYMMDD-G`, the birth date and century).
    #[serde(default = "yes")]
    pub keep_number: bool,
    /// Whether the name the desk types is kept.
    #[serde(default = "yes")]
    pub keep_name: bool,
    /// One open check-in per document at a time (needs the number).
    #[serde(default = "yes")]
    pub one_check_in_per_document: bool,
}

fn yes() -> bool {
    true
}

impl Default for Registration {
    fn default() -> Registration {
        Registration { keep_number: true, keep_name: true, one_check_in_per_document: true }
    }
}

impl Registration {
    /// The document as the log may keep it.
    pub fn kept(&self, document: &crate::identity::Document) -> crate::identity::Document {
        if self.keep_number { document.keeping_no_resident_number() } else { document.keeping_birth_date_only() }
    }
}

/// How age is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgeCounting {
    /// Whole years since birth; one more at each birthday.
    #[default]
    FullYears,
    /// This year minus the birth year; one more each 1 January.
    CalendarYear,
}

/// When a person born on 29 February has a birthday in a common year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeapDay {
    /// On 1 March (the reading of most civil codes).
    #[default]
    #[serde(rename = "march_1")]
    March1,
    /// On 28 February.
    #[serde(rename = "february_28")]
    February28,
}

/// What minors may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "access", rename_all = "snake_case", deny_unknown_fields)]
pub enum Minors {
    /// Never admitted.
    Forbidden,
    /// Admitted only within the windows, in the venue's local time.
    Windows {
        /// Daily windows; at least one.
        windows: Vec<Window>,
        /// Whether a recorded guardian lifts the windows.
        #[serde(default)]
        guardian_exempt: bool,
    },
}

/// The venue's opening hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// Opening time.
    pub start: ClockTime,
    /// Closing time; `24:00` for midnight, earlier than `start` for hours
    /// past midnight.
    pub end: ClockTime,
    /// Whether the hours are enforced (nobody admitted outside them).
    #[serde(default)]
    pub enforced: bool,
}

/// A daily window of local time, `[start, end)`; it runs past midnight when
/// `end` is earlier than `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First minute inside.
    pub start: ClockTime,
    /// First minute outside; `24:00` for midnight.
    pub end: ClockTime,
}

/// A time of day, `HH:MM`, from `00:00` to `24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    /// Minutes since midnight, 0 to 1440.
    pub fn minutes(self) -> u16 {
        self.minutes
    }

    /// Builds from hours and minutes; `24:00` allowed.
    pub fn new(hours: u16, minutes: u16) -> Option<ClockTime> {
        let total = hours.checked_mul(60)?.checked_add(minutes)?;
        (minutes < 60 && total <= 24 * 60).then_some(ClockTime { minutes: total })
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl std::str::FromStr for ClockTime {
    type Err = String;
    fn from_str(text: &str) -> Result<ClockTime, String> {
        let invalid = || format!("{text:?} is not a time of day HH:MM between 00:00 and 24:00");
        let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
        if hours.len() != 2 || minutes.len() != 2 {
            return Err(invalid());
        }
        let hours: u16 = hours.parse().map_err(|_| invalid())?;
        let minutes: u16 = minutes.parse().map_err(|_| invalid())?;
        ClockTime::new(hours, minutes).ok_or_else(invalid)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ClockTime {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClockTime".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
            "description": "A local time of day, HH:MM, 24:00 for midnight at the end of the day."
        })
    }
}

/// How much of a person a record sent to the regulator discloses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Upload {
    /// Nothing about the person.
    None,
    /// A keyed hash of the number and the birth year.
    #[default]
    Pseudonymised,
    /// The document as registered.
    Full,
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The TOML is malformed or a field is missing, unknown or mistyped.
    #[error("policy field `{path}`: {message}")]
    Field {
        /// Path of the field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is outside what the field allows.
    #[error("policy field `{field}` {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No preset has this name.
    #[error("no policy preset is named {0:?}; the presets are cn and kr")]
    UnknownPreset(String),
}

impl Window {
    fn crosses_midnight(self) -> bool {
        self.end < self.start
    }

    fn contains(self, minute: u16) -> bool {
        if self.crosses_midnight() {
            minute >= self.start.minutes || minute < self.end.minutes
        } else {
            minute >= self.start.minutes && minute < self.end.minutes
        }
    }
}

/// The rules table (`policies/rules.md`): every rule netbar enforces or
/// keeps, the article it comes from and the test that shows it.
pub const RULES: &str = include_str!("../policies/rules.md");

/// The rules table's introduction and the section of one jurisdiction
/// (`cn`, `kr`); the whole table for any other name.
pub fn rules(jurisdiction: &str) -> String {
    let heading = format!("({jurisdiction})");
    let mut sections = RULES.split("\n## ");
    let introduction = sections.next().unwrap_or_default();
    match sections.find(|section| section.lines().next().is_some_and(|title| title.contains(&heading))) {
        Some(section) => format!("{introduction}\n## {section}"),
        None => RULES.to_owned(),
    }
}

impl Policy {
    /// A built-in policy by name: `cn` or `kr`.
    pub fn preset(name: &str) -> Result<Policy, PolicyError> {
        let text = match name {
            "cn" => include_str!("../policies/cn.toml"),
            "kr" => include_str!("../policies/kr.toml"),
            other => return Err(PolicyError::UnknownPreset(other.to_owned())),
        };
        Policy::from_toml(text)
    }

    /// Reads and checks a policy written in TOML.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = crate::settings::from_toml(text).map_err(|error| PolicyError::Field {
            path: if error.key.is_empty() { "(document)".to_owned() } else { error.key },
            message: error.reason,
        })?;
        policy.check()?;
        Ok(policy)
    }

    /// Checks the ranges TOML types cannot express.
    pub fn check(&self) -> Result<(), PolicyError> {
        let invalid = |field, reason: String| Err(PolicyError::Invalid { field, reason });
        if self.name.trim().is_empty() {
            return invalid("name", "is empty".to_owned());
        }
        if !(1..=30).contains(&self.adult_age) {
            return invalid("adult_age", format!("is {}, must be between 1 and 30", self.adult_age));
        }
        if self.retention_days == 0 {
            return invalid("retention_days", "is 0; records must be kept at least one day".to_owned());
        }
        if let Minors::Windows { windows, .. } = &self.minors {
            if windows.is_empty() {
                return invalid("minors.windows", "is empty; use access = \"forbidden\" to admit no minors".to_owned());
            }
            if let Some(window) = windows.iter().find(|w| w.start == w.end) {
                return invalid("minors.windows", format!("holds an empty window {}–{}", window.start, window.end));
            }
        }
        if let Some(hours) = &self.business_hours
            && hours.start == hours.end
        {
            return invalid("business_hours", format!("is an empty window {}–{}", hours.start, hours.end));
        }
        if let Some(Students { presumed_until: day }) = self.students {
            if !(1..=40).contains(&day.years_after_birth_year) {
                return invalid(
                    "students.presumed_until.years_after_birth_year",
                    format!("is {}, must be between 1 and 40", day.years_after_birth_year),
                );
            }
            // 2001 is a common year: a day that exists in it exists in every year.
            if Date::new(2001, i8::try_from(day.month).unwrap_or(0), i8::try_from(day.day).unwrap_or(0)).is_err() {
                return invalid("students.presumed_until", format!("month {} day {} is no day of every year", day.month, day.day));
            }
        }
        if self.documents.is_empty() {
            return invalid("documents", "is empty: the desk would take no document".to_owned());
        }
        if self.registration.one_check_in_per_document && !self.registration.keep_number {
            return invalid(
                "registration.one_check_in_per_document",
                "needs keep_number = true: documents cannot be told apart without their numbers".to_owned(),
            );
        }
        Ok(())
    }
}

/// Facts about the visit that the rules take into account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circumstances {
    /// A guardian is recorded as accompanying the person.
    pub guardian: bool,
    /// What the desk said of the person's enrolment at a school whose
    /// students count as minors; `None` when it said nothing (the policy's
    /// presumption holds).
    pub student: Option<bool>,
}

/// Why a person counts as a minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Youth {
    /// Below the policy's age.
    Age,
    /// Enrolled as a student, as the desk said.
    Student,
    /// Of the age at which most are enrolled, and the desk did not say otherwise.
    PresumedStudent,
}

/// Why access is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A minor, and the policy admits no minors.
    UnderAge,
    /// A minor outside the hours minors are admitted, without a guardian.
    YouthHours,
    /// Outside the venue's enforced business hours.
    Closed,
}

impl Reason {
    /// The reason code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::UnderAge => "under_age",
            Reason::YouthHours => "youth_hours",
            Reason::Closed => "closed",
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the person may use a station now.
    pub allowed: bool,
    /// Why not; empty when allowed.
    pub reasons: Vec<Reason>,
    /// The first instant at which the decision may change (a window opens or
    /// closes, the person comes of age); `None` when nothing ahead changes it.
    pub until: Option<Timestamp>,
    /// Age in whole years since birth, at the instant, in the venue's zone.
    pub age: i32,
    /// Whether the person counts as a minor under the policy.
    pub minor: bool,
    /// Why, when they do.
    pub youth: Option<Youth>,
}

impl Decision {
    /// What the desk and the station act on: allowed or not, why, and until when.
    pub fn outcome(self) -> (bool, Vec<Reason>, Option<Timestamp>) {
        (self.allowed, self.reasons, self.until)
    }
}

/// Whole years between `birth` and `today`, with 29 February birthdays
/// falling per `leap_day` in common years.
pub fn full_years(birth: Date, today: Date, leap_day: LeapDay) -> i32 {
    let years = i32::from(today.year()) - i32::from(birth.year());
    if birthday_in(birth, today.year(), leap_day).is_some_and(|birthday| today < birthday) { years - 1 } else { years }
}

/// The birthday of a person born on `birth` in `year`.
fn birthday_in(birth: Date, year: i16, leap_day: LeapDay) -> Option<Date> {
    Date::new(year, birth.month(), birth.day()).ok().or_else(|| match leap_day {
        LeapDay::March1 => Date::new(year, 3, 1).ok(),
        LeapDay::February28 => Date::new(year, 2, 28).ok(),
    })
}

/// The first local date on which a person is an adult under `policy`.
fn adult_from(policy: &Policy, birth: Date) -> Option<Date> {
    let year = birth.year().checked_add(i16::from(policy.adult_age))?;
    match policy.age_counting {
        AgeCounting::FullYears => birthday_in(birth, year, policy.leap_day),
        AgeCounting::CalendarYear => Date::new(year, 1, 1).ok(),
    }
}

/// Decides whether a person born on `birth` may use a station at `at`, in a
/// venue in zone `tz`.
pub fn evaluate(policy: &Policy, birth: Date, at: Timestamp, tz: &TimeZone, circumstances: Circumstances) -> Decision {
    let now = at.to_zoned(tz.clone());
    let today = now.date();
    let minute = minute_of_day(&now);
    let age = full_years(birth, today, policy.leap_day);
    let adult_from = adult_from(policy, birth);
    let minor_by_age = adult_from.is_some_and(|date| today < date);
    // Enrolled, as the desk said or as presumed, and the day the
    // presumption ends (none when the desk said: its word holds).
    let (enrolled, presumed_end) = match (policy.students, circumstances.student) {
        (None, _) => (false, None),
        (Some(_), Some(said)) => (said, None),
        (Some(students), None) => {
            let end = students.presumed_until.for_birth(birth);
            (end.is_some_and(|end| today < end), end)
        }
    };
    let youth = match (minor_by_age, enrolled, circumstances.student) {
        (true, ..) => Some(Youth::Age),
        (false, true, Some(_)) => Some(Youth::Student),
        (false, true, None) => Some(Youth::PresumedStudent),
        (false, false, _) => None,
    };
    let minor = youth.is_some();

    let mut reasons = Vec::new();
    let mut boundaries: Vec<Timestamp> = Vec::new();
    if minor {
        // A minor stops being one when every reason for it has ended: never
        // while the desk says the person is enrolled.
        if !(enrolled && presumed_end.is_none()) {
            let ends = [minor_by_age.then_some(adult_from).flatten(), enrolled.then_some(presumed_end).flatten()];
            boundaries.extend(ends.into_iter().flatten().max().and_then(|date| start_of(date, tz)));
        }
        match &policy.minors {
            Minors::Forbidden => reasons.push(Reason::UnderAge),
            Minors::Windows { windows, guardian_exempt } => {
                if !(circumstances.guardian && *guardian_exempt) {
                    if !windows.iter().any(|w| w.contains(minute)) {
                        reasons.push(Reason::YouthHours);
                    }
                    for window in windows {
                        boundaries.extend(next_boundary(&now, window.start, window.end));
                    }
                }
            }
        }
    }
    if let Some(hours) = policy.business_hours.as_ref().filter(|hours| hours.enforced) {
        if !(Window { start: hours.start, end: hours.end }).contains(minute) {
            reasons.push(Reason::Closed);
        }
        boundaries.extend(next_boundary(&now, hours.start, hours.end));
    }
    Decision { allowed: reasons.is_empty(), reasons, until: boundaries.into_iter().filter(|&b| b > at).min(), age, minor, youth }
}

/// Whether the desk should be asked if the person is enrolled: the policy
/// counts students as minors, the answer changes the decision (allowed,
/// why not, until when), and the
/// person is of the cohort presumed enrolled or the one before it (a year
/// repeated). An adult of any other age is not asked.
pub fn asks_student(policy: &Policy, birth: Date, at: Timestamp, tz: &TimeZone, circumstances: Circumstances) -> bool {
    let Some(students) = policy.students else { return false };
    let [yes, no] =
        [true, false].map(|said| evaluate(policy, birth, at, tz, Circumstances { student: Some(said), ..circumstances }).outcome());
    let today = at.to_zoned(tz.clone()).date();
    let cohort_after = birth.checked_add(1.year()).ok().and_then(|later| students.presumed_until.for_birth(later));
    yes != no && cohort_after.is_some_and(|end| today < end)
}

/// Whether the desk should be asked if a guardian accompanies the person:
/// the answer changes the decision (allowed, why not, until when).
pub fn asks_guardian(policy: &Policy, birth: Date, at: Timestamp, tz: &TimeZone, circumstances: Circumstances) -> bool {
    let [yes, no] = [true, false].map(|guardian| evaluate(policy, birth, at, tz, Circumstances { guardian, ..circumstances }).outcome());
    yes != no
}

/// Whether the venue is open at `at` under its enforced business hours
/// (always, when it has none).
pub fn open(policy: &Policy, at: Timestamp, tz: &TimeZone) -> bool {
    let minute = minute_of_day(&at.to_zoned(tz.clone()));
    policy
        .business_hours
        .as_ref()
        .filter(|hours| hours.enforced)
        .is_none_or(|hours| (Window { start: hours.start, end: hours.end }).contains(minute))
}

/// Minutes since local midnight.
fn minute_of_day(now: &Zoned) -> u16 {
    u16::try_from(i32::from(now.hour()) * 60 + i32::from(now.minute())).unwrap_or(0)
}

/// The first instant of `date` in `tz` (midnight, or the first instant after
/// a gap when the zone skips midnight).
fn start_of(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    date.to_zoned(tz.clone()).ok().map(|zoned| zoned.timestamp())
}

/// The instant a local clock time is reached on `date`; `24:00` is the start
/// of the next day.
fn instant(date: Date, time: ClockTime, tz: &TimeZone) -> Option<Timestamp> {
    if time.minutes == 24 * 60 {
        return start_of(date.tomorrow().ok()?, tz);
    }
    let clock = Time::new(i8::try_from(time.minutes / 60).ok()?, i8::try_from(time.minutes % 60).ok()?, 0, 0).ok()?;
    date.to_datetime(clock).to_zoned(tz.clone()).ok().map(|zoned| zoned.timestamp())
}

/// The first instant after `now` at which local time reaches `start` or `end`.
fn next_boundary(now: &Zoned, start: ClockTime, end: ClockTime) -> Option<Timestamp> {
    let today = now.date();
    let tomorrow = today.checked_add(1.day()).ok()?;
    [today, tomorrow]
        .into_iter()
        .flat_map(|date| [instant(date, start, now.time_zone()), instant(date, end, now.time_zone())])
        .flatten()
        .filter(|&instant| instant > now.timestamp())
        .min()
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn seoul() -> TimeZone {
        TimeZone::get("Asia/Seoul").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cn() -> Policy {
        Policy::preset("cn").unwrap()
    }

    fn kr() -> Policy {
        Policy::preset("kr").unwrap()
    }

    const ALONE: Circumstances = Circumstances { guardian: false, student: None };

    #[test]
    fn presets_load() {
        let cn = cn();
        assert_eq!((cn.adult_age, cn.retention_days), (18, 60));
        assert_eq!(cn.minors, Minors::Forbidden);
        assert!(cn.retention_days >= 60);
        let kr = kr();
        assert_eq!((kr.adult_age, kr.age_counting), (19, AgeCounting::CalendarYear));
        assert!(matches!(kr.minors, Minors::Windows { guardian_exempt: true, .. }));
        assert!(Policy::preset("us").is_err());
    }

    #[test]
    fn birthday_turns_at_local_midnight_not_utc() {
        // Born 2008-11-23: 18 at 2008+18 = 2026-11-23 00:00 in Shanghai, which
        // is 2026-11-22T16:00Z.
        let birth = date(2008, 11, 23);
        let before = evaluate(&cn(), birth, at("2026-11-22T15:59:59Z"), &shanghai(), ALONE);
        assert!(!before.allowed);
        assert_eq!(before.reasons, vec![Reason::UnderAge]);
        assert_eq!(before.age, 17);
        assert_eq!(before.until, Some(at("2026-11-22T16:00:00Z")));
        let after = evaluate(&cn(), birth, at("2026-11-22T16:00:00Z"), &shanghai(), ALONE);
        assert!(after.allowed, "{after:?}");
        assert_eq!(after.age, 18);
        assert_eq!(after.until, None);
        // In UTC it is still the 22nd: a venue in UTC would still refuse.
        let utc = evaluate(&cn(), birth, at("2026-11-22T16:00:00Z"), &TimeZone::UTC, ALONE);
        assert!(!utc.allowed);
        assert_eq!(utc.until, Some(at("2026-11-23T00:00:00Z")));
    }

    #[test]
    fn leap_day_birthdays_follow_the_rule() {
        let birth = date(2008, 2, 29);
        // 2026 is a common year.
        let march = cn();
        let mut february = cn();
        february.leap_day = LeapDay::February28;
        let feb28 = at("2026-02-28T04:00:00Z"); // noon in Shanghai
        assert!(!evaluate(&march, birth, feb28, &shanghai(), ALONE).allowed);
        assert_eq!(evaluate(&march, birth, feb28, &shanghai(), ALONE).until, Some(at("2026-02-28T16:00:00Z")));
        assert!(evaluate(&february, birth, feb28, &shanghai(), ALONE).allowed);
        assert!(evaluate(&march, birth, at("2026-02-28T16:00:00Z"), &shanghai(), ALONE).allowed);
        // In a leap year the birthday is the 29th under either rule.
        assert_eq!(full_years(date(2000, 2, 29), date(2024, 2, 28), LeapDay::February28), 23);
        assert_eq!(full_years(date(2000, 2, 29), date(2024, 2, 29), LeapDay::March1), 24);
        assert_eq!(full_years(date(2000, 2, 29), date(2023, 2, 28), LeapDay::February28), 23);
        assert_eq!(full_years(date(2000, 2, 29), date(2023, 2, 28), LeapDay::March1), 22);
    }

    #[test]
    fn curfew_window_both_ends() {
        let policy = kr();
        let youth = date(2012, 6, 1);
        // 09:00 KST = 00:00Z; 22:00 KST = 13:00Z.
        let before_open = evaluate(&policy, youth, at("2026-11-21T23:59:59Z"), &seoul(), ALONE);
        assert_eq!(before_open.reasons, vec![Reason::YouthHours]);
        assert_eq!(before_open.until, Some(at("2026-11-22T00:00:00Z")));
        let at_open = evaluate(&policy, youth, at("2026-11-22T00:00:00Z"), &seoul(), ALONE);
        assert!(at_open.allowed);
        assert_eq!(at_open.until, Some(at("2026-11-22T13:00:00Z")));
        let last_second = evaluate(&policy, youth, at("2026-11-22T12:59:59Z"), &seoul(), ALONE);
        assert!(last_second.allowed);
        assert_eq!(last_second.until, Some(at("2026-11-22T13:00:00Z")));
        let at_close = evaluate(&policy, youth, at("2026-11-22T13:00:00Z"), &seoul(), ALONE);
        assert_eq!(at_close.reasons, vec![Reason::YouthHours]);
        assert_eq!(at_close.until, Some(at("2026-11-23T00:00:00Z")));
        // A guardian lifts the window.
        let guarded = evaluate(&policy, youth, at("2026-11-22T13:00:00Z"), &seoul(), Circumstances { guardian: true, student: None });
        assert!(guarded.allowed);
        assert!(guarded.minor);
        // An adult is never bound by it.
        let adult = evaluate(&policy, date(1990, 1, 1), at("2026-11-22T13:00:00Z"), &seoul(), ALONE);
        assert!(adult.allowed && !adult.minor);
        assert_eq!(adult.until, None);
    }

    #[test]
    fn korean_calendar_year_counting() {
        let policy = kr();
        // Born 2007-12-31: 18 in full years all through 2026, but 2026 − 2007
        // = 19, so not a youth from 2026-01-01 in Seoul.
        let birth = date(2007, 12, 31);
        let evening = at("2026-11-22T14:00:00Z"); // 23:00 KST
        let decision = evaluate(&policy, birth, evening, &seoul(), ALONE);
        assert!(decision.allowed && !decision.minor, "{decision:?}");
        assert_eq!(decision.age, 18);
        // On 2025-12-31 at 23:00 KST they were a youth, until the new year.
        let decision = evaluate(&policy, birth, at("2025-12-31T14:00:00Z"), &seoul(), ALONE);
        assert_eq!(decision.reasons, vec![Reason::YouthHours]);
        assert_eq!(decision.until, Some(at("2025-12-31T15:00:00Z")));
        // Counted in full years instead, they stay a youth until their birthday.
        let mut full = kr();
        full.age_counting = AgeCounting::FullYears;
        let decision = evaluate(&full, birth, evening, &seoul(), ALONE);
        assert_eq!(decision.reasons, vec![Reason::YouthHours]);
        assert_eq!(decision.until, Some(at("2026-11-23T00:00:00Z")));
    }

    fn kr_until_2023() -> Policy {
        Policy::from_toml(include_str!("../policies/kr-until-2023.toml")).unwrap()
    }

    /// Seoul's local time on a date, as an instant.
    fn seoul_at(date: Date, time: &str) -> Timestamp {
        date.to_datetime(time.parse().unwrap()).to_zoned(seoul()).unwrap().timestamp()
    }

    /// The youth rule of Korean PC bangs (게임산업진흥법 시행령 제16조 제2호 가목:
    /// 09:00–22:00) at each end of the window, for a 17- and an 18-year-old,
    /// student or not, across the new year and the end of the school year.
    /// Under today's `kr` (게임산업진흥법 제2조 제10호 in force from
    /// 2024-01-01 → 청소년 보호법 제2조 제1호) a youth is under 19 by calendar
    /// year and school does not matter; under the text of 2023 and before
    /// (kr-until-2023.toml) a high-school student stays a youth whatever the
    /// age, and one born in 2008 is presumed enrolled until 1 March 2027.
    #[test]
    fn korean_youth_hours_for_17_and_18_year_olds_students_and_not_around_the_new_year_and_1_march() {
        let seventeen = date(2009, 6, 15); // 17 from 2026-06-15 to 2027-06-14
        let eighteen = date(2008, 6, 15); // 18 from 2026-06-15 to 2027-06-14
        let days = [date(2026, 12, 31), date(2027, 1, 1), date(2027, 2, 28), date(2027, 3, 1)];
        // (policy, person, what the desk said of school, on which of `days` a youth)
        let rows: [(&str, Date, Option<bool>, [bool; 4]); 12] = [
            ("kr", seventeen, None, [true, true, true, true]),
            ("kr", seventeen, Some(true), [true, true, true, true]),
            ("kr", seventeen, Some(false), [true, true, true, true]),
            ("kr", eighteen, None, [true, false, false, false]),
            ("kr", eighteen, Some(true), [true, false, false, false]),
            ("kr", eighteen, Some(false), [true, false, false, false]),
            ("kr-until-2023", seventeen, None, [true, true, true, true]),
            ("kr-until-2023", seventeen, Some(true), [true, true, true, true]),
            ("kr-until-2023", seventeen, Some(false), [true, true, true, true]),
            ("kr-until-2023", eighteen, None, [true, true, true, false]),
            ("kr-until-2023", eighteen, Some(true), [true, true, true, true]),
            ("kr-until-2023", eighteen, Some(false), [false, false, false, false]),
        ];
        // (local time, inside the youth window)
        let times = [("21:59:59", true), ("22:00:00", false), ("08:59:59", false), ("09:00:00", true)];
        for (name, birth, student, youth_on) in rows {
            let policy = if name == "kr" { kr() } else { kr_until_2023() };
            for (day, youth) in days.into_iter().zip(youth_on) {
                for (time, inside) in times {
                    let at = seoul_at(day, time);
                    let decision = evaluate(&policy, birth, at, &seoul(), Circumstances { guardian: false, student });
                    let case = format!("{name}, born {birth}, student {student:?}, {day} {time}: {decision:?}");
                    assert_eq!(decision.minor, youth, "{case}");
                    assert_eq!(decision.allowed, !youth || inside, "{case}");
                    assert_eq!(decision.reasons, if decision.allowed { vec![] } else { vec![Reason::YouthHours] }, "{case}");
                    // A guardian lifts the window under both.
                    let guarded = evaluate(&policy, birth, at, &seoul(), Circumstances { guardian: true, student });
                    assert!(guarded.allowed, "{case} with a guardian");
                }
            }
        }
        // `until` is the next instant the decision can change.
        let until = |policy: &Policy, birth, student, day, time| {
            evaluate(policy, birth, seoul_at(day, time), &seoul(), Circumstances { guardian: false, student }).until
        };
        // Born 2008, at 22:00 on new year's eve: an adult at midnight, before the window opens.
        assert_eq!(until(&kr(), eighteen, None, days[0], "22:00:00"), Some(seoul_at(days[1], "00:00:00")));
        // Before 2024: presumed enrolled until 1 March, so refused until then, …
        assert_eq!(until(&kr_until_2023(), eighteen, None, days[2], "22:00:00"), Some(seoul_at(days[3], "00:00:00")));
        // … and admitted at 21:59:59 only until 22:00.
        assert_eq!(until(&kr_until_2023(), eighteen, None, days[2], "21:59:59"), Some(seoul_at(days[2], "22:00:00")));
        // Enrolled as the desk says: the next window, whatever the date.
        assert_eq!(until(&kr_until_2023(), eighteen, Some(true), days[3], "22:00:00"), Some(seoul_at(date(2027, 3, 2), "09:00:00")));
        // Not enrolled, 18: nothing ahead changes it.
        assert_eq!(until(&kr_until_2023(), eighteen, Some(false), days[0], "22:00:00"), None);
        // In a leap year the school year ends on 29 February too: born 2009,
        // presumed enrolled at 23:00 on 29 February 2028, not from 1 March.
        let born_2009 = date(2009, 6, 15);
        for (day, time, youth) in [(date(2028, 2, 29), "23:00:00", true), (date(2028, 3, 1), "00:00:00", false)] {
            let decision = evaluate(&kr_until_2023(), born_2009, seoul_at(day, time), &seoul(), ALONE);
            assert_eq!(decision.minor, youth, "{day} {time}: {decision:?}");
        }
        assert_eq!(until(&kr_until_2023(), born_2009, None, date(2028, 2, 29), "23:00:00"), Some(seoul_at(date(2028, 3, 1), "00:00:00")));
        // Presumed enrolled and under 18: until the later of the two, 1 March 2027 00:00, not the birthday.
        let born_late = date(2008, 12, 31);
        assert_eq!(
            evaluate(&kr_until_2023(), born_late, seoul_at(date(2026, 12, 30), "12:00:00"), &seoul(), ALONE).youth,
            Some(Youth::Age)
        );
        let refused = evaluate(&kr_until_2023(), born_late, seoul_at(date(2026, 12, 30), "23:00:00"), &seoul(), ALONE);
        assert_eq!(refused.until, Some(seoul_at(date(2026, 12, 31), "09:00:00")));
        let guarded = evaluate(
            &kr_until_2023(),
            born_late,
            seoul_at(date(2026, 12, 30), "23:00:00"),
            &seoul(),
            Circumstances { guardian: true, student: None },
        );
        assert_eq!(guarded.until, Some(seoul_at(days[3], "00:00:00")));
    }

    #[test]
    fn the_desk_is_asked_about_school_only_when_the_answer_changes_the_decision() {
        let old = kr_until_2023();
        let at_night = |day| seoul_at(day, "23:00:00");
        // Today's Korean and Chinese rules never ask: school does not matter.
        for policy in [kr(), cn()] {
            assert!(!asks_student(&policy, date(2008, 6, 15), at_night(date(2027, 1, 15)), &seoul(), ALONE));
        }
        // Born 2008, 15 January 2027: presumed enrolled; "not a student" admits at night.
        assert!(asks_student(&old, date(2008, 6, 15), at_night(date(2027, 1, 15)), &seoul(), ALONE));
        // A 17-year-old is a youth either way: not asked.
        assert!(!asks_student(&old, date(2009, 6, 15), at_night(date(2027, 1, 15)), &seoul(), ALONE));
        // After 1 March the presumption has ended, but a year repeated is common: asked.
        assert!(asks_student(&old, date(2008, 6, 15), at_night(date(2027, 3, 15)), &seoul(), ALONE));
        // A 30-year-old is not asked.
        assert!(!asks_student(&old, date(1996, 6, 15), at_night(date(2027, 3, 15)), &seoul(), ALONE));
        // With a guardian the answer changes nothing at night.
        assert!(!asks_student(
            &old,
            date(2008, 6, 15),
            at_night(date(2027, 1, 15)),
            &seoul(),
            Circumstances { guardian: true, student: None }
        ));
        // The guardian is asked of a youth only.
        assert!(asks_guardian(&kr(), date(2012, 6, 1), at_night(date(2027, 1, 15)), &seoul(), ALONE));
        assert!(!asks_guardian(&kr(), date(1990, 6, 1), at_night(date(2027, 1, 15)), &seoul(), ALONE));
        assert!(
            !asks_guardian(&cn(), date(2012, 6, 1), at_night(date(2027, 1, 15)), &shanghai(), ALONE),
            "no guardian admits a minor in China"
        );
    }

    #[test]
    fn what_the_log_keeps_follows_the_policy() {
        let today = date(2026, 11, 22);
        let number = "080315-3123454";
        let document = crate::identity::validate_kr(number, today).unwrap();
        // 개인정보 보호법 제24조의2: the kr preset keeps YYMMDD-G only, and no name.
        let kr = kr().registration;
        assert_eq!((kr.keep_number, kr.keep_name, kr.one_check_in_per_document), (false, false, false));
        assert_eq!(kr.kept(&document).number, "080315-3");
        // 第二十三条: the cn preset keeps the whole document, but never a
        // Korean resident registration number (제24조의2 binds whoever keeps
        // one), nor does a policy that says nothing of registration.
        let cn = cn().registration;
        assert_eq!((cn.keep_number, cn.keep_name, cn.one_check_in_per_document), (true, true, true));
        assert_eq!(cn.kept(&document).number, "080315-3");
        assert_eq!(Registration::default().kept(&document).number, "080315-3");
        let chinese = crate::identity::validate_cn("11010519491231002X", today).unwrap();
        assert_eq!(cn.kept(&chinese).number, "11010519491231002X");
        assert_eq!(kr.kept(&chinese).number, "");
        // A policy written before the section keeps everything, as before.
        let older = Policy::from_toml("name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"forbidden\"").unwrap();
        assert_eq!(older.registration, Registration::default());
        assert_eq!((older.students, older.language), (None, None));
        assert_eq!((self::kr().language, self::cn().language), (Some(crate::local::Language::Ko), Some(crate::local::Language::Zh)));
    }

    #[test]
    fn business_hours_to_midnight_and_overnight() {
        let mut policy = cn();
        policy.business_hours.as_mut().unwrap().enforced = true;
        let adult = date(1990, 1, 1);
        // 07:59 Shanghai = 23:59Z the day before.
        let early = evaluate(&policy, adult, at("2026-11-21T23:59:00Z"), &shanghai(), ALONE);
        assert_eq!(early.reasons, vec![Reason::Closed]);
        assert_eq!(early.until, Some(at("2026-11-22T00:00:00Z")));
        // 23:30 Shanghai: open until 24:00 = 16:00Z.
        let late = evaluate(&policy, adult, at("2026-11-22T15:30:00Z"), &shanghai(), ALONE);
        assert!(late.allowed);
        assert_eq!(late.until, Some(at("2026-11-22T16:00:00Z")));
        // A minor is refused for age and, at 03:00, for the hours too.
        let night = evaluate(&policy, date(2010, 1, 1), at("2026-11-21T19:00:00Z"), &shanghai(), ALONE);
        assert_eq!(night.reasons, vec![Reason::UnderAge, Reason::Closed]);
        // Hours past midnight: 20:00–02:00.
        policy.business_hours = Some(BusinessHours { start: "20:00".parse().unwrap(), end: "02:00".parse().unwrap(), enforced: true });
        let one_am = evaluate(&policy, adult, at("2026-11-21T17:00:00Z"), &shanghai(), ALONE);
        assert!(one_am.allowed);
        assert_eq!(one_am.until, Some(at("2026-11-21T18:00:00Z")));
        let noon = evaluate(&policy, adult, at("2026-11-22T04:00:00Z"), &shanghai(), ALONE);
        assert_eq!(noon.reasons, vec![Reason::Closed]);
        assert_eq!(noon.until, Some(at("2026-11-22T12:00:00Z")));
    }

    #[test]
    fn custom_policy_in_toml() {
        let policy = Policy::from_toml(
            r#"
            name = "custom"
            adult_age = 16
            retention_days = 90
            [minors]
            access = "windows"
            windows = [{ start = "08:00", end = "12:00" }, { start = "14:00", end = "18:00" }]
            "#,
        )
        .unwrap();
        assert_eq!(policy.age_counting, AgeCounting::FullYears);
        assert_eq!(policy.leap_day, LeapDay::March1);
        assert_eq!(policy.upload, Upload::Pseudonymised);
        let youth = date(2012, 1, 1);
        // 12:30 Shanghai, between the windows: refused until 14:00.
        let lunch = evaluate(&policy, youth, at("2026-11-22T04:30:00Z"), &shanghai(), ALONE);
        assert_eq!(lunch.reasons, vec![Reason::YouthHours]);
        assert_eq!(lunch.until, Some(at("2026-11-22T06:00:00Z")));
    }

    #[test]
    fn malformed_policies_say_where() {
        let cases = [
            ("name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"sometimes\"", "minors"),
            ("name = \"x\"\nadult_age = 18\nretention_days = 60\ncolour = 1\n[minors]\naccess = \"forbidden\"", "colour"),
            ("name = \"x\"\nadult_age = 18\n[minors]\naccess = \"forbidden\"", "retention_days"),
            ("name = \"x\"\nadult_age = 40\nretention_days = 60\n[minors]\naccess = \"forbidden\"", "adult_age"),
            ("name = \"x\"\nadult_age = 18\nretention_days = 0\n[minors]\naccess = \"forbidden\"", "retention_days"),
            (
                "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"windows\"\nwindows = [{ start = \"25:00\", end = \"22:00\" }]",
                "25:00",
            ),
            ("name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"windows\"\nwindows = []", "minors.windows"),
            (
                "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"windows\"\nwindows = [{ start = \"09:00\", end = \"09:00\" }]",
                "empty window",
            ),
            ("name = = 1", "(document)"),
            (
                "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"forbidden\"\n[registration]\nkeep_number = false",
                "registration.one_check_in_per_document",
            ),
            (
                "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"forbidden\"\n[students]\npresumed_until = { years_after_birth_year = 19, month = 2, day = 29 }",
                "month 2 day 29",
            ),
            (
                "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"forbidden\"\n[students]\npresumed_until = { years_after_birth_year = 0, month = 3, day = 1 }",
                "years_after_birth_year",
            ),
            ("name = \"x\"\nadult_age = 18\nretention_days = 60\nlanguage = \"fr\"\n[minors]\naccess = \"forbidden\"", "language"),
        ];
        for (text, expected) in cases {
            let error = Policy::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn clock_times() {
        assert_eq!("24:00".parse::<ClockTime>().unwrap().minutes(), 1440);
        assert_eq!("09:05".parse::<ClockTime>().unwrap().to_string(), "09:05");
        for bad in ["24:01", "9:00", "09:60", "0900", "ab:cd", ""] {
            assert!(bad.parse::<ClockTime>().is_err(), "{bad}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn policies() -> impl Strategy<Value = Policy> {
            (0usize..4).prop_map(|which| match which {
                0 => cn(),
                1 => kr(),
                2 => kr_until_2023(),
                _ => {
                    let mut open_hours = cn();
                    open_hours.business_hours.as_mut().unwrap().enforced = true;
                    open_hours
                }
            })
        }

        fn circumstances() -> impl Strategy<Value = Circumstances> {
            (any::<bool>(), proptest::option::of(any::<bool>())).prop_map(|(guardian, student)| Circumstances { guardian, student })
        }

        proptest! {
            /// `until` is exact: the decision holds from `at` until then, and
            /// is another at `until`; with no `until` it holds for years.
            #[test]
            fn until_is_the_next_instant_the_decision_changes(
                policy in policies(),
                birth in (1995i16..=2015, 1i8..=12, 1i8..=28).prop_map(|(y, m, d)| date(y, m, d)),
                at in 1_700_000_000i64..1_900_000_000,
                zone in 0usize..3,
                circumstances in circumstances(),
                fraction in 0.0f64..1.0,
            ) {
                let tz = [shanghai(), seoul(), TimeZone::UTC][zone].clone();
                let at = Timestamp::from_second(at).unwrap();
                let decision = evaluate(&policy, birth, at, &tz, circumstances);
                let outcome = |when: Timestamp| {
                    let later = evaluate(&policy, birth, when, &tz, circumstances);
                    (later.allowed, later.reasons, later.minor)
                };
                // Why a minor is one may change without the decision (an
                // 18th birthday while presumed enrolled): not an `until`.
                let now = (decision.allowed, decision.reasons.clone(), decision.minor);
                match decision.until {
                    Some(until) => {
                        prop_assert!(until > at);
                        let span = until.as_second() - at.as_second();
                        let inside = Timestamp::from_second(at.as_second() + (span as f64 * fraction) as i64).unwrap();
                        prop_assert_eq!(outcome(inside), now.clone(), "at {} inside [{}, {})", inside, at, until);
                        prop_assert_eq!(outcome(until - SignedDuration::from_secs(1)), now.clone(), "just before {}", until);
                        prop_assert_ne!(outcome(until), now, "at {}", until);
                    }
                    None => {
                        let later = Timestamp::from_second(at.as_second() + (fraction * 3.0e8) as i64).unwrap();
                        prop_assert_eq!(outcome(later), now, "at {}", later);
                    }
                }
            }
        }
    }
}
