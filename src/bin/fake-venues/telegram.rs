//! A fake Telegram Bot API: `POST /bot{token}/sendMessage` answered the way api.telegram.org
//! answers it (JSON or form bodies; `{"ok":true,"result":Message}`, or `{"ok":false,
//! "error_code","description"}` with `parameters.retry_after` on 429), with faults a test sets.
//!
//! It keeps every accepted message for `GET /_fake/messages`. It never keeps or shows a whole bot
//! token: a message records the token's SHA-256 prefix and its last four characters.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Faults for the next requests, set as JSON. Counts are used up one request at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramFaults {
    /// Every request is answered 503 without a Bot API body, as a proxy in front of a dead
    /// backend would, until this is cleared.
    pub down: bool,
    /// Every request waits this long before it is answered.
    pub slow_ms: u64,
    /// The next this many requests fail with 500 and 502 in turn.
    pub status_5xx: u32,
    /// The next this many requests are answered 429 with `retry_after`.
    pub rate_limited: u32,
    /// The `retry_after` seconds a 429 names (1 when unset).
    pub retry_after: Option<u64>,
    /// Chats that do not exist: 400 "Bad Request: chat not found".
    pub reject_chat_ids: BTreeSet<String>,
    /// Telegram's flood control: a message to a chat that got one less than this long ago is
    /// answered 429 (`retry_after` 1). 0: no limit.
    pub chat_min_interval_ms: u64,
}

/// A message the fake accepted.
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    pub message_id: u64,
    /// The first 16 hex digits of the token's SHA-256: enough to tell bots apart.
    pub token_sha256: String,
    pub token_last4: String,
    pub chat_id: String,
    pub text: String,
    pub parse_mode: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
struct Inner {
    faults: TelegramFaults,
    messages: Vec<SentMessage>,
    /// Every sendMessage request that reached the fake, accepted or not.
    requests: u64,
    /// When each chat last got a message (for `chat_min_interval_ms`).
    last_by_chat: std::collections::HashMap<String, std::time::Instant>,
}

/// The fake's shared state; clones share it.
#[derive(Clone, Default)]
pub struct TelegramFake {
    inner: Arc<Mutex<Inner>>,
}

/// The body of a sendMessage request; `chat_id` is an integer or an `@channel` string.
#[derive(Debug, Deserialize)]
struct SendMessage {
    chat_id: Value,
    text: String,
    parse_mode: Option<String>,
}

impl TelegramFake {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/{bot}/sendMessage", post(send_message))
            .route("/_fake/messages", get(messages))
            .with_state(self.clone())
    }

    pub fn set_faults(&self, faults: TelegramFaults) {
        self.lock().faults = faults;
    }

    /// A poisoned lock only means a handler panicked mid-update; the fake's state stays usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a request meets, decided (and counts used up) under one lock.
enum Verdict {
    Down,
    ServerError(StatusCode),
    RateLimited(u64),
    ChatNotFound,
    Accept(SentMessage),
}

