//! The HTML shells. Each page is `static/layout.html` around its own `static/<page>.html`,
//! rendered once (on first use) and served as is: nothing in a page depends on the request, so
//! no request data can ever be reflected into one.

use std::sync::LazyLock;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, StatusCode};

use super::assets::{CSS_VERSION, JS_VERSION};
use crate::http::ApiError;

/// Only this origin's script, style and API; no inline script or style (app.js and app.css hold
/// all of it), no plugins, no framing, forms post only here. `data:` images: the empty favicon.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Longest signal id a page is served for (the API's own limit).
const LONGEST_SIGNAL_ID: usize = 256;

#[derive(Clone, Copy)]
enum Nav {
    Public,
    Trader,
    Staff,
}

struct Page {
    /// `data-page` of the body: which part of app.js runs.
    id: &'static str,
    title: &'static str,
    nav: Nav,
    main: &'static str,
}

const LAYOUT: &str = include_str!("static/layout.html");

const INDEX: Page = Page {
    id: "index",
    title: "TradingView alerts to dYdX",
    nav: Nav::Public,
    main: include_str!("static/index.html"),
};
const LOGIN: Page = Page {
    id: "login",
    title: "Sign in",
    nav: Nav::Public,
    main: include_str!("static/login.html"),
};
const APP: Page = Page {
    id: "app",
    title: "Dashboard",
    nav: Nav::Trader,
    main: include_str!("static/app.html"),
};
const SIGNAL: Page = Page {
    id: "signal",
    title: "Signal",
    nav: Nav::Trader,
    main: include_str!("static/signal.html"),
};
const SETTINGS: Page = Page {
    id: "settings",
    title: "Settings",
    nav: Nav::Trader,
    main: include_str!("static/settings.html"),
};
const AUDIT: Page = Page {
    id: "audit",
    title: "Audit trail",
    nav: Nav::Staff,
    main: include_str!("static/audit.html"),
};
const OPERATIONS: Page = Page {
    id: "operations",
    title: "Operations",
    nav: Nav::Staff,
    main: include_str!("static/operations.html"),
};

fn nav(nav: Nav) -> &'static str {
    match nav {
        Nav::Public => r#"<nav><a href="/login">Sign in</a></nav>"#,
        Nav::Trader => {
            r#"<nav><a href="/app">Dashboard</a><a href="/app/settings">Settings</a><button type="button" id="sign-out" class="link">Sign out</button></nav>"#
        }
        Nav::Staff => {
            r#"<nav><a href="/staff/audit">Audit</a><a href="/staff/operations">Operations</a><button type="button" id="sign-out" class="link">Sign out</button></nav>"#
        }
    }
}

fn render(page: &Page) -> String {
    LAYOUT
        .replace("{{title}}", page.title)
        .replace("{{page}}", page.id)
        .replace("{{nav}}", nav(page.nav))
        .replace("{{css_version}}", &CSS_VERSION)
        .replace("{{js_version}}", &JS_VERSION)
        .replace("{{main}}", page.main)
}

type PageHeaders = [(HeaderName, &'static str); 6];
type PageResponse = (PageHeaders, &'static str);

fn respond(rendered: &'static str) -> PageResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
            (X_FRAME_OPTIONS, "DENY"),
            // Revalidated each time, so a release's new asset URLs are picked up at once.
            (CACHE_CONTROL, "no-cache"),
        ],
        rendered,
    )
}

macro_rules! page_handler {
    ($name:ident, $page:ident, $path:tt) => {
        #[utoipa::path(
                    get,
                    path = $path,
                    // Page handlers share names with API handlers (`audit`, `settings`).
                    operation_id = concat!("page_", stringify!($name)),
                    tag = "dashboard",
                    summary = "A dashboard page (its data comes from the API, with the session)",
                    responses((status = 200, description = "The page's HTML shell", body = String,
                        content_type = "text/html"))
                )]
        pub async fn $name() -> PageResponse {
            static RENDERED: LazyLock<String> = LazyLock::new(|| render(&$page));
            respond(RENDERED.as_str())
        }
    };
}

