//! The HTTP surface: routes, request ids, access logs without query strings, limits.
//!
//! Architecture invariant: only this module knows about JSON error bodies and status codes.

mod access;
mod api;
mod audit_export;
mod audit_params;
mod authenticated;
mod compliance;
mod config;
mod dashboard;
mod docs;
mod error;
mod guard;
mod health;
mod metered;
mod operator;
mod own_audit;
mod request_id;
pub mod server;
mod settings;
mod sign_in;
mod signals;
mod staff_authenticated;
mod trader;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::access::{Admits, Caller, CredentialKind, Role, RouteAccess, ROUTES};
pub use self::api::{openapi, operations};
pub use self::authenticated::Authenticated;
pub use self::error::{ApiError, ErrorBody};
use crate::guard::Guard;
use crate::ingest::Ingest;
use crate::users::Authenticator;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// TradingView alerts are a few hundred bytes; this is generous and still cheap to buffer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// TradingView gives up after 3 s; nothing useful happens after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two pieces of a request body (the whole request has `REQUEST_TIMEOUT`).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    /// What the handlers read through (read models, audit trail, staff, health); they never reach
    /// the store through `ingest` or `authenticator`.
    pub store: crate::store::Store,
    pub ingest: Arc<Ingest>,
    pub authenticator: Arc<Authenticator>,
    /// Reveals a trader's own webhook credentials (`GET /api/config/webhook`), recording it.
    pub vault: crate::vault::Vault,
    pub guard: Arc<Guard>,
    /// Base of the URLs shown to users; `None`: from each request's Host / X-Forwarded-Proto.
    pub public_url: Option<Arc<str>>,
    /// The background verification's latest report, for `GET /api/compliance/audit/verify`.
    pub audit_verification: Arc<crate::audit::LatestVerification>,
    /// Where this instance's catch-up readers stand, for `/readyz`.
    pub readers: Arc<crate::catchup::ReaderRegistry>,
    /// Renders the process's metrics (`crate::telemetry`).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub webhook_meters: Arc<crate::telemetry::WebhookMeters>,
    /// The chain id a wallet's sign-in message must name (EIP-4361).
    pub sign_in_chain_id: u64,
    /// Runs the settings' and operators' commands on accounts (the same ledger ingest uses).
    pub ledger: crate::ledger::Ledger,
    /// The channel trade notifications go through, for `POST /api/settings/test-notification`.
    pub notifier: Arc<dyn crate::notify::Notifier>,
    /// The global emergency stop, for `POST /api/operator/halt` without a user.
    pub emergency: Arc<crate::emergency::EmergencySwitch>,
    /// Whether this service trades on dYdX at all (`--dydx-...`): a venue it cannot serve is
    /// refused when chosen.
    pub dydx_configured: bool,
    /// The size of an alert without one, for accounts that set none (`--default-order-usd`).
    pub default_order_usd: rust_decimal::Decimal,
}

/// Every route, declared once: the router serves exactly what this declares and `/openapi.json`
/// describes exactly that (`api::openapi`). `webhook_layers` wraps the two webhook routes; the
/// document is made without them (they need the state, and add no route).
fn declared(
    webhook_layers: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let webhooks = OpenApiRouter::new()
        .routes(routes!(webhook::receive))
        .routes(routes!(webhook::receive_two_factor));
    OpenApiRouter::with_openapi(api::base())
        .merge(webhook_layers(webhooks))
        .merge(dashboard::routes())
        .routes(routes!(sign_in::nonce))
        .routes(routes!(sign_in::verify))
        .routes(routes!(sign_in::staff_sign_in))
        .routes(routes!(sign_in::session))
        .routes(routes!(sign_in::logout))
        .routes(routes!(config::webhook))
        .routes(routes!(own_audit::own_audit))
        .routes(routes!(compliance::audit))
        .routes(routes!(compliance::verify))
        .routes(routes!(trader::positions))
        .routes(routes!(trader::trades))
        .routes(routes!(signals::list))
        .routes(routes!(trader::signal))
        .routes(routes!(signals::story))
        .routes(routes!(settings::show))
        .routes(routes!(settings::choose_venue))
        .routes(routes!(settings::change_limits))
        .routes(routes!(
            settings::credentials::set_credential,
            settings::credentials::clear_credential
        ))
        .routes(routes!(settings::credentials::rotate_webhook))
        .routes(routes!(settings::trials::test_notification))
        .routes(routes!(settings::trials::test_signal))
        .routes(routes!(operator::halt))
        .routes(routes!(operator::resume))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(api::openapi_json))
        .routes(routes!(api::docs))
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let (routes, _) = declared(|webhooks| {
        // The IP allowlist guards the webhook routes only: health checks come from the platform.
        webhooks
            .route_layer(axum::middleware::from_fn_with_state(
                state.guard.clone(),
                guard::allowlisted,
            ))
            // Outside the allowlist, so its refusals are timed and counted too.
            .route_layer(axum::middleware::from_fn_with_state(
                state.webhook_meters.clone(),
                metered::webhook,
            ))
    })
    .split_for_parts();
    routes
        // Every route above, before its handler: who may call it (`access::ROUTES`).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::enforce,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings carry webhook tokens and never reach a log line.
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %loggable_path(request.uri().path()),
                        request_id,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Outermost: a caller's unacceptable id is gone before one is chosen, logged or stored.
        .layer(axum::middleware::map_request(request_id::drop_unacceptable))
}

