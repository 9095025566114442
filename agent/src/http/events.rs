//! The floor map pushed to the console as server-sent events.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use jiff::Timestamp;

use std::time::Duration;

use super::{Api, ApiResult, auth};
use crate::requests::Request;

/// The floor map as server-sent events: `floor` with the whole map first
/// and then each time it changes (the agent pushes it), a comment every
/// 15 s to keep proxies from closing the stream. The stream ends with the
/// session: signed out, or expired.
pub(super) async fn events(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let session = api.session(&headers)?;
    let token = auth::session_token(&headers).unwrap_or_default();
    let mut floor = (*api.floor).clone();
    floor.mark_unchanged();
    let sign_outs = api.sign_outs.subscribe();
    // The first map is asked for: the pushed one is only as fresh as the
    // last stream open.
    let first = api.ask(|reply| Request::Floor { reply }).await?;
    let expires = tokio::time::Instant::now() + Duration::try_from(session.expires.duration_since(Timestamp::now())).unwrap_or_default();
    let stream = futures_util::stream::unfold((Some(first), floor, sign_outs), move |(first, mut floor, mut sign_outs)| {
        let (token, api) = (token.clone(), api.clone());
        async move {
            let map = match first {
                Some(map) => map,
                None => loop {
                    tokio::select! {
                        changed = floor.changed() => {
                            changed.ok()?;
                            break floor.borrow_and_update().as_ref().clone();
                        }
                        changed = sign_outs.changed() => {
                            changed.ok()?;
                            if !api.signed_in(&token) {
                                return None;
                            }
                        }
                        () = tokio::time::sleep_until(expires) => return None,
                    }
                },
            };
            let event = Event::default().event("floor").data(map.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (None, floor, sign_outs)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
