//! The station's local interface: what the collector and the lock screen
//! (and `netbar-collector login`) say to each other over a loopback socket,
//! one JSON object a line.
//!
//! A login or logout is one request and one [`LoginAnswer`] on a connection
//! of its own. A lock screen opens a connection with [`Request::watch`] and
//! keeps it: the collector sends it the venue's [`Look`] once, then every
//! [`Screen`] it must show and a [`ToScreen::Ping`] every few hundred
//! milliseconds; the lock screen answers each ping from its event loop and
//! says what it shows ([`FromScreen`]). A connection that ends, or a ping
//! left unanswered, is a lock screen killed or hung.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::StationId;
use crate::messages::NoticeLevel;

/// The first line of a connection to the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// A customer typed this ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The customer ends the session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logout: bool,
    /// A lock screen attaches: the connection stays open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watch: bool,
}

/// The collector's answer to a login or logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginAnswer {
    /// The station is unlocked for a session.
    Unlocked {
        /// The session opened.
        session_id: String,
    },
    /// Refused, with the agent's reason codes and what they rest on.
    Refused {
        /// Reason codes (`unknown_ticket`, `ticket_in_use`, `under_age`,
        /// `youth_hours`, `closed`).
        reasons: Vec<String>,
        /// The agent's words, in English.
        message: String,
        /// For `ticket_in_use`: where.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        station: Option<StationId>,
        /// When the refusal stops holding, if anything ahead changes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowed_from: Option<Timestamp>,
    },
    /// The request waits in the spool: the agent is not reachable now.
    Queued {
        /// The request waiting.
        request_id: String,
    },
    /// The session is ending; the station locks.
    LoggingOut {
        /// The session ending.
        session_id: String,
    },
    /// There is no session to end.
    NoSession,
    /// The request could not be taken.
    Error {
        /// Why.
        error: String,
    },
}

/// A language the lock screen speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// 中文 (simplified Chinese).
    Zh,
    /// English.
    En,
    /// 한국어.
    Ko,
}

impl Language {
    /// Every language, in the order the switch offers them.
    pub const ALL: [Language; 3] = [Language::Zh, Language::En, Language::Ko];

    /// The language's name in itself, for the switch.
    pub fn own_name(self) -> &'static str {
        match self {
            Language::Zh => "中文",
            Language::En => "English",
            Language::Ko => "한국어",
        }
    }
}

/// What stays the same while the collector runs: the venue's name, the
/// station, the languages offered, the way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Look {
    /// The venue's name as customers know it.
    pub venue_name: String,
    /// This station's id.
    pub station: StationId,
    /// The languages offered; the first is shown until the customer picks another.
    pub languages: Vec<Language>,
    /// The way to the nearest exit from this station, per language.
    pub exits: BTreeMap<Language, String>,
    /// Font files to load besides the system's (a CJK font where the system has none).
    pub fonts: Vec<String>,
}

/// The session the lock screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShownSession {
    /// The session's id.
    pub id: String,
    /// When it ends, if it has an end.
    pub until: Option<Timestamp>,
}

/// A notice for the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// How urgent.
    pub level: NoticeLevel,
    /// The agent's or the staff's words.
    pub text: String,
    /// For the warning before a session ends: when it ends.
    pub ends: Option<Timestamp>,
    /// When it came.
    pub at: Timestamp,
}

/// An evacuation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evacuation {
    /// The fire or gas incident.
    pub incident: String,
    /// The agent's words.
    pub text: String,
}

/// What the lock screen must show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    /// Covering the station, asking for a ticket.
    pub locked: bool,
    /// The session open, if any.
    pub session: Option<ShownSession>,
    /// The latest notice, until the customer closes it or the session ends.
    pub notice: Option<Notice>,
    /// Above everything until the incident is resolved.
    pub evacuation: Option<Evacuation>,
}

/// What a lock screen shows, as it tells the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// The whole screen, asking for a ticket.
    Locked,
    /// The strip of a session.
    Session,
}

/// A line from the collector to an attached lock screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToScreen {
    /// Sent first.
    Look(Look),
    /// What to show now.
    Screen(Screen),
    /// Answer with the same number.
    Ping(u64),
    /// The attachment is refused (another lock screen is attached).
    Refused(String),
}

/// A line from an attached lock screen to the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromScreen {
    /// The answer to a ping.
    Pong(u64),
    /// What it shows now.
    Shown(Shown),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_written() {
        let request: Request = serde_json::from_str(r#"{"ticket":"K7Q-2M9"}"#).unwrap();
        assert_eq!(request, Request { ticket: Some("K7Q-2M9".into()), ..Request::default() });
        assert_eq!(serde_json::to_string(&Request { watch: true, ..Request::default() }).unwrap(), r#"{"watch":true}"#);
        assert!(serde_json::from_str::<Request>(r#"{"ticket":"a","extra":1}"#).is_err());
        let refused = LoginAnswer::Refused {
            reasons: vec!["ticket_in_use".into()],
            message: "This ticket is in use at station st-12.".into(),
            station: Some("st-12".parse().unwrap()),
            allowed_from: None,
        };
        let line = serde_json::to_string(&refused).unwrap();
        assert!(line.starts_with(r#"{"status":"refused""#), "{line}");
        assert_eq!(serde_json::from_str::<LoginAnswer>(&line).unwrap(), refused);
        assert_eq!(serde_json::to_string(&ToScreen::Ping(7)).unwrap(), r#"{"ping":7}"#);
        assert_eq!(serde_json::from_str::<FromScreen>(r#"{"shown":"locked"}"#).unwrap(), FromScreen::Shown(Shown::Locked));
        let look: Look = serde_json::from_str(
            r#"{"venue_name":"星空网吧","station":"st-1","languages":["zh","en"],"exits":{"zh":"左转","en":"left"},"fonts":[]}"#,
        )
        .unwrap();
        assert_eq!(look.exits[&Language::En], "left");
    }
}
