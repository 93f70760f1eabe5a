//! Sign-In with Ethereum: the challenge a wallet signs, and the checks on what comes back.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use uuid::Uuid;

use crate::ledger::Ledger;
use crate::siwe::{self, Address, Expected, SiweError};
use crate::store::StoreError;
use crate::users::{self, UserError};
use crate::vault::Vault;

/// How long a nonce (and the message carrying it) may wait for its signature.
pub const NONCE_TTL: Duration = Duration::minutes(5);
/// Nonces waiting at once, across everyone: the table's bound whoever asks.
pub const MAX_OUTSTANDING_NONCES: i64 = 10_000;
/// The statement shown in the wallet.
const STATEMENT: &str = "Sign in to ledgerhook.";
/// UUIDv5 namespace of wallet accounts' user ids (a fixed random value; changing it would give
/// every wallet a new account).
const WALLET_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_4f0b_9a3d_4e57_b6a2_0d8e_7f31_c942);

/// Where the service is served and on which chain it expects signatures.
#[derive(Debug, Clone)]
pub struct Site {
    /// `https://host[:port]`, no trailing slash.
    pub origin: String,
    pub chain_id: u64,
}

impl Site {
    /// The EIP-4361 domain: the origin's authority.
    pub fn domain(&self) -> &str {
        self.origin
            .split_once("://")
            .map_or(self.origin.as_str(), |(_, authority)| authority)
    }

    fn expected(&self) -> Expected {
        Expected {
            domain: self.domain().to_owned(),
            uri_prefix: self.origin.clone(),
            chain_id: self.chain_id,
        }
    }
}

/// What a wallet is asked to sign.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub nonce: String,
    pub message: String,
    pub expires_at: DateTime<Utc>,
}

/// A wallet that proved itself, and its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSignIn {
    pub user_id: String,
    pub address: String,
    /// This sign-in opened the account.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Siwe(#[from] SiweError),
    /// Unknown, used before, expired, or issued for another address.
    #[error("the nonce is not one this service issued, or it was used or has expired")]
    Nonce,
    /// Too many nonces are waiting for a signature; try again shortly.
    #[error("too many sign-ins are in progress")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    User(#[from] UserError),
}

/// The account id of a wallet.
pub fn wallet_user_id(address: &Address) -> String {
    Uuid::new_v5(&WALLET_NAMESPACE, address.lower().as_bytes()).to_string()
}

/// A new nonce for `address` and the EIP-4361 message to sign with it.
pub async fn challenge(
    store: &crate::store::Store,
    address: &Address,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<Challenge, WalletError> {
    // 128 random bits; EIP-4361 wants at least 8 alphanumerics.
    let nonce = crate::users::credentials::random_hex()[..32].to_owned();
    let expires_at = now + NONCE_TTL;
    let issued = store
        .sign_in()
        .issue_nonce(
            &nonce,
            &address.lower(),
            now.timestamp_millis(),
            expires_at.timestamp_millis(),
            MAX_OUTSTANDING_NONCES,
        )
        .await?;
    if !issued {
        return Err(WalletError::Busy);
    }
    let message = format!(
        "{domain} wants you to sign in with your Ethereum account:\n{address}\n\n{STATEMENT}\n\n\
         URI: {origin}/login\nVersion: 1\nChain ID: {chain}\nNonce: {nonce}\nIssued At: {issued}\n\
         Expiration Time: {expires}",
        domain = site.domain(),
        address = address.checksummed(),
        origin = site.origin,
        chain = site.chain_id,
        issued = now.to_rfc3339_opts(SecondsFormat::Secs, true),
        expires = expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    Ok(Challenge {
        nonce,
        message,
        expires_at,
    })
}

/// Checks the signed message (domain, URI, chain, time window, signer), uses its nonce, and opens
/// the wallet's account if this is its first sign-in.
pub async fn sign_in(
    ledger: &Ledger,
    vault: &Vault,
    message: &str,
    signature: &str,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<WalletSignIn, WalletError> {
    let verified = siwe::verify(message, signature, &site.expected(), now)?;
    let address = verified.address.lower();
    let store = ledger.store();
    let used = store
        .sign_in()
        .consume_nonce(&verified.nonce, &address, now.timestamp_millis())
        .await?;
    if !used {
        return Err(WalletError::Nonce);
    }
    if let Some(user_id) = store.sign_in().wallet_user(&address).await? {
        return Ok(WalletSignIn {
            user_id,
            address,
            created: false,
        });
    }
    let user_id = wallet_user_id(&verified.address);
    let display_name = verified.address.checksummed();
    let opened = users::open_account(
        ledger,
        vault,
        &user_id,
        &display_name,
        "wallet sign-in",
        now,
    )
    .await?
    .is_some();
    store.sign_in().link_wallet(&address, &user_id, now).await?;
    Ok(WalletSignIn {
        user_id,
        address,
        created: opened,
    })
}
