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
use jiff::{SignedDuration, Timestamp};
use netbar_protocol::identity::{self, DocumentType};
use netbar_protocol::policy::Circumstances;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::refusals::Refusals;
use crate::users::Role;
use crate::venue::CheckInOutcome;

/// Requests the HTTP side hands to the venue's owner.
#[derive(Debug)]
pub(crate) enum Request {
    CheckIn {
        document: identity::Document,
        /// The customer's name as on the document, when the desk typed it.
        name: Option<String>,
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
        reply: oneshot::Sender<Result<(), (StatusCode, &'static str, String)>>,
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
    /// What a console must echo in `X-CSRF-Token` when it signs in by cookie.
    csrf: String,
}

/// Wrong passwords for one user name, and the attempts being checked now.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Timestamp,
    locked_until: Option<Timestamp>,
    /// Passwords of this name being checked at this moment: they count
    /// against the limit before their answer, so guesses sent at once
    /// cannot all slip in under it.
    checking: u32,
}

/// Most user names whose wrong passwords are remembered; beyond it the
/// oldest windows are forgotten first (names are at most
/// [`MAX_NAME_CHARS`] characters, so this bounds the memory it takes).
const FAILURES_KEPT: usize = 4096;
/// The longest user name the console accepts.
const MAX_NAME_CHARS: usize = 64;
/// The longest password accepted (Argon2 hashes it whole).
const MAX_PASSWORD_CHARS: usize = 256;
/// Passwords checked at once: Argon2 takes about 19 MiB each, on purpose.
const PASSWORD_CHECKS_AT_ONCE: usize = 2;
/// The largest request body the API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Wrong passwords within [`FAILURE_WINDOW_MINUTES`] before a lock-out.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW_MINUTES: i64 = 15;
const LOCKOUT_MINUTES: i64 = 5;
/// The session cookie's name.
const COOKIE: &str = "netbar_session";

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    requests: mpsc::Sender<Request>,
    store: crate::run::StoreHandle,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    attempts: Arc<LoginAttempts>,
    /// Lets [`PASSWORD_CHECKS_AT_ONCE`] Argon2 checks run at a time.
    password_checks: Arc<tokio::sync::Semaphore>,
    database: std::path::PathBuf,
    refusals: Arc<Refusals>,
    /// The embedded bus's own account of itself (none with an external broker).
    bus: Option<Arc<crate::bus::Health>>,
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
        store: crate::run::StoreHandle,
        database: std::path::PathBuf,
        (refusals, bus): (Arc<Refusals>, Option<Arc<crate::bus::Health>>),
        zone: jiff::tz::TimeZone,
        clock: crate::run::Clock,
        uplink: Option<(String, u64)>,
    ) -> Api {
        Api {
            requests,
            store,
            sessions: Arc::default(),
            attempts: Arc::default(),
            password_checks: Arc::new(tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE)),
            database,
            refusals,
            bus,
            zone,
            clock,
            uplink,
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
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/api/v1/login", post(login))
            .route("/api/v1/logout", post(logout))
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
            .route("/api/v1/floor", get(floor))
            .route("/api/v1/events", get(events))
            .route("/api/v1/occupancy", get(occupancy))
            .route("/api/v1/stations/{id}/open", post(open))
            .route("/api/v1/records", get(records))
            .route("/", get(|| async { crate::console::page("index.html") }))
            .route("/console/{file}", get(|Path(file): Path<String>| async move { crate::console::page(&file) }))
            .layer(axum::middleware::from_fn_with_state(self.clone(), csrf_guard))
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
        let token = session_token(headers).ok_or_else(unauthorized)?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    name: String,
    password: String,
}

/// The session token of a request: its bearer token, else its cookie.
fn session_token(headers: &HeaderMap) -> Option<String> {
    bearer_token(headers).or_else(|| cookie_token(headers))
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(|token| token.trim().to_owned())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned))
}

