//! Messages between the service instances sharing one PostgreSQL (NOTIFY): not stored, heard only
//! by instances listening at the time. For state that is worth sharing but not worth a row, such
//! as the guard's failure counts.

use sqlx::postgres::PgListener;

use super::{PostgresStore, Result};

impl PostgresStore {
    /// Sends `payload` (at most 8,000 bytes: PostgreSQL's limit) to every listener of `channel`.
    pub async fn announce(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Listens to `channel` on a connection of its own.
    pub async fn listen(&self, channel: &str) -> Result<Announcements> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(channel).await?;
        Ok(Announcements { listener })
    }
}

pub struct Announcements {
    listener: PgListener,
}

impl Announcements {
    /// The next payload. A lost connection is re-established (and re-subscribed) inside;
    /// what was announced meanwhile is not heard.
    pub async fn next(&mut self) -> Result<String> {
        let notification = self.listener.recv().await?;
        Ok(notification.payload().to_owned())
    }
}
