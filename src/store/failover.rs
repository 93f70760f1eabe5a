//! Following the usable server of a multi-host `DATABASE_URL` (`hosts.rs`) when it changes, as
//! after a standby's promotion.
//!
//! The pool connects to one server at a time: the first of the list, in order, that answers and
//! suits `target_session_attrs`. A watcher keeps a connection of its own to that server, always
//! busy with a query that sleeps `CHECK_INTERVAL` on the server and then says whether it still
//! suits (writable, or not in recovery, as asked): a server that dies ends the query at once (its
//! backends exit with the postmaster), one that is demoted is seen within the interval, one that
//! stops answering within `PROBE_TIMEOUT` more. Once it does not suit, the watcher tries the
//! servers in order every `SEARCH_INTERVAL` until one does, then points the pool there
//! (`Pool::set_connect_options`). Everything that connects
//! through the pool follows: request-time queries, the committer, the credential listener
//! (`PgListener` over the pool) and the readers' leases (detached pool connections) once they
//! find their connection lost. The pool refuses, as it opens it, any connection to a server that
//! does not suit (`after_connect`), and hands out no connection opened before the last move
//! (`before_acquire`): a demoted server that stays up would otherwise keep answering with
//! read-only errors.
//!
//! Nothing here fences the former primary: if it comes back writable, the list's order decides.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use super::hosts::SessionAttrs;

/// How long the watcher's query sleeps on the server in use before asking whether it still suits.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a check or a connection attempt may take before the server counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the servers are tried while none suits.
const SEARCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often the search says again that it is still looking.
const SEARCH_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// One server of the list.
pub(super) struct Server {
    /// `host:port`, for messages (never the URL: it may hold a password).
    pub address: String,
    pub options: PgConnectOptions,
}

/// The servers, the one in use, and when the pool last moved.
pub(super) struct Failover {
    servers: Vec<Server>,
    attrs: SessionAttrs,
    current: AtomicUsize,
    /// Milliseconds from `started` to the last move; 0 until one happens.
    moved_at_ms: AtomicU64,
    started: Instant,
}

impl Failover {
    pub fn new(servers: Vec<Server>, attrs: SessionAttrs) -> Self {
        Self {
            servers,
            attrs,
            current: AtomicUsize::new(0),
            moved_at_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `host:port,host:port`, for messages.
    pub fn addresses(&self) -> String {
        let addresses: Vec<&str> = self.servers.iter().map(|s| s.address.as_str()).collect();
        addresses.join(",")
    }

    /// The first server, in order, that answers and suits: its index and a connection to it; else
    /// why each one did not.
    pub async fn first_usable(&self) -> Result<(usize, PgConnection), String> {
        let mut reasons = Vec::with_capacity(self.servers.len());
        for (index, server) in self.servers.iter().enumerate() {
            match self.probe(server).await {
                Ok(connection) => return Ok((index, connection)),
                Err(reason) => reasons.push(format!("{}: {reason}", server.address)),
            }
        }
        Err(reasons.join("; "))
    }

    async fn probe(&self, server: &Server) -> Result<PgConnection, String> {
        let mut connection =
            match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&server.options))
                .await
            {
                Err(_) => return Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                Ok(Err(error)) => return Err(super::connect_reason(&error)),
                Ok(Ok(connection)) => connection,
            };
        match tokio::time::timeout(PROBE_TIMEOUT, unsuitable(&mut connection, self.attrs)).await {
            Ok(Ok(None)) => Ok(connection),
            Ok(Ok(Some(why))) => {
                let _ = connection.close().await;
                Err(why)
            }
            Ok(Err(error)) => Err(super::connect_reason(&error)),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        }
    }

    /// The pool's options with the checks that keep it on a suitable server.
    pub fn pool_options(self: &Arc<Self>, options: PgPoolOptions) -> PgPoolOptions {
        let on_connect = Arc::clone(self);
        let on_acquire = Arc::clone(self);
        options
            .after_connect(move |connection, _| {
                let failover = Arc::clone(&on_connect);
                Box::pin(async move {
                    match unsuitable(connection, failover.attrs).await? {
                        None => Ok(()),
                        Some(why) => Err(sqlx::Error::Configuration(
                            format!(
                                "refused a connection: the server {why} \
                                     (target_session_attrs={})",
                                failover.attrs.as_str()
                            )
                            .into(),
                        )),
                    }
                })
            })
            .before_acquire(move |_, meta| {
                let fresh = !on_acquire.opened_before_last_move(&meta);
                Box::pin(async move { Ok(fresh) })
            })
    }

    fn opened_before_last_move(&self, meta: &PoolConnectionMetadata) -> bool {
        let moved_at_ms = self.moved_at_ms.load(Ordering::Acquire);
        if moved_at_ms == 0 {
            return false;
        }
        let moved_at = self.started + Duration::from_millis(moved_at_ms);
        Instant::now()
            .checked_sub(meta.age)
            .is_some_and(|opened| opened < moved_at)
    }

