//! Staff: the people who operate the service (`operator`) or audit it (`compliance`). They are not
//! traders and own no account; their credentials open only staff endpoints, and a trader's
//! credentials never open those.
//!
//! A staff member proves who they are with an API key (`lhs_...`, kept as SHA-256 only; for
//! automation) or signs in with a login and password (argon2id, `password`) for a browser session.
//! Each proof resolves to the same `StaffMember`, so endpoints and their role checks do not change.

pub mod credentials;
pub mod password;

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
    /// A session begun with the staff member's password.
    Session,
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
    #[error("the login must be 1 to 64 of a-z, 0-9, '.', '_' and '-'")]
    InvalidLogin,
    #[error("the login is taken by another staff member")]
    LoginTaken,
    #[error(transparent)]
    Password(#[from] password::PasswordError),
}

/// A new staff member with an API key and, with `login = Some((login, password))`, a dashboard
/// sign-in (hashed before anything is written; a taken login creates no one).
pub async fn create_staff(
    store: &Store,
    display_name: &str,
    role: StaffRole,
    login: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<IssuedStaff, StaffError> {
    let display_name = display_name.trim();
    let length = display_name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS || display_name.chars().any(char::is_control) {
        return Err(StaffError::InvalidName);
    }
    let sign_in = match login {
        Some((login, password)) => {
            if !is_valid_login(login) {
                return Err(StaffError::InvalidLogin);
            }
            Some((login, password::hash(password).await?))
        }
        None => None,
    };
    let issued = IssuedStaff {
        staff_id: Uuid::new_v4().to_string(),
        api_key: generate_staff_key(),
    };
    let inserted = store
        .credentials()
        .insert_staff_with_login(
            &NewStaff {
                staff_id: issued.staff_id.clone(),
                display_name: display_name.to_owned(),
                role: role.as_str().to_owned(),
                api_key_sha256: staff_key_digest(&issued.api_key),
                created_at: now,
            },
            sign_in
                .as_ref()
                .map(|(login, hash)| (*login, hash.as_str())),
        )
        .await;
    login_taken_or(inserted)?;
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

/// Lets the staff member sign in as `login` with `password` (argon2id); replaces any earlier
/// password.
pub async fn set_password(
    store: &Store,
    staff_id: &str,
    login: &str,
    password: &str,
) -> Result<(), StaffError> {
    if !is_valid_login(login) {
        return Err(StaffError::InvalidLogin);
    }
    let hash = password::hash(password).await?;
    let changed = store
        .sign_in()
        .set_staff_password(staff_id, login, &hash)
        .await;
    if login_taken_or(changed)? {
        Ok(())
    } else {
        Err(StaffError::NoSuchStaff(staff_id.to_owned()))
    }
}

/// A unique violation on `staff` here can only be the login (ids are fresh, keys random).
fn login_taken_or<T>(result: Result<T, StoreError>) -> Result<T, StaffError> {
    match result {
        Err(StoreError::Database(sqlx::Error::Database(error))) if error.is_unique_violation() => {
            Err(StaffError::LoginTaken)
        }
        other => Ok(other?),
    }
}

/// What a login may be (the migrations check the same).
pub fn is_valid_login(login: &str) -> bool {
    (1..=64).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

/// The active staff member whose login and password these are. An unknown login is checked
/// against a dummy hash, so it takes as long as a wrong password.
pub async fn authenticate_password(
    store: &Store,
    login: &str,
    password: &str,
) -> Result<Option<StaffMember>, StoreError> {
    let found = if is_valid_login(login) {
        store.sign_in().staff_password(login).await?
    } else {
        None
    };
    let matched = password::verify(
        password,
        found.as_ref().map(|staff| staff.password_hash.as_str()),
    )
    .await;
    Ok(found
        .filter(|_| matched)
        .and_then(|staff| member(staff.into_active(), StaffProof::Session)))
}

/// The active staff member `staff_id`, as a session names them.
pub async fn session_member(
    store: &Store,
    staff_id: &str,
) -> Result<Option<StaffMember>, StoreError> {
    let found = store.credentials().active_staff_by_id(staff_id).await?;
    Ok(found.and_then(|staff| member(staff, StaffProof::Session)))
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
