//! Signing in from a browser: a wallet (Sign-In with Ethereum, `wallet`) for traders, a password
//! (`crate::staff::password`) for staff, and the session either one starts (`sessions`).
//!
//! - A wallet's first sign-in opens its account: the user id is derived from the address (UUIDv5),
//!   so a sign-in that crashed halfway, or two racing, end in one account.
//! - Nonces are single-use, expire after `wallet::NONCE_TTL`, and at most
//!   `wallet::MAX_OUTSTANDING_NONCES` wait at once, whoever asks for them.
//! - Sessions: 256-bit random tokens kept as SHA-256, live 24 h after their last use, revoked at
//!   sign-out or when their owner is disabled. The CSRF token is derived from the session token
//!   (a keyed digest the browser cannot compute from the cookie it cannot read), so it needs no
//!   storage and dies with the session.

pub mod sessions;
pub mod wallet;

pub use sessions::{IssuedSession, Session};
pub use wallet::{Challenge, Site, WalletError, WalletSignIn};
