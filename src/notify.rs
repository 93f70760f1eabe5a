//! Telling the trader what happened. A notification never fails or repeats a trade: its outcome is
//! recorded as its own event.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("notification channel unavailable: {0}")]
    Unavailable(String),
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
