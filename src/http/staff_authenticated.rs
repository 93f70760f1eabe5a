//! `StaffAuthenticated`: the extractor for staff endpoints, beside the trader's `Authenticated`.
//! The access layer (`access::enforce`) authenticated the caller — a staff key (`lhs_...`) or a
//! password session — and checked the route admits their role; this hands the member over.
//! A trader's credential never resolves to a staff member.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::access::{Caller, Principal};
use super::error::ApiError;
use super::AppState;
use crate::staff::{StaffMember, StaffRole};

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
        match Caller::from_request_parts(parts, state).await?.principal {
            Principal::Staff(member) => Ok(StaffAuthenticated(member)),
            Principal::Trader(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "This endpoint is for staff",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::staff::StaffProof;

    use super::*;

    /// Behind the access layer's own check, a handler that asks for a role refuses a member of
    /// the other role with the same 403, naming the role it is for.
    #[test]
    fn a_member_of_the_other_role_is_refused_naming_the_role() {
        let operator = StaffMember {
            staff_id: "staff-1".to_owned(),
            display_name: "Olga".to_owned(),
            role: StaffRole::Operator,
            proof: StaffProof::ApiKey,
        };
        let refused = StaffAuthenticated(operator.clone()).require(StaffRole::Compliance);
        let Err(error) = refused else {
            panic!("an operator is not compliance staff");
        };
        assert_eq!(error.code(), "FORBIDDEN");
        assert!(
            format!("{error:?}").contains("for compliance staff"),
            "{error:?}"
        );
        let allowed = StaffAuthenticated(operator.clone()).require(StaffRole::Operator);
        assert_eq!(allowed.ok(), Some(operator));
    }
}