/// A request that changes something and signs in by cookie must carry the
/// session's CSRF token: another site's page cannot read it.
async fn csrf_guard(State(api): State<Api>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    let headers = request.headers();
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Only a program holding a valid bearer token goes without: any other
    // Authorization header does not spare a cookie's request the check.
    let bearer_session = bearer_token(headers).is_some_and(|token| api.sessions.lock().is_ok_and(|sessions| sessions.contains_key(&token)));
    if changes
        && !bearer_session
        && request.uri().path() != "/api/v1/login"
        && let Some(token) = cookie_token(headers)
    {
        let expected = api.sessions.lock().ok().and_then(|sessions| sessions.get(&token).map(|session| session.csrf.clone()));
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if expected.is_none() || sent != expected.as_deref() {
            return ApiError::new(StatusCode::FORBIDDEN, "csrf", "This page is out of date or not ours: reload it and try again.")
                .into_response();
        }
    }
    next.run(request).await
}

/// The wrong passwords of each user name, and the checks under way: what
/// locks a user out.
#[derive(Debug, Default)]
struct LoginAttempts {
    failures: Mutex<HashMap<String, Failures>>,
}

/// Why a password may not be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotNow {
    /// Locked out for this many more minutes.
    LockedOut(i64),
    /// The bookkeeping cannot be read.
    Unavailable,
}

impl LoginAttempts {
    /// Takes one of the user's attempts before their password is checked:
    /// refused while locked out, or when the wrong passwords so far and
    /// the checks under way reach the limit.
    fn begin(&self, name: &str, now: Timestamp) -> Result<(), NotNow> {
        let mut failures = self.failures.lock().map_err(|_| NotNow::Unavailable)?;
        if !failures.contains_key(name) && failures.len() >= FAILURES_KEPT {
            // Forget finished windows first, then the oldest.
            failures.retain(|_, f| f.checking > 0 || f.locked_until.is_some_and(|until| until > now));
            if failures.len() >= FAILURES_KEPT
                && let Some(oldest) = failures.iter().filter(|(_, f)| f.checking == 0).min_by_key(|(_, f)| f.first).map(|(n, _)| n.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(name.to_owned()).or_insert(Failures { count: 0, first: now, locked_until: None, checking: 0 });
        if let Some(until) = entry.locked_until.filter(|until| *until > now) {
            return Err(NotNow::LockedOut((until.duration_since(now).as_secs() + 59) / 60));
        }
        if entry.checking == 0 && now.duration_since(entry.first).as_secs() > FAILURE_WINDOW_MINUTES * 60 {
            *entry = Failures { count: 0, first: now, locked_until: None, checking: 0 };
        }
        if entry.count + entry.checking >= MAX_FAILURES {
            return Err(NotNow::LockedOut(LOCKOUT_MINUTES));
        }
        entry.checking += 1;
        Ok(())
    }

    /// The answer to an attempt taken by [`LoginAttempts::begin`]: a right
    /// password clears the user's count, the fifth wrong one in the window
    /// locks the user out (true: this one did).
    fn finish(&self, name: &str, now: Timestamp, right: bool) -> bool {
        let Ok(mut failures) = self.failures.lock() else { return false };
        let Some(entry) = failures.get_mut(name) else { return false };
        entry.checking = entry.checking.saturating_sub(1);
        if right {
            if entry.checking == 0 {
                failures.remove(name);
            } else {
                entry.count = 0;
            }
            return false;
        }
        entry.count += 1;
        if entry.count < MAX_FAILURES {
            return false;
        }
        entry.locked_until = Some(now + SignedDuration::from_mins(LOCKOUT_MINUTES));
        entry.count = 0;
        entry.first = now;
        tracing::warn!(user = name, minutes = LOCKOUT_MINUTES, "console user locked out after {MAX_FAILURES} wrong passwords");
        true
    }

    /// User names followed now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().map_or(0, |failures| failures.len())
    }
}

impl NotNow {
    fn error(self, name: &str) -> ApiError {
        match self {
            NotNow::LockedOut(minutes) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                format!("Too many wrong passwords for {name}: try again in {minutes} minute(s), or ask a manager."),
            ),
            NotNow::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "The console cannot check passwords now; try again.")
            }
        }
    }
}

/// A hash no password matches, checked for unknown users so that they take
/// as long to refuse as known ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| crate::users::hash(&format!("{:032x}", rand::random::<u128>())).unwrap_or_default())
}

