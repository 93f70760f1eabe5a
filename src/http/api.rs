//! The API's description, OpenAPI 3.1 (utoipa): `GET /openapi.json`, and `GET /docs` rendered
//! from it (`docs.rs`). The document comes from the same declaration as the router
//! (`super::declared`, utoipa-axum's `routes!`), so a route cannot be served undescribed; each
//! handler's `#[utoipa::path]` states its parameters, bodies and every error it answers.

use std::sync::LazyLock;

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::Method;
use axum::response::IntoResponse;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::access::{access_of, Admits, Role};
use super::error::ErrorBody;

/// What the derive contributes: the info block, the tags, the security schemes and the error body.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledgerhook",
        description = "TradingView alerts to dYdX v4 trades, every step in an event-sourced \
            ledger. Every error answers `{\"error\",\"code\",\"timestamp\"}` with a stable `code`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "webhook", description = "Alerts from TradingView"),
        (name = "sign-in", description = "Wallet (EIP-4361) and staff sign-in, sessions"),
        (name = "trader", description = "A trader's own account"),
        (name = "settings", description = "A trader's settings, each change a ledger event"),
        (name = "operator", description = "Staff: halts and the emergency stop"),
        (name = "compliance", description = "Staff: the audit trail"),
        (name = "operations", description = "Health, readiness, metrics, this description"),
        (name = "dashboard", description = "The web pages and their assets (no data in them)"),
    )
)]
struct Base;

/// The four ways a caller proves who they are (names used by every operation's `security`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "trader_key",
            bearer(
                "lhk_…",
                "A trader's API key (`ledgerhook users create`), as `Authorization: Bearer lhk_…`",
            ),
        );
        components.add_security_scheme(
            "staff_key",
            bearer(
                "lhs_…",
                "A staff member's API key (`ledgerhook staff create`), as `Authorization: Bearer \
                 lhs_…`; the role (compliance or operator) decides what it may read",
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "lh_session",
                "The session of a wallet (trader) or password (staff) sign-in. State-changing \
                 requests also carry `x-csrf-token`.",
            ))),
        );
        components.add_security_scheme(
            "webhook_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A trader's webhook token, in the URL TradingView posts to (it sends no headers). \
                 The two-factor webhook carries its secret in the body instead.",
            ))),
        );
    }
}

/// The whole document: the base, every declared route, and what every route may answer.
pub fn openapi() -> Document {
    finish(super::declared(|webhooks| webhooks).into_openapi())
}

pub(super) fn base() -> Document {
    Base::openapi()
}

/// Each (method, path) the document describes, and so the router serves, sorted: for checking
/// against the access table.
pub fn operations() -> Vec<(Method, String)> {
    let mut all: Vec<(Method, String)> = openapi()
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            methods(item)
                .into_iter()
                .map(move |(method, _)| (method, path.clone()))
        })
        .collect();
    all.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    all
}

fn methods(item: &PathItem) -> Vec<(Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|operation| (method, operation)))
    .collect()
}

/// What the access table and the layers in front of every handler add to each operation:
/// - for a route that admits roles, who (`x-roles`), with which credentials (`security`, from the
///   roles: the table decides, not the handler's annotation), and the access layer's answers
///   (401, 403, 429, 500) — so the document cannot disagree with `access::enforce`;
/// - for every route, the router's 408 past `REQUEST_TIMEOUT` (10 s), with no body.
fn finish(mut document: Document) -> Document {
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(operation) = operation else { continue };
            if let Some(Admits::Roles(roles)) = access_of(&method, path) {
                admitted(operation, roles);
            }
            operation.responses.responses.insert(
                "408".to_owned(),
                ResponseBuilder::new()
                    .description("The request took longer than 10 s; nothing was done (no body)")
                    .build()
                    .into(),
            );
        }
    }
    document
}

