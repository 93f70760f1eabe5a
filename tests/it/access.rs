//! Black-box, issue 12 part 3: the access table (`ledgerhook::http::ROUTES`) is what the real
//! binary does. Generated from the table: every route × every credential kind — no credential, a
//! trader's API key, a trader's wallet session, and each staff role's key and password session —
//! is allowed exactly when the route admits the credential's role (allowed: neither 401 nor 403),
//! refused with 403 `FORBIDDEN` when it does not, and with 401 when nothing is presented.

use reqwest::Method;
use serde_json::json;

use ledgerhook::http::{Admits, Role, RouteAccess, ROUTES};

use crate::on_both_stores;
use crate::support::answer::Answer;
use crate::support::service::{create_user, Options, Service};
use crate::support::sign_in::{
    create_staff_with_login, staff_sign_in, wallet_sign_in, SignedIn, TestWallet,
};
use crate::support::stores::{Backend, TestStore};

const PASSWORD: &str = "a staff password for the table";

/// How a request proves who it is.
#[derive(Debug, Clone)]
enum Credential {
    None,
    Key { role: Role, key: String },
    Session { role: Role, how: SessionKind },
}

#[derive(Debug, Clone)]
enum SessionKind {
    Wallet,
    Staff(&'static str),
}

impl Credential {
    fn role(&self) -> Option<Role> {
        match self {
            Self::None => None,
            Self::Key { role, .. } | Self::Session { role, .. } => Some(*role),
        }
    }
}

/// The route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{signal_id}", "no-such-signal")
        .replace("{field}", "telegram_chat_id")
        .replace("{webhook_uuid}", "0f8fad5b-d9cb-469f-a165-70867728950e")
}

const SIGN_OUT: &str = "/api/auth/logout";

/// One session per kind, signed in once; sign-out gets a fresh one (it ends the session).
struct Sessions {
    wallet: TestWallet,
    kept: Vec<(String, SignedIn)>,
}

impl Sessions {
    async fn session(&mut self, service: &Service, how: &SessionKind, fresh: bool) -> SignedIn {
        let name = format!("{how:?}");
        if !fresh {
            if let Some((_, kept)) = self.kept.iter().find(|(kept, _)| *kept == name) {
                return kept.clone();
            }
        }
        let session = match how {
            SessionKind::Wallet => wallet_sign_in(service, &self.wallet).await,
            SessionKind::Staff(login) => staff_sign_in(service, login, PASSWORD).await,
        };
        if !fresh {
            self.kept.push((name, session.clone()));
        }
        session
    }
}

async fn call(
    service: &Service,
    route: &RouteAccess,
    credential: &Credential,
    sessions: &mut Sessions,
) -> Answer {
    let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
    let path = concrete(route.path);
    let request = match credential {
        Credential::None => service
            .client()
            .request(method.clone(), format!("{}{path}", service.base_url)),
        Credential::Key { key, .. } => service
            .client()
            .request(method.clone(), format!("{}{path}", service.base_url))
            .bearer_auth(key),
        Credential::Session { how, .. } => {
            let session = sessions.session(service, how, route.path == SIGN_OUT).await;
            session.request(service, method.clone(), &path)
        }
    };
    let request = if method == Method::GET {
        request
    } else {
        request.json(&json!({}))
    };
    Answer::of(request).await
}

async fn every_route_admits_exactly_the_roles_in_the_access_table(backend: Backend) {
    let test = TestStore::new(backend).await;
    let trader = create_user(&test.url, "trader").await;
    let (_, compliance_key) =
        create_staff_with_login(&test.url, "Carol", "compliance", "carol", PASSWORD).await;
    let (_, operator_key) =
        create_staff_with_login(&test.url, "Oscar", "operator", "oscar", PASSWORD).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let mut sessions = Sessions {
        wallet: TestWallet::random(),
        kept: Vec::new(),
    };
    let credentials = [
        Credential::None,
        Credential::Key {
            role: Role::Trader,
            key: trader.api_key.clone(),
        },
        Credential::Session {
            role: Role::Trader,
            how: SessionKind::Wallet,
        },
        Credential::Key {
            role: Role::Compliance,
            key: compliance_key,
        },
        Credential::Session {
            role: Role::Compliance,
            how: SessionKind::Staff("carol"),
        },
        Credential::Key {
            role: Role::Operator,
            key: operator_key,
        },
        Credential::Session {
            role: Role::Operator,
            how: SessionKind::Staff("oscar"),
        },
    ];
    let mut checked = 0;
    for route in ROUTES {
        for credential in &credentials {
            let answer = call(&service, route, credential, &mut sessions).await;
            let case = format!(
                "{} {} with {credential:?}: {} {}",
                route.method, route.path, answer.status, answer.json
            );
            assert!(answer.status < 500, "{case}");
            match (route.admits, credential.role()) {
                // Open routes decide for themselves (a webhook wants its own token): the table
                // forbids nothing there.
                (Admits::Anyone, _) => assert_ne!(answer.json["code"], "FORBIDDEN", "{case}"),
                (Admits::Roles(_), None) => assert_eq!(answer.status, 401, "{case}"),
                (admits, Some(role)) if admits.admits(role) => {
                    assert!(![401, 403].contains(&answer.status), "{case}")
                }
                (_, Some(_)) => {
                    assert_eq!(
                        (answer.status, answer.json["code"].as_str()),
                        (403, Some("FORBIDDEN")),
                        "{case}"
                    )
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * credentials.len());
    service.stop().await;
}
on_both_stores!(every_route_admits_exactly_the_roles_in_the_access_table);
