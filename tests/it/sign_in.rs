//! Black-box, issue 12 parts 1 and 2: a wallet signs in with a real secp256k1 key (EIP-4361 +
//! EIP-191) and gets an account with working webhook credentials; nonces, domains, chains,
//! signers and expiry are checked; sessions end at sign-out, after 24 idle hours and when their
//! owner is disabled; changes need the CSRF token; staff sign in with a password that a stranger
//! cannot lock them out of. Both stores.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::answer::Answer;
use crate::support::service::{cli, cli_with_input, Options, Service};
use crate::support::sign_in::{
    ask_nonce, create_staff_with_login, staff_attempt, staff_sign_in, verify, wallet_sign_in,
    SignedIn, TestWallet,
};
use crate::support::stores::{Backend, TestStore};

const PASSWORD: &str = "correct horse battery staple";

async fn get(service: &Service, session: &SignedIn, path: &str) -> Answer {
    Answer::of(session.request(service, Method::GET, path)).await
}

async fn a_wallet_signs_in_and_gets_an_account_with_working_webhooks(backend: Backend) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::default()).await;
    let wallet = TestWallet::random();

    let first = wallet_sign_in(&service, &wallet).await;
    assert_eq!(first.body["role"], "trader");
    assert_eq!(first.body["created"], true, "{}", first.body);
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            first.set_cookie.contains(attribute),
            "{attribute}: {}",
            first.set_cookie
        );
    }
    let user_id = first.body["user_id"]
        .as_str()
        .expect("a user id")
        .to_owned();

    // The session opens the trader's own endpoints, and the webhook it shows works.
    let session = get(&service, &first, "/api/auth/session").await;
    assert_eq!(
        (session.status, &session.json["user_id"]),
        (200, &json!(user_id))
    );
    assert_eq!(session.json["csrf_token"], first.body["csrf_token"]);
    let webhook = get(&service, &first, "/api/config/webhook").await;
    assert_eq!(webhook.status, 200, "{}", webhook.json);
    let url = webhook.json["webhook_url"]
        .as_str()
        .unwrap_or_else(|| panic!("a webhook url: {}", webhook.json));
    let alert = Answer::of(
        service
            .client()
            .post(url)
            .body(Alert::demo("wallet-1").json()),
    )
    .await;
    assert_eq!(
        (alert.status, &alert.json["status"]),
        (200, &json!("accepted")),
        "{}",
        alert.json
    );
    let positions = get(&service, &first, "/api/positions").await;
    assert_eq!(positions.status, 200, "{}", positions.json);

    // The same wallet again, spelled in lower case: the same account, a new session.
    let again = wallet_sign_in(&service, &wallet).await;
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["user_id"], json!(user_id));
    assert_ne!(again.token, first.token);
    let nonce = ask_nonce(&service, &wallet.address.to_ascii_lowercase()).await;
    assert_eq!(nonce.status, 200, "{}", nonce.json);
    service.stop().await;
}
on_both_stores!(a_wallet_signs_in_and_gets_an_account_with_working_webhooks);

/// A refusal of a sign-in: 401 with this code, and no cookie.
async fn assert_refused(response: reqwest::Response, code: &str, case: &str) {
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{case}: a refused sign-in sets no cookie"
    );
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some(code)),
        "{case}: {body}"
    );
}

async fn reused_nonces_wrong_domains_chains_signers_and_expired_messages_are_refused(
    backend: Backend,
) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let wallet = TestWallet::random();
    let nonce = ask_nonce(&service, &wallet.address).await;
    let message = nonce.json["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    let domain = message.split(' ').next().expect("a domain").to_owned();

    let elsewhere = message.replace(&domain, "evil.example");
    let response = verify(&service, &elsewhere, &wallet.sign(&elsewhere)).await;
    assert_refused(response, "SIWE_WRONG_DOMAIN", "another domain").await;

    let other_chain = message.replace("Chain ID: 1\n", "Chain ID: 5\n");
    assert_ne!(other_chain, message);
    let response = verify(&service, &other_chain, &wallet.sign(&other_chain)).await;
    assert_refused(response, "SIWE_WRONG_CHAIN", "another chain").await;

    let expiry = message
        .lines()
        .find(|line| line.starts_with("Expiration Time: "))
        .expect("an expiration time");
    let expired = message.replace(expiry, "Expiration Time: 2020-01-01T00:00:00Z");
    let response = verify(&service, &expired, &wallet.sign(&expired)).await;
    assert_refused(response, "SIWE_EXPIRED", "an expired message").await;

    let stranger = TestWallet::random();
    let response = verify(&service, &message, &stranger.sign(&message)).await;
    assert_refused(response, "SIWE_WRONG_SIGNER", "another wallet's signature").await;

    // Another wallet signing a message of its own with this wallet's nonce.
    let borrowed = message.replace(&wallet.address, &stranger.address);
    let response = verify(&service, &borrowed, &stranger.sign(&borrowed)).await;
    assert_refused(response, "SIWE_NONCE_INVALID", "a nonce issued to another").await;

    // None of the refusals used the nonce up; the right signature does, once.
    let signature = wallet.sign(&message);
    let response = verify(&service, &message, &signature).await;
    assert_eq!(response.status(), 200);
    let response = verify(&service, &message, &signature).await;
    assert_refused(response, "SIWE_NONCE_INVALID", "a nonce used twice").await;

    let made_up = message.replace(
        nonce.json["nonce"].as_str().expect("a nonce"),
        "0123456789abcdef0123456789abcdef",
    );
    let response = verify(&service, &made_up, &wallet.sign(&made_up)).await;
    assert_refused(response, "SIWE_NONCE_INVALID", "a nonce never issued").await;

    for (body, case) in [
        (json!({ "address": "0x1234" }), "a short address"),
        (
            json!({ "address": wallet.address.replace("0x", "0X") }),
            "no 0x",
        ),
        (json!({}), "no address"),
    ] {
        let answer = Answer::of(
            service
                .client()
                .post(format!("{}/api/auth/nonce", service.base_url))
                .json(&body),
        )
        .await;
        assert_eq!(answer.status, 400, "{case}: {}", answer.json);
    }
    service.stop().await;
}
on_both_stores!(reused_nonces_wrong_domains_chains_signers_and_expired_messages_are_refused);

