//! `keys rotate`: re-seals every value under the newest key version, one row at a time, each a
//! compare-and-swap on its key version and nonce, so it runs beside a service that seals and
//! reveals meanwhile: a value sealed again meanwhile (already under the newest key) is left as it
//! is. Decrypting to re-seal is not a reveal: the value leaves this function only re-encrypted,
//! so no access is recorded.

use super::{cipher, Vault, VaultError};
use crate::store::SecretKey;

/// Rows read per query; each is then written on its own (short transactions).
const PAGE: i64 = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// The key version everything was moved to.
    pub version: u32,
    /// Rows re-sealed under `version`.
    pub moved: u64,
    /// Rows that changed while being moved (sealed again meanwhile): left as they are.
    pub skipped: u64,
}

pub async fn rotate(vault: &Vault) -> Result<Rotation, VaultError> {
    let (version, key) = vault.keys().current();
    let table = vault.store().vault();
    let mut rotation = Rotation {
        version,
        ..Rotation::default()
    };
    let mut after: Option<SecretKey> = None;
    loop {
        let page = table.sealed_before(version, after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(rotation);
        };
        after = Some(SecretKey {
            owner_id: last.owner_id.clone(),
            field: last.field.clone(),
        });
        for old in page {
            let describe = || (old.owner_id.clone(), old.field.clone());
            let old_key = vault.keys().get(old.key_version).ok_or_else(|| {
                let (owner, field) = describe();
                VaultError::KeyVersionAbsent {
                    owner,
                    field,
                    version: old.key_version,
                    held: vault.keys().versions(),
                }
            })?;
            let plaintext = cipher::open(old_key, &old).map_err(|reason| {
                let (owner, field) = describe();
                VaultError::Unopenable {
                    owner,
                    field,
                    reason,
                }
            })?;
            let new = cipher::seal(key, version, &old.owner_id, &old.field, &plaintext);
            if table.replace_if_unchanged(&old, &new).await? {
                rotation.moved += 1;
            } else {
                rotation.skipped += 1;
            }
        }
    }
}
