//! An HTTP answer as a caller sees it, for tests that look past the status and JSON body.

use serde_json::Value;

pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The body as JSON, `Null` if it is none.
    pub json: Value,
}

impl Answer {
    /// Sends `request` and reads its answer.
    pub async fn of(request: reqwest::RequestBuilder) -> Self {
        Self::of_response(request.send().await.expect("the service answers")).await
    }

    /// Reads an answer already received.
    pub async fn of_response(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let json = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            retry_after,
            json,
        }
    }

    /// `Retry-After` in whole seconds; a header of another form fails the test.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after.as_deref().map(|text| {
            text.parse()
                .unwrap_or_else(|_| panic!("Retry-After is whole seconds, got {text:?}"))
        })
    }
}

/// 200 and `"status": "accepted"`: the alert was recorded and approved.
pub fn assert_accepted(case: &str, answer: &Answer) {
    assert_eq!(answer.status, 200, "{case}: {}", answer.json);
    assert_eq!(answer.json["status"], "accepted", "{case}: {}", answer.json);
}

/// The one answer to every credential failure; the timestamp is the only part that may differ.
pub fn assert_invalid_token(case: &str, status: u16, body: &Value) {
    assert_eq!(status, 401, "{case}: {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{case}: a JSON object, got {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "error", "timestamp"], "{case}: {body}");
    assert_eq!(body["error"], "Invalid token", "{case}");
    assert_eq!(body["code"], "INVALID_TOKEN", "{case}");
    let timestamp = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "{case}: {body}"
    );
}
