//! Sealing and opening one value: AES-256-GCM-SIV with a random 96-bit nonce per value and the
//! owner, field and key version as associated data, so a ciphertext moved to another owner or
//! field, or relabelled with another key version, fails to open instead of decrypting as theirs.
//! GCM-SIV rather than GCM: a repeated random nonce (2^-32 after 2^32 values per key) leaks only
//! that two values were equal, not the key stream.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::keys::MasterKey;
use crate::store::SealedSecret;

pub const NONCE_BYTES: usize = 12;
/// The authentication tag GCM-SIV appends to every ciphertext.
const TAG_BYTES: usize = 16;
/// Names this encoding of the associated data, should it ever change.
const AAD_LABEL: &[u8] = b"ledgerhook-vault-v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the stored value is malformed (nonce or ciphertext too short)")]
    Malformed,
    /// Wrong key, wrong owner or field, or altered bytes: GCM-SIV cannot tell which.
    #[error("the stored value does not authenticate (altered, moved from another owner or field, or sealed under another key)")]
    Unauthentic,
    #[error("the stored value is not text")]
    NotText,
}

/// The bytes that bind a ciphertext to its place: each part length-prefixed, so that no two
/// (owner, field) pairs encode alike.
fn associated_data(owner: &str, field: &str, key_version: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(AAD_LABEL.len() + owner.len() + field.len() + 16);
    for part in [AAD_LABEL, owner.as_bytes(), field.as_bytes()] {
        let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
        data.extend_from_slice(&length.to_be_bytes());
        data.extend_from_slice(part);
    }
    data.extend_from_slice(&key_version.to_be_bytes());
    data
}

pub fn seal(
    key: &MasterKey,
    key_version: u32,
    owner: &str,
    field: &str,
    plaintext: &str,
) -> SealedSecret {
    let cipher = Aes256GcmSiv::new(key.bytes().into());
    let mut nonce = [0_u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let aad = associated_data(owner, field, key_version);
    let payload = Payload {
        msg: plaintext.as_bytes(),
        aad: &aad,
    };
    // Encryption fails only for inputs beyond 2^36 bytes; values here are a few hundred bytes.
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    SealedSecret {
        owner_id: owner.to_owned(),
        field: field.to_owned(),
        key_version,
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Opens what `seal` made with the same key, owner, field and version.
pub fn open(key: &MasterKey, sealed: &SealedSecret) -> Result<Zeroizing<String>, OpenError> {
    if sealed.nonce.len() != NONCE_BYTES || sealed.ciphertext.len() < TAG_BYTES {
        return Err(OpenError::Malformed);
    }
    let cipher = Aes256GcmSiv::new(key.bytes().into());
    let aad = associated_data(&sealed.owner_id, &sealed.field, sealed.key_version);
    let payload = Payload {
        msg: &sealed.ciphertext,
        aad: &aad,
    };
    let bytes = Zeroizing::new(
        cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), payload)
            .map_err(|_| OpenError::Unauthentic)?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| OpenError::NotText)?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::keys::Keyring;
    use base64::Engine as _;

    fn ring() -> Keyring {
        let engine = base64::engine::general_purpose::STANDARD;
        let text = format!(
            "1:{}\n2:{}\n",
            engine.encode([1_u8; 32]),
            engine.encode([2_u8; 32])
        );
        Keyring::parse(&text, std::path::Path::new("test")).expect("valid keys")
    }

    fn sealed(ring: &Keyring, owner: &str, field: &str, value: &str) -> SealedSecret {
        let (version, key) = ring.current();
        seal(key, version, owner, field, value)
    }

    fn open_with(ring: &Keyring, secret: &SealedSecret) -> Result<String, OpenError> {
        let key = ring
            .get(secret.key_version)
            .expect("the version is in the ring");
        open(key, secret).map(|text| text.as_str().to_owned())
    }

    #[test]
    fn a_value_opens_where_it_was_sealed_and_nowhere_else() {
        let ring = ring();
        let alice = sealed(&ring, "alice", "telegram_chat_id", "1111");
        assert_eq!(open_with(&ring, &alice), Ok("1111".to_owned()));
        assert!(!alice.ciphertext.windows(4).any(|w| w == b"1111"));
        let bob = sealed(&ring, "bob", "telegram_chat_id", "2222");
        // Swapping two users' ciphertexts (each row keeps its owner and field).
        let swapped = SealedSecret {
            owner_id: bob.owner_id.clone(),
            ..alice.clone()
        };
        assert_eq!(open_with(&ring, &swapped), Err(OpenError::Unauthentic));
        // Swapping two fields' ciphertexts of one user.
        let moved = SealedSecret {
            field: "dydx_subaccount".into(),
            ..alice.clone()
        };
        assert_eq!(open_with(&ring, &moved), Err(OpenError::Unauthentic));
        // Relabelled as sealed by another key version, with that version's key.
        let relabelled = SealedSecret {
            key_version: 1,
            ..alice.clone()
        };
        assert_eq!(open_with(&ring, &relabelled), Err(OpenError::Unauthentic));
        // Owner/field boundaries cannot be shifted: ("ab","c") is not ("a","bc").
        let ab = sealed(&ring, "ab", "c", "x");
        let shifted = SealedSecret {
            owner_id: "a".into(),
            field: "bc".into(),
            ..ab
        };
        assert_eq!(open_with(&ring, &shifted), Err(OpenError::Unauthentic));
    }

    #[test]
    fn truncated_or_altered_values_are_errors_not_panics() {
        let ring = ring();
        let value = sealed(&ring, "alice", "webhook_token", "secret-token");
        for cut in 0..value.ciphertext.len() {
            let truncated = SealedSecret {
                ciphertext: value.ciphertext[..cut].to_vec(),
                ..value.clone()
            };
            assert!(open_with(&ring, &truncated).is_err());
        }
        let short_nonce = SealedSecret {
            nonce: value.nonce[..4].to_vec(),
            ..value.clone()
        };
        assert_eq!(open_with(&ring, &short_nonce), Err(OpenError::Malformed));
        let mut flipped = value.clone();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(open_with(&ring, &flipped), Err(OpenError::Unauthentic));
    }

    #[test]
    fn every_seal_draws_a_fresh_nonce() {
        let ring = ring();
        let one = sealed(&ring, "alice", "webhook_token", "same");
        let two = sealed(&ring, "alice", "webhook_token", "same");
        assert_ne!(one.nonce, two.nonce);
        assert_ne!(one.ciphertext, two.ciphertext);
    }
}
