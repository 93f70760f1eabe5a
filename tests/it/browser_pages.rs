//! The dashboard's pages as a browser and a proxy see them, before anyone signs in: every page
//! and asset answers with its content type, pages with the strict CSP and no caching of stale
//! assets, the script runs under that CSP (the sign-in page reacts to a click), a signed-out
//! visitor of a signed-in page is sent to /login, and at phone width nothing is wider than the
//! screen and the sign-in cards stack in one column. One store: no store behaviour is involved.

use crate::support::browser::{Browser, DESKTOP, PHONE};
use crate::support::eventually;
use crate::support::service::{Options, Service};
use crate::support::stores::{Backend, TestStore};

const PAGES: [&str; 7] = [
    "/",
    "/login",
    "/app",
    "/app/signals/some-signal",
    "/app/settings",
    "/staff/audit",
    "/staff/operations",
];

const SIGNED_IN_PAGES: [&str; 5] = [
    "/app",
    "/app/signals/some-signal",
    "/app/settings",
    "/staff/audit",
    "/staff/operations",
];

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn pages_are_locked_down_send_strangers_to_sign_in_and_fit_a_phone() {
    let test = TestStore::new(Backend::Sqlite).await;
    let service = Service::start(&test.url, Options::default()).await;
    let base = service.base_url.clone();
    let http = service.client();

    let mut asset_paths = Vec::new();
    for path in PAGES {
        let response = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("the page answers");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        let policy = header(&response, "content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-eval"), "{path}: {policy}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let html = response.text().await.expect("a body");
        assert!(html.contains(r#"name="viewport""#), "{path}");
        for asset in html.split('"').filter(|part| part.starts_with("/assets/")) {
            asset_paths.push(asset.to_owned());
        }
    }
    // An unreadable signal id is the API's 404, not a page.
    let too_long = "x".repeat(300);
    let (status, body) = service
        .send(http.get(format!("{base}/app/signals/{too_long}")))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");

    // The pages name both assets, under versioned URLs cached for a year.
    asset_paths.sort();
    asset_paths.dedup();
    assert_eq!(asset_paths.len(), 2, "{asset_paths:?}");
    for asset in &asset_paths {
        assert!(asset.contains("?v="), "{asset}");
        let response = http
            .get(format!("{base}{asset}"))
            .send()
            .await
            .expect("the asset answers");
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        let expected_type = if asset.starts_with("/assets/app.css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        assert_eq!(header(&response, "content-type"), expected_type, "{asset}");
        let cache = header(&response, "cache-control");
        assert!(cache.contains("max-age=31536000"), "{asset}: {cache}");
        assert!(cache.contains("immutable"), "{asset}: {cache}");
    }

    let browser = Browser::start().await;

    // A stranger on any signed-in page is sent to sign in.
    for path in SIGNED_IN_PAGES {
        browser.goto(&format!("{base}{path}")).await;
        browser.arrive("/login").await;
    }

    // The script runs under the CSP: with no wallet in the browser, the page says so.
    browser.click("#wallet-sign-in").await;
    let said = browser
        .text_when(
            "#wallet-status",
            "the page to say no wallet is there",
            |text| text.contains("No Ethereum wallet"),
        )
        .await;
    assert!(said.contains("Install"), "{said}");

    // Phone width: one column, nothing wider than the screen.
    for (size, columns) in [(PHONE, 1), (DESKTOP, 2)] {
        browser.resize(size).await;
        for path in ["/", "/login"] {
            browser.goto(&format!("{base}{path}")).await;
            browser.find("main .card").await;
            let fits = browser
                .run(
                    "return document.documentElement.scrollWidth <= window.innerWidth;",
                    vec![],
                )
                .await;
            assert_eq!(fits, serde_json::Value::Bool(true), "{path} at {size:?}");
        }
        // The sign-in page's two cards: side by side on a desktop, stacked on a phone.
        let lefts = eventually("the sign-in cards to be laid out", || async {
            let lefts = browser
                .run(
                    "return Array.from(document.querySelectorAll('main .card'), \
                     (card) => Math.round(card.getBoundingClientRect().left));",
                    vec![],
                )
                .await;
            let lefts: Vec<i64> = serde_json::from_value(lefts).ok()?;
            (lefts.len() == 2).then_some(lefts)
        })
        .await;
        let distinct = if lefts[0] == lefts[1] { 1 } else { 2 };
        assert_eq!(distinct, columns, "{size:?}: card lefts {lefts:?}");
    }
    browser.resize(PHONE).await;
    browser.goto(&format!("{base}/app")).await;
    browser.arrive("/login").await;
    browser.find("main .card").await;
    browser.screenshot("signed-out-redirect-phone").await;
    browser.close().await;
}