page_handler!(index, INDEX, "/");
page_handler!(login, LOGIN, "/login");
page_handler!(app, APP, "/app");
page_handler!(settings, SETTINGS, "/app/settings");
page_handler!(audit, AUDIT, "/staff/audit");
page_handler!(operations, OPERATIONS, "/staff/operations");

/// The same shell for every signal: app.js reads the id from the address. Ids that cannot be one
/// get the API's 404.
#[utoipa::path(
    get,
    path = "/app/signals/{signal_id}",
    operation_id = "page_signal",
    tag = "dashboard",
    summary = "The dashboard's page of one signal",
    params(("signal_id" = String, Path, max_length = 64)),
    responses(
        (status = 200, description = "The page's HTML shell", body = String, content_type = "text/html"),
        (status = 404, description = "NOT_FOUND: not a signal id", body = crate::http::ErrorBody),
    )
)]
pub async fn signal(
    signal_id: Result<Path<String>, PathRejection>,
) -> Result<PageResponse, ApiError> {
    static RENDERED: LazyLock<String> = LazyLock::new(|| render(&SIGNAL));
    match signal_id {
        Ok(Path(id)) if !id.is_empty() && id.len() <= LONGEST_SIGNAL_ID => {
            Ok(respond(RENDERED.as_str()))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No such signal",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Page; 7] = [
        &INDEX,
        &LOGIN,
        &APP,
        &SIGNAL,
        &SETTINGS,
        &AUDIT,
        &OPERATIONS,
    ];

    #[test]
    fn every_placeholder_is_filled() {
        for page in ALL {
            let html = render(page);
            assert!(!html.contains("{{"), "{}: {html}", page.id);
            assert!(html.contains(&format!(r#"data-page="{}""#, page.id)));
            assert!(html.contains(&format!("/assets/app.js?v={}", *JS_VERSION)));
            assert!(html.contains(&format!("/assets/app.css?v={}", *CSS_VERSION)));
        }
    }

    /// The CSP forbids inline script and style; a page that relied on them would break silently.
    #[test]
    fn no_page_has_inline_script_or_style() {
        for page in ALL {
            let html = render(page).to_ascii_lowercase();
            assert_eq!(html.matches("<script").count(), 1, "{}", page.id);
            assert!(
                html.contains(r#"<script src="/assets/app.js"#),
                "{}",
                page.id
            );
            assert!(!html.contains("<style"), "{}", page.id);
            assert!(!html.contains(" style="), "{}", page.id);
            assert!(!html.contains("javascript:"), "{}", page.id);
            for handler in [
                " onclick=",
                " onload=",
                " onsubmit=",
                " oninput=",
                " onerror=",
            ] {
                assert!(!html.contains(handler), "{}: {handler}", page.id);
            }
        }
    }

    /// Every id app.js looks up exists on the page that uses it (a typo would only show as a
    /// broken page in a browser).
    #[test]
    fn pages_carry_the_ids_the_script_uses() {
        let expect = |page: &Page, ids: &[&str]| {
            let html = render(page);
            for id in ids {
                assert!(
                    html.contains(&format!(r#"id="{id}""#)),
                    "{}: #{id}",
                    page.id
                );
            }
        };
        expect(
            &LOGIN,
            &[
                "wallet-sign-in",
                "wallet-status",
                "staff-form",
                "staff-login",
            ],
        );
        expect(
            &APP,
            &[
                "webhook-url",
                "message-template",
                "two-factor-url",
                "two-factor-template",
                "send-test-signal",
                "positions",
                "trades",
                "signals",
                "sign-out",
            ],
        );
        expect(&SIGNAL, &["signal-summary", "story", "story-status"]);
        expect(
            &SETTINGS,
            &["venue-form", "credentials", "limits-form", "rotate-webhook"],
        );
        expect(
            &AUDIT,
            &["audit-form", "export-csv", "export-jsonl", "audit-verify"],
        );
        expect(&OPERATIONS, &["stop-form", "account-form"]);
    }
}
