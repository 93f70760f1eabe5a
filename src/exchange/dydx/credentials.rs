//! The narrow way the dYdX adapter gets a trader's key: asked for at the moment of use, held in
//! zeroizing memory, never printed. The vault implements it; tests use [`InMemoryCredentials`].
//!
//! A trader signs either with their own wallet (`dydx_mnemonic`) or with a permissioned key: a
//! separate wallet (`dydx_trading_mnemonic`) that the owner's account (`dydx_owner_address`) lets
//! trade through one of its authenticators (`dydx_authenticator_id`, x/accountplus). When both
//! are set the permissioned key is used and the owner's mnemonic is never revealed: it is the
//! narrower authority, and setting it is how a trader moves off handing over their main wallet.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// Who signs a trader's orders.
pub enum Signer {
    /// A 24-word BIP-39 phrase of the trading account itself (the official client derives
    /// m/44'/118'/0'/0/0 from it).
    Mnemonic(Zeroizing<String>),
    /// A separate wallet's 24 words, signing for `owner` through the owner's authenticator.
    Permissioned {
        owner: String,
        trading_mnemonic: Zeroizing<String>,
        authenticator_id: u64,
    },
}

/// A trader's dYdX signing secret and the subaccount their orders go to (the owner's, with a
/// permissioned key).
pub struct DydxKey {
    pub signer: Signer,
    pub subaccount: u32,
}

impl DydxKey {
    pub fn mnemonic(mnemonic: &str, subaccount: u32) -> Self {
        Self {
            signer: Signer::Mnemonic(Zeroizing::new(mnemonic.to_owned())),
            subaccount,
        }
    }

    pub fn permissioned(
        owner: &str,
        trading_mnemonic: &str,
        authenticator_id: u64,
        subaccount: u32,
    ) -> Self {
        Self {
            signer: Signer::Permissioned {
                owner: owner.to_owned(),
                trading_mnemonic: Zeroizing::new(trading_mnemonic.to_owned()),
                authenticator_id,
            },
            subaccount,
        }
    }
}

impl fmt::Debug for DydxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("DydxKey");
        match &self.signer {
            Signer::Mnemonic(_) => debug.field("mnemonic", &"<redacted>"),
            Signer::Permissioned {
                owner,
                authenticator_id,
                ..
            } => debug
                .field("owner", owner)
                .field("trading_mnemonic", &"<redacted>")
                .field("authenticator_id", authenticator_id),
        };
        debug.field("subaccount", &self.subaccount).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Could not be read now (the vault's store, the ledger): worth asking again.
    #[error("credentials unavailable: {0}")]
    Unavailable(String),
    /// What is stored cannot sign an order (a permissioned key missing a field): the order is
    /// refused with this reason until the trader fixes it.
    #[error("{0}")]
    Unusable(String),
}

#[async_trait]
pub trait DydxCredentials: Send + Sync {
    /// The account's key, or `None` when the account has no dYdX credentials. Every call is a
    /// use of the secret (the vault records it).
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError>;

    /// The trading address and subaccount when they are known without a signing secret (a
    /// permissioned key's owner), so looking orders and positions up reveals no key. `None`:
    /// ask [`wallet_for`](Self::wallet_for).
    async fn public_subaccount(
        &self,
        _account_id: &str,
    ) -> Result<Option<(String, u32)>, CredentialError> {
        Ok(None)
    }

    /// A value that changes whenever the account's dYdX wallet may have (any of its fields set,
    /// replaced or cleared), so a subaccount derived from the old wallet is not used for the
    /// new one. `None`: the keys do not change while the process runs. Reveals nothing.
    async fn wallet_revision(&self, _account_id: &str) -> Result<Option<Vec<u8>>, CredentialError> {
        Ok(None)
    }
}

/// Keys held in process memory: for tests and local trials against the fake venues.
#[derive(Default)]
pub struct InMemoryCredentials {
    keys: HashMap<String, Stored>,
}

enum Stored {
    Mnemonic(Zeroizing<String>, u32),
    Permissioned {
        owner: String,
        trading_mnemonic: Zeroizing<String>,
        authenticator_id: u64,
        subaccount: u32,
    },
}

impl InMemoryCredentials {
    pub fn with(mut self, account_id: &str, mnemonic: &str, subaccount: u32) -> Self {
        self.keys.insert(
            account_id.to_owned(),
            Stored::Mnemonic(Zeroizing::new(mnemonic.to_owned()), subaccount),
        );
        self
    }

