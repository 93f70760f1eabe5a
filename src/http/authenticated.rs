//! `Authenticated`: the extractor for endpoints a user calls about their own data. Today the only
//! proof is an API key (`Authorization: Bearer <key>`); a session cookie from wallet sign-in will
//! be tried here beside it, so handlers never change. Every failure is the one 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::guard::{before_lookup, counted, ClientAddress};
use super::AppState;
use crate::guard::Presented;
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
        let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
        let api_key = bearer(&parts.headers).ok_or_else(ApiError::invalid_token)?;
        // As on the webhook: the key is checked first (an unknown one costs no query), failures
        // are counted per address and (address, key), never per key alone.
        let presented = Presented::ApiKey(api_key);
        before_lookup(state, client, presented)?;
        let user = state
            .authenticator
            .authenticate_api_key(api_key)
            .await
            .map_err(ApiError::internal)?;
        counted(state, client, presented, user).map(Authenticated)
    }
}

/// The credential of `Authorization: Bearer <credential>` (scheme name case-insensitive).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header"),
        );
        headers
    }

    #[test]
    fn only_a_bearer_credential_is_taken() {
        assert_eq!(bearer(&headers("Bearer lhk_abc")), Some("lhk_abc"));
        assert_eq!(bearer(&headers("bearer  lhk_abc ")), Some("lhk_abc"));
        assert_eq!(bearer(&headers("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
