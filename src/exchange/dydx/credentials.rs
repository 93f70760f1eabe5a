//! The narrow way the dYdX adapter gets a trader's key: asked for at the moment of use, held in
//! zeroizing memory, never printed. The vault implements it; tests use [`InMemoryCredentials`].

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// A trader's dYdX signing secret and the subaccount their orders go to.
pub struct DydxKey {
    /// A 24-word BIP-39 phrase (the official client derives m/44'/118'/0'/0/0 from it).
    pub mnemonic: Zeroizing<String>,
    pub subaccount: u32,
}

impl fmt::Debug for DydxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DydxKey")
            .field("mnemonic", &"<redacted>")
            .field("subaccount", &self.subaccount)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credentials unavailable: {0}")]
pub struct CredentialError(pub String);

#[async_trait]
pub trait DydxCredentials: Send + Sync {
    /// The account's key, or `None` when the account has no dYdX credentials. Every call is a
    /// use of the secret (the vault records it).
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError>;
}

/// Keys held in process memory: for tests and local trials against the fake venues.
#[derive(Default)]
pub struct InMemoryCredentials {
    keys: HashMap<String, (Zeroizing<String>, u32)>,
}

impl InMemoryCredentials {
    pub fn with(mut self, account_id: &str, mnemonic: &str, subaccount: u32) -> Self {
        self.keys.insert(
            account_id.to_owned(),
            (Zeroizing::new(mnemonic.to_owned()), subaccount),
        );
        self
    }
}

#[async_trait]
impl DydxCredentials for InMemoryCredentials {
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError> {
        Ok(self
            .keys
            .get(account_id)
            .map(|(mnemonic, subaccount)| DydxKey {
                mnemonic: mnemonic.clone(),
                subaccount: *subaccount,
            }))
    }
}

/// The vault: each call reveals the mnemonic (and the subaccount number, 0 when none is set),
/// each reveal recorded in the owner's ledger stream as a use "place order" by `execution`.
#[async_trait]
impl DydxCredentials for crate::vault::Vault {
    async fn wallet_for(&self, account_id: &str) -> Result<Option<DydxKey>, CredentialError> {
        use crate::vault::{Access, Field};
        let reveal =
            |field| self.reveal(account_id, field, Access::new("place order", "execution"));
        let unavailable = |error: crate::vault::VaultError| CredentialError(error.to_string());
        let Some(mnemonic) = reveal(Field::DydxMnemonic).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let subaccount = match reveal(Field::DydxSubaccount).await.map_err(unavailable)? {
            None => 0,
            Some(number) => number.trim().parse().map_err(|_| {
                CredentialError(format!("{account_id}'s dydx_subaccount is not a number"))
            })?,
        };
        Ok(Some(DydxKey {
            mnemonic,
            subaccount,
        }))
    }
}
