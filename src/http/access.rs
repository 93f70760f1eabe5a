//! Who may call what. Every route is in `ROUTES` with the roles it admits; `enforce`, a layer on
//! every route, finds the caller's credential (a trader's API key, a staff key, or a session
//! cookie, with its CSRF token on state-changing methods), resolves it to a `Caller` and refuses a
//! role the route does not admit — before the handler runs. A route missing from the table is
//! refused outright (fail closed), and a test walks the table: every route × role × credential.
//!
//! Handlers take the `Caller` through `Authenticated` (traders) or `StaffAuthenticated`, which
//! only read what this layer left in the request.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::ApiError;
use super::guard::{before_lookup, counted, ClientAddress};
use super::AppState;
use crate::guard::Presented;
use crate::sign_in::{sessions, Session};
use crate::staff::{self, StaffMember, StaffRole};
use crate::store::SessionSubject;
use crate::users::{AuthenticatedUser, Scheme};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "lh_session";
/// The header a cookie-authenticated state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Trader,
    Compliance,
    Operator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Trader, Role::Compliance, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trader => "trader",
            Self::Compliance => "compliance",
            Self::Operator => "operator",
        }
    }
}

impl From<StaffRole> for Role {
    fn from(role: StaffRole) -> Self {
        match role {
            StaffRole::Compliance => Self::Compliance,
            StaffRole::Operator => Self::Operator,
        }
    }
}

/// Who a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// No credential needed, or one of the route's own (the webhooks' token, uuid and secret;
    /// the sign-in forms).
    Anyone,
    /// A caller holding one of these roles.
    Roles(&'static [Role]),
}

impl Admits {
    pub fn admits(self, role: Role) -> bool {
        match self {
            Self::Anyone => true,
            Self::Roles(roles) => roles.contains(&role),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RouteAccess {
    pub method: &'static str,
    pub path: &'static str,
    pub admits: Admits,
}

const TRADERS: Admits = Admits::Roles(&[Role::Trader]);
const COMPLIANCE: Admits = Admits::Roles(&[Role::Compliance]);
const OPERATORS: Admits = Admits::Roles(&[Role::Operator]);
const STAFF: Admits = Admits::Roles(&[Role::Compliance, Role::Operator]);
const SIGNED_IN: Admits = Admits::Roles(&Role::ALL);

const fn route(method: &'static str, path: &'static str, admits: Admits) -> RouteAccess {
    RouteAccess {
        method,
        path,
        admits,
    }
}

/// Every route the service answers, and who may call it. The one place access is decided.
pub const ROUTES: &[RouteAccess] = &[
    // Webhooks carry their own credential (token, or uuid + secret).
    route("POST", "/api/webhook", Admits::Anyone),
    route("POST", "/webhooks/{webhook_uuid}", Admits::Anyone),
    // Signing in and out.
    route("POST", "/api/auth/nonce", Admits::Anyone),
    route("POST", "/api/auth/verify", Admits::Anyone),
    route("POST", "/api/auth/staff", Admits::Anyone),
    route("GET", "/api/auth/session", SIGNED_IN),
    route("POST", "/api/auth/logout", SIGNED_IN),
    // The trader's own data.
    route("GET", "/api/config/webhook", TRADERS),
    route("GET", "/api/audit", TRADERS),
    route("GET", "/api/positions", TRADERS),
    route("GET", "/api/trades", TRADERS),
    route("GET", "/api/signals", TRADERS),
    route("GET", "/api/signals/{signal_id}", TRADERS),
    route("GET", "/api/signals/{signal_id}/story", TRADERS),
    // The trader's settings: each change a ledger event naming who made it.
    route("GET", "/api/settings", TRADERS),
    route("PUT", "/api/settings/venue", TRADERS),
    route("PUT", "/api/settings/limits", TRADERS),
    route("PUT", "/api/settings/credentials/{field}", TRADERS),
    route("DELETE", "/api/settings/credentials/{field}", TRADERS),
    route("POST", "/api/settings/webhook/rotate", TRADERS),
    route("POST", "/api/settings/test-notification", TRADERS),
    route("POST", "/api/settings/test-signal", TRADERS),
    // Operators: per-account halts and the emergency stop.
    route("POST", "/api/operator/halt", OPERATORS),
    route("POST", "/api/operator/resume", OPERATORS),
    // Staff: compliance reads every trail; both may ask whether it verifies.
    route("GET", super::compliance::AUDIT_PATH, COMPLIANCE),
    route("GET", super::compliance::VERIFY_PATH, STAFF),
    // The dashboard's pages and assets hold no data (the API they call checks the session).
    route("GET", "/", Admits::Anyone),
    route("GET", "/login", Admits::Anyone),
    route("GET", "/app", Admits::Anyone),
    route("GET", "/app/signals/{signal_id}", Admits::Anyone),
    route("GET", "/app/settings", Admits::Anyone),
    route("GET", "/staff/audit", Admits::Anyone),
    route("GET", "/staff/operations", Admits::Anyone),
    route("GET", super::dashboard::CSS_PATH, Admits::Anyone),
    route("GET", super::dashboard::JS_PATH, Admits::Anyone),
    // Operations: the platform's probes and scrapers hold no credential.
    route("GET", "/healthz", Admits::Anyone),
    route("GET", "/readyz", Admits::Anyone),
    route("GET", "/metrics", Admits::Anyone),
    // The API's description (src/http/api.rs): public, like any API reference.
    route("GET", "/openapi.json", Admits::Anyone),
    route("GET", "/docs", Admits::Anyone),
];

pub fn access_of(method: &Method, path: &str) -> Option<Admits> {
    ROUTES
        .iter()
        .find(|route| route.path == path && route.method == method.as_str())
        .map(|route| route.admits)
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `Authorization: Bearer lhk_...`.
    ApiKey,
    /// `Authorization: Bearer lhs_...`.
    StaffKey,
    /// The `lh_session` cookie.
    Session,
}

#[derive(Debug, Clone)]
pub enum Principal {
    Trader(AuthenticatedUser),
    Staff(StaffMember),
}

/// The authenticated caller of a request, left in its extensions by `enforce`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub credential: CredentialKind,
    /// The session, when the credential was the cookie.
    pub session: Option<Session>,
}

impl Caller {
    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::Trader(_) => Role::Trader,
            Principal::Staff(member) => member.role.into(),
        }
    }

