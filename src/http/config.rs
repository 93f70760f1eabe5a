//! `GET /api/config/webhook`: what a trader needs to set up TradingView — their webhook URLs
//! with the real token, the two-factor secret, the payload format and a message template that is
//! correct for longs, shorts, closes and flips.
//!
//! The token and the secret come from the vault, to their owner only (the API key names the
//! user; nobody can ask for another's), and each reveal is recorded in the owner's ledger first
//! (`CredentialAccessed`, purpose `show webhook url`). A user whose credentials were issued
//! before the vault existed has none stored: the answer says to rotate them (`users
//! rotate-webhook`), with `webhook_url: null`. The answer is marked `no-store`.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::authenticated::Authenticated;
use super::error::{ApiError, ErrorBody, Result};
use super::AppState;
use crate::users::urls;
use crate::vault::{Access, Field};

const SECRET_PLACEHOLDER: &str = "<webhook_secret>";
const LONGEST_HOST: usize = 255;
/// Why the vault is asked, as the ledger records it.
pub const SHOW_WEBHOOK_URL: &str = "show webhook url";
const ROTATE_NOTE: &str = "This user's webhook credentials were issued before the service kept \
     them encrypted, so they cannot be shown again. Issue new ones with `ledgerhook users \
     rotate-webhook <USER_ID>` (the old ones then stop working); this endpoint shows them from \
     then on.";

