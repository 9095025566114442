//! The front desk: check-ins and check-outs, the floor, stations and
//! their sessions, staff commands.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use netbar_protocol::identity::{self, DocumentType};
use netbar_protocol::policy::Circumstances;
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError, ApiResult};
use crate::requests::{OpenFailure, Request};
use crate::venue::CheckInOutcome;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckInRequest {
    /// "cn_id", "kr_rrn" or "other".
    document_type: String,
    number: String,
    /// For "other" documents: the birth date as typed from the document.
    #[serde(default)]
    birth_date: Option<jiff::civil::Date>,
    /// The name on the document (kept in the registration log).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    guardian: bool,
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

pub(super) async fn check_in(State(api): State<Api>, headers: HeaderMap, Json(request): Json<CheckInRequest>) -> ApiResult {
    let session = api.session(&headers)?;
    let today = api.today();
    let document = match (request.document_type.as_str(), request.birth_date) {
        ("cn_id", _) => identity::validate(DocumentType::CnId, &request.number, today),
        ("kr_rrn", _) => identity::validate(DocumentType::KrRrn, &request.number, today),
        ("other", Some(birth_date)) => identity::other_document(&request.number, birth_date, today),
        ("other", None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "birth_date_required",
                "Enter the birth date shown on the document.",
            ));
        }
        (other, _) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "document_type",
                format!("Unknown document type {other:?}: cn_id, kr_rrn or other."),
            ));
        }
    };
    let document = document
        .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", format!("{} ({})", error, error.code())))?;
    let name = request.name.map(|name| name.trim().to_owned()).filter(|name| !name.is_empty());
    if name.as_ref().is_some_and(|name| name.chars().count() > 100 || name.chars().any(char::is_control)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "A name has at most 100 characters and no control characters.",
        ));
    }
    let outcome = api
        .ask(|reply| Request::CheckIn { document, name, circumstances: Circumstances { guardian: request.guardian }, reply })
        .await?
        .map_err(|error| {
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