    pub fn with_permissioned(
        mut self,
        account_id: &str,
        owner: &str,
        trading_mnemonic: &str,
        authenticator_id: u64,
        subaccount: u32,
    ) -> Self {
        self.keys.insert(
            account_id.to_owned(),
            Stored::Permissioned {
                owner: owner.to_owned(),
                trading_mnemonic: Zeroizing::new(trading_mnemonic.to_owned()),
                authenticator_id,
                subaccount,
            },
        );
        self
    }
}

#[async_trait]
impl DydxCredentials for InMemoryCredentials {
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError> {
        Ok(self.keys.get(account_id).map(|stored| match stored {
            Stored::Mnemonic(mnemonic, subaccount) => DydxKey {
                signer: Signer::Mnemonic(mnemonic.clone()),
                subaccount: *subaccount,
            },
            Stored::Permissioned {
                owner,
                trading_mnemonic,
                authenticator_id,
                subaccount,
            } => DydxKey {
                signer: Signer::Permissioned {
                    owner: owner.clone(),
                    trading_mnemonic: trading_mnemonic.clone(),
                    authenticator_id: *authenticator_id,
                },
                subaccount: *subaccount,
            },
        }))
    }

    async fn public_subaccount(
        &self,
        account_id: &str,
    ) -> Result<Option<(String, u32)>, CredentialError> {
        Ok(match self.keys.get(account_id) {
            Some(Stored::Permissioned {
                owner, subaccount, ..
            }) => Some((owner.clone(), *subaccount)),
            _ => None,
        })
    }
}

/// The vault: each call reveals what signing needs — the mnemonic, or the permissioned key's
/// owner, authenticator id and trading mnemonic — and the subaccount number (0 when none is
/// set), each reveal recorded in the owner's ledger stream by `execution`.
#[async_trait]
impl DydxCredentials for crate::vault::Vault {
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError> {
        use crate::vault::Field;
        let vault = VaultReads {
            vault: self,
            account_id,
            purpose: "place order",
        };
        if vault.holds(Field::DydxTradingMnemonic).await? {
            let (owner, authenticator_id) = vault.permission().await?;
            let trading_mnemonic = vault.required(Field::DydxTradingMnemonic).await?;
            return Ok(Some(DydxKey {
                signer: Signer::Permissioned {
                    owner: owner.to_string(),
                    trading_mnemonic,
                    authenticator_id,
                },
                subaccount: vault.subaccount().await?,
            }));
        }
        let Some(mnemonic) = vault.reveal(Field::DydxMnemonic).await? else {
            return Ok(None);
        };
        Ok(Some(DydxKey {
            signer: Signer::Mnemonic(mnemonic),
            subaccount: vault.subaccount().await?,
        }))
    }

    async fn public_subaccount(
        &self,
        account_id: &str,
    ) -> Result<Option<(String, u32)>, CredentialError> {
        use crate::vault::Field;
        let vault = VaultReads {
            vault: self,
            account_id,
            purpose: "look orders up",
        };
        if !vault.holds(Field::DydxTradingMnemonic).await? {
            return Ok(None);
        }
        let owner = vault.required(Field::DydxOwnerAddress).await?;
        Ok(Some((owner.to_string(), vault.subaccount().await?)))
    }

    async fn wallet_revision(&self, account_id: &str) -> Result<Option<Vec<u8>>, CredentialError> {
        use crate::vault::Field;
        const WALLET: [Field; 5] = [
            Field::DydxMnemonic,
            Field::DydxSubaccount,
            Field::DydxOwnerAddress,
            Field::DydxTradingMnemonic,
            Field::DydxAuthenticatorId,
        ];
        self.revision(account_id, &WALLET)
            .await
            .map(Some)
            .map_err(|error| CredentialError::Unavailable(error.to_string()))
    }
}

/// One account's dYdX fields in the vault, each reveal recorded with `purpose`.
struct VaultReads<'a> {
    vault: &'a crate::vault::Vault,
    account_id: &'a str,
    purpose: &'static str,
}

