//! Session tokens: issued at sign-in, resolved on every request, ended at sign-out.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{SessionSubject, Store, StoreError};
use crate::users::credentials::{is_well_formed_secret, random_hex, sha256_hex};

/// A session lives this long after its last use.
pub const SESSION_TTL: Duration = Duration::hours(24);
/// Extending the expiry on every request would be a write per page load; once a minute keeps
/// "24 h after the last use" to the minute.
const EXTEND_AFTER: Duration = Duration::minutes(1);
/// Marks a session token for secret scanners; never valid where a key is expected.
pub const SESSION_TOKEN_PREFIX: &str = "lhsn_";

/// A session as issued: the token goes into the cookie, the CSRF token to the page.
#[derive(Clone)]
pub struct IssuedSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

// The token must not reach a log line through `{:?}`.
impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session, as a request's cookie resolved to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub subject: SessionSubject,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn admits_csrf(&self, presented: &str) -> bool {
        bool::from(self.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The CSRF token of a session: a digest of its token under a label of its own, so it proves the
/// page was served to the holder of the session without revealing the session.
pub fn csrf_token(session_token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"ledgerhook csrf\0");
    digest.update(session_token.as_bytes());
    hex::encode(digest.finalize())
}

fn is_well_formed_token(token: &str) -> bool {
    token
        .strip_prefix(SESSION_TOKEN_PREFIX)
        .is_some_and(is_well_formed_secret)
}

pub async fn start(
    store: &Store,
    subject: &SessionSubject,
    now: DateTime<Utc>,
) -> Result<IssuedSession, StoreError> {
    let token = format!("{SESSION_TOKEN_PREFIX}{}", random_hex());
    let expires_at = now + SESSION_TTL;
    store
        .sign_in()
        .insert_session(
            &sha256_hex(&token),
            subject,
            now.timestamp_millis(),
            expires_at.timestamp_millis(),
        )
        .await?;
    Ok(IssuedSession {
        csrf_token: csrf_token(&token),
        token,
        expires_at,
    })
}

/// The live session of `token` at `now`, its expiry moved to `now + SESSION_TTL` when it was set
/// more than `EXTEND_AFTER` ago. A malformed token costs no query.
pub async fn resolve(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    if !is_well_formed_token(token) {
        return Ok(None);
    }
    let digest = sha256_hex(token);
    let Some(live) = store
        .sign_in()
        .live_session(&digest, now.timestamp_millis())
        .await?
    else {
        return Ok(None);
    };
    let mut expires_at = DateTime::from_timestamp_millis(live.expires_at_ms).unwrap_or(now);
    let extended = now + SESSION_TTL;
    if extended - expires_at > EXTEND_AFTER {
        store
            .sign_in()
            .extend_session(&digest, extended.timestamp_millis())
            .await?;
        expires_at = extended;
    }
    Ok(Some(Session {
        subject: live.subject,
        csrf_token: csrf_token(token),
        expires_at,
    }))
}

/// Revokes the session; `false` if it was not live (or not a token at all).
pub async fn end(store: &Store, token: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    if !is_well_formed_token(token) {
        return Ok(false);
    }
    store
        .sign_in()
        .revoke_session(&sha256_hex(token), now.timestamp_millis())
        .await
}