// The answer's fields are in alphabetical order, the order of the `json!` object it replaced, so
// the bytes are unchanged. The credentials are borrowed from their `Zeroizing` buffers and
// written straight into the body: no other copy is made.

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookConfig<'a> {
    /// Only when the credentials cannot be shown (issued before the vault): what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_required: Option<&'static str>,
    pub credentials: WebhookCredentials<'a>,
    /// The alert format: fields, aliases, rules, one example per form.
    #[schema(value_type = Object)]
    pub payload_format: Value,
    pub rate_limit: WebhookRateLimit,
    pub tradingview_setup: TradingViewSetup<'a>,
    /// `POST` here with the secret in the body (seed 000's scheme).
    pub two_factor_url: Option<String>,
    pub user_id: &'a str,
    /// `POST` alerts here: it carries the token (seed 003's scheme).
    pub webhook_url: Option<&'a str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCredentials<'a> {
    pub webhook_secret: Option<&'a str>,
    pub webhook_token: Option<&'a str>,
    pub webhook_uuid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookRateLimit {
    /// Alerts admitted per window.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub requests: u32,
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub window_seconds: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TradingViewSetup<'a> {
    pub alert_name: &'static str,
    /// Paste as the alert's message (with `webhook_url`).
    pub message_template: String,
    /// How to create the alert, step by step.
    pub steps: &'static [&'static str],
    /// The self-healing alternative: the position to hold after the trade.
    pub target_position_template: String,
    pub two_factor: TwoFactorSetup<'a>,
    pub webhook_url: Option<&'a str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorSetup<'a> {
    /// Carries the secret (or a placeholder when it cannot be shown).
    pub message_template: String,
    pub webhook_url: Option<&'a str>,
}

#[utoipa::path(
    get,
    path = "/api/config/webhook",
    tag = "trader",
    summary = "The caller's webhook URLs, credentials and TradingView message template",
    description = "Reveals the caller's own webhook token and secret from the vault, each reveal \
        recorded in the ledger first (`CredentialAccessed`). Marked `Cache-Control: no-store`.",
    responses(
        (status = 200, description = "What to paste into TradingView", body = WebhookConfig,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "INVALID_HOST: no public URL is configured and the Host header is unusable", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN", body = ErrorBody),
        (status = 429, description = "LOCKED_OUT: too many failed authentications", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "INTERNAL_ERROR", body = ErrorBody),
    )
)]
pub async fn webhook(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let profile = state
        .authenticator
        .profile(&user.user_id)
        .await
        .map_err(ApiError::internal)?
        // Authenticated a moment ago; gone now only if the row was deleted meanwhile.
        .ok_or_else(ApiError::invalid_token)?;
    let base = base_url(&state, &headers)?;
    let reveal = |field| {
        state.vault.reveal(
            &profile.user_id,
            field,
            Access::new(SHOW_WEBHOOK_URL, profile.user_id.clone()),
        )
    };
    let token = reveal(Field::WebhookToken)
        .await
        .map_err(ApiError::internal)?;
    let uuid = profile
        .webhook_uuid
        .as_deref()
        .and_then(|uuid| Uuid::parse_str(uuid).ok());
    let secret = match uuid {
        Some(_) => reveal(Field::WebhookSecret)
            .await
            .map_err(ApiError::internal)?,
        None => None,
    };
    let webhook_url = token
        .as_deref()
        .map(|token| Zeroizing::new(urls::webhook_url(&base, token)));
    let two_factor_url = uuid
        .filter(|_| secret.is_some())
        .map(|uuid| urls::two_factor_url(&base, &uuid));
    let rate_limit = user.rate_limit_or_default();
    let webhook_url = webhook_url.as_deref().map(String::as_str);
    let answer = WebhookConfig {
        action_required: webhook_url.is_none().then_some(ROTATE_NOTE),
        credentials: WebhookCredentials {
            webhook_secret: secret.as_deref().map(String::as_str),
            webhook_token: token.as_deref().map(String::as_str),
            webhook_uuid: two_factor_url
                .as_ref()
                .and(uuid.map(|uuid| uuid.to_string())),
        },
        payload_format: crate::ingest::payload_format(),
        rate_limit: WebhookRateLimit {
            requests: rate_limit.requests,
            window_seconds: rate_limit.window_seconds,
        },
        tradingview_setup: tradingview_setup(
            webhook_url,
            two_factor_url.as_deref(),
            secret.as_deref().map(String::as_str),
        ),
        two_factor_url: two_factor_url.clone(),
        user_id: &profile.user_id,
        webhook_url,
    };
    // Rendered here, while the credentials it borrows are still alive.
    Ok(([(CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// `--public-url` / `APP_HOST` if set, else what the request was addressed to.
pub(super) fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String> {
    if let Some(base) = &state.public_url {
        return Ok(base.to_string());
    }
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_plausible_host(host))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_HOST",
                "The Host header is missing or malformed; the service's public URL is unknown",
            )
        })?;
    // Only a proxy in front of the service sets this; anything but http/https is ignored.
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https"))
        .map_or("http", |_| "https");
    Ok(format!("{scheme}://{host}"))
}

/// A host[:port] or [ipv6]:port, and nothing that could change the URL built from it.
fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= LONGEST_HOST
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

/// The same for TradingView's resends of one alert, different between alerts: `{{timenow}}` alone
/// has one-second resolution and `{{strategy.order.id}}` repeats for every entry of the same name,
/// so the order's action, size and resulting position are part of it too.
const ALERT_ID: &str = "{{strategy.order.id}}-{{strategy.order.action}}-{{strategy.order.contracts}}-{{strategy.position_size}}-{{timenow}}";

/// TradingView fills `{{...}}` when the alert fires. Numbers are quoted because an unquoted
/// placeholder that renders empty or NaN makes the JSON invalid; the parser reads numeric strings.
/// - `side`/`size` are the order's action and quantity, so a short entry sells, a close trades
///   exactly the open size back and a flip trades the old plus the new size in one order.
///   (`{{strategy.position_size}}` is the signed position after the trade: never an order size.)
/// - `id` is the same for TradingView's resends of one alert and differs between alerts, so
///   replays are recognised; `timestamp` lets stale deliveries be refused.
fn message_template(secret: Option<&str>) -> String {
    let mut fields = vec![
        ("symbol", "{{ticker}}"),
        ("side", "{{strategy.order.action}}"),
        ("size", "{{strategy.order.contracts}}"),
        ("price", "{{close}}"),
        ("id", ALERT_ID),
        ("timestamp", "{{timenow}}"),
    ];
    if let Some(secret) = secret {
        fields.push(("secret", secret));
    }
    let object: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(name, value)| (name.to_owned(), Value::from(value)))
        .collect();
    Value::Object(object).to_string()
}

/// The self-healing alternative: the position the strategy holds after the trade, where
/// `{{strategy.position_size}}` is exactly right (signed; 0 closes).
fn target_position_template() -> String {
    json!({
        "symbol": "{{ticker}}",
        "target_position": "{{strategy.position_size}}",
        "price": "{{close}}",
        "id": ALERT_ID,
        "timestamp": "{{timenow}}",
    })
    .to_string()
}