fn admitted(operation: &mut Operation, roles: &[Role]) {
    let traders = roles.contains(&Role::Trader);
    let staff = roles.iter().any(|role| *role != Role::Trader);
    let schemes = [
        (traders, "trader_key"),
        (staff, "staff_key"),
        (true, "session"),
    ];
    operation.security = Some(
        schemes
            .into_iter()
            .filter(|(used, _)| *used)
            .map(|(_, scheme)| SecurityRequirement::new(scheme, Vec::<String>::new()))
            .collect(),
    );
    let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    operation
        .extensions
        .get_or_insert_with(Default::default)
        .merge(
            [("x-roles", serde_json::json!(names))]
                .into_iter()
                .collect(),
        );
    for (status, codes) in [
        ("401", "INVALID_TOKEN: no credential, or an unknown one"),
        (
            "403",
            "FORBIDDEN: the caller's role is not admitted; CSRF_TOKEN_INVALID: a session's change \
             without its x-csrf-token",
        ),
        (
            "429",
            "LOCKED_OUT: too many failed authentications from this address",
        ),
        ("500", "INTERNAL_ERROR"),
    ] {
        let responses = &mut operation.responses.responses;
        match responses.get_mut(status) {
            Some(RefOr::T(response)) if !response.description.contains(codes) => {
                response.description = format!("{}; {codes}", response.description);
            }
            Some(_) => {}
            None => {
                responses.insert(status.to_owned(), error_response(codes).into());
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Rendered once: the document is the same for the life of the process.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_json()
        .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
});

static DOCS_PAGE: LazyLock<String> = LazyLock::new(|| super::docs::render(&openapi()));

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This description (OpenAPI 3.1)",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json",
        body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    summary = "This description as a page",
    security(()),
    responses((status = 200, description = "HTML, served by this binary, nothing fetched",
        content_type = "text/html", body = String))
)]
pub async fn docs() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is self-contained: no script, nothing from elsewhere.
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (CACHE_CONTROL, "no-cache"),
        ],
        DOCS_PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(&DOCUMENT).expect("the document is JSON");
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let operations = operations();
        for expected in [
            (Method::POST, "/api/webhook"),
            (Method::POST, "/webhooks/{webhook_uuid}"),
            (Method::GET, super::super::compliance::AUDIT_PATH),
            (Method::GET, super::super::compliance::VERIFY_PATH),
            (Method::GET, "/openapi.json"),
            (Method::GET, "/docs"),
        ] {
            assert!(
                operations
                    .iter()
                    .any(|(method, path)| *method == expected.0 && path == expected.1),
                "{expected:?} in {operations:?}"
            );
        }
    }

    /// The document and the access table name the same routes: nothing served undescribed,
    /// nothing described that no one may call.
    #[test]
    fn the_document_and_the_access_table_name_the_same_routes() {
        let mut table: Vec<(String, String)> = super::super::access::ROUTES
            .iter()
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        table.sort();
        let mut described: Vec<(String, String)> = operations()
            .into_iter()
            .map(|(method, path)| (method.as_str().to_owned(), path))
            .collect();
        described.sort();
        assert_eq!(described, table);
    }

    #[test]
    fn operation_ids_are_unique() {
        let document = openapi();
        let mut seen = std::collections::HashSet::new();
        for item in document.paths.paths.values() {
            for (method, operation) in methods(item) {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(seen.insert(id.clone()), "{method} {id} twice");
            }
        }
    }

    #[test]
    fn every_error_answer_is_described_with_the_error_body() {
        let document = openapi();
        for (path, item) in &document.paths.paths {
            for (method, operation) in methods(item) {
                for (status, response) in &operation.responses.responses {
                    if !status.starts_with('4') && !status.starts_with('5') || status == "408" {
                        continue;
                    }
                    let json = serde_json::to_value(response).expect("a response is JSON");
                    let described = json.to_string().contains("ErrorBody")
                        || (path == "/readyz" && status == "503");
                    assert!(described, "{method} {path} {status}: {json}");
                }
            }
        }
    }
}
