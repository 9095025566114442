//! What the HTTP API asks of the venue's owner (the daemon's actor), and
//! the answers: the one interface between the two, so neither imports the
//! other.

use netbar_protocol::policy::Circumstances;
use tokio::sync::oneshot;

use crate::venue::CheckInOutcome;

/// Requests the HTTP side hands to the venue's owner.
#[derive(Debug)]
pub(crate) enum Request {
    CheckIn {
        document: netbar_protocol::identity::Document,
        /// The name the desk typed, and who checked the document.
        desk: crate::venue::AtTheDesk,
        circumstances: Circumstances,
        reply: oneshot::Sender<Result<CheckInOutcome, String>>,
    },
    CheckOut {
        ticket: String,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Stations {
        reply: oneshot::Sender<serde_json::Value>,
    },
    Incidents {
        reply: oneshot::Sender<serde_json::Value>,
    },
    Sessions {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Staff orders a station to lock or shows it a notice.
    Command {
        station: netbar_protocol::StationId,
        action: netbar_protocol::messages::Action,
        by: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The floor map and the venue's counts, for the console.
    Floor {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Customers present and sessions open through the last 24 hours.
    Occupancy {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Staff opens a station for a ticket.
    Open {
        station: netbar_protocol::StationId,
        ticket: String,
        by: String,
        reply: oneshot::Sender<Result<(), OpenFailure>>,
    },
    /// Someone is about to see or export personal data: logged first.
    Audit {
        access: crate::journal::DataAccess,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Acknowledge (no note) or resolve (with a note) an incident.
    Transition {
        id: String,
        by: String,
        resolve: Option<String>,
        reply: oneshot::Sender<Result<(), TransitionFailure>>,
    },
}

/// Why a station could not be opened for a ticket.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    UnknownStation(String),
    /// The venue refused the login, with why.
    Refused(String),
    NotRecorded(String),
}

/// Why an incident could not change.
#[derive(Debug)]
pub(crate) enum TransitionFailure {
    Refused(crate::venue::TransitionError),
    NotRecorded(String),
}
