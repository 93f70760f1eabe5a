//! What the store keeps of the vault: one row per owner and field, ciphertext and nonce only
//! (`src/vault` seals and opens them). Rows are replaced, never appended; `keys rotate` moves them
//! to the newest key one compare-and-swap at a time, so it can run beside the service.

use super::{decode, now_sql, Result, Store};

/// A sealed value as stored: nothing here is secret without the master key of `key_version`.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedSecret {
    pub owner_id: String,
    pub field: String,
    #[sqlx(try_from = "i64")]
    pub key_version: u32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

// Not secret, but long and useless in a log line.
impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("owner_id", &self.owner_id)
            .field("field", &self.field)
            .field("key_version", &self.key_version)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Which row, under which key: what `keys rotate` works through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub owner_id: String,
    pub field: String,
}

/// The vault's rows: `Store::vault`.
pub struct VaultTable<'a> {
    pub(super) store: &'a Store,
}

const COLUMNS: &str = "owner_id, field, key_version, nonce, ciphertext";

/// Inserts or replaces one sealed value. The statement text both dialects accept.
pub(super) fn upsert_sql(store: &Store) -> String {
    format!(
        "INSERT INTO vault_secrets (owner_id, field, key_version, nonce, ciphertext, updated_at)
         VALUES ($1, $2, $3, $4, $5, {now})
         ON CONFLICT (owner_id, field) DO UPDATE SET
             key_version = excluded.key_version, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        now = now_sql(store)
    )
}

/// Binds a sealed value to `upsert_sql`'s parameters and runs it on `$executor`.
macro_rules! put_sealed {
    ($sql:expr, $secret:expr, $executor:expr) => {
        sqlx::query($sql)
            .bind(&$secret.owner_id)
            .bind(&$secret.field)
            .bind(i64::from($secret.key_version))
            .bind(&$secret.nonce)
            .bind(&$secret.ciphertext)
            .execute($executor)
            .await
            .map(drop)
    };
}
pub(super) use put_sealed;

impl VaultTable<'_> {
    /// Stores `secret`, replacing the owner's previous value of that field.
    pub async fn put(&self, secret: &SealedSecret) -> Result<()> {
        let sql = upsert_sql(self.store);
        writing!(self.store, pool => put_sealed!(&sql, secret, pool)?);
        Ok(())
    }

    pub async fn get(&self, owner_id: &str, field: &str) -> Result<Option<SealedSecret>> {
        let sql = format!("SELECT {COLUMNS} FROM vault_secrets WHERE owner_id = $1 AND field = $2");
        Ok(reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(owner_id)
            .bind(field)
            .fetch_optional(pool)
            .await?))
    }

    /// Removes the owner's value of `field`; `false` if none was stored.
    pub async fn delete(&self, owner_id: &str, field: &str) -> Result<bool> {
        let sql = "DELETE FROM vault_secrets WHERE owner_id = $1 AND field = $2 RETURNING field";
        let deleted = writing!(self.store, pool => sqlx::query(sql)
            .bind(owner_id)
            .bind(field)
            .fetch_all(pool)
            .await?
            .len());
        Ok(deleted > 0)
    }

    /// The names of the fields stored for `owner_id` (nothing read but the names).
    pub async fn fields_of(&self, owner_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT field FROM vault_secrets WHERE owner_id = $1 ORDER BY field";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql)
            .bind(owner_id)
            .fetch_all(pool)
            .await?))
    }

    /// Each field stored for `owner_id` with its nonce (nothing secret): every seal draws a fresh
    /// nonce, so these change whenever a value is set, replaced, cleared or re-sealed.
    pub async fn nonces_of(&self, owner_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let sql = "SELECT field, nonce FROM vault_secrets WHERE owner_id = $1 ORDER BY field";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(owner_id)
            .fetch_all(pool)
            .await?))
    }

    /// Up to `limit` rows sealed under a key older than `version`, after `after` in key order (a
    /// cursor, so that one pass visits each row once even while others change).
    pub async fn sealed_before(
        &self,
        version: u32,
        after: Option<&SecretKey>,
        limit: i64,
    ) -> Result<Vec<SealedSecret>> {
        let (owner, field) = after.map_or(("", ""), |key| (&key.owner_id, &key.field));
        let sql = format!(
            "SELECT {COLUMNS} FROM vault_secrets
              WHERE key_version < $1 AND (owner_id > $2 OR (owner_id = $2 AND field > $3))
              ORDER BY owner_id, field LIMIT $4"
        );
        Ok(reading!(self.store, pool => sqlx::query_as(&sql)
            .bind(i64::from(version))
            .bind(owner)
            .bind(field)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Replaces `old` by `new` only if the row is still exactly `old` (same key version and
    /// nonce: every seal draws a fresh nonce). `false`: it changed meanwhile, nothing written.
    pub async fn replace_if_unchanged(
        &self,
        old: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE vault_secrets SET key_version = $3, nonce = $4, ciphertext = $5,
                    updated_at = {now}
              WHERE owner_id = $1 AND field = $2 AND key_version = $6 AND nonce = $7",
            now = now_sql(self.store)
        );
        let changed = writing!(self.store, pool => sqlx::query(&sql)
            .bind(&new.owner_id)
            .bind(&new.field)
            .bind(i64::from(new.key_version))
            .bind(&new.nonce)
            .bind(&new.ciphertext)
            .bind(i64::from(old.key_version))
            .bind(&old.nonce)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(changed == 1)
    }

    /// How many rows each key version seals, lowest version first.
    pub async fn count_by_version(&self) -> Result<Vec<(u32, i64)>> {
        let sql = "SELECT key_version, count(*) FROM vault_secrets
                    GROUP BY key_version ORDER BY key_version";
        let rows: Vec<(i64, i64)> =
            reading!(self.store, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(version, count)| Ok((decode::int("a vault key version", version)?, count)))
            .collect()
    }
}