async fn sign_out_revokes_the_session_and_changes_need_the_csrf_token(backend: Backend) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let session = wallet_sign_in(&service, &TestWallet::random()).await;
    let logout = format!("{}/api/auth/logout", service.base_url);

    let without_token = Answer::of(
        service
            .client()
            .post(&logout)
            .header("cookie", format!("lh_session={}", session.token)),
    )
    .await;
    assert_eq!(
        (without_token.status, without_token.json["code"].as_str()),
        (403, Some("CSRF_TOKEN_INVALID"))
    );
    let wrong_token = Answer::of(
        service
            .client()
            .post(&logout)
            .header("cookie", format!("lh_session={}", session.token))
            .header("x-csrf-token", "0".repeat(64)),
    )
    .await;
    assert_eq!(wrong_token.status, 403, "{}", wrong_token.json);
    assert_eq!(get(&service, &session, "/api/positions").await.status, 200);

    let response = session
        .request(&service, Method::POST, "/api/auth/logout")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 204);
    let cleared = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = get(&service, &session, "/api/positions").await;
    assert_eq!(
        (after.status, after.json["code"].as_str()),
        (401, Some("INVALID_TOKEN"))
    );
    service.stop().await;
}
on_both_stores!(sign_out_revokes_the_session_and_changes_need_the_csrf_token);

/// Time: a session idle for more than 24 h is over; one used within them lives on.
async fn a_session_idle_for_a_day_is_over(backend: Backend) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let session = wallet_sign_in(&service, &TestWallet::random()).await;
    service.stop().await;

    let later = |offset: &str| Options {
        clock_offset: Some(offset.to_owned()),
        ..Options::ingest_only()
    };
    let service = Service::start(&test.url, later("+23h")).await;
    assert_eq!(get(&service, &session, "/api/positions").await.status, 200);
    service.stop().await;
    // 23 h after its last use (refreshed above), not 46 h after it began: still live.
    let service = Service::start(&test.url, later("+46h")).await;
    assert_eq!(get(&service, &session, "/api/positions").await.status, 200);
    service.stop().await;
    let service = Service::start(&test.url, later("+71h")).await;
    let expired = get(&service, &session, "/api/positions").await;
    assert_eq!(expired.status, 401, "{}", expired.json);
    service.stop().await;
}
on_both_stores!(a_session_idle_for_a_day_is_over);

const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

