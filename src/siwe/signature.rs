//! EIP-191 `personal_sign`: keccak256("\x19Ethereum Signed Message:\n" + length + message), an
//! ECDSA secp256k1 signature `r || s || v` (65 bytes, v 27/28 or 0/1), recovered to the public
//! key and so to the address (the last 20 bytes of keccak256 of the uncompressed key).

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};

use super::message::Address;
use super::SiweError;

pub fn personal_sign_digest(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1: 0x04 || x || y; the address hashes x || y.
    let digest: [u8; 32] = Keccak256::digest(&point.as_bytes()[1..]).into();
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(&digest[12..]);
    Address(bytes)
}

pub fn recover_personal_sign(message: &[u8], signature_hex: &str) -> Result<Address, SiweError> {
    let hex_digits = signature_hex
        .strip_prefix("0x")
        .ok_or(SiweError::BadSignature)?;
    let bytes = hex::decode(hex_digits).map_err(|_| SiweError::BadSignature)?;
    let [body @ .., v] = bytes.as_slice() else {
        return Err(SiweError::BadSignature);
    };
    if body.len() != 64 {
        return Err(SiweError::BadSignature);
    }
    let recovery = match v {
        0 | 27 => 0,
        1 | 28 => 1,
        _ => return Err(SiweError::BadSignature),
    };
    let signature = Signature::from_slice(body).map_err(|_| SiweError::BadSignature)?;
    // A high-s signature is the malleable twin of a valid one: wallets never produce it.
    if signature.normalize_s().is_some() {
        return Err(SiweError::BadSignature);
    }
    let recovery = RecoveryId::from_byte(recovery).ok_or(SiweError::BadSignature)?;
    let key =
        VerifyingKey::recover_from_prehash(&personal_sign_digest(message), &signature, recovery)
            .map_err(|_| SiweError::WrongSigner)?;
    Ok(address_of(&key))
}