async fn login(State(api): State<Api>, Json(credentials): Json<Credentials>) -> ApiResult {
    let now = Timestamp::now();
    if credentials.name.chars().count() > MAX_NAME_CHARS || credentials.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
            format!("A user name has at most {MAX_NAME_CHARS} characters and a password at most {MAX_PASSWORD_CHARS}."),
        ));
    }
    api.attempts.begin(&credentials.name, now).map_err(|not_now| not_now.error(&credentials.name))?;
    let database = api.database.clone();
    let (name, password) = (credentials.name.clone(), credentials.password.clone());
    // Argon2 is slow and large on purpose: off the async threads, a few at a time.
    let permit = api.password_checks.clone().acquire_owned().await;
    let checked = tokio::task::spawn_blocking(move || -> Option<Role> {
        let _permit = permit;
        let store = crate::store::Store::inspect(&database).ok()?;
        let user = store.user(&name).ok().flatten();
        // An unknown user costs as much as a known one: no telling them apart by time.
        let hash = user.as_ref().map_or(decoy_hash(), |(_, hash)| hash.as_str());
        let right = crate::users::verify(&password, hash);
        let (role, _) = user?;
        right.then(|| Role::parse(&role)).flatten()
    })
    .await
    .ok()
    .flatten();
    let locked = api.attempts.finish(&credentials.name, now, checked.is_some());
    let Some(role) = checked else {
        if locked {
            return Err(NotNow::LockedOut(LOCKOUT_MINUTES).error(&credentials.name));
        }
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "Unknown user or wrong password."));
    };
    let random = || format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let (token, csrf) = (random(), random());
    let expires = now + SignedDuration::from_hours(SESSION_HOURS);
    if let Ok(mut sessions) = api.sessions.lock() {
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(token.clone(), Session { user: credentials.name.clone(), role, expires, csrf: csrf.clone() });
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_HOURS * 3600);
    let body = json!({ "token": token, "csrf": csrf, "user": credentials.name, "role": role, "expires": expires });
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn logout(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    if let (Some(token), Ok(mut sessions)) = (session_token(&headers), api.sessions.lock()) {
        sessions.remove(&token);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(json!({ "signed_out": true }))).into_response())
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
    /// The name on the document (kept in the registration log).
    #[serde(default)]
    name: Option<String>,
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
    Ok(Json(json!({ "user": session.user, "role": session.role, "expires": session.expires, "csrf": session.csrf })).into_response())
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
    let session = api.manager(&headers, "resolve an incident")?;
    let note = resolution.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "note_required", "Say in 1 to 1000 characters what was done."));
    }
    transition(&api, id, session.user, Some(note)).await
}

async fn floor(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Floor { reply }).await?).into_response())
}

