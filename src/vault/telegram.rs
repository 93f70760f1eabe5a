//! The vault as the Telegram notifier's credentials: the service's bot token and each account's
//! chat id, revealed for each message and recorded as such (purpose `send notification`, by
//! `execution`), so every message costs two recorded accesses: the chat id in the account's own
//! stream, the bot token in the service's.

use async_trait::async_trait;
use zeroize::Zeroizing;

use aggregates::SERVICE_OWNER_ID;

use super::{Access, Field, Vault};
use crate::notify::{CredentialsError, TelegramCredentials};

const PURPOSE: &str = "send notification";
/// The saga sends the notifications (and their retries).
const BY: &str = "execution";

#[async_trait]
impl TelegramCredentials for Vault {
    async fn bot_token(&self) -> Result<Option<Zeroizing<String>>, CredentialsError> {
        self.reveal(
            SERVICE_OWNER_ID,
            Field::TelegramBotToken,
            Access::new(PURPOSE, BY),
        )
        .await
        .map_err(|error| CredentialsError(error.to_string()))
    }

    async fn chat_id(
        &self,
        account_id: &str,
    ) -> Result<Option<Zeroizing<String>>, CredentialsError> {
        self.reveal(account_id, Field::TelegramChatId, Access::new(PURPOSE, BY))
            .await
            .map_err(|error| CredentialsError(error.to_string()))
    }
}