fn tradingview_setup<'a>(
    webhook_url: Option<&'a str>,
    two_factor_url: Option<&'a str>,
    secret: Option<&str>,
) -> TradingViewSetup<'a> {
    TradingViewSetup {
        alert_name: "ledgerhook signal",
        message_template: message_template(None),
        steps: &[
            "Open your strategy's alert (Create Alert) and choose the strategy as its condition.",
            "Notifications: tick Webhook URL and paste webhook_url (or two_factor.webhook_url).",
            "Message: paste message_template (or two_factor.message_template, which carries your secret). Keep the quotes around the placeholders.",
            "Create the alert. TradingView posts it from its own servers; each order of the strategy becomes one signal.",
        ],
        target_position_template: target_position_template(),
        two_factor: TwoFactorSetup {
            message_template: message_template(Some(secret.unwrap_or(SECRET_PLACEHOLDER))),
            webhook_url: two_factor_url,
        },
        webhook_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(template: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(template) {
            Ok(Value::Object(fields)) => fields,
            other => panic!("the template is a JSON object: {other:?}"),
        }
    }

    #[test]
    fn the_template_orders_the_order_not_the_position() {
        let template = fields(&message_template(None));
        assert_eq!(template["side"], "{{strategy.order.action}}");
        assert_eq!(template["size"], "{{strategy.order.contracts}}");
        assert_eq!(template["symbol"], "{{ticker}}");
        assert_eq!(template["price"], "{{close}}");
        assert_eq!(template["timestamp"], "{{timenow}}");
        let id = template["id"].as_str().unwrap_or_default();
        assert!(id.contains("{{strategy.order.id}}") && id.contains("{{timenow}}"));
        assert!(!template.contains_key("secret"));
        // The position after the trade only makes the id unique; it never sizes the order.
        let sized_by_position = template
            .iter()
            .any(|(name, value)| name != "id" && value.to_string().contains("position_size"));
        assert!(!sized_by_position);
    }

    #[test]
    fn the_two_factor_template_carries_the_secret() {
        let template = fields(&message_template(Some(SECRET_PLACEHOLDER)));
        assert_eq!(template["secret"], SECRET_PLACEHOLDER);
        assert_eq!(template["size"], "{{strategy.order.contracts}}");
    }

    /// Filled as TradingView would for a strategy going long 1, flipping to short 1, then
    /// closing: the orders are buy 1, sell 2, buy 1, and the position ends flat.
    #[test]
    fn filled_in_for_entries_flips_and_closes_it_trades_the_intended_sizes() {
        let fill = |action: &str, contracts: &str| {
            message_template(None)
                .replace("{{strategy.order.action}}", action)
                .replace("{{strategy.order.contracts}}", contracts)
                .replace("{{ticker}}", "BTCUSDT.P")
                .replace("{{close}}", "65000.5")
                .replace("{{strategy.order.id}}", "Long")
                .replace("{{timenow}}", "2024-06-10T06:13:20Z")
        };
        let mut position = rust_decimal::Decimal::ZERO;
        for (action, contracts) in [("buy", "1"), ("sell", "2"), ("buy", "1")] {
            let alert = fields(&fill(action, contracts));
            let size: rust_decimal::Decimal = alert["size"]
                .as_str()
                .and_then(|size| size.parse().ok())
                .expect("a numeric size");
            match alert["side"].as_str() {
                Some("buy") => position += size,
                Some("sell") => position -= size,
                other => panic!("unexpected side {other:?}"),
            }
        }
        assert_eq!(position, rust_decimal::Decimal::ZERO);
    }

    #[test]
    fn only_plausible_hosts_make_urls() {
        assert!(is_plausible_host("hooks.example.com"));
        assert!(is_plausible_host("127.0.0.1:8080"));
        assert!(is_plausible_host("[::1]:8080"));
        assert!(!is_plausible_host(""));
        assert!(!is_plausible_host("evil.com/path?"));
        assert!(!is_plausible_host("a b"));
        assert!(!is_plausible_host(&"a".repeat(LONGEST_HOST + 1)));
    }
}
