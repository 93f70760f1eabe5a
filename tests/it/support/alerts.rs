//! The alert bodies the tests send: one typed builder instead of a `format!` per test file.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// A TradingView order alert. Serialized compactly in order — `symbol`, `side`, `size`, `id`, any
/// further fields as added, then `secret` if any — byte for byte what TradingView's templates send.
#[derive(Debug, Clone)]
pub struct Alert {
    symbol: String,
    side: String,
    size: String,
    id: String,
    /// Further fields (`price`, `take_profit`, `timestamp`, `max_lag`...), in the order added.
    fields: Vec<(String, Value)>,
    /// The two-factor scheme's secret (`POST /webhooks/{uuid}`), absent otherwise.
    secret: Option<String>,
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("symbol", &self.symbol)?;
        map.serialize_entry("side", &self.side)?;
        map.serialize_entry("size", &self.size)?;
        map.serialize_entry("id", &self.id)?;
        for (name, value) in &self.fields {
            map.serialize_entry(name, value)?;
        }
        if let Some(secret) = &self.secret {
            map.serialize_entry("secret", secret)?;
        }
        map.end()
    }
}

impl Alert {
    /// Buy 0.001 of `BINANCE:BTCUSDT.P`; `id` is the alert's idempotency key.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            symbol: "BINANCE:BTCUSDT.P".to_owned(),
            side: "buy".to_owned(),
            size: "0.001".to_owned(),
            id: id.into(),
            fields: Vec::new(),
            secret: None,
        }
    }

    /// The alert `serve`'s demo prints: buy 0.01 of `BTCUSDT.P`.
    pub fn demo(id: impl Into<String>) -> Self {
        Self::new(id).symbol("BTCUSDT.P").size("0.01")
    }

    /// Buy 0.001 of `BTC-USD` (the paper exchange's reference price is 65,000).
    pub fn btc_usd(id: impl Into<String>) -> Self {
        Self::new(id).symbol("BTC-USD")
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

    /// One more field, after those added before (a string value is sent as a JSON string).
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.push((name.to_owned(), value.into()));
        self
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
    assert_eq!(
        Alert::btc_usd("t-3")
            .field("timestamp", "2026-01-05T12:00:00Z")
            .field("max_lag", 900)
            .json(),
        r#"{"symbol":"BTC-USD","side":"buy","size":"0.001","id":"t-3","timestamp":"2026-01-05T12:00:00Z","max_lag":900}"#
    );
}