async fn send_message(
    State(fake): State<TelegramFake>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot").filter(|token| !token.is_empty()) else {
        return api_error(StatusCode::NOT_FOUND, "Not Found", None);
    };
    let slow_ms = fake.lock().faults.slow_ms;
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    let request = match parse(&headers, &body) {
        Ok(request) => request,
        Err(description) => {
            fake.lock().requests += 1;
            return api_error(StatusCode::BAD_REQUEST, &description, None);
        }
    };
    let chat_id = match &request.chat_id {
        Value::String(chat) => chat.clone(),
        Value::Number(chat) => chat.to_string(),
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: chat_id is empty",
                None,
            )
        }
    };
    let verdict = {
        let mut inner = fake.lock();
        inner.requests += 1;
        let faults = &mut inner.faults;
        if faults.down {
            Verdict::Down
        } else if faults.status_5xx > 0 {
            faults.status_5xx -= 1;
            Verdict::ServerError(if faults.status_5xx % 2 == 0 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_GATEWAY
            })
        } else if faults.rate_limited > 0 {
            faults.rate_limited -= 1;
            Verdict::RateLimited(faults.retry_after.unwrap_or(1))
        } else if faults.reject_chat_ids.contains(&chat_id) {
            Verdict::ChatNotFound
        } else if faults.chat_min_interval_ms > 0
            && inner.last_by_chat.get(&chat_id).is_some_and(|last| {
                last.elapsed() < Duration::from_millis(inner.faults.chat_min_interval_ms)
            })
        {
            Verdict::RateLimited(1)
        } else {
            inner
                .last_by_chat
                .insert(chat_id.clone(), std::time::Instant::now());
            let message = SentMessage {
                message_id: inner.messages.len() as u64 + 1,
                token_sha256: hex::encode(&Sha256::digest(token.as_bytes())[..8]),
                token_last4: last4(token),
                chat_id: chat_id.clone(),
                text: request.text.clone(),
                parse_mode: request.parse_mode.clone(),
                at: Utc::now(),
            };
            inner.messages.push(message.clone());
            Verdict::Accept(message)
        }
    };
    match verdict {
        Verdict::Down => {
            (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable").into_response()
        }
        Verdict::ServerError(status) => api_error(status, status.as_str(), None),
        Verdict::RateLimited(seconds) => {
            let mut response = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {seconds}"),
                Some(seconds),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Verdict::ChatNotFound => {
            api_error(StatusCode::BAD_REQUEST, "Bad Request: chat not found", None)
        }
        Verdict::Accept(message) => Json(json!({
            "ok": true,
            "result": {
                "message_id": message.message_id,
                "from": {
                    "id": 7_000_000_001_u64,
                    "is_bot": true,
                    "first_name": "ledgerhook",
                    "username": "ledgerhook_fake_bot"
                },
                "chat": chat_json(&request.chat_id),
                "date": message.at.timestamp(),
                "text": message.text,
            }
        }))
        .into_response(),
    }
}

/// The Bot API takes JSON, `application/x-www-form-urlencoded` (and multipart, not faked).
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<SendMessage, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        #[derive(Deserialize)]
        struct Form {
            chat_id: Option<String>,
            text: Option<String>,
            parse_mode: Option<String>,
        }
        let form: Form = serde_urlencoded_from(body)?;
        return Ok(SendMessage {
            chat_id: form.chat_id.map(Value::String).unwrap_or(Value::Null),
            text: form
                .text
                .ok_or_else(|| "Bad Request: message text is empty".to_owned())?,
            parse_mode: form.parse_mode,
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "Bad Request: can't parse JSON object".to_owned())?;
    if value.get("chat_id").is_none() {
        return Err("Bad Request: chat_id is empty".to_owned());
    }
    match value.get("text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => {}
        _ => return Err("Bad Request: message text is empty".to_owned()),
    }
    serde_json::from_value(value).map_err(|error| format!("Bad Request: {error}"))
}

fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_urlencoded::from_bytes(body).map_err(|_| "Bad Request: can't parse form".to_owned())
}

/// The chat a message went to: an id (as a number or, from a form, as text) is a private chat
/// when positive and a group when negative; `@name` is a channel.
fn chat_json(chat_id: &Value) -> Value {
    let id = match chat_id {
        Value::Number(id) => id.as_i64(),
        Value::String(text) => text.parse::<i64>().ok(),
        _ => None,
    };
    match id {
        Some(id) if id > 0 => json!({"id": id, "first_name": "Trader", "type": "private"}),
        Some(id) => json!({"id": id, "title": "Traders", "type": "supergroup"}),
        None => json!({"id": -1_001_000_000_000_i64, "title": chat_id, "type": "channel"}),
    }
}

fn last4(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

fn api_error(status: StatusCode, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({
        "ok": false,
        "error_code": status.as_u16(),
        "description": description,
    });
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({ "retry_after": seconds });
    }
    (status, Json(body)).into_response()
}

async fn messages(State(fake): State<TelegramFake>) -> Json<Value> {
    let inner = fake.lock();
    Json(json!({
        "requests": inner.requests,
        "messages": inner.messages,
    }))
}
