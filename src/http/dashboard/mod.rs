//! The web dashboard, served by the binary itself: small HTML shells, one stylesheet and one
//! script, all embedded at compile time (`include_str!`), so nothing is built or fetched at build
//! or run time and no other server is needed. The pages hold no data: `static/app.js` loads it
//! from the JSON API with the session cookie and sends actions with the session's CSRF token.
//!
//! Every route here is public (the shells reveal nothing; the API they call checks the session).
//! Pages carry a strict Content-Security-Policy: scripts, styles and connections from this origin
//! only, no inline script or style, no framing.

mod assets;
mod pages;

use axum::routing::get;
use axum::Router;

pub use assets::{CSS_PATH, JS_PATH};

/// The dashboard's routes, merged into the service's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login))
        .route("/app", get(pages::app))
        .route("/app/signals/{signal_id}", get(pages::signal))
        .route("/app/settings", get(pages::settings))
        .route("/staff/audit", get(pages::audit))
        .route("/staff/operations", get(pages::operations))
        .route(CSS_PATH, get(assets::css))
        .route(JS_PATH, get(assets::js))
}
