//! The front desk: check-ins and check-outs, the floor, stations and
//! their sessions, staff commands.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use netbar_protocol::identity::{self, Document};
use netbar_protocol::policy::{self, Circumstances, DeskDocument};
use serde::Deserialize;
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use super::{Api, ApiError, ApiResult};
use crate::requests::{OpenFailure, Request};
use crate::venue::{AtTheDesk, CheckInOutcome};

/// A document as the desk typed it, in a check-in and in its questions.
/// The number is wiped from memory when the request is dropped: under a
/// policy that keeps no numbers it is read once, to validate it, and cut at
/// once to what may be kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckInRequest {
    /// "cn_id", "cn_prc", "kr_rrn" or "other", among those the policy takes.
    document_type: String,
    /// Absent only for another document at a venue that keeps no numbers.
    #[serde(default)]
    number: Option<TypedNumber>,
    /// For "other" documents: the birth date as typed from the document.
    #[serde(default)]
    birth_date: Option<jiff::civil::Date>,
    /// The name on the document (kept in the registration log where the
    /// policy keeps names).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    guardian: bool,
    /// Whether the person is enrolled at a school whose students count as
    /// minors, where the policy has such a rule; absent: the policy's
    /// presumption holds.
    #[serde(default)]
    student: Option<bool>,
}

/// A document number as typed: text only, wiped from memory when dropped,
/// never printed (not even by `{:?}`). Anything else is refused without
/// repeating it (serde's own message would quote the value: `invalid type:
/// integer 9001011234568`).
pub(super) struct TypedNumber(Zeroizing<String>);

impl std::fmt::Debug for TypedNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TypedNumber({} characters)", self.0.chars().count())
    }
}

/// Why a number that is not text is refused, without repeating it.
const NOT_TEXT: &str = "the document number must be text, in quotes";

impl<'de> Deserialize<'de> for TypedNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TypedNumber, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = TypedNumber;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("the document number as text")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TypedNumber, E> {
                Ok(TypedNumber(Zeroizing::new(text.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<TypedNumber, E> {
                Ok(TypedNumber(Zeroizing::new(text)))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<TypedNumber, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<TypedNumber, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<TypedNumber, E> {
                Err(E::custom(NOT_TEXT))
            }
        }
        // Any, not str: asked for a string, a deserializer words the error
        // itself, quoting what it found.
        deserializer.deserialize_any(Text)
    }
}

/// What the cashier reads aloud for each refusal reason.
pub(super) fn explain(reason: &str) -> &'static str {
    match reason {
        "under_age" => "Below the minimum age: minors may not be admitted.",
        "youth_hours" => "Outside the hours in which youths may be admitted without a guardian.",
        "closed" => "Outside the venue's business hours.",
        "already_checked_in" => "This document is checked in already; check it out first.",
        _ => "Refused by the venue's rules.",
    }
}

impl Api {
    /// The typed document, validated and cut at once to what the policy's
    /// registration keeps; the whole number is wiped.
    fn document(&self, typed: &CheckInRequest) -> Result<Document, ApiError> {
        let today = self.today();
        let number = typed.number.as_ref().map_or("", |number| number.0.as_str());
        let offered = || self.policy.documents.iter().map(|document| document.code()).collect::<Vec<_>>().join(", ");
        let document = DeskDocument::from_code(&typed.document_type).filter(|document| self.policy.documents.contains(document));
        let Some(document) = document else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "document_type",
                format!("This venue does not take that document type: its policy takes {}.", offered()),
            ));
        };
        let validated = match (document.numbering(), typed.birth_date) {
            (Some(numbering), _) => identity::validate(numbering, number, today),
            (None, Some(birth_date)) if number.trim().is_empty() && !self.policy.registration.keep_number => {
                identity::unnumbered_document(birth_date, today)
            }
            (None, Some(birth_date)) => identity::other_document(number, birth_date, today),
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "birth_date_required",
                    "Enter the birth date shown on the document.",
                ));
            }
        };
        let mut whole = validated.map_err(|error| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", format!("{} ({})", error, error.code()))
        })?;
        let kept = self.policy.registration.kept(&whole);
        whole.number.zeroize();
        Ok(kept)
    }
}

pub(super) async fn check_in(State(api): State<Api>, headers: HeaderMap, Json(request): Json<CheckInRequest>) -> ApiResult {
    let session = api.session(&headers)?;
    let document = api.document(&request)?;
    let name = request.name.map(|name| name.trim().to_owned()).filter(|name| !name.is_empty() && api.policy.registration.keep_name);
    if name.as_ref().is_some_and(|name| name.chars().count() > 100 || name.chars().any(char::is_control)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "A name has at most 100 characters and no control characters.",
        ));
    }
    let desk = AtTheDesk { name, cashier: session.user.clone() };
    let circumstances = Circumstances { guardian: request.guardian, student: request.student };
    let outcome = api.ask(|reply| Request::CheckIn { document, desk, circumstances, reply }).await?.map_err(|error| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_recorded", format!("The check-in was NOT recorded: {error}"))
    })?;
    let body = match &outcome {
        CheckInOutcome::Admitted { .. } => json!({ "checked_in_by": session.user, "result": outcome }),
        CheckInOutcome::Refused { reasons, .. } => {
            let message: Vec<&str> = reasons.iter().map(|reason| explain(reason)).collect();
            json!({ "checked_in_by": session.user, "result": outcome, "message": message.join(" ") })
        }
    };
    let status = if matches!(outcome, CheckInOutcome::Admitted { .. }) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(body)).into_response())
}

