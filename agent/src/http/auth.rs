//! Signing in: console users and their roles, password checks with a
//! lock-out, sessions by bearer token or cookie, and the CSRF guard.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::{Api, ApiError, ApiResult};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Checks customers in and out, sees the floor, acknowledges incidents.
    Cashier,
    /// Everything a cashier does, plus resolving incidents and commanding stations.
    Manager,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Cashier => "cashier",
            Role::Manager => "manager",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "cashier" => Some(Role::Cashier),
            "manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

/// Hashes a password for storage.
pub(crate) fn hash(password: &str) -> anyhow::Result<String> {
    Ok(Argon2::default().hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?.to_string())
}

/// Whether `password` matches the stored `hash`.
pub(crate) fn verify(password: &str, hash: &str) -> bool {
    argon2::password_hash::phc::PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) user: String,
    pub(super) role: Role,
    pub(super) expires: Timestamp,
    /// What a console must echo in `X-CSRF-Token` when it signs in by cookie.
    pub(super) csrf: String,
}

/// Wrong passwords for one user name, and the attempts being checked now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failures {
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
pub(super) const FAILURES_KEPT: usize = 4096;
/// The longest user name the console accepts.
pub(super) const MAX_NAME_CHARS: usize = 64;
/// The longest password accepted (Argon2 hashes it whole).
pub(super) const MAX_PASSWORD_CHARS: usize = 256;
/// Passwords checked at once: Argon2 takes about 19 MiB each, on purpose.
pub(super) const PASSWORD_CHECKS_AT_ONCE: usize = 2;
/// Wrong passwords within [`FAILURE_WINDOW_MINUTES`] before a lock-out.
pub(super) const MAX_FAILURES: u32 = 5;
pub(super) const FAILURE_WINDOW_MINUTES: i64 = 15;
pub(super) const LOCKOUT_MINUTES: i64 = 5;
/// The session cookie's name.
pub(super) const COOKIE: &str = "netbar_session";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    name: String,
    password: String,
}

/// The session token of a request: its bearer token, else its cookie.
pub(super) fn session_token(headers: &HeaderMap) -> Option<String> {
    bearer_token(headers).or_else(|| cookie_token(headers))
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(|token| token.trim().to_owned())
}

pub(super) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned))
}

/// A request that changes something and signs in by cookie must carry the
/// session's CSRF token: another site's page cannot read it.
pub(super) async fn csrf_guard(State(api): State<Api>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
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
pub(super) struct LoginAttempts {
    failures: Mutex<HashMap<String, Failures>>,
}

/// Why a password may not be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotNow {
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
pub(super) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&format!("{:032x}", rand::random::<u128>())).unwrap_or_default())
}

pub(super) async fn login(State(api): State<Api>, Json(credentials): Json<Credentials>) -> ApiResult {
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
        let right = verify(&password, hash);
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
    let expires = now + SignedDuration::from_hours(super::SESSION_HOURS);
    if let Ok(mut sessions) = api.sessions.lock() {
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(token.clone(), Session { user: credentials.name.clone(), role, expires, csrf: csrf.clone() });
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", super::SESSION_HOURS * 3600);
    let body = json!({
        "token": token, "csrf": csrf, "user": credentials.name, "role": role, "expires": expires, "today": api.today(), "zone": api.zone_name(),
        "desk": api.desk()
    });
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(body)).into_response())
}

pub(super) async fn logout(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    if let (Some(token), Ok(mut sessions)) = (session_token(&headers), api.sessions.lock()) {
        sessions.remove(&token);
    }
    api.sign_outs.send_modify(|count| *count += 1);
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(json!({ "signed_out": true }))).into_response())
}

pub(super) async fn me(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let session = api.session(&headers)?;
    Ok(Json(json!({
        "user": session.user, "role": session.role, "expires": session.expires, "csrf": session.csrf, "today": api.today(), "zone": api.zone_name(),
        "desk": api.desk()
    }))
    .into_response())
}

impl Api {
    /// Today's date at the venue (its zone, its clock): what the console's
    /// date fields start from, whatever the browser's own zone.
    pub(super) fn today(&self) -> jiff::civil::Date {
        self.clock.now().to_zoned(self.zone.clone()).date()
    }

    /// What the console's desk needs of the venue's rules: its first
    /// language, the documents it takes (the usual one first), whether it
    /// keeps names, and the policy's name.
    pub(super) fn desk(&self) -> serde_json::Value {
        let documents: Vec<&str> = self.policy.documents.iter().map(|document| document.code()).collect();
        json!({
            "policy": self.policy.name, "language": self.language, "documents": documents,
            "keeps_names": self.policy.registration.keep_name, "keeps_numbers": self.policy.registration.keep_number,
        })
    }

    /// The venue's zone by its IANA name: the console shows every time in
    /// it, whatever the cashier PC's own zone.
    pub(super) fn zone_name(&self) -> Option<&str> {
        self.zone.iana_name()
    }

    /// Whether `token` is a session signed in now.
    pub(super) fn signed_in(&self, token: &str) -> bool {
        self.sessions.lock().is_ok_and(|sessions| sessions.get(token).is_some_and(|session| session.expires > Timestamp::now()))
    }
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

    #[test]
    fn hashes_verify_only_their_password() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsE", &stored));
        assert!(!verify("correct horse", "not a hash"));
    }
}
