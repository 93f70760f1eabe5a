//! Telling the trader what happened. A notification never fails or repeats a trade: its outcome is
//! recorded as its own event, and a failure the channel may get over is tried again later by the
//! saga (`execution::retry`).
//!
//! `messages` writes the texts, `telegram` sends them through the Bot API, `pacing` keeps a bot
//! under Telegram's rate limits.

pub mod messages;
mod pacing;
pub mod telegram;

use std::time::Duration;

use async_trait::async_trait;

pub use self::telegram::{
    CredentialsError, TelegramCredentials, TelegramNotifier, TelegramOptions,
    DEFAULT_TELEGRAM_API_URL,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The channel may get over it: worth another attempt later.
    #[error("notification channel unavailable: {0}")]
    Unavailable(String),
    /// The channel asked to be left alone for this long (Telegram's 429 `retry_after`).
    #[error("notification channel rate limited: retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// It can never be delivered as things stand (no chat id, chat not found, bot blocked):
    /// trying again would only repeat the refusal.
    #[error("notification not deliverable: {0}")]
    Undeliverable(String),
}

impl NotifyError {
    /// The failure's kind, as a metric label (the text may carry the channel's own words).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Undeliverable(_) => "undeliverable",
        }
    }

    /// Whether another attempt later could succeed, and how long to wait at least.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable(_) => Some(Duration::ZERO),
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Undeliverable(_) => None,
        }
    }
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// The channel's name as recorded in `NotificationSent` / `NotificationFailed`.
    fn channel(&self) -> &'static str;

    async fn notify(&self, account_id: &str, message: &str) -> Result<(), NotifyError>;
}

/// Writes notifications to the service log: the default when no Telegram bot is configured.
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn channel(&self) -> &'static str {
        "log"
    }

    async fn notify(&self, account_id: &str, message: &str) -> Result<(), NotifyError> {
        tracing::info!(target: "ledgerhook::notify", account_id, message, "notification");
        Ok(())
    }
}
