//! `/assets/app.css` and `/assets/app.js`: cached for a year by browsers and proxies. The pages
//! link them as `?v=<digest of the content>`, so a new release is a new URL and no stale copy is
//! ever used.

use std::sync::LazyLock;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::HeaderName;
use sha2::{Digest, Sha256};

pub const CSS_PATH: &str = "/assets/app.css";
pub const JS_PATH: &str = "/assets/app.js";

pub const CSS: &str = include_str!("static/app.css");
pub const JS: &str = include_str!("static/app.js");

const LONG_CACHE: &str = "public, max-age=31536000, immutable";
/// Hex digits of the content digest in an asset's URL: plenty to never repeat across releases.
const VERSION_CHARS: usize = 16;

pub static CSS_VERSION: LazyLock<String> = LazyLock::new(|| version(CSS));
pub static JS_VERSION: LazyLock<String> = LazyLock::new(|| version(JS));

fn version(content: &str) -> String {
    let mut digest = hex::encode(Sha256::digest(content.as_bytes()));
    digest.truncate(VERSION_CHARS);
    digest
}

type AssetHeaders = [(HeaderName, &'static str); 3];

#[utoipa::path(
    get,
    path = "/assets/app.css",
    tag = "dashboard",
    summary = "The dashboard's stylesheet",
    responses((status = 200, description = "CSS, cached for a year (its URL changes with it)",
        body = String, content_type = "text/css"))
)]
pub async fn css() -> (AssetHeaders, &'static str) {
    (headers("text/css; charset=utf-8"), CSS)
}

#[utoipa::path(
    get,
    path = "/assets/app.js",
    tag = "dashboard",
    summary = "The dashboard's script",
    responses((status = 200, description = "JavaScript, cached for a year (its URL changes with it)",
        body = String, content_type = "text/javascript"))
)]
pub async fn js() -> (AssetHeaders, &'static str) {
    (headers("text/javascript; charset=utf-8"), JS)
}

fn headers(content_type: &'static str) -> AssetHeaders {
    [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, LONG_CACHE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_content() {
        assert_eq!(CSS_VERSION.len(), VERSION_CHARS);
        assert_ne!(*CSS_VERSION, *JS_VERSION);
        assert_eq!(version("a"), version("a"));
        assert_ne!(version("a"), version("b"));
    }
}
