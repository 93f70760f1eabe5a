//! Staff: the people who operate the service (`operator`) or audit it (`compliance`). They are not
//! traders and own no account; their credentials open only staff endpoints, and a trader's
//! credentials never open those.
//!
//! Today a staff member proves who they are with an API key (`lhs_...`, kept as SHA-256 only).
//! Password sign-in (argon2id, a later issue) is another `StaffProof` that resolves to the same
//! `StaffMember`, so endpoints and their role checks do not change.

pub mod credentials;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use self::credentials::{generate_staff_key, is_well_formed_staff_key, staff_key_digest};
use crate::store::{ActiveStaff, ComplianceRead, NewStaff, Store, StoreError};

/// Longest display name, in characters (the migration checks the same).
const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffRole {
    /// Reads the audit trail of every account.
    Compliance,
    /// Runs the service (halts, limits, users). Reads no account's trail: least privilege, and
    /// what an operator needs about one account is in its own CLI (`replay`, `audit verify`).
    Operator,
}

impl StaffRole {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "compliance" => Some(Self::Compliance),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "compliance",
            Self::Operator => "operator",
        }
    }
}

/// How a staff request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffProof {
    /// `Authorization: Bearer lhs_...`.
    ApiKey,
}

/// An active staff member, as a credential resolved to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub staff_id: String,
    pub display_name: String,
    pub role: StaffRole,
    pub proof: StaffProof,
}

/// A new staff member's identity and key, shown once.
#[derive(Clone)]
pub struct IssuedStaff {
    pub staff_id: String,
    pub api_key: String,
}

// The key must not reach a log line through `{:?}`.
impl std::fmt::Debug for IssuedStaff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedStaff")
            .field("staff_id", &self.staff_id)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no staff member {0}")]
    NoSuchStaff(String),
    #[error("the name must be 1 to {MAX_NAME_CHARS} characters, without control characters")]
    InvalidName,
}

pub async fn create_staff(
    store: &Store,
    display_name: &str,
    role: StaffRole,
    now: DateTime<Utc>,
) -> Result<IssuedStaff, StaffError> {
    let display_name = display_name.trim();
    let length = display_name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS || display_name.chars().any(char::is_control) {
        return Err(StaffError::InvalidName);
    }
    let issued = IssuedStaff {
        staff_id: Uuid::new_v4().to_string(),
        api_key: generate_staff_key(),
    };
    store
        .credentials()
        .insert_staff(&NewStaff {
            staff_id: issued.staff_id.clone(),
            display_name: display_name.to_owned(),
            role: role.as_str().to_owned(),
            api_key_sha256: staff_key_digest(&issued.api_key),
            created_at: now,
        })
        .await?;
    Ok(issued)
}

/// The staff member's credentials stop working at once; what they read stays recorded.
pub async fn disable_staff(
    store: &Store,
    staff_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StaffError> {
    if store.credentials().disable_staff(staff_id, now).await? {
        Ok(())
    } else {
        Err(StaffError::NoSuchStaff(staff_id.to_owned()))
    }
}

/// The active staff member holding `api_key`. Every failure is `Ok(None)`; malformed keys (a
/// trader's `lhk_` key, a webhook token) are refused before any lookup. A lookup by the digest of
/// a 256-bit random value reveals nothing through its timing.
pub async fn authenticate_api_key(
    store: &Store,
    api_key: &str,
) -> Result<Option<StaffMember>, StoreError> {
    if !is_well_formed_staff_key(api_key) {
        return Ok(None);
    }
    let found = store
        .credentials()
        .active_staff_by_api_key_sha256(&staff_key_digest(api_key))
        .await?;
    Ok(found.and_then(|staff| member(staff, StaffProof::ApiKey)))
}

/// A role the code does not know (the migration's check makes it impossible) opens nothing.
fn member(staff: ActiveStaff, proof: StaffProof) -> Option<StaffMember> {
    Some(StaffMember {
        role: StaffRole::parse(&staff.role)?,
        staff_id: staff.staff_id,
        display_name: staff.display_name,
        proof,
    })
}

/// Records that `staff` read `endpoint` with `filter`; durable before it returns, so callers do
/// it before they answer with any data.
pub async fn record_read(
    store: &Store,
    staff: &StaffMember,
    endpoint: &str,
    filter: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store
        .credentials()
        .record_compliance_read(&ComplianceRead {
            staff_id: staff.staff_id.clone(),
            endpoint: endpoint.to_owned(),
            filter,
            at: now,
        })
        .await
}
