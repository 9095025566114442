//! The HTTP API for the console and ID-card reader bridges, under /api/v1.
//!
//! Every answer that is not a success is JSON with a stable `code` and a
//! `message` a person can read. Nothing but /healthz answers without a
//! session token: `POST /api/v1/login` with a user's name and password
//! returns one (valid 12 hours), sent as `Authorization: Bearer …`.
//! /metrics is in Prometheus' text format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use jiff::{SignedDuration, Timestamp};
use netbar_protocol::identity::{self, DocumentType};
use netbar_protocol::policy::Circumstances;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::run::Refusals;
use crate::users::Role;
use crate::venue::CheckInOutcome;

/// Requests the HTTP side hands to the venue's owner.
#[derive(Debug)]
pub(crate) enum Request {
    CheckIn {
        document: identity::Document,
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
    /// Acknowledge (no note) or resolve (with a note) an incident.
    Transition {
        id: String,
        by: String,
        resolve: Option<String>,
        reply: oneshot::Sender<Result<(), TransitionFailure>>,
    },
}

/// Why an incident could not change.
#[derive(Debug)]
pub(crate) enum TransitionFailure {
    Refused(crate::venue::TransitionError),
    NotRecorded(String),
}

/// An error as the API reports it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// A signed-in user.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: Role,
    expires: Timestamp,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    requests: mpsc::Sender<Request>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    database: std::path::PathBuf,
    refusals: Arc<Refusals>,
    zone: jiff::tz::TimeZone,
    clock: crate::run::Clock,
    /// The regulator's broker and the outbox's bound, when there is a feed.
    uplink: Option<(String, u64)>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

const SESSION_HOURS: i64 = 12;

impl Api {
    pub(crate) fn new(
        requests: mpsc::Sender<Request>,
        database: std::path::PathBuf,
        refusals: Arc<Refusals>,
        zone: jiff::tz::TimeZone,
        clock: crate::run::Clock,
        uplink: Option<(String, u64)>,
    ) -> Api {
        Api { requests, sessions: Arc::default(), database, refusals, zone, clock, uplink }
    }

    /// The feed's state as the store has it, with the broker and the bound.
    async fn uplink_status(&self) -> Result<Option<(crate::store::OutboxStatus, &str, u64)>, ApiError> {
        let Some((broker, max)) = &self.uplink else { return Ok(None) };
        let database = self.database.clone();
        let status = tokio::task::spawn_blocking(move || crate::store::Store::open(&database, 1).and_then(|store| store.outbox_status()))
            .await
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?
            .map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error.to_string()))?;
        Ok(Some((status, broker, *max)))
    }

    /// The routes.
    pub(crate) fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
            .route("/metrics", get(metrics))
            .route("/api/v1/login", post(login))
            .route("/api/v1/checkins", post(check_in))
            .route("/api/v1/checkins/{ticket}", delete(check_out))
            .route("/api/v1/stations", get(stations))
            .route("/api/v1/me", get(me))
            .route("/api/v1/incidents", get(incidents))
            .route("/api/v1/sessions", get(sessions))
            .route("/api/v1/stations/{id}/commands", post(command))
            .route("/api/v1/incidents/{id}/acknowledge", post(acknowledge))
            .route("/api/v1/incidents/{id}/resolve", post(resolve))
            .route("/api/v1/uplink", get(uplink))
            .with_state(self)
    }

    /// The signed-in user behind the request's bearer token.
    fn session(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Sign in first: POST /api/v1/login, then send Authorization: Bearer <token>.",
            )
        };
        let token =
            headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(unauthorized)?;
        let mut sessions = self.sessions.lock().map_err(|_| unauthorized())?;
        match sessions.get(token) {
            Some(session) if session.expires > Timestamp::now() => Ok(session.clone()),
            Some(_) => {
                sessions.remove(token);
                Err(unauthorized())
            }
            None => Err(unauthorized()),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
        let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "The agent is stopping; try again in a moment.");
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    name: String,
    password: String,
}

async fn login(State(api): State<Api>, Json(credentials): Json<Credentials>) -> ApiResult {
    let database = api.database.clone();
    let name = credentials.name.clone();
    // Argon2 is slow on purpose: off the async threads.
    let checked = tokio::task::spawn_blocking(move || -> Option<Role> {
        let store = crate::store::Store::open(&database, 1).ok()?;
        let (role, hash) = store.user(&name).ok()??;
        crate::users::verify(&credentials.password, &hash).then(|| Role::parse(&role)).flatten()
    })
    .await
    .ok()
    .flatten();
    let role = checked.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "Unknown user or wrong password."))?;
    let token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let expires = Timestamp::now() + SignedDuration::from_hours(SESSION_HOURS);
    if let Ok(mut sessions) = api.sessions.lock() {
        sessions.retain(|_, session| session.expires > Timestamp::now());
        sessions.insert(token.clone(), Session { user: credentials.name.clone(), role, expires });
    }
    Ok(Json(json!({ "token": token, "user": credentials.name, "role": role, "expires": expires })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInRequest {
    /// "cn_id", "kr_rrn" or "other".
    document_type: String,
    number: String,
    /// For "other" documents: the birth date as typed from the document.
    #[serde(default)]
    birth_date: Option<jiff::civil::Date>,
    #[serde(default)]
    guardian: bool,
}

/// What the cashier reads aloud for each refusal reason.
fn explain(reason: &str) -> &'static str {
    match reason {
        "under_age" => "Below the minimum age: minors may not be admitted.",
        "youth_hours" => "Outside the hours in which youths may be admitted without a guardian.",
        "closed" => "Outside the venue's business hours.",
        "already_checked_in" => "This document is checked in already; check it out first.",
        _ => "Refused by the venue's rules.",
    }
}

async fn check_in(State(api): State<Api>, headers: HeaderMap, Json(request): Json<CheckInRequest>) -> ApiResult {
    let session = api.session(&headers)?;
    let today = api.clock.now().to_zoned(api.zone.clone()).date();
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
    let outcome =
        api.ask(|reply| Request::CheckIn { document, circumstances: Circumstances { guardian: request.guardian }, reply }).await?.map_err(
            |error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_recorded", format!("The check-in was NOT recorded: {error}")),
        )?;
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

async fn check_out(State(api): State<Api>, headers: HeaderMap, Path(ticket): Path<String>) -> ApiResult {
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

async fn me(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let session = api.session(&headers)?;
    Ok(Json(json!({ "user": session.user, "role": session.role, "expires": session.expires })).into_response())
}

async fn stations(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Stations { reply }).await?).into_response())
}

