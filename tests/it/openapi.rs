//! The API's description on the real binary: `/openapi.json` parses, says OpenAPI 3.1, is the
//! document the code declares (`ledgerhook::http::openapi`, made from the same declaration as the
//! router), every operation in it is answered by a route of its own (never the router's
//! fallback), it validates with `openapi-spec-validator` (PyPI), and `/docs` shows every one.
//!
//! The document does not depend on the store: SQLite only.

use serde_json::Value;

use crate::support::python_tools;
use crate::support::service::{Options, Service};
use crate::support::stores::{Backend, TestStore};

/// What the router answers for a path it has no route for (src/http/mod.rs `not_found`).
const FALLBACK_MESSAGE: &str = "No such endpoint";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_describes_every_route_and_validates() {
    let test = TestStore::new(Backend::Sqlite).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let http = service.client();

    let response = http
        .get(format!("{}/openapi.json", service.base_url))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    let text = response.text().await.expect("a body");
    let served: Value = serde_json::from_str(&text).expect("the document is JSON");
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1.")),
        "{}",
        served["openapi"]
    );
    let declared = serde_json::to_value(ledgerhook::http::openapi()).expect("JSON");
    assert_eq!(served, declared, "the binary serves the declared document");

    // Every described operation reaches its own handler: a request without credentials gets an
    // answer from it (401, 200, ...), never the fallback's 404 or a 405.
    let operations = ledgerhook::http::operations();
    assert!(operations.len() >= 14, "{operations:?}");
    for (method, path) in &operations {
        let concrete = path
            .replace("{webhook_uuid}", "0f8fad5b-d9cb-469f-a165-70867728950e")
            .replace("{signal_id}", "no-such-signal");
        let described = &served["paths"][path][method.as_str().to_lowercase()];
        assert!(described.is_object(), "{method} {path} is in the document");
        let response = http
            .request(method.clone(), format!("{}{concrete}", service.base_url))
            .body("{}")
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status != 405 && !(status == 404 && body.contains(FALLBACK_MESSAGE)),
            "{method} {path}: {status} {body}"
        );
        assert!(
            described["responses"][status.to_string()].is_object(),
            "{method} {path} answered {status}, which it does not describe: {body}"
        );
    }

    // The validator reads the document exactly as served.
    python_tools::require("openapi_spec_validator", "openapi-spec-validator");
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).expect("the document is written");
    let output = tokio::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let response = http
        .get(format!("{}/docs", service.base_url))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .is_ok_and(|value| value.starts_with("text/html")));
    let page = response.text().await.expect("a page");
    for (method, path) in &operations {
        let shown = format!("<code>{}</code>", path.replace('&', "&amp;"));
        assert!(page.contains(&shown), "/docs shows {method} {path}");
    }
    assert!(!page.contains("<script"), "the page runs no script");
    assert!(
        !page.contains("https://") && !page.contains("http://"),
        "the page loads nothing from elsewhere"
    );
}
