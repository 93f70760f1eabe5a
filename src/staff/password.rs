//! Staff passwords: argon2id at OWASP's current minimum (m = 19 MiB, t = 2, p = 1), stored as a
//! PHC string (algorithm, parameters and salt travel with the hash, so raising the parameters later
//! still verifies old hashes). Hashing costs tens of milliseconds of CPU and 19 MiB: it runs on the
//! blocking pool, at most `CONCURRENT_HASHES` at a time, so a flood of sign-ins queues instead of
//! taking the process's memory and cores.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet, argon2id minimum: 19 MiB, 2 iterations, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;
const CONCURRENT_HASHES: usize = 2;
/// Shorter is refused when set; longer is refused before hashing (argon2 takes any length, a
/// megabyte of "password" is only a way to make us work).
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(CONCURRENT_HASHES));

/// A hash of no password (verified against when the login is unknown), so an unknown login takes
/// as long as a known one and timing does not tell which logins exist.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_blocking("not anyone's password").ok());

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long")]
    Length,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
        .map_err(|error| PasswordError::Hashing(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Refuses a password a person should not choose, before any hashing.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| PasswordError::Hashing(error.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hashing(error.to_string()))
}

/// The PHC string to store for `password`.
pub async fn hash(password: &str) -> Result<String, PasswordError> {
    check_new_password(password)?;
    let password = password.to_owned();
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|error| PasswordError::Hashing(error.to_string()))?;
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|error| PasswordError::Hashing(error.to_string()))?
}

/// Whether `password` matches `stored` (a PHC string); `None` checks against a dummy hash and is
/// always false. Unreadable stored hashes are false, never a panic.
pub async fn verify(password: &str, stored: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let password = password.to_owned();
    let stored = stored.map(str::to_owned);
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match &stored {
            Some(hash) => (Some(hash.as_str()), true),
            None => (DUMMY_HASH.as_deref(), false),
        };
        let Some(hash) = hash.and_then(|hash| PasswordHash::new(hash).ok()) else {
            return false;
        };
        let matched = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        matched && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_at_owasp_minimum_and_verifies_only_its_password() {
        let stored = hash("correct horse battery").await.expect("hashes");
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse battery", Some(&stored)).await);
        assert!(!verify("correct horse batterY", Some(&stored)).await);
        assert!(!verify("correct horse battery", None).await);
        assert!(!verify("correct horse battery", Some("not a phc string")).await);
        let again = hash("correct horse battery").await.expect("hashes");
        assert_ne!(stored, again, "each hash has its own salt");
    }

    #[tokio::test]
    async fn short_and_huge_passwords_are_refused_before_hashing() {
        assert!(matches!(hash("short").await, Err(PasswordError::Length)));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hash(&huge).await, Err(PasswordError::Length)));
        assert!(!verify(&huge, None).await);
    }
}
