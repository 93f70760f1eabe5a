//! The Telegram notifier: `sendMessage` on the Bot API, paced per bot and per chat, with the bot
//! token and each account's chat id fetched from `TelegramCredentials` for the moment of use.
//!
//! Within one call it honours a 429's `retry_after` and retries 5xx and connection failures with
//! backoff, all inside `TelegramOptions::deadline`: the saga waits for it, so what does not fit is
//! handed back as a failure worth retrying later. The token is part of the request's URL, so no
//! URL ever reaches an error text or a log line.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::pacing::Pacing;
use super::{Notifier, NotifyError};

pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// First pause after a 5xx or a connection failure; doubles with each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The least time worth starting another attempt with.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// A credential store could not answer. Its text must never hold a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

/// Where the bot token and the chat ids come from (the vault). Values live in zeroizing strings,
/// only as long as a request needs them.
#[async_trait]
pub trait TelegramCredentials: Send + Sync {
    /// The service's bot token; `None` when no bot is configured.
    async fn bot_token(&self) -> Result<Option<Zeroizing<String>>, CredentialsError>;
    /// The account's Telegram chat id; `None` when the trader has not set one.
    async fn chat_id(
        &self,
        account_id: &str,
    ) -> Result<Option<Zeroizing<String>>, CredentialsError>;
}

#[derive(Debug, Clone)]
pub struct TelegramOptions {
    /// The Bot API's base URL, without a trailing slash (`--telegram-api-url`).
    pub api_url: String,
    /// Everything one notification may take: pacing, waits for `retry_after`, retries.
    pub deadline: Duration,
    /// Messages a second for the whole bot (Telegram allows about 30).
    pub per_bot_per_second: NonZeroU32,
    /// Messages a second to one chat (Telegram allows about 1).
    pub per_chat_per_second: NonZeroU32,
}

impl Default for TelegramOptions {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_TELEGRAM_API_URL.to_owned(),
            deadline: Duration::from_secs(5),
            per_bot_per_second: NonZeroU32::MIN.saturating_add(24),
            per_chat_per_second: NonZeroU32::MIN,
        }
    }
}

pub struct TelegramNotifier {
    client: reqwest::Client,
    api_url: String,
    deadline: Duration,
    credentials: Arc<dyn TelegramCredentials>,
    pacing: Pacing,
}

/// The Bot API's answer: `{"ok":true,"result":…}` or `{"ok":false,"error_code",
/// "description","parameters":{"retry_after"}}`.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ApiParameters>,
}

#[derive(Debug, Deserialize)]
struct ApiParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// What one request came to.
enum Attempt {
    Sent,
    /// Worth another try after at least this long.
    Retry(Duration, NotifyError),
    Final(NotifyError),
}