async fn sessions(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Sessions { reply }).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum StaffCommand {
    /// Lock the station, ending its session.
    Lock,
    /// Show a notice.
    Notify {
        text: String,
        #[serde(default)]
        evacuation: bool,
    },
}

async fn command(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, Json(command): Json<StaffCommand>) -> ApiResult {
    let session = api.session(&headers)?;
    if session.role != Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "manager_only", "Only a manager may command a station."));
    }
    let station: netbar_protocol::StationId = id
        .parse()
        .map_err(|error: netbar_protocol::ids::IdError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "station", error.to_string()))?;
    let action = match command {
        StaffCommand::Lock => netbar_protocol::messages::Action::Lock { reason: "staff".into() },
        StaffCommand::Notify { text, evacuation } => {
            if text.trim().is_empty() || text.len() > 500 {
                return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "text", "A notice has 1 to 500 characters."));
            }
            let level =
                if evacuation { netbar_protocol::messages::NoticeLevel::Evacuation } else { netbar_protocol::messages::NoticeLevel::Info };
            netbar_protocol::messages::Action::Notify { level, text }
        }
    };
    match api.ask(|reply| Request::Command { station: station.clone(), action, by: session.user, reply }).await? {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({ "station": station.as_str(), "sent": true }))).into_response()),
        Err(error) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_station", error)),
    }
}

async fn incidents(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Incidents { reply }).await?).into_response())
}

async fn transition(api: &Api, id: String, by: String, resolve: Option<String>) -> ApiResult {
    match api.ask(|reply| Request::Transition { id: id.clone(), by, resolve, reply }).await? {
        Ok(()) => Ok(Json(json!({ "incident": id })).into_response()),
        Err(TransitionFailure::Refused(error @ crate::venue::TransitionError::Unknown(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_incident", error.to_string()))
        }
        Err(TransitionFailure::Refused(error)) => Err(ApiError::new(StatusCode::CONFLICT, "incident_resolved", error.to_string())),
        Err(TransitionFailure::NotRecorded(error)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_recorded", format!("The change was NOT recorded: {error}")))
        }
    }
}

async fn acknowledge(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let session = api.session(&headers)?;
    transition(&api, id, session.user, None).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    note: String,
}

async fn resolve(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, Json(resolution): Json<Resolution>) -> ApiResult {
    let session = api.session(&headers)?;
    if session.role != Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "manager_only", "Only a manager may resolve an incident."));
    }
    let note = resolution.note.trim().to_owned();
    if note.is_empty() || note.len() > 1000 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "note_required", "Say in 1 to 1000 characters what was done."));
    }
    transition(&api, id, session.user, Some(note)).await
}

/// The regulator feed for the console: connected or not, the backlog
/// against the outbox's bound, and a warning from half full.
async fn uplink(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let Some((status, broker, max)) = api.uplink_status().await? else {
        return Ok(Json(json!({ "configured": false })).into_response());
    };
    let percent = status.pending as f64 * 100.0 / max as f64;
    let warning = (status.pending * 2 >= max).then(|| {
        format!(
            "The regulator outbox is {percent:.0}% full ({} of {max} messages waiting). Check the connection to {broker}; when it is full, new check-ins are refused.",
            status.pending
        )
    });
    Ok(Json(json!({
        "configured": true,
        "broker": broker,
        "connected": status.connected,
        "since": status.since,
        "backlog": status.pending,
        "outbox_max": max,
        "fill_percent": percent,
        "oldest_unsent": status.oldest,
        "last_seq": status.last_seq,
        "last_acknowledged": status.last_acked,
        "warning": warning,
    }))
    .into_response())
}

async fn metrics(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let mut text = String::from(
        "# HELP netbar_messages_refused_total Messages refused from the bus, by reason.\n# TYPE netbar_messages_refused_total counter\n",
    );
    for (reason, count) in api.refusals.snapshot() {
        text.push_str(&format!("netbar_messages_refused_total{{reason=\"{reason}\"}} {count}\n"));
    }
    if let Some((status, _, max)) = api.uplink_status().await? {
        text.push_str(&format!(
            "# HELP netbar_uplink_connected Whether the regulator's broker is connected.\n# TYPE netbar_uplink_connected gauge\nnetbar_uplink_connected {}\n\
             # HELP netbar_uplink_backlog Messages in the outbox not yet acknowledged by the regulator's broker.\n# TYPE netbar_uplink_backlog gauge\nnetbar_uplink_backlog {}\n\
             # HELP netbar_uplink_outbox_max The outbox's bound.\n# TYPE netbar_uplink_outbox_max gauge\nnetbar_uplink_outbox_max {max}\n\
             # HELP netbar_uplink_last_acknowledged The highest sequence number the regulator's broker acknowledged.\n# TYPE netbar_uplink_last_acknowledged gauge\nnetbar_uplink_last_acknowledged {}\n",
            u8::from(status.connected),
            status.pending,
            status.last_acked
        ));
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}
