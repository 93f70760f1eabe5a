//! `StaffAuthenticated`: the extractor for staff endpoints, beside the trader's `Authenticated`.
//! The two never accept each other's credentials: a staff key (`lhs_...`) has the wrong shape for
//! every trader scheme, a trader key (`lhk_...`) or webhook token the wrong shape here, and each
//! is looked up only in its own table. Password sign-in (a later issue) will be tried here beside
//! the key — a session cookie resolving to the same `StaffMember` — so handlers never change.
//! Every failure is the one 401, the same body the trader's endpoints answer.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::authenticated::bearer;
use super::error::ApiError;
use super::AppState;
use crate::staff::{self, StaffMember, StaffRole};

/// The staff member a request proved to be.
pub struct StaffAuthenticated(pub StaffMember);

impl StaffAuthenticated {
    /// The member, if they hold `role`; otherwise the 403 every role check answers.
    pub fn require(self, role: StaffRole) -> Result<StaffMember, ApiError> {
        if self.0.role == role {
            Ok(self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("This endpoint is for {} staff", role.as_str()),
            ))
        }
    }
}

impl FromRequestParts<AppState> for StaffAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let api_key = bearer(&parts.headers).ok_or_else(ApiError::invalid_token)?;
        staff::authenticate_api_key(&state.store, api_key)
            .await
            .map_err(ApiError::internal)?
            .map(StaffAuthenticated)
            .ok_or_else(ApiError::invalid_token)
    }
}