/// The floor map as server-sent events: `floor` with the whole map each
/// time it changes (looked at every second), a comment every 15 s to keep
/// proxies from closing the stream.
async fn events(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    use axum::response::sse::{Event, KeepAlive, Sse};
    api.session(&headers)?;
    let token = session_token(&headers).unwrap_or_default();
    let stream = futures_util::stream::unfold((api, String::new(), true), move |(api, last, first)| {
        let token = token.clone();
        async move {
            if !first {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            loop {
                // The stream ends with the session (signed out or expired).
                let signed_in = api.sessions.lock().ok()?.get(&token).is_some_and(|session| session.expires > Timestamp::now());
                if !signed_in {
                    return None;
                }
                let floor = api.ask(|reply| Request::Floor { reply }).await.ok()?;
                let mut text = floor.to_string();
                // "now" changes every time; compare without it.
                let key =
                    floor.as_object().map(|o| o.iter().filter(|(k, _)| *k != "now").map(|(k, v)| format!("{k}={v}")).collect::<String>());
                let key = key.unwrap_or_default();
                if key != last {
                    let event = Event::default().event("floor").data(std::mem::take(&mut text));
                    return Some((Ok::<_, std::convert::Infallible>(event), (api, key, false)));
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response())
}

async fn occupancy(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Occupancy { reply }).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    ticket: String,
}

/// The desk opens a station for a checked-in customer's ticket.
async fn open(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, Json(request): Json<OpenRequest>) -> ApiResult {
    let session = api.session(&headers)?;
    let station: netbar_protocol::StationId = id
        .parse()
        .map_err(|error: netbar_protocol::ids::IdError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "station", error.to_string()))?;
    match api.ask(|reply| Request::Open { station: station.clone(), ticket: request.ticket, by: session.user, reply }).await? {
        Ok(()) => Ok(Json(json!({ "station": station.as_str(), "opened": true })).into_response()),
        Err((status, code, message)) => Err(ApiError::new(status, code, message)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    /// "json" (default: for the console's table), "csv" or "jsonl" (a download).
    #[serde(default)]
    format: Option<String>,
}

/// Managers search and export the registration log. The access is itself
/// recorded in the log, before any personal data leaves.
async fn records(State(api): State<Api>, headers: HeaderMap, axum::extract::Query(query): axum::extract::Query<RecordsQuery>) -> ApiResult {
    let session = api.manager(&headers, "see or export registration records")?;
    let bad = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "period", message);
    if query.to < query.from {
        return Err(bad(format!("{} is before {}", query.to, query.from)));
    }
    let format = match query.format.as_deref().unwrap_or("json") {
        "json" => None,
        "jsonl" => Some(crate::store::Format::Jsonl),
        "csv" => Some(crate::store::Format::Csv),
        other => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "format", format!("{other:?}: json, jsonl or csv"))),
    };
    let start = |date: jiff::civil::Date| date.to_zoned(api.zone.clone()).map(|zoned| zoned.timestamp()).map_err(|e| bad(e.to_string()));
    let (from, to) = (start(query.from)?, start(query.to.tomorrow().map_err(|e| bad(e.to_string()))?)?);
    let action = if format.is_some() { "export" } else { "view" };
    let access =
        crate::journal::DataAccess { by: session.user, action: action.to_owned(), from: query.from, to: query.to, at: api.clock.now() };
    api.ask(|reply| Request::Audit { access, reply }).await?.map_err(|error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_recorded",
            format!("The access could not be logged, so no records are shown: {error}"),
        )
    })?;
    let database = api.database.clone();
    let exported = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let store = crate::store::Store::inspect(&database).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        store.export(from, to, format.unwrap_or(crate::store::Format::Jsonl), &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?
    .map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error))?;
    match format {
        None => {
            let entries: Vec<serde_json::Value> =
                String::from_utf8_lossy(&exported).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
            Ok(Json(json!({ "from": query.from, "to": query.to, "entries": entries })).into_response())
        }
        Some(format) => {
            let (extension, content_type) =
                if format == crate::store::Format::Csv { ("csv", "text/csv; charset=utf-8") } else { ("jsonl", "application/x-ndjson") };
            let disposition = format!("attachment; filename=\"netbar-records-{}-{}.{extension}\"", query.from, query.to);
            Ok((
                [(axum::http::header::CONTENT_TYPE, content_type.to_owned()), (axum::http::header::CONTENT_DISPOSITION, disposition)],
                exported,
            )
                .into_response())
        }
    }
}

