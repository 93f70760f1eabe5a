//! `Authenticated`: the extractor for endpoints a trader calls about their own data. The caller
//! was authenticated by the access layer (`access::enforce`: an API key or a wallet session);
//! this only hands the trader to the handler. Every failure is the one 401.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::access::{Caller, Principal};
use super::error::ApiError;
use super::AppState;
use crate::users::AuthenticatedUser;

/// The user a request proved to be. Handlers scope every read to `user_id`: there is no way to
/// name another user.
pub struct Authenticated(pub AuthenticatedUser);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await?.principal {
            Principal::Trader(user) => Ok(Authenticated(user)),
            // The access table admits no staff to a trader's route; should one ever, they are
            // not this trader.
            Principal::Staff(_) => Err(ApiError::invalid_token()),
        }
    }
}
