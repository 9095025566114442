//! Health, metrics and the regulator feed's state, for monitoring and the
//! console.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Api, ApiResult};

/// The regulator feed for the console: connected or not, the backlog
/// against the outbox's bound, and a warning from half full.
pub(super) async fn uplink(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let Some((status, broker, max)) = api.uplink_status().await? else {
        return Ok(Json(json!({ "configured": false })).into_response());
    };
    let link = *api.link.borrow();
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
        "connected": link.connected,
        "since": link.since,
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
pub(super) async fn healthz(State(api): State<Api>) -> Response {
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

pub(super) async fn metrics(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.session(&headers)?;
    let mut text = String::from(
        "# HELP netbar_messages_refused_total Messages refused from the bus, by reason.\n# TYPE netbar_messages_refused_total counter\n",
    );
    for (reason, count) in api.refusals.snapshot() {
        text.push_str(&format!("netbar_messages_refused_total{{reason=\"{reason}\"}} {count}\n"));
    }
    // A store that cannot answer or write says so, instead of figures that look healthy.
    let store_up = matches!(api.store.facts().await, Ok(crate::store::thread::Facts { failing: None, .. }));
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
            u8::from(api.link.borrow().connected),
            status.pending,
            status.last_acked
        ));
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}