/// The regulator feed for the console: connected or not, the backlog
/// against the outbox's bound, and a warning from half full.
async fn uplink(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let Some((status, broker, max)) = api.uplink_status().await? else {
        return Ok(Json(json!({ "configured": false })).into_response());
    };
    let percent = status.pending as f64 * 100.0 / max as f64;
    let warning = crate::feed::half_full(status.pending, max).then(|| {
        let merging = if status.pending >= max { " Summaries are now merged until it drains." } else { "" };
        format!(
            "The regulator outbox holds {} messages ({percent:.0}% of its bound of {max}). Check the connection to {broker}. Nothing is dropped: check-ins go on, and are refused only if the disk fills up.{merging}",
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

/// Liveness for the service manager and monitoring: 503 while the embedded
/// bus fails its canary, with why and how often it was restarted.
async fn healthz(State(api): State<Api>) -> Response {
    match &api.bus {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(bus) => {
            let body = json!({
                "status": if bus.failing().is_none() { "ok" } else { "bus_failing" },
                "bus": { "failing": bus.failing(), "restarts": bus.restarts(), "connections": bus.connections() },
            });
            let status = if bus.failing().is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, Json(body)).into_response()
        }
    }
}

async fn metrics(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let mut text = String::from(
        "# HELP netbar_messages_refused_total Messages refused from the bus, by reason.\n# TYPE netbar_messages_refused_total counter\n",
    );
    for (reason, count) in api.refusals.snapshot() {
        text.push_str(&format!("netbar_messages_refused_total{{reason=\"{reason}\"}} {count}\n"));
    }
    // A store that cannot answer or write says so, instead of figures that look healthy.
    let store_up = matches!(api.store.facts().await, Ok(crate::run::Facts { failing: None, .. }));
    text.push_str(&format!(
        "# HELP netbar_store_up Whether the registration log answers and its last write succeeded.\n# TYPE netbar_store_up gauge\nnetbar_store_up {}\n",
        u8::from(store_up)
    ));
    if let Some(bus) = &api.bus {
        text.push_str(&format!(
            "# HELP netbar_bus_up Whether the embedded bus answered its last canary round trip.\n# TYPE netbar_bus_up gauge\nnetbar_bus_up {}\n\
             # HELP netbar_bus_restarts_total Restarts of the embedded bus by its supervisor.\n# TYPE netbar_bus_restarts_total counter\nnetbar_bus_restarts_total {}\n\
             # HELP netbar_bus_connections Logged-in connections to the embedded bus.\n# TYPE netbar_bus_connections gauge\nnetbar_bus_connections {}\n\
             # HELP netbar_bus_canary_seconds The last canary's round trip through the embedded bus.\n# TYPE netbar_bus_canary_seconds gauge\nnetbar_bus_canary_seconds {}\n",
            u8::from(bus.failing().is_none()),
            bus.restarts(),
            bus.connections(),
            bus.canary_seconds()
        ));
    }
    if let Ok(Some((status, _, max))) = api.uplink_status().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: sixty guesses sent at once were all checked before the
    /// first answer counted, so the right password at the fiftieth got in.
    #[test]
    fn guesses_at_once_count_before_their_answers() {
        let attempts = LoginAttempts::default();
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let taken = (0..60).filter(|_| attempts.begin("li", now).is_ok()).count();
        assert_eq!(taken, MAX_FAILURES as usize, "only as many checks as wrong passwords allowed");
        assert_eq!(attempts.begin("li", now), Err(NotNow::LockedOut(LOCKOUT_MINUTES)));
        let locked: Vec<bool> = (0..MAX_FAILURES).map(|_| attempts.finish("li", now, false)).collect();
        assert_eq!(locked, [false, false, false, false, true], "the fifth wrong password locks, and says so");
        assert_eq!(attempts.begin("li", now + SignedDuration::from_mins(4)), Err(NotNow::LockedOut(1)));
        assert!(attempts.begin("li", now + SignedDuration::from_mins(5)).is_ok(), "the lock-out ends");
        assert!(!attempts.finish("li", now + SignedDuration::from_mins(5), true));
        assert_eq!(attempts.len(), 0, "a right password clears the user");
        // Another user is not held back by li's guesses.
        assert!(attempts.begin("wang", now).is_ok());
    }

    /// Regression: 300 logins with names of 1.9 MB each took the agent to
    /// 568 MiB and kept it there.
    #[test]
    fn the_bookkeeping_of_wrong_passwords_is_bounded() {
        let attempts = LoginAttempts::default();
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        for n in 0..(FAILURES_KEPT * 3) {
            let name = format!("guess-{n}");
            attempts.begin(&name, now).unwrap();
            assert!(!attempts.finish(&name, now, false));
        }
        assert!(attempts.len() <= FAILURES_KEPT, "{}", attempts.len());
    }

    #[test]
    fn only_a_valid_bearer_token_spares_a_cookie_request_the_csrf_check() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
        headers.insert("authorization", "Bearer  t0ken ".parse().unwrap());
        assert_eq!(bearer_token(&headers).as_deref(), Some("t0ken"));
    }
}
