//! Signing in to the real binary from a test: a wallet with a real secp256k1 key that signs
//! EIP-4361 messages as `personal_sign` does, staff with passwords, and requests that carry the
//! session cookie (and the CSRF token on changes) as a browser would.

use k256::ecdsa::SigningKey;
use ledgerhook::siwe::signature::{address_of, personal_sign_digest};
use rand::RngCore;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use super::answer::Answer;
use super::service::{cli_with_input, Service};

/// A wallet the test holds the key of.
pub struct TestWallet {
    key: SigningKey,
    /// EIP-55 checksummed.
    pub address: String,
}

impl TestWallet {
    pub fn random() -> Self {
        loop {
            let mut secret = [0_u8; 32];
            rand::rng().fill_bytes(&mut secret);
            if let Ok(key) = SigningKey::from_slice(&secret) {
                let address = address_of(key.verifying_key()).checksummed();
                return Self { key, address };
            }
        }
    }

    /// `personal_sign(message)`: 0x, r ‖ s ‖ v with v = 27 + recovery id.
    pub fn sign(&self, message: &str) -> String {
        let digest = personal_sign_digest(message.as_bytes());
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(&digest)
            .expect("a prehash signs");
        format!(
            "0x{}{:02x}",
            hex::encode(signature.to_bytes()),
            recovery.to_byte() + 27
        )
    }
}

/// A signed-in browser: its session cookie and the CSRF token its page was given.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub csrf: String,
    /// The sign-in answer.
    pub body: Value,
    /// The whole `Set-Cookie` header, attributes included.
    pub set_cookie: String,
}

impl SignedIn {
    /// A request with the session cookie; state-changing methods carry the CSRF token too.
    pub fn request(&self, service: &Service, method: Method, path: &str) -> RequestBuilder {
        let changes = !matches!(method, Method::GET | Method::HEAD);
        let request = service
            .client()
            .request(method, format!("{}{path}", service.base_url))
            .header("cookie", format!("lh_session={}", self.token));
        if changes {
            request.header("x-csrf-token", &self.csrf)
        } else {
            request
        }
    }
}

/// `POST /api/auth/nonce` for `address`.
pub async fn ask_nonce(service: &Service, address: &str) -> Answer {
    Answer::of(
        service
            .client()
            .post(format!("{}/api/auth/nonce", service.base_url))
            .json(&json!({ "address": address })),
    )
    .await
}

/// `POST /api/auth/verify` with `message` and `signature`, and the raw response.
pub async fn verify(service: &Service, message: &str, signature: &str) -> reqwest::Response {
    service
        .client()
        .post(format!("{}/api/auth/verify", service.base_url))
        .json(&json!({ "message": message, "signature": signature }))
        .send()
        .await
        .expect("the service answers")
}

/// The whole wallet sign-in: nonce, signature, verify. It must succeed.
pub async fn wallet_sign_in(service: &Service, wallet: &TestWallet) -> SignedIn {
    let nonce = ask_nonce(service, &wallet.address).await;
    assert_eq!(nonce.status, 200, "{}", nonce.json);
    let message = nonce.json["message"].as_str().expect("a message to sign");
    signed_in(verify(service, message, &wallet.sign(message)).await).await
}

/// `POST /api/auth/staff`; it must succeed.
pub async fn staff_sign_in(service: &Service, login: &str, password: &str) -> SignedIn {
    signed_in(staff_attempt(service, service.client(), login, password).await).await
}

pub async fn staff_attempt(
    service: &Service,
    client: &reqwest::Client,
    login: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/api/auth/staff", service.base_url))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .expect("the service answers")
}

/// The session a successful sign-in answer set.
pub async fn signed_in(response: reqwest::Response) -> SignedIn {
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "sign-in refused: {body}");
    let token = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.trim().strip_prefix("lh_session="))
        .unwrap_or_else(|| panic!("a session cookie: {set_cookie:?}"))
        .to_owned();
    let csrf = body["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    SignedIn {
        token,
        csrf,
        body,
        set_cookie,
    }
}

/// `ledgerhook staff create --login LOGIN` with the password on standard input: (staff_id, key).
pub async fn create_staff_with_login(
    database_url: &str,
    name: &str,
    role: &str,
    login: &str,
    password: &str,
) -> (String, String) {
    let output = cli_with_input(
        database_url,
        &[
            "staff", "create", "--name", name, "--role", role, "--login", login, "--json",
        ],
        password,
    )
    .await;
    assert!(
        output.status.success(),
        "staff create --login failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("staff create prints JSON");
    (
        json["staff_id"].as_str().expect("a staff id").to_owned(),
        json["api_key"].as_str().expect("a key").to_owned(),
    )
}
