//! Sign-In with Ethereum (EIP-4361): the message a wallet signs, parsed strictly (`message`), and
//! the EIP-191 `personal_sign` signature recovered to the address that made it (`signature`).
//! `verify` ties them to this service: the domain, URI and chain id it serves, the time window,
//! and the signer being the address the message names. Nonce bookkeeping and sessions are the
//! store's and the HTTP layer's; this module knows no clock but the one it is handed.
//!
//! Why our own parser over the `siwe` crate: that crate pulls an Ethereum stack (alloy/ethers) into
//! a lean build for ~200 lines of grammar; k256 is already in the build (dYdX), sha3 is small.

pub mod message;
pub mod signature;

use chrono::{DateTime, Utc};

pub use message::{Address, SiweMessage};

/// What this service expects of a message: where it is served and on which chain.
#[derive(Clone, Debug)]
pub struct Expected {
    pub domain: String,
    pub uri_prefix: String,
    pub chain_id: u64,
}

/// Why a sign-in is refused. `code` is the stable machine-readable reason in the JSON error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SiweError {
    #[error("the message is not a valid EIP-4361 message: {0}")]
    Malformed(&'static str),
    #[error("the message is for another domain")]
    WrongDomain,
    #[error("the message's URI is not this service's")]
    WrongUri,
    #[error("the message is for another chain")]
    WrongChain,
    #[error("the message has expired")]
    Expired,
    #[error("the message is not valid yet")]
    NotYetValid,
    #[error("the signature is malformed")]
    BadSignature,
    #[error("the signature was not made by the message's address")]
    WrongSigner,
}

impl SiweError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "SIWE_MALFORMED",
            Self::WrongDomain => "SIWE_WRONG_DOMAIN",
            Self::WrongUri => "SIWE_WRONG_URI",
            Self::WrongChain => "SIWE_WRONG_CHAIN",
            Self::Expired => "SIWE_EXPIRED",
            Self::NotYetValid => "SIWE_NOT_YET_VALID",
            Self::BadSignature => "SIWE_BAD_SIGNATURE",
            Self::WrongSigner => "SIWE_WRONG_SIGNER",
        }
    }
}

/// Parse `text`, check it against `expected` at `now`, and check `signature_hex` recovers to the
/// message's address. The nonce is returned inside the message for the caller to consume.
pub fn verify(
    text: &str,
    signature_hex: &str,
    expected: &Expected,
    now: DateTime<Utc>,
) -> Result<SiweMessage, SiweError> {
    let message = SiweMessage::parse(text)?;
    if !message.domain.eq_ignore_ascii_case(&expected.domain) {
        return Err(SiweError::WrongDomain);
    }
    if !message.uri.starts_with(&expected.uri_prefix) {
        return Err(SiweError::WrongUri);
    }
    if message.chain_id != expected.chain_id {
        return Err(SiweError::WrongChain);
    }
    if message.expiration_time.is_some_and(|at| at <= now) {
        return Err(SiweError::Expired);
    }
    if message.not_before.is_some_and(|at| at > now) {
        return Err(SiweError::NotYetValid);
    }
    let signer = signature::recover_personal_sign(text.as_bytes(), signature_hex)?;
    if signer != message.address {
        return Err(SiweError::WrongSigner);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use k256::ecdsa::SigningKey;

    use super::*;

    pub(crate) fn sign(key: &SigningKey, text: &str) -> String {
        let digest = signature::personal_sign_digest(text.as_bytes());
        let (sig, recovery) = key.sign_prehash_recoverable(&digest).expect("signs");
        format!(
            "0x{}{:02x}",
            hex::encode(sig.to_bytes()),
            recovery.to_byte() + 27
        )
    }

    fn text(address: &Address, domain: &str, chain: u64, expires: &str) -> String {
        format!(
            "{domain} wants you to sign in with your Ethereum account:\n{}\n\nSign in to ledgerhook.\n\nURI: https://{domain}/login\nVersion: 1\nChain ID: {chain}\nNonce: abcdef0123456789\nIssued At: 2026-01-01T00:00:00Z\nExpiration Time: {expires}",
            address.checksummed()
        )
    }

    fn expected() -> Expected {
        Expected {
            domain: "hooks.example".into(),
            uri_prefix: "https://hooks.example".into(),
            chain_id: 1,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:05:00Z".parse().expect("a time")
    }

    #[test]
    fn a_message_signed_by_its_address_is_accepted_and_others_refused() {
        let key = SigningKey::from_slice(&[7u8; 32]).expect("a key");
        let other = SigningKey::from_slice(&[9u8; 32]).expect("a key");
        let address = signature::address_of(key.verifying_key());
        let good = text(&address, "hooks.example", 1, "2026-01-01T00:10:00Z");
        let message = verify(&good, &sign(&key, &good), &expected(), now()).expect("accepted");
        assert_eq!(message.address, address);
        assert_eq!(message.nonce, "abcdef0123456789");

        assert_eq!(
            verify(&good, &sign(&other, &good), &expected(), now()).err(),
            Some(SiweError::WrongSigner)
        );
        let wrong_domain = text(&address, "evil.example", 1, "2026-01-01T00:10:00Z");
        assert_eq!(
            verify(
                &wrong_domain,
                &sign(&key, &wrong_domain),
                &expected(),
                now()
            )
            .err(),
            Some(SiweError::WrongDomain)
        );
        let wrong_chain = text(&address, "hooks.example", 5, "2026-01-01T00:10:00Z");
        assert_eq!(
            verify(&wrong_chain, &sign(&key, &wrong_chain), &expected(), now()).err(),
            Some(SiweError::WrongChain)
        );
        let expired = text(&address, "hooks.example", 1, "2026-01-01T00:01:00Z");
        assert_eq!(
            verify(&expired, &sign(&key, &expired), &expected(), now()).err(),
            Some(SiweError::Expired)
        );
        assert_eq!(
            verify(&good, "0x1234", &expected(), now()).err(),
            Some(SiweError::BadSignature)
        );
    }
}