/// Characters of a two-factor webhook uuid kept in logs: enough to tell users' hooks apart, too
/// few to post to one (the full uuid is an address, and addresses are not for log readers).
const LOGGED_UUID_PREFIX: usize = 8;

fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/webhooks/") {
        Some(rest) => {
            let prefix: String = rest.chars().take(LOGGED_UUID_PREFIX).collect();
            format!("/webhooks/{prefix}…").into()
        }
        None => path.into(),
    }
}

/// `body` as JSON with its keys sorted at every level, as the `json!` objects these answers were
/// before they had types (serde_json sorts its maps): for answers that embed types whose fields
/// are not declared in alphabetical order, so their bytes stay the same.
fn sorted_json<T: Serialize>(body: &T) -> error::Result<Json<serde_json::Value>> {
    serde_json::to_value(body)
        .map(Json)
        .map_err(ApiError::internal)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "This endpoint does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed answers keep the bytes of the `json!` objects they replaced, whose keys serde_json
    /// sorts: written directly, each comes out exactly as its sorted `Value` does.
    #[test]
    fn typed_answers_are_written_with_their_keys_sorted() {
        fn same_as_sorted<T: Serialize>(answer: T) {
            let direct = serde_json::to_string(&answer).expect("JSON");
            let sorted = serde_json::to_value(&answer).expect("JSON").to_string();
            assert_eq!(direct, sorted);
        }
        let text = || "x".to_owned();
        same_as_sorted(ErrorBody {
            code: text(),
            error: text(),
            timestamp: text(),
        });
        same_as_sorted(webhook::SignalReceipt {
            reason: Some("risk_rejected"),
            rule: Some(text()),
            signal_id: text(),
            status: webhook::ReceiptState::Rejected,
        });
        same_as_sorted(trader::Positions {
            positions: vec![trader::Position {
                average_entry_price: text(),
                market: text(),
                realized_pnl_usd: text(),
                side: "long",
                size: text(),
            }],
        });
        same_as_sorted(trader::Trades {
            next_cursor: Some(text()),
            trades: vec![trader::Trade {
                client_order_id: text(),
                exchange_order_id: text(),
                fee_usd: text(),
                filled_at: text(),
                market: text(),
                price: text(),
                side: text(),
                signal_id: text(),
                size: text(),
            }],
        });
        same_as_sorted(trader::Signal {
            detail: Some(text()),
            duplicates: 1,
            events: vec![trader::SignalEvent {
                event_type: text(),
                recorded_at: Some(text()),
                sequence: 1,
            }],
            market: Some(text()),
            outcome: text(),
            received_at: Some(text()),
            signal_id: text(),
            status: text(),
            updated_at: None,
        });
        same_as_sorted(health::Health { status: "ok" });
        same_as_sorted(signals::Signals {
            next_cursor: Some(text()),
            signals: vec![signals::SignalSummary {
                detail: None,
                duplicates: 0,
                market: Some(text()),
                outcome: text(),
                received_at: Some(text()),
                signal_id: text(),
                status: text(),
                updated_at: None,
            }],
        });
        same_as_sorted(signals::Story {
            events: vec![signals::StoryStep {
                changes: serde_json::json!([{"after": 1, "before": 0, "kind": "changed", "path": "x"}]),
                event_type: text(),
                payload: serde_json::json!({"SignalReceived": {"a": 1, "b": 2}}),
                recorded_at: Some(text()),
                sequence: 1,
            }],
            signal_id: text(),
        });
        same_as_sorted(operator::Switched::Global(operator::GlobalSwitch {
            by: text(),
            changed: true,
            emergency_stop: true,
            scope: "global",
        }));
        same_as_sorted(operator::Switched::Account(operator::AccountSwitch {
            by: text(),
            changed: false,
            halted: true,
            scope: "account",
            user_id: text(),
        }));
        same_as_sorted(settings::Settings {
            credentials: [("dydx_mnemonic", settings::CredentialState { set: true })]
                .into_iter()
                .collect(),
            default_order_usd: text(),
            default_order_usd_is_own: false,
            dydx_ready: false,
            halted: Some(settings::HaltView {
                at: text(),
                by: text(),
                reason: text(),
            }),
            limits: settings::Limits {
                allowed_markets: vec![text()],
                halt_after_consecutive_failures: 3,
                max_daily_volume_usd: text(),
                max_order_notional_usd: text(),
                max_order_size: [(text(), text())].into_iter().collect(),
                max_position_notional_usd: text(),
                max_position_size: Default::default(),
                max_price_deviation_bps: 500,
            },
            user_id: text(),
            venue: "paper",
        });
        same_as_sorted(settings::credentials::RotatedWebhook {
            credentials: settings::credentials::RotatedCredentials {
                webhook_secret: text(),
                webhook_token: text(),
                webhook_uuid: text(),
            },
            note: "n",
            two_factor_url: text(),
            user_id: text(),
            webhook_url: text(),
        });
        same_as_sorted(settings::trials::TestNotification {
            channel: "log",
            delivered: false,
            reason: Some(text()),
        });
        same_as_sorted(settings::trials::TestSignalReceipt {
            reason: Some("risk_rejected"),
            rule: Some(text()),
            signal_id: text(),
            status: webhook::ReceiptState::Rejected,
            test: true,
        });
        same_as_sorted(sign_in::Challenge {
            expires_at: text(),
            message: text(),
            nonce: text(),
        });
        same_as_sorted(sign_in::WalletSession {
            address: text(),
            created: true,
            csrf_token: text(),
            expires_at: text(),
            role: "trader",
            user_id: text(),
        });
        same_as_sorted(sign_in::StaffSession {
            csrf_token: text(),
            display_name: text(),
            expires_at: text(),
            role: "operator",
            staff_id: text(),
        });
        same_as_sorted(sign_in::CurrentSession {
            csrf_token: Some(text()),
            display_name: Some(text()),
            expires_at: None,
            role: "compliance",
            staff_id: Some(text()),
            user_id: None,
        });
        let credentials = config::WebhookCredentials {
            webhook_secret: Some("s"),
            webhook_token: Some("t"),
            webhook_uuid: Some(text()),
        };
        same_as_sorted(config::WebhookConfig {
            action_required: Some("rotate"),
            credentials,
            payload_format: crate::ingest::payload_format(),
            rate_limit: config::WebhookRateLimit {
                requests: 10,
                window_seconds: 60,
            },
            tradingview_setup: config::TradingViewSetup {
                alert_name: "a",
                message_template: text(),
                steps: &["one"],
                target_position_template: text(),
                two_factor: config::TwoFactorSetup {
                    message_template: text(),
                    webhook_url: Some("u"),
                },
                webhook_url: Some("u"),
            },
            two_factor_url: Some(text()),
            user_id: "u",
            webhook_url: Some("u"),
        });
    }

    #[test]
    fn two_factor_paths_are_logged_by_prefix_only() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let logged = loggable_path(&format!("/webhooks/{uuid}")).into_owned();
        assert_eq!(logged, "/webhooks/0f8fad5b…");
        assert_eq!(loggable_path("/api/webhook"), "/api/webhook");
    }
}
