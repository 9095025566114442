//! The HTTP API for the console and ID-card reader bridges, under /api/v1.
//!
//! Every answer that is not a success is JSON with a stable `code` and a
//! `message` a person can read. Nothing but /healthz and the console's
//! static files answers without a session: `POST /api/v1/login` with a
//! user's name and password opens one (valid 12 hours). Programs (ID-card
//! reader bridges) send its token as `Authorization: Bearer …`; the console
//! gets it as a cookie (HttpOnly, SameSite=Strict) and sends the session's
//! CSRF token in `X-CSRF-Token` with every request that changes something.
//! Five wrong passwords for one user within 15 minutes lock that user out
//! for 5 minutes. /metrics is in Prometheus' text format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use jiff::Timestamp;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::feed::sender::LinkView;
use crate::refusals::Refusals;
use crate::requests::Request;
use auth::{LoginAttempts, Role, Session};

pub(crate) mod auth;
mod console;
mod desk;
mod events;
mod incidents;
mod metrics;
mod records;

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

/// The largest request body the API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    requests: mpsc::Sender<Request>,
    store: crate::store::thread::StoreHandle,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    attempts: Arc<LoginAttempts>,
    /// Lets [`auth::PASSWORD_CHECKS_AT_ONCE`] Argon2 checks run at a time.
    password_checks: Arc<tokio::sync::Semaphore>,
    database: std::path::PathBuf,
    refusals: Arc<Refusals>,
    /// The embedded bus's own account of itself (none with an external broker).
    bus: Option<Arc<crate::bus::Health>>,
    zone: jiff::tz::TimeZone,
    clock: crate::clock::Clock,
    /// The venue's rules: what the desk asks and what it may keep.
    policy: Arc<netbar_protocol::policy::Policy>,
    /// The console's first language.
    language: netbar_protocol::local::Language,
    /// The regulator's broker and the outbox's bound, when there is a feed.
    uplink: Option<(String, u64)>,
    /// The regulator link, as the feed's sender publishes it.
    link: watch::Receiver<LinkView>,
    /// The floor map, as the agent's actor publishes it. One receiver
    /// shared by every copy of the state, so the actor's count of
    /// receivers is the open event streams plus this one.
    floor: Arc<watch::Receiver<Arc<serde_json::Value>>>,
    /// Bumped at every sign-out: event streams of the session end.
    sign_outs: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// What the desk works by: the venue's zone and clock, its policy, and the
/// console's first language.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) zone: jiff::tz::TimeZone,
    pub(crate) clock: crate::clock::Clock,
    pub(crate) policy: netbar_protocol::policy::Policy,
    pub(crate) language: netbar_protocol::local::Language,
}

const SESSION_HOURS: i64 = 12;

impl Api {
    pub(crate) fn new(
        requests: mpsc::Sender<Request>,
        store: crate::store::thread::StoreHandle,
        database: std::path::PathBuf,
        (refusals, bus): (Arc<Refusals>, Option<Arc<crate::bus::Health>>),
        Rules { zone, clock, policy, language }: Rules,
        (uplink, link): (Option<(String, u64)>, watch::Receiver<LinkView>),
        floor: watch::Receiver<Arc<serde_json::Value>>,
    ) -> Api {
        Api {
            requests,
            store,
            sessions: Arc::default(),
            attempts: Arc::default(),
            password_checks: Arc::new(tokio::sync::Semaphore::new(auth::PASSWORD_CHECKS_AT_ONCE)),
            database,
            refusals,
            bus,
            zone,
            clock,
            policy: Arc::new(policy),
            language,
            uplink,
            link,
            floor: Arc::new(floor),
            sign_outs: Arc::new(watch::channel(0).0),
        }
    }

    /// The feed's state as the store has it, with the broker and the bound.
    async fn uplink_status(&self) -> Result<Option<(crate::store::OutboxStatus, &str, u64)>, ApiError> {
        let Some((broker, max)) = &self.uplink else { return Ok(None) };
        // From the store's own thread: no second connection, no write.
        let status = self
            .store
            .outbox_status()
            .await
            .map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error.to_string()))?;
        Ok(Some((status, broker, *max)))
    }

    /// The routes.
    pub(crate) fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/healthz", get(metrics::healthz))
            .route("/metrics", get(metrics::metrics))
            .route("/api/v1/login", post(auth::login))
            .route("/api/v1/logout", post(auth::logout))
            .route("/api/v1/checkins", post(desk::check_in))
            .route("/api/v1/checkins/questions", post(desk::questions))
            .route("/api/v1/checkins/{ticket}", delete(desk::check_out))
            .route("/api/v1/stations", get(desk::stations))
            .route("/api/v1/me", get(auth::me))
            .route("/api/v1/incidents", get(incidents::incidents))
            .route("/api/v1/sessions", get(desk::sessions))
            .route("/api/v1/stations/{id}/commands", post(desk::command))
            .route("/api/v1/incidents/{id}/acknowledge", post(incidents::acknowledge))
            .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
            .route("/api/v1/uplink", get(metrics::uplink))
            .route("/api/v1/floor", get(desk::floor))
            .route("/api/v1/events", get(events::events))
            .route("/api/v1/occupancy", get(desk::occupancy))
            .route("/api/v1/stations/{id}/open", post(desk::open))
            .route("/api/v1/records", get(records::records))
            .route("/", get(|State(api): State<Api>| async move { console::page("index.html", api.language) }))
            .route(
                "/console/{file}",
                get(|State(api): State<Api>, Path(file): Path<String>| async move { console::page(&file, api.language) }),
            )
            .layer(axum::middleware::from_fn_with_state(self.clone(), auth::csrf_guard))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }

    /// The signed-in user behind the request's bearer token or cookie.
    fn session(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Sign in first: POST /api/v1/login, then send Authorization: Bearer <token> (or the session cookie).",
            )
        };
        let token = auth::session_token(headers).ok_or_else(unauthorized)?;
        let mut sessions = self.sessions.lock().map_err(|_| unauthorized())?;
        match sessions.get(&token) {
            Some(session) if session.expires > Timestamp::now() => Ok(session.clone()),
            Some(_) => {
                sessions.remove(&token);
                Err(unauthorized())
            }
            None => Err(unauthorized()),
        }
    }

    /// A manager's session, or why not.
    fn manager(&self, headers: &HeaderMap, what: &str) -> Result<Session, ApiError> {
        let session = self.session(headers)?;
        if session.role != Role::Manager {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "manager_only", format!("Only a manager may {what}.")));
        }
        Ok(session)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
        let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "The agent is stopping; try again in a moment.");
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }
}