impl VaultReads<'_> {
    async fn holds(&self, field: crate::vault::Field) -> Result<bool, CredentialError> {
        self.vault
            .holds(self.account_id, field)
            .await
            .map_err(|error| CredentialError::Unavailable(error.to_string()))
    }

    async fn reveal(
        &self,
        field: crate::vault::Field,
    ) -> Result<Option<Zeroizing<String>>, CredentialError> {
        let access = crate::vault::Access::new(self.purpose, "execution");
        self.vault
            .reveal(self.account_id, field, access)
            .await
            .map_err(|error| CredentialError::Unavailable(error.to_string()))
    }

    /// A field a permissioned key cannot do without: its absence refuses the order.
    async fn required(
        &self,
        field: crate::vault::Field,
    ) -> Result<Zeroizing<String>, CredentialError> {
        self.reveal(field).await?.ok_or_else(|| {
            CredentialError::Unusable(format!(
                "the permissioned dYdX key is incomplete: {field} is not set (dydx_owner_address, \
                 dydx_trading_mnemonic and dydx_authenticator_id go together)"
            ))
        })
    }

    /// The owner and the authenticator id, both checked as present before the trading key is
    /// revealed, so an incomplete key never decrypts the secret.
    async fn permission(&self) -> Result<(Zeroizing<String>, u64), CredentialError> {
        use crate::vault::Field;
        for field in [Field::DydxOwnerAddress, Field::DydxAuthenticatorId] {
            if !self.holds(field).await? {
                return Err(CredentialError::Unusable(format!(
                    "the permissioned dYdX key is incomplete: {field} is not set \
                     (dydx_owner_address, dydx_trading_mnemonic and dydx_authenticator_id go \
                     together)"
                )));
            }
        }
        let owner = self.required(Field::DydxOwnerAddress).await?;
        let id = self.required(Field::DydxAuthenticatorId).await?;
        let id = id.trim().parse().map_err(|_| {
            CredentialError::Unusable(format!(
                "{}'s dydx_authenticator_id is not a number",
                self.account_id
            ))
        })?;
        Ok((owner, id))
    }

    async fn subaccount(&self) -> Result<u32, CredentialError> {
        match self.reveal(crate::vault::Field::DydxSubaccount).await? {
            None => Ok(0),
            Some(number) => number.trim().parse().map_err(|_| {
                CredentialError::Unusable(format!(
                    "{}'s dydx_subaccount is not a number",
                    self.account_id
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_printed_into_a_log_line_shows_no_phrase() {
        let own = format!("{:?}", DydxKey::mnemonic("alpha bravo secretword", 2));
        assert!(!own.contains("secretword"), "{own}");
        assert!(
            own.contains("<redacted>") && own.contains("subaccount: 2"),
            "{own}"
        );

        let permissioned = DydxKey::permissioned("dydx1owner", "delta echo secretword", 7, 0);
        let printed = format!("{permissioned:?}");
        assert!(!printed.contains("secretword"), "{printed}");
        assert!(
            printed.contains("dydx1owner") && printed.contains("authenticator_id: 7"),
            "the public parts help an operator: {printed}"
        );
    }

    /// Credentials that hold keys only: every lookup goes through the key, and the wallet is
    /// taken as fixed for the life of the process.
    #[tokio::test]
    async fn credentials_with_keys_only_publish_nothing_and_never_change() {
        struct KeysOnly;
        #[async_trait]
        impl DydxCredentials for KeysOnly {
            async fn wallet_for(&self, _: &str) -> Result<Option<DydxKey>, CredentialError> {
                Ok(None)
            }
        }
        assert!(matches!(KeysOnly.public_subaccount("a").await, Ok(None)));
        assert!(matches!(KeysOnly.wallet_revision("a").await, Ok(None)));
    }

    #[tokio::test]
    async fn in_memory_credentials_publish_a_permissioned_owner_and_never_a_phrase() {
        let credentials = InMemoryCredentials::default()
            .with("own", "alpha bravo", 1)
            .with_permissioned("delegated", "dydx1owner", "delta echo", 9, 3);
        assert!(matches!(
            credentials.public_subaccount("own").await,
            Ok(None)
        ));
        assert_eq!(
            credentials
                .public_subaccount("delegated")
                .await
                .expect("known"),
            Some(("dydx1owner".to_owned(), 3))
        );
        let key = credentials
            .wallet_for("delegated")
            .await
            .expect("known")
            .expect("held");
        assert_eq!(key.subaccount, 3);
        assert!(matches!(
            key.signer,
            Signer::Permissioned {
                authenticator_id: 9,
                ..
            }
        ));
        assert!(credentials
            .wallet_for("stranger")
            .await
            .expect("asked")
            .is_none());
    }
}