async fn staff_sign_in_with_a_password_that_a_stranger_cannot_lock(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (staff_id, _key) =
        create_staff_with_login(&test.url, "Carol", "compliance", "carol", PASSWORD).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;

    // A stranger who knows the login tries passwords until refused outright.
    let stranger = client_from(STRANGER);
    let mut locked = false;
    for attempt in 0..12 {
        let response =
            staff_attempt(&service, &stranger, "carol", &format!("guess {attempt}")).await;
        match response.status().as_u16() {
            401 => {}
            429 => {
                locked = true;
                break;
            }
            other => panic!("attempt {attempt}: {other}"),
        }
    }
    assert!(locked, "the stranger's guesses end in LOCKED_OUT");
    // Even the right password from the stranger's address is refused now...
    let response = staff_attempt(&service, &stranger, "carol", PASSWORD).await;
    assert_eq!(response.status(), 429);
    // ...but the owner, from their own address, signs in.
    let owner = client_from(OWNER);
    let wrong = staff_attempt(&service, &owner, "carol", "not the password").await;
    let wrong = Answer::of_response(wrong).await;
    assert_eq!(
        (wrong.status, wrong.json["code"].as_str()),
        (401, Some("INVALID_CREDENTIALS"))
    );
    // An unknown login is answered exactly like a wrong password.
    let unknown = staff_attempt(&service, &owner, "nobody", PASSWORD).await;
    let unknown = Answer::of_response(unknown).await;
    assert_eq!(
        (
            unknown.status,
            &unknown.json["code"],
            &unknown.json["error"]
        ),
        (401, &wrong.json["code"], &wrong.json["error"])
    );
    let session = staff_sign_in(&service, "carol", PASSWORD).await;
    assert_eq!(session.body["role"], "compliance");
    assert_eq!(session.body["staff_id"], json!(staff_id));

    // Operators see the lockout and the sign-in in /metrics.
    let metrics = service.metrics().await;
    let sample = |outcome: &str| {
        let series =
            format!("ledgerhook_sign_ins_total{{method=\"staff\",outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(sample("signed_in"), 1.0, "{metrics}");
    assert!(sample("LOCKED_OUT") >= 2.0, "{metrics}");
    assert!(sample("INVALID_CREDENTIALS") >= 3.0, "{metrics}");

    // The session opens compliance's routes and no trader's.
    let verify = get(&service, &session, "/api/compliance/audit/verify").await;
    assert_eq!(verify.status, 200, "{}", verify.json);
    let positions = get(&service, &session, "/api/positions").await;
    assert_eq!(positions.status, 403, "{}", positions.json);

    // Disabling the staff member ends the session at once.
    cli(&test.url, &["staff", "disable", &staff_id]).await;
    let after = get(&service, &session, "/api/compliance/audit/verify").await;
    assert_eq!(after.status, 401, "{}", after.json);
    service.stop().await;
}
on_both_stores!(staff_sign_in_with_a_password_that_a_stranger_cannot_lock);

/// `staff set-password`: a staff member made without a login gets one, a new password replaces
/// the old, and a login another member has, an unknown staff id or a malformed login are refused
/// with the reason and change nothing.
async fn set_password_gives_a_login_and_replaces_the_password(backend: Backend) {
    let test = TestStore::new(backend).await;
    create_staff_with_login(&test.url, "Carol", "compliance", "carol", PASSWORD).await;
    let created = cli(
        &test.url,
        &[
            "staff", "create", "--name", "Dan", "--role", "operator", "--json",
        ],
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(created.trim()).expect("JSON");
    let dan = created["staff_id"].as_str().expect("a staff id").to_owned();
    let set_password = |staff_id: String, login: &'static str, password: &'static str| {
        let url = test.url.clone();
        async move {
            let output = cli_with_input(
                &url,
                &["staff", "set-password", &staff_id, "--login", login],
                password,
            )
            .await;
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.success(), stderr)
        }
    };
    const FIRST: &str = "dan's first long password";
    const SECOND: &str = "dan's second long password";
    assert!(set_password(dan.clone(), "dan", FIRST).await.0);
    let (done, why) = set_password(dan.clone(), "carol", SECOND).await;
    assert!(
        !done && why.contains("taken by another staff member"),
        "{why}"
    );
    let (done, why) = set_password("staff-unknown".to_owned(), "erin", SECOND).await;
    assert!(
        !done && why.contains("no staff member staff-unknown"),
        "{why}"
    );
    let (done, why) = set_password(dan.clone(), "Dan Smith", SECOND).await;
    assert!(!done && why.contains("--login must be"), "{why}");

    let service = Service::start(&test.url, Options::ingest_only()).await;
    let session = staff_sign_in(&service, "dan", FIRST).await;
    assert_eq!(session.body["role"], "operator");
    // Carol kept her login: the refused change took nothing from her.
    staff_sign_in(&service, "carol", PASSWORD).await;

    assert!(set_password(dan.clone(), "dan", SECOND).await.0);
    let old = staff_attempt(&service, service.client(), "dan", FIRST).await;
    assert_eq!(old.status(), 401);
    staff_sign_in(&service, "dan", SECOND).await;
    service.stop().await;
}
on_both_stores!(set_password_gives_a_login_and_replaces_the_password);

/// Strangers: one address asking for nonces is limited, and no one else is.
async fn a_stranger_asking_for_nonces_limits_only_themselves(backend: Backend) {
    let test = TestStore::new(backend).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let owner = TestWallet::random();
    let stranger = client_from(STRANGER);
    let mut limited = None;
    for attempt in 0..30 {
        let answer = Answer::of(
            stranger
                .post(format!("{}/api/auth/nonce", service.base_url))
                .json(&json!({ "address": owner.address })),
        )
        .await;
        if answer.status == 429 {
            limited = Some((attempt, answer));
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.json);
    }
    let (attempt, answer) = limited.expect("the stranger is limited");
    assert!(attempt >= 5, "a person retrying is not limited at once");
    assert_eq!(answer.json["code"], "RATE_LIMITED");
    assert!(answer.retry_after_seconds().is_some());
    // The owner, from their own address, signs in.
    let session = wallet_sign_in(&service, &owner).await;
    assert_eq!(session.body["created"], true);
    service.stop().await;
}
on_both_stores!(a_stranger_asking_for_nonces_limits_only_themselves);