    /// Points the pool at server `index` from now on.
    fn move_to(&self, pool: &PgPool, index: usize) {
        let Some(server) = self.servers.get(index) else {
            return;
        };
        pool.set_connect_options(server.options.clone());
        self.current.store(index, Ordering::Release);
        let since_start = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved_at_ms
            .store(since_start.max(1), Ordering::Release);
    }

    fn current_address(&self) -> &str {
        self.servers
            .get(self.current.load(Ordering::Acquire))
            .map_or("?", |server| server.address.as_str())
    }

    /// Runs for the pool's life: watches the server in use through `sentinel` (a connection to
    /// server `index`) and moves the pool when it stops suiting.
    pub async fn watch(self: Arc<Self>, pool: PgPool, index: usize, sentinel: PgConnection) {
        self.current.store(index, Ordering::Release);
        let mut sentinel = sentinel;
        loop {
            let why = self.until_unusable(&mut sentinel).await;
            let _ = sentinel.close_hard().await;
            let lost_at = Instant::now();
            tracing::warn!(
                server = self.current_address(),
                reason = %why,
                servers = %self.addresses(),
                "PostgreSQL server lost or no longer usable; looking for another"
            );
            let (index, connection) = self.search().await;
            self.move_to(&pool, index);
            tracing::warn!(
                server = self.current_address(),
                after_ms = u64::try_from(lost_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                "connections now go to this PostgreSQL server"
            );
            sentinel = connection;
        }
    }

    /// Returns why the server behind `sentinel` no longer suits, once it does not.
    async fn until_unusable(&self, sentinel: &mut PgConnection) -> String {
        loop {
            let check = unsuitable_after(sentinel, self.attrs, CHECK_INTERVAL);
            match tokio::time::timeout(CHECK_INTERVAL + PROBE_TIMEOUT, check).await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(why))) => return why,
                Ok(Err(error)) => return super::connect_reason(&error),
                Err(_) => return format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            }
        }
    }

    /// Tries the servers until one suits.
    async fn search(&self) -> (usize, PgConnection) {
        let mut reported = Instant::now();
        loop {
            match self.first_usable().await {
                Ok(found) => return found,
                Err(reasons) if reported.elapsed() >= SEARCH_REPORT_INTERVAL => {
                    tracing::warn!(%reasons, "no usable PostgreSQL server yet; still looking");
                    reported = Instant::now();
                }
                Err(reasons) => tracing::debug!(%reasons, "no usable PostgreSQL server yet"),
            }
            tokio::time::sleep(SEARCH_INTERVAL).await;
        }
    }
}

/// Why the server behind `connection` does not suit `attrs`, in words; `None` when it does.
async fn unsuitable(
    connection: &mut PgConnection,
    attrs: SessionAttrs,
) -> Result<Option<String>, sqlx::Error> {
    let (in_recovery, read_only): (bool, bool) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
    )
    .fetch_one(connection)
    .await?;
    Ok(verdict(attrs, in_recovery, read_only))
}

/// `unsuitable`, asked after sleeping `pause` on the server (the watcher's check).
async fn unsuitable_after(
    connection: &mut PgConnection,
    attrs: SessionAttrs,
    pause: Duration,
) -> Result<Option<String>, sqlx::Error> {
    let (in_recovery, read_only): (bool, bool) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'
           FROM pg_sleep($1)",
    )
    .bind(pause.as_secs_f64())
    .fetch_one(connection)
    .await?;
    Ok(verdict(attrs, in_recovery, read_only))
}

fn verdict(attrs: SessionAttrs, in_recovery: bool, read_only: bool) -> Option<String> {
    match attrs {
        SessionAttrs::ReadWrite if read_only && in_recovery => {
            Some("is read-only (a standby, in recovery)".to_owned())
        }
        SessionAttrs::ReadWrite if read_only => {
            Some("is read-only (default_transaction_read_only is on)".to_owned())
        }
        SessionAttrs::Primary if in_recovery => Some("is a standby (in recovery)".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_refuses_any_read_only_server_and_primary_only_a_standby() {
        use SessionAttrs::*;
        let standby = (true, true);
        let read_only_primary = (false, true);
        let writable = (false, false);
        let cases = [
            (
                ReadWrite,
                standby,
                Some("is read-only (a standby, in recovery)"),
            ),
            (
                ReadWrite,
                read_only_primary,
                Some("is read-only (default_transaction_read_only is on)"),
            ),
            (ReadWrite, writable, None),
            (Primary, standby, Some("is a standby (in recovery)")),
            (Primary, read_only_primary, None),
            (Primary, writable, None),
            (Any, standby, None),
            (Any, writable, None),
        ];
        for (attrs, (in_recovery, read_only), expected) in cases {
            assert_eq!(
                verdict(attrs, in_recovery, read_only).as_deref(),
                expected,
                "{attrs:?} in_recovery={in_recovery} read_only={read_only}"
            );
        }
    }
}
