//! The alert bodies the tests send: one typed builder instead of a `format!` per test file.

use serde::Serialize;

/// A TradingView order alert. Serialized compactly in field order (`symbol`, `side`, `size`,
/// `id`, then `secret` if any), byte for byte what TradingView's templates send.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    symbol: String,
    side: String,
    size: String,
    id: String,
    /// The two-factor scheme's secret (`POST /webhooks/{uuid}`), absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl Alert {
    /// Buy 0.001 of `BINANCE:BTCUSDT.P`; `id` is the alert's idempotency key.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            symbol: "BINANCE:BTCUSDT.P".to_owned(),
            side: "buy".to_owned(),
            size: "0.001".to_owned(),
            id: id.into(),
            secret: None,
        }
    }

    /// The alert `serve`'s demo prints: buy 0.01 of `BTCUSDT.P`.
    pub fn demo(id: impl Into<String>) -> Self {
        Self::new(id).symbol("BTCUSDT.P").size("0.01")
    }

    pub fn symbol(self, symbol: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            ..self
        }
    }

    pub fn side(self, side: &str) -> Self {
        Self {
            side: side.to_owned(),
            ..self
        }
    }

    pub fn size(self, size: &str) -> Self {
        Self {
            size: size.to_owned(),
            ..self
        }
    }

    pub fn secret(self, secret: &str) -> Self {
        Self {
            secret: Some(secret.to_owned()),
            ..self
        }
    }

    /// The body as sent.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("an alert of strings serializes")
    }
}

#[test]
fn an_alert_is_the_compact_json_tradingview_sends() {
    assert_eq!(
        Alert::new("a-1").json(),
        r#"{"symbol":"BINANCE:BTCUSDT.P","side":"buy","size":"0.001","id":"a-1"}"#
    );
    assert_eq!(
        Alert::demo("f-1").side("sell").secret("s3cret").json(),
        r#"{"symbol":"BTCUSDT.P","side":"sell","size":"0.01","id":"f-1","secret":"s3cret"}"#
    );
}