/// What the desk should ask before checking this document in: whether a
/// guardian is there, whether the person is enrolled at school, each only
/// when the answer changes the decision now. It takes what a check-in
/// takes (the name and answers given so far aside); nothing is recorded.
pub(super) async fn questions(State(api): State<Api>, headers: HeaderMap, Json(request): Json<CheckInRequest>) -> ApiResult {
    api.session(&headers)?;
    let document = api.document(&request)?;
    let (policy, zone, now) = (&*api.policy, &api.zone, api.clock.now());
    let alone = Circumstances { guardian: request.guardian, student: None };
    let decision = policy::evaluate(policy, document.birth_date, now, zone, alone);
    Ok(Json(json!({
        "kind": document.kind.as_str(),
        "birth_date": document.birth_date,
        "permanent_residence": document.permanent_residence.map(|card| json!({
            "edition": card.edition,
            "nationality": { "alpha2": card.nationality.alpha2, "alpha3": card.nationality.alpha3, "numeric": card.nationality.numeric, "name": card.nationality.name },
            "province": { "code": card.province.code, "zh": card.province.name_zh, "en": card.province.name_en },
        })),
        "youth": decision.youth,
        "student": policy::asks_student(policy, document.birth_date, now, zone, alone),
        "guardian": policy::asks_guardian(policy, document.birth_date, now, zone, Circumstances { guardian: false, student: None }),
    }))
    .into_response())
}

pub(super) async fn check_out(State(api): State<Api>, headers: HeaderMap, Path(ticket): Path<String>) -> ApiResult {
    api.session(&headers)?;
    let ticket = ticket.trim().to_ascii_uppercase();
    match api.ask(|reply| Request::CheckOut { ticket: ticket.clone(), reply }).await? {
        Ok(true) => Ok(Json(json!({ "ticket": ticket, "checked_out": true })).into_response()),
        Ok(false) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_ticket", format!("No active check-in has ticket {ticket}."))),
        Err(error) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_recorded", format!("The check-out was NOT recorded: {error}")))
        }
    }
}

pub(super) async fn stations(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Stations { reply }).await?).into_response())
}

pub(super) async fn sessions(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Sessions { reply }).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum StaffCommand {
    /// Lock the station, ending its session.
    Lock,
    /// Show a notice.
    Notify {
        text: String,
        #[serde(default)]
        evacuation: bool,
    },
}

pub(super) async fn command(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(command): Json<StaffCommand>,
) -> ApiResult {
    let session = api.manager(&headers, "command a station")?;
    let station: netbar_protocol::StationId = id
        .parse()
        .map_err(|error: netbar_protocol::ids::IdError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "station", error.to_string()))?;
    let action = match command {
        StaffCommand::Lock => netbar_protocol::messages::Action::Lock { reason: "staff".into() },
        StaffCommand::Notify { text, evacuation } => {
            if text.trim().is_empty() || text.chars().count() > 500 {
                return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "text", "A notice has 1 to 500 characters."));
            }
            let level =
                if evacuation { netbar_protocol::messages::NoticeLevel::Evacuation } else { netbar_protocol::messages::NoticeLevel::Info };
            netbar_protocol::messages::Action::Notify { level, text, ends: None, incident: None }
        }
    };
    match api.ask(|reply| Request::Command { station: station.clone(), action, by: session.user, reply }).await? {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({ "station": station.as_str(), "sent": true }))).into_response()),
        Err(error) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_station", error)),
    }
}

pub(super) async fn floor(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Floor { reply }).await?).into_response())
}

pub(super) async fn occupancy(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Occupancy { reply }).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenRequest {
    ticket: String,
}

/// The desk opens a station for a checked-in customer's ticket.
pub(super) async fn open(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(request): Json<OpenRequest>,
) -> ApiResult {
    let session = api.session(&headers)?;
    let station: netbar_protocol::StationId = id
        .parse()
        .map_err(|error: netbar_protocol::ids::IdError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "station", error.to_string()))?;
    match api.ask(|reply| Request::Open { station: station.clone(), ticket: request.ticket, by: session.user, reply }).await? {
        Ok(()) => Ok(Json(json!({ "station": station.as_str(), "opened": true })).into_response()),
        Err(OpenFailure::UnknownStation(message)) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_station", message)),
        Err(OpenFailure::Refused(message)) => Err(ApiError::new(StatusCode::CONFLICT, "login_refused", message)),
        Err(OpenFailure::NotRecorded(message)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_recorded", message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a number sent as a JSON number was refused by serde
    /// with its digits in the message, which the API answers with.
    #[test]
    fn a_number_sent_as_a_number_is_refused_without_repeating_it() {
        for body in
            [r#"{"document_type":"kr_rrn","number":9001011234568}"#, r#"{"document_type":"kr_rrn","number":9001011234568123456789}"#]
        {
            let error = serde_json::from_str::<CheckInRequest>(body).unwrap_err().to_string();
            assert!(error.contains("the document number must be text") && !error.contains("1234568"), "{error}");
        }
        let typed: CheckInRequest = serde_json::from_str(r#"{"document_type":"kr_rrn","number":"080315-3123454"}"#).unwrap();
        assert!(!format!("{typed:?}").contains("3123454"), "{typed:?}");
        let typed: CheckInRequest = serde_json::from_str(r#"{"document_type":"kr_rrn","number":"080315-3"}"#).unwrap();
        assert_eq!(typed.number.map(|number| number.0.to_string()).as_deref(), Some("080315-3"));
    }
}