impl TelegramNotifier {
    pub fn new(
        credentials: Arc<dyn TelegramCredentials>,
        options: TelegramOptions,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // A redirect would carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            api_url: options.api_url.trim_end_matches('/').to_owned(),
            deadline: options.deadline,
            credentials,
            pacing: Pacing::new(options.per_bot_per_second, options.per_chat_per_second),
        })
    }

    async fn send_until(
        &self,
        deadline: Instant,
        token: &str,
        chat_id: &str,
        text: &str,
    ) -> Result<(), NotifyError> {
        // The token is in the path, so this string is a secret: zeroized, never shown.
        let url = Zeroizing::new(format!("{}/bot{token}/sendMessage", self.api_url));
        // A numeric chat id goes as a number, a channel name as a string, as the API takes them.
        let chat = chat_id
            .parse::<i64>()
            .map_or_else(|_| json!(chat_id), |id| json!(id));
        let body = json!({ "chat_id": chat, "text": clip(text) });
        let mut backoff = FIRST_BACKOFF;
        loop {
            if tokio::time::timeout_at(deadline, self.pacing.ready(chat_id))
                .await
                .is_err()
            {
                // Pacing would hold it past the deadline: a burst to one chat; try later.
                return Err(NotifyError::RateLimited {
                    retry_after: Duration::from_secs(1),
                });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let sent = self
                .client
                .post(url.as_str())
                .json(&body)
                .timeout(remaining)
                .send()
                .await;
            let (wait, error) = match judge(sent).await {
                Attempt::Sent => return Ok(()),
                Attempt::Final(error) => return Err(error),
                Attempt::Retry(wait, error) => (wait.max(backoff), error),
            };
            // An attempt needs time to connect and be answered; one cut short by the deadline
            // would only hide the real failure behind a timeout.
            if Instant::now() + wait + MIN_ATTEMPT >= deadline {
                return Err(error);
            }
            tracing::debug!(target: "ledgerhook::notify", %error, ?wait, "telegram: retrying");
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

/// Telegram refuses a text over 4,096 characters ("message is too long"): a longer one is cut,
/// which beats not telling the trader at all.
fn clip(text: &str) -> String {
    const MAX_CHARS: usize = 4_096;
    if text.chars().nth(MAX_CHARS).is_none() {
        return text.to_owned();
    }
    let cut = text
        .char_indices()
        .nth(MAX_CHARS - 1)
        .map_or(text.len(), |(index, _)| index);
    format!("{}…", &text[..cut])
}

/// Reads one answer. Nothing here may carry the URL: reqwest errors lose it before display.
async fn judge(sent: Result<reqwest::Response, reqwest::Error>) -> Attempt {
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            let error = NotifyError::Unavailable(describe(error));
            return Attempt::Retry(Duration::ZERO, error);
        }
    };
    let status = response.status();
    let header_wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    // A proxy's error page is not JSON: the status alone then decides.
    let answer: Option<ApiAnswer> = response.json().await.ok();
    if status.is_success() && answer.as_ref().is_some_and(|answer| answer.ok) {
        return Attempt::Sent;
    }
    let description = answer
        .as_ref()
        .and_then(|answer| answer.description.clone())
        .unwrap_or_else(|| status.to_string());
    let description = format!("Telegram answered {}: {description}", status.as_u16());
    match status.as_u16() {
        429 => {
            let seconds = answer
                .as_ref()
                .and_then(|answer| answer.parameters.as_ref())
                .and_then(|parameters| parameters.retry_after)
                .or(header_wait)
                .unwrap_or(1);
            let retry_after = Duration::from_secs(seconds);
            Attempt::Retry(retry_after, NotifyError::RateLimited { retry_after })
        }
        // A refused token (401, or 404 for a token that names no bot) is the operator's to fix;
        // messages wait for that rather than being dropped.
        401 | 404 => Attempt::Final(NotifyError::Unavailable(description)),
        // Chat not found, bot blocked by the user, a message Telegram will not take.
        400..=499 => Attempt::Final(NotifyError::Undeliverable(description)),
        _ => Attempt::Retry(Duration::ZERO, NotifyError::Unavailable(description)),
    }
}

/// A transport error in words, without its URL (which holds the token).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out reaching Telegram"
    } else if error.is_connect() {
        "could not connect to Telegram"
    } else {
        "the request to Telegram failed"
    };
    let mut text = kind.to_owned();
    let error = error.without_url();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Notifier for TelegramNotifier {
    fn channel(&self) -> &'static str {
        "telegram"
    }

    async fn notify(&self, account_id: &str, message: &str) -> Result<(), NotifyError> {
        let deadline = Instant::now() + self.deadline;
        let unreadable =
            |error: CredentialsError| NotifyError::Unavailable(format!("credentials: {error}"));
        // The chat first: an account without one costs no reveal of the bot token.
        let Some(chat_id) = self
            .credentials
            .chat_id(account_id)
            .await
            .map_err(unreadable)?
        else {
            return Err(NotifyError::Undeliverable(
                "the account has no Telegram chat id".to_owned(),
            ));
        };
        let Some(token) = self.credentials.bot_token().await.map_err(unreadable)? else {
            return Err(NotifyError::Undeliverable(
                "no Telegram bot token is configured".to_owned(),
            ));
        };
        self.send_until(deadline, &token, &chat_id, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn a_text_too_long_for_telegram_is_cut_to_its_limit() {
        let long = "é".repeat(5_000);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), 4_096);
        assert!(clipped.ends_with('…'));
        let fits = "é".repeat(4_096);
        assert_eq!(clip(&fits), fits);
    }
}