    /// Who this is, as the ledger records an actor: `trader:<user id>` or `staff:<staff id>`.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::Trader(user) => format!("trader:{}", user.user_id),
            Principal::Staff(member) => format!("staff:{}", member.staff_id),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::invalid_token)
    }
}

/// The layer on every route: looks the route up in `ROUTES`, authenticates the caller where it
/// must, and refuses a role the route does not admit (403) or no credential at all (401).
pub async fn enforce(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let Some(path) = matched else {
        return next.run(request).await;
    };
    let Some(admits) = access_of(request.method(), path.as_str()) else {
        tracing::error!(
            path = path.as_str(),
            "a route missing from the access table"
        );
        return forbidden("This endpoint admits no one").into_response();
    };
    if admits == Admits::Anyone {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let caller = match authenticate(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if !admits.admits(caller.role()) {
        return forbidden(format!(
            "This endpoint is not for {} callers",
            caller.role().as_str()
        ))
        .into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
    if let Some(credential) = bearer(&parts.headers) {
        if credential.starts_with(staff::credentials::STAFF_KEY_PREFIX) {
            let member = staff::authenticate_api_key(&state.store, credential)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(ApiError::invalid_token)?;
            return Ok(Caller {
                principal: Principal::Staff(member),
                credential: CredentialKind::StaffKey,
                session: None,
            });
        }
        // As on the webhook: the key is checked first (an unknown one costs no query), failures
        // are counted per address and (address, key), never per key alone.
        let presented = Presented::ApiKey(credential);
        before_lookup(state, client, presented)?;
        let user = state
            .authenticator
            .authenticate_api_key(credential)
            .await
            .map_err(ApiError::internal)?;
        let user = counted(state, client, presented, user)?;
        return Ok(Caller {
            principal: Principal::Trader(user),
            credential: CredentialKind::ApiKey,
            session: None,
        });
    }
    let token = session_cookie(&parts.headers).ok_or_else(ApiError::invalid_token)?;
    let presented = Presented::Session(token);
    // A session token cannot be guessed, but each guess would cost a query: an address over its
    // failure budget is refused before the lookup (its own budget: no one else's).
    state.guard.check_failures(client, presented)?;
    let session = sessions::resolve(&state.store, token, Utc::now())
        .await
        .map_err(ApiError::internal)?;
    let Some(session) = session else {
        state.guard.record_failure(client, presented)?;
        return Err(ApiError::invalid_token());
    };
    if !is_safe(&parts.method) {
        let presented_csrf = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !session.admits_csrf(presented_csrf) {
            return Err(forbidden_csrf());
        }
    }
    let principal = match &session.subject {
        SessionSubject::Trader { user_id } => Principal::Trader(AuthenticatedUser {
            user_id: user_id.clone(),
            rate_limit: None,
            scheme: Scheme::Session,
        }),
        SessionSubject::Staff { staff_id } => Principal::Staff(
            staff::session_member(&state.store, staff_id)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(ApiError::invalid_token)?,
        ),
    };
    Ok(Caller {
        principal,
        credential: CredentialKind::Session,
        session: Some(session),
    })
}

fn forbidden_csrf() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "CSRF_TOKEN_INVALID",
        "A signed-in change needs the session's CSRF token in the x-csrf-token header",
    )
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The credential of `Authorization: Bearer <credential>` (scheme name case-insensitive).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

/// The `lh_session` cookie's value, from any of the request's Cookie headers.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("a header"));
        headers
    }

    #[test]
    fn only_a_bearer_credential_is_taken() {
        assert_eq!(
            bearer(&headers(AUTHORIZATION, "Bearer lhk_abc")),
            Some("lhk_abc")
        );
        assert_eq!(
            bearer(&headers(AUTHORIZATION, "bearer  lhk_abc ")),
            Some("lhk_abc")
        );
        assert_eq!(bearer(&headers(AUTHORIZATION, "Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(&headers(AUTHORIZATION, "Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            session_cookie(&headers(COOKIE, "a=1; lh_session=lhsn_x ; b=2")),
            Some("lhsn_x")
        );
        assert_eq!(session_cookie(&headers(COOKIE, "xlh_session=1")), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn every_route_is_in_the_table_once() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method, route.path)),
                "{} {} twice",
                route.method,
                route.path
            );
        }
    }
}
