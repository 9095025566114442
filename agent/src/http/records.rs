//! Managers search and export the registration log; every access is
//! itself recorded first.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError, ApiResult};
use crate::requests::Request;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordsQuery {
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    /// "json" (default: for the console's table), "csv" or "jsonl" (a download).
    #[serde(default)]
    format: Option<String>,
}

/// Managers search and export the registration log. The access is itself
/// recorded in the log, before any personal data leaves.
pub(super) async fn records(
    State(api): State<Api>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<RecordsQuery>,
) -> ApiResult {
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
    let (from, to) = crate::store::days(query.from, query.to, &api.zone).map_err(|e| bad(e.to_string()))?;
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
    let (database, zone) = (api.database.clone(), api.zone.clone());
    let exported = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let store = crate::store::Store::inspect(&database).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        store.export(from, to, &zone, format.unwrap_or(crate::store::Format::Jsonl), &mut out).map_err(|e| e.to_string())?;
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
