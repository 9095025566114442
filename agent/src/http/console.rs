//! The front-desk console: one page, its script and style sheet, embedded
//! in the binary so the console works with no internet connection. The
//! page talks to the API under /api/v1 with the session cookie and follows
//! the floor map over server-sent events (/api/v1/events).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The console's files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("console/console.css")),
];

/// Scripts and styles from this origin only; no framing by other sites.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// One of the console's files, or 404. The page names the venue's
/// language, which the console starts in until a cashier picks another.
pub(crate) fn page(name: &str, language: netbar_protocol::local::Language) -> Response {
    match FILES.iter().find(|(file, ..)| *file == name) {
        Some((file, content_type, content)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            if *file == "index.html" {
                let code = serde_json::to_value(language).ok().and_then(|code| code.as_str().map(str::to_owned)).unwrap_or_default();
                content.replacen("<html lang=\"en\">", &format!("<html lang=\"en\" data-language=\"{code}\">"), 1)
            } else {
                (*content).to_owned()
            },
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
