//! Incidents: the list, acknowledging and resolving.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError, ApiResult};
use crate::requests::{Request, TransitionFailure};

pub(super) async fn incidents(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    Ok(Json(api.ask(|reply| Request::Incidents { reply }).await?).into_response())
}

pub(super) async fn transition(api: &Api, id: String, by: String, resolve: Option<String>) -> ApiResult {
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

pub(super) async fn acknowledge(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let session = api.session(&headers)?;
    transition(&api, id, session.user, None).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Resolution {
    note: String,
}

pub(super) async fn resolve(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(resolution): Json<Resolution>,
) -> ApiResult {
    let session = api.manager(&headers, "resolve an incident")?;
    let note = resolution.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "note_required", "Say in 1 to 1000 characters what was done."));
    }
    transition(&api, id, session.user, Some(note)).await
}
