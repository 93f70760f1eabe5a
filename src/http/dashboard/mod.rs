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

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use assets::{CSS_PATH, JS_PATH};

/// The dashboard's routes, merged into the service's one declaration (`http::declared`), so
/// `/openapi.json` lists them too.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(pages::index))
        .routes(routes!(pages::login))
        .routes(routes!(pages::app))
        .routes(routes!(pages::signal))
        .routes(routes!(pages::settings))
        .routes(routes!(pages::audit))
        .routes(routes!(pages::operations))
        .routes(routes!(assets::css))
        .routes(routes!(assets::js))
}
