//! What the vault holds: a closed list of fields, stored by name, each owned either by one user
//! or by the service, and each checked for shape before it is sealed.

use std::fmt;
use std::str::FromStr;

use aggregates::SERVICE_OWNER_ID;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// A user's dYdX v4 wallet: 24 words.
    DydxMnemonic,
    /// A user's dYdX subaccount number, 0..=127 (the owner's, with a permissioned key).
    DydxSubaccount,
    /// Permissioned trading: the address (`dydx1...`) of the account the orders trade for.
    DydxOwnerAddress,
    /// Permissioned trading: the 24 words of the separate wallet that signs for the owner.
    DydxTradingMnemonic,
    /// Permissioned trading: the id of the owner's authenticator that lets that wallet trade.
    DydxAuthenticatorId,
    /// Where a user's Telegram messages go: an integer (negative for groups).
    TelegramChatId,
    /// The service's Telegram bot token (owner `service`).
    TelegramBotToken,
    /// A user's webhook token (scheme 1), kept so their URL can be shown again.
    WebhookToken,
    /// A user's two-factor webhook secret (scheme 2).
    WebhookSecret,
}

/// Whose value a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    User,
    Service,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::DydxMnemonic,
        Field::DydxSubaccount,
        Field::DydxOwnerAddress,
        Field::DydxTradingMnemonic,
        Field::DydxAuthenticatorId,
        Field::TelegramChatId,
        Field::TelegramBotToken,
        Field::WebhookToken,
        Field::WebhookSecret,
    ];

    /// The fields a trader sets and clears through the settings API: the webhook's are issued
    /// by rotation, and the bot token is the service's.
    pub const TRADER_SETTABLE: [Field; 6] = [
        Field::DydxMnemonic,
        Field::DydxSubaccount,
        Field::DydxOwnerAddress,
        Field::DydxTradingMnemonic,
        Field::DydxAuthenticatorId,
        Field::TelegramChatId,
    ];

    /// Whether the fields in `held` are enough to trade on dYdX, as the adapter reads them: a
    /// trading mnemonic is used with its owner address and authenticator id, else the
    /// mnemonic (the subaccount defaults to 0).
    pub fn dydx_ready(held: &[Field]) -> bool {
        let has = |field| held.contains(&field);
        if has(Field::DydxTradingMnemonic) {
            has(Field::DydxOwnerAddress) && has(Field::DydxAuthenticatorId)
        } else {
            has(Field::DydxMnemonic)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::DydxMnemonic => "dydx_mnemonic",
            Field::DydxSubaccount => "dydx_subaccount",
            Field::DydxOwnerAddress => "dydx_owner_address",
            Field::DydxTradingMnemonic => "dydx_trading_mnemonic",
            Field::DydxAuthenticatorId => "dydx_authenticator_id",
            Field::TelegramChatId => "telegram_chat_id",
            Field::TelegramBotToken => "telegram_bot_token",
            Field::WebhookToken => "webhook_token",
            Field::WebhookSecret => "webhook_secret",
        }
    }

    pub fn ownership(self) -> Ownership {
        match self {
            Field::TelegramBotToken => Ownership::Service,
            _ => Ownership::User,
        }
    }

    /// Whether `owner` may hold this field: the service's fields only under `service`, users'
    /// fields never under it.
    pub fn fits_owner(self, owner: &str) -> bool {
        (owner == SERVICE_OWNER_ID) == (self.ownership() == Ownership::Service)
    }

    /// Checks a value's shape before it is sealed. The message names the rule, never the value.
    pub fn validate(self, value: &str) -> Result<(), String> {
        if value.trim().is_empty() {
            return Err(format!("{self} is empty"));
        }
        match self {
            Field::DydxMnemonic | Field::DydxTradingMnemonic => {
                let words = value.split_whitespace().count();
                if words != 24 {
                    return Err(format!(
                        "{self} must be 24 words separated by spaces, got {words}"
                    ));
                }
                // A wrong word would otherwise show only at the first order. (dydx_mnemonic keeps
                // the word count alone: values stored under it were accepted that way.)
                if self == Field::DydxTradingMnemonic
                    && dydx::node::Wallet::from_mnemonic(value).is_err()
                {
                    return Err(format!(
                        "{self} is not a valid BIP-39 phrase (a word misspelt, or the checksum \
                         word wrong)"
                    ));
                }
            }
            Field::DydxSubaccount => {
                if !matches!(value.parse::<u8>(), Ok(0..=127)) {
                    return Err(format!("{self} must be an integer from 0 to 127"));
                }
            }
            Field::DydxOwnerAddress => {
                // Public, but a typo would send every order to the wrong account: the checksum
                // is checked here, not at the first order.
                let parsed = value.parse::<dydx::indexer::Address>();
                if !value.starts_with("dydx1") || parsed.is_err() {
                    return Err(format!(
                        "{self} must be a dYdX address: dydx1 followed by its bech32 characters, \
                         checksum included"
                    ));
                }
            }
            Field::DydxAuthenticatorId => {
                if value.parse::<u64>().is_err() {
                    return Err(format!(
                        "{self} must be the authenticator's id, an integer from 0"
                    ));
                }
            }
            Field::TelegramChatId => {
                if value.parse::<i64>().is_err() {
                    return Err(format!("{self} must be an integer (negative for groups)"));
                }
            }
            Field::TelegramBotToken | Field::WebhookToken | Field::WebhookSecret => {
                if value.chars().any(char::is_whitespace) {
                    return Err(format!("{self} must not contain spaces or line breaks"));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown vault field `{0}` (expected one of: dydx_mnemonic, dydx_subaccount, dydx_owner_address, dydx_trading_mnemonic, dydx_authenticator_id, telegram_chat_id, telegram_bot_token, webhook_token, webhook_secret)")]
pub struct UnknownField(pub String);

impl FromStr for Field {
    type Err = UnknownField;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Field::ALL
            .into_iter()
            .find(|field| field.name() == name)
            .ok_or_else(|| UnknownField(name.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for field in Field::ALL {
            assert_eq!(field.name().parse::<Field>(), Ok(field));
        }
        assert!("password".parse::<Field>().is_err());
    }

    #[test]
    fn values_are_checked_for_shape_without_quoting_them() {
        let words = ["abandon"; 24].join(" ");
        assert!(Field::DydxMnemonic.validate(&words).is_ok());
        let short = ["secretword"; 12].join(" ");
        let refused = Field::DydxMnemonic.validate(&short).unwrap_err();
        assert!(refused.contains("got 12") && !refused.contains("secretword"));
        let refused = Field::DydxTradingMnemonic.validate(&short).unwrap_err();
        assert!(refused.contains("got 12") && !refused.contains("secretword"));
        let valid = format!("{} art", ["abandon"; 23].join(" "));
        assert!(Field::DydxTradingMnemonic.validate(&valid).is_ok());
        let refused = Field::DydxTradingMnemonic.validate(&words).unwrap_err();
        assert!(refused.contains("checksum") && !refused.contains("abandon"));
        let owner = "dydx14zzueazeh0hj67cghhf9jypslcf9sh2n5k6art";
        assert!(Field::DydxOwnerAddress.validate(owner).is_ok());
        let typo = owner.replace("art", "arr");
        assert!(
            Field::DydxOwnerAddress.validate(&typo).is_err(),
            "bad checksum"
        );
        assert!(Field::DydxOwnerAddress
            .validate("cosmos1xyz")
            .is_err_and(|rule| !rule.contains("cosmos1xyz")));
        assert!(Field::DydxAuthenticatorId.validate("0").is_ok());
        assert!(Field::DydxAuthenticatorId
            .validate("18446744073709551615")
            .is_ok());
        assert!(Field::DydxAuthenticatorId.validate("-1").is_err());
        assert!(Field::DydxAuthenticatorId.validate("one").is_err());
        assert!(Field::DydxSubaccount.validate("0").is_ok());
        assert!(Field::DydxSubaccount.validate("127").is_ok());
        assert!(Field::DydxSubaccount.validate("128").is_err());
        assert!(Field::DydxSubaccount.validate("-1").is_err());
        // Stored as given, so read back as given: no spaces around numbers.
        assert!(Field::DydxSubaccount.validate(" 3").is_err());
        assert!(Field::TelegramChatId.validate("42 ").is_err());
        assert!(Field::TelegramChatId.validate("-1001234567890").is_ok());
        assert!(Field::TelegramChatId.validate("@channel").is_err());
        assert!(Field::TelegramBotToken.validate("").is_err());
        assert!(Field::TelegramBotToken.validate("123:ABC def").is_err());
    }

    #[test]
    fn service_fields_belong_to_the_service_only() {
        assert!(Field::TelegramBotToken.fits_owner(SERVICE_OWNER_ID));
        assert!(!Field::TelegramBotToken.fits_owner("a-user"));
        assert!(Field::WebhookToken.fits_owner("a-user"));
        assert!(!Field::WebhookToken.fits_owner(SERVICE_OWNER_ID));
    }
}
