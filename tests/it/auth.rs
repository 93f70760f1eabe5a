//! Webhook credentials on both stores: both schemes, the one 401 for every failure, rotation and
//! disabling by the CLI while the service runs, the API key and `GET /api/config/webhook`.

use chrono::Utc;
use serde_json::Value;

use ledgerhook::store::{RateLimit, Store};
use ledgerhook::users::{self, Authenticator, Scheme};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::answer::assert_invalid_token;
use crate::support::eventually;
use crate::support::service::{cli, create_user, rotate_webhook, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::vault::sealing_vault;

async fn signals_recorded(store: &Store, account: &str) -> usize {
    store
        .events()
        .load_account(account)
        .await
        .expect("the account loads")
        .iter()
        .filter(|event| event.event_type == "SignalReceived")
        .count()
}

async fn both_schemes_accept_their_credentials(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;

    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::demo("token-1").json())
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &"accepted".into()),
        "{body}"
    );
    let (status, body) = service
        .post_two_factor(
            &user.webhook_uuid,
            &Alert::demo("two-factor-1")
                .secret(&user.webhook_secret)
                .json(),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &"accepted".into()),
        "{body}"
    );
    // The URL the CLI printed is the one that works.
    let printed_path = user
        .two_factor_url
        .find("/webhooks/")
        .map(|start| &user.two_factor_url[start..])
        .expect("a two-factor URL");
    let (status, body) = service
        .send(
            service
                .client()
                .post(format!("{}{printed_path}", service.base_url))
                .body(
                    Alert::demo("two-factor-2")
                        .secret(&user.webhook_secret)
                        .json(),
                ),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let store = test.open().await;
    assert_eq!(signals_recorded(&store, &user.user_id).await, 3);
    service.stop().await;
}
on_both_stores!(both_schemes_accept_their_credentials);

async fn every_credential_failure_is_the_same_401(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    // Many failures on one credential here: the lockout (tested in abuse.rs) must not answer first.
    let lenient = Options {
        args: vec!["--lockout-after-failures".into(), "1000".into()],
        ..Options::ingest_only()
    };
    let service = Service::start(&test.url, lenient).await;
    let unknown = "0".repeat(64);
    let unknown_uuid = uuid::Uuid::new_v4().to_string();
    let base = &service.base_url;
    let token = &alice.webhook_token;

    let token_cases = [
        (
            "no token at all",
            format!("{}/api/webhook", service.base_url),
        ),
        (
            "empty token",
            format!("{}/api/webhook?token=", service.base_url),
        ),
        (
            "unknown token",
            format!("{}/api/webhook?token={unknown}", service.base_url),
        ),
        (
            "short token",
            format!("{}/api/webhook?token=abc", service.base_url),
        ),
        (
            "token in another parameter",
            format!(
                "{}/api/webhook?tok={}",
                service.base_url, alice.webhook_token
            ),
        ),
        (
            "the two-factor secret as a token",
            format!(
                "{}/api/webhook?token={}",
                service.base_url, alice.webhook_secret
            ),
        ),
        (
            "the API key as a token",
            format!("{}/api/webhook?token={}", service.base_url, alice.api_key),
        ),
        (
            "the token in upper case",
            format!("{base}/api/webhook?token={}", token.to_uppercase()),
        ),
        (
            "the token with a trailing newline",
            format!("{base}/api/webhook?token={token}%0A"),
        ),
        (
            "the token with one character changed",
            format!(
                "{base}/api/webhook?token={}{}",
                &token[..63],
                if token.ends_with('0') { "1" } else { "0" }
            ),
        ),
        (
            "the token truncated",
            format!("{base}/api/webhook?token={}", &token[..32]),
        ),
        (
            "the token doubled",
            format!("{base}/api/webhook?token={token}{token}"),
        ),
        (
            "a bad token after the good one",
            format!("{base}/api/webhook?token={token}&token={unknown}"),
        ),
        (
            "the good token after a bad one",
            format!("{base}/api/webhook?token={unknown}&token={token}"),
        ),
        (
            "SQL in the token",
            format!("{base}/api/webhook?token=%27%20OR%20%271%27%3D%271"),
        ),
        ("a wildcard token", format!("{base}/api/webhook?token=%25")),
        (
            "the user id as a token",
            format!("{base}/api/webhook?token={}", alice.user_id),
        ),
        (
            "the uuid as a token",
            format!("{base}/api/webhook?token={}", alice.webhook_uuid),
        ),
    ];
    let mut bodies = Vec::new();
    for (case, url) in token_cases {
        let (status, body) = service
            .send(service.client().post(url).body(Alert::demo(case).json()))
            .await;
        assert_invalid_token(case, status, &body);
        bodies.push(body);
    }
    // The token anywhere but the query string.
    let elsewhere = [
        (
            "the token as a Bearer header",
            service
                .client()
                .post(format!("{base}/api/webhook"))
                .bearer_auth(token)
                .body(Alert::demo("h").json()),
        ),
        (
            "the token in the body",
            service
                .client()
                .post(format!("{base}/api/webhook"))
                .body(format!(
                    r#"{{"symbol":"BTCUSDT.P","side":"buy","size":"1","token":"{token}"}}"#
                )),
        ),
        (
            "the token as a cookie",
            service
                .client()
                .post(format!("{base}/api/webhook"))
                .header("cookie", format!("token={token}"))
                .body(Alert::demo("c").json()),
        ),
    ];
    for (case, request) in elsewhere {
        let (status, body) = service.send(request).await;
        assert_invalid_token(case, status, &body);
        bodies.push(body);
    }

    let two_factor_cases = [
        (
            "unknown uuid",
            unknown_uuid.clone(),
            Alert::demo("1").secret(&alice.webhook_secret).json(),
        ),
        (
            "malformed uuid",
            "not-a-uuid".into(),
            Alert::demo("2").secret(&alice.webhook_secret).json(),
        ),
        (
            "wrong secret",
            alice.webhook_uuid.clone(),
            Alert::demo("3").secret(&unknown).json(),
        ),
        (
            "another user's secret",
            alice.webhook_uuid.clone(),
            Alert::demo("4").secret(&bob.webhook_secret).json(),
        ),
        (
            "the token as the secret",
            alice.webhook_uuid.clone(),
            Alert::demo("5").secret(&alice.webhook_token).json(),
        ),
        (
            "no secret",
            alice.webhook_uuid.clone(),
            Alert::demo("6").json(),
        ),
        (
            "secret of the wrong type",
            alice.webhook_uuid.clone(),
            r#"{"symbol":"BTCUSDT.P","side":"buy","size":"1","secret":42}"#.into(),
        ),
        (
            "body not JSON",
            alice.webhook_uuid.clone(),
            alice.webhook_secret.clone(),
        ),
        (
            "secret as a form field",
            alice.webhook_uuid.clone(),
            format!("secret={}", alice.webhook_secret),
        ),
        (
            "secret inside an array",
            alice.webhook_uuid.clone(),
            format!(r#"["{}"]"#, alice.webhook_secret),
        ),
        ("empty body", alice.webhook_uuid.clone(), String::new()),
    ];
    for (case, uuid, body) in two_factor_cases {
        let (status, body) = service.post_two_factor(&uuid, &body).await;
        assert_invalid_token(case, status, &body);
        bodies.push(body);
    }
    // Byte-identical apart from the time.
    let shapes: Vec<String> = bodies
        .iter_mut()
        .map(|body| {
            body["timestamp"] = Value::Null;
            body.to_string()
        })
        .collect();
    assert!(
        shapes.windows(2).all(|pair| pair[0] == pair[1]),
        "{shapes:?}"
    );

    println!(
        "auth bypass ({backend:?}): {} requests, accepted 0, 5xx 0 (each asserted 401)",
        bodies.len()
    );
    let store = test.open().await;
    assert_eq!(signals_recorded(&store, &alice.user_id).await, 0);
    assert_eq!(signals_recorded(&store, &bob.user_id).await, 0);
    service.stop().await;
}
on_both_stores!(every_credential_failure_is_the_same_401);

/// While the service runs and remembers the credentials it has seen, the CLI (another process)
/// rotates them: the old ones fail on the very next request, the new ones work.
async fn rotation_by_the_cli_kills_the_old_credentials_at_once(backend: Backend) {
    let test = TestStore::new(backend).await;
    let old = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    for round in 0..2 {
        let (status, body) = service
            .post_signal(
                &old.webhook_token,
                &Alert::demo(format!("t-{round}")).json(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = service
            .post_two_factor(
                &old.webhook_uuid,
                &Alert::demo(format!("f-{round}"))
                    .secret(&old.webhook_secret)
                    .json(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let new = rotate_webhook(&test.url, &old.user_id).await;
    assert_eq!(new.user_id, old.user_id);
    assert_ne!(new.webhook_token, old.webhook_token);
    assert_ne!(new.webhook_uuid, old.webhook_uuid);
    assert_ne!(new.webhook_secret, old.webhook_secret);

    refused_once_announced(backend, "the old token", || async {
        let (status, body) = service
            .post_signal(&old.webhook_token, &Alert::demo("t-old").json())
            .await;
        status == 401 && body["code"] == "INVALID_TOKEN"
    })
    .await;
    let (status, body) = service
        .post_signal(&old.webhook_token, &Alert::demo("t-old").json())
        .await;
    assert_invalid_token("old token", status, &body);
    for (case, uuid, secret) in [
        (
            "old uuid, old secret",
            &old.webhook_uuid,
            &old.webhook_secret,
        ),
        (
            "new uuid, old secret",
            &new.webhook_uuid,
            &old.webhook_secret,
        ),
        (
            "old uuid, new secret",
            &old.webhook_uuid,
            &new.webhook_secret,
        ),
    ] {
        let (status, body) = service
            .post_two_factor(uuid, &Alert::demo(case).secret(secret).json())
            .await;
        assert_invalid_token(case, status, &body);
    }

    let (status, body) = service
        .post_signal(&new.webhook_token, &Alert::demo("t-new").json())
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = service
        .post_two_factor(
            &new.webhook_uuid,
            &Alert::demo("f-new").secret(&new.webhook_secret).json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The API key is not a webhook credential: it survives.
    let (status, _) = get_config(&service, Some(&old.api_key)).await;
    assert_eq!(status, 200);
    service.stop().await;
}
on_both_stores!(rotation_by_the_cli_kills_the_old_credentials_at_once);

async fn a_disabled_user_keeps_the_ledger_but_no_credential_works(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "alice").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    for before in ["before-1", "before-2"] {
        let (status, body) = service
            .post_signal(&user.webhook_token, &Alert::demo(before).json())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = get_config(&service, Some(&user.api_key)).await;
    assert_eq!(status, 200);

    cli(&test.url, &["users", "disable", &user.user_id]).await;

    refused_once_announced(backend, "the disabled user's token", || async {
        let (status, _) = service
            .post_signal(&user.webhook_token, &Alert::demo("after").json())
            .await;
        status == 401
    })
    .await;
    let store = test.open().await;
    let recorded = signals_recorded(&store, &user.user_id).await;
    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::demo("after").json())
        .await;
    assert_invalid_token("token of a disabled user", status, &body);
    let (status, body) = service
        .post_two_factor(
            &user.webhook_uuid,
            &Alert::demo("after").secret(&user.webhook_secret).json(),
        )
        .await;
    assert_invalid_token("two-factor of a disabled user", status, &body);
    let (status, body) = get_config(&service, Some(&user.api_key)).await;
    assert_invalid_token("API key of a disabled user", status, &body);

    // Nothing more was recorded, and what was recorded stays.
    assert_eq!(signals_recorded(&store, &user.user_id).await, recorded);
    assert!(recorded >= 2);
    service.stop().await;
}
on_both_stores!(a_disabled_user_keeps_the_ledger_but_no_credential_works);

async fn get_config(service: &Service, api_key: Option<&str>) -> (u16, Value) {
    let mut request = service
        .client()
        .get(format!("{}/api/config/webhook", service.base_url));
    if let Some(api_key) = api_key {
        request = request.bearer_auth(api_key);
    }
    service.send(request).await
}

async fn the_config_endpoint_answers_only_with_the_callers_own_config(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;

    let (status, body) = get_config(&service, None).await;
    assert_invalid_token("no API key", status, &body);
    for (case, key) in [
        ("unknown key", format!("lhk_{}", "0".repeat(64))),
        ("webhook token as key", alice.webhook_token.clone()),
        ("webhook secret as key", alice.webhook_secret.clone()),
        (
            "key without its prefix",
            alice.api_key.trim_start_matches("lhk_").to_owned(),
        ),
    ] {
        let (status, body) = get_config(&service, Some(&key)).await;
        assert_invalid_token(case, status, &body);
    }
    let (status, body) = service
        .send(
            service
                .client()
                .get(format!("{}/api/config/webhook", service.base_url))
                .header("authorization", format!("Basic {}", alice.api_key)),
        )
        .await;
    assert_invalid_token("not a bearer credential", status, &body);

    let (status, config) = get_config(&service, Some(&alice.api_key)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["user_id"], alice.user_id.as_str());
    assert_eq!(
        config["two_factor_url"],
        format!("{}/webhooks/{}", service.base_url, alice.webhook_uuid).as_str()
    );
    // The owner's own URL, shown again from the vault; the API key is never shown.
    assert_eq!(
        config["webhook_url"],
        format!(
            "{}/api/webhook?token={}",
            service.base_url, alice.webhook_token
        )
        .as_str()
    );
    assert!(
        !config.to_string().contains(&alice.api_key),
        "the API key in the config answer"
    );
    let setup = &config["tradingview_setup"];
    let template: Value = serde_json::from_str(setup["message_template"].as_str().unwrap_or("{}"))
        .expect("the template is JSON");
    assert_eq!(template["size"], "{{strategy.order.contracts}}");
    assert_eq!(template["side"], "{{strategy.order.action}}");
    assert!(template.get("secret").is_none());
    let two_factor: Value = serde_json::from_str(
        setup["two_factor"]["message_template"]
            .as_str()
            .unwrap_or("{}"),
    )
    .expect("the two-factor template is JSON");
    assert_eq!(two_factor["secret"], alice.webhook_secret.as_str());
    assert!(config["payload_format"].is_object());
    assert_eq!(config["rate_limit"]["requests"], 10);
    assert_eq!(config["rate_limit"]["window_seconds"], 60);

    // Bob's key reads Bob's config, whatever the request names.
    let (status, config) = service
        .send(
            service
                .client()
                .get(format!(
                    "{}/api/config/webhook?user_id={}",
                    service.base_url, alice.user_id
                ))
                .bearer_auth(&bob.api_key),
        )
        .await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["user_id"], bob.user_id.as_str());
    let shown = config.to_string();
    for alices in [
        &alice.webhook_uuid,
        &alice.webhook_token,
        &alice.webhook_secret,
    ] {
        assert!(
            !shown.contains(alices.as_str()),
            "Alice's credential shown to Bob"
        );
    }

    // Behind a TLS-terminating proxy the URLs are https.
    let (status, config) = service
        .send(
            service
                .client()
                .get(format!("{}/api/config/webhook", service.base_url))
                .bearer_auth(&alice.api_key)
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert_eq!(status, 200, "{config}");
    assert!(config["two_factor_url"]
        .as_str()
        .is_some_and(|url| url.starts_with("https://")));

    // Per-user settings travel with the authenticated user.
    cli(
        &test.url,
        &[
            "users",
            "rate-limit",
            &alice.user_id,
            "--requests",
            "3",
            "--window-seconds",
            "30",
        ],
    )
    .await;
    let (_, config) = get_config(&service, Some(&alice.api_key)).await;
    assert_eq!(config["rate_limit"]["requests"], 3);
    assert_eq!(config["rate_limit"]["window_seconds"], 30);

    // A rotated key stops working at once.
    let out = cli(
        &test.url,
        &["users", "rotate-api-key", &alice.user_id, "--json"],
    )
    .await;
    let rotated: Value = serde_json::from_str(out.trim()).expect("rotate-api-key prints JSON");
    let (status, body) = get_config(&service, Some(&alice.api_key)).await;
    assert_invalid_token("rotated API key", status, &body);
    let (status, _) = get_config(&service, rotated["api_key"].as_str()).await;
    assert_eq!(status, 200);
    service.stop().await;
}
on_both_stores!(the_config_endpoint_answers_only_with_the_callers_own_config);

/// In-process, where the authenticator's memory can be observed: on PostgreSQL a credential it has
/// seen is answered from memory (a change the store does not announce goes unnoticed — which is
/// why every change is announced), and a change announced by another process evicts it before
/// the next lookup. On SQLite nothing is remembered at all.
async fn remembered_credentials_never_outlive_an_announced_change(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let user = create_user(&test.url, "alice").await;
    let authenticator = Authenticator::new(store.clone());
    if backend == Backend::Postgres {
        eventually("the credential listener to be up", || async {
            authenticator.is_remembering().then_some(())
        })
        .await;
    }
    let found = authenticator
        .authenticate_token(&user.webhook_token)
        .await
        .expect("the store answers")
        .expect("the token is valid");
    assert_eq!(
        (found.user_id.as_str(), found.scheme),
        (user.user_id.as_str(), Scheme::WebhookToken)
    );
    assert_eq!(found.rate_limit, None);
    assert!(authenticator
        .authenticate_two_factor(&user.webhook_uuid, &user.webhook_secret)
        .await
        .expect("the store answers")
        .is_some());

    // A change behind the store's back (no announcement).
    silently_disable(&store, &user.user_id).await;
    let still = authenticator
        .authenticate_token(&user.webhook_token)
        .await
        .expect("the store answers");
    match backend {
        Backend::Postgres => assert!(still.is_some(), "PostgreSQL answers from memory"),
        Backend::Sqlite => assert!(still.is_none(), "SQLite remembers nothing"),
    }
    reenable(&store, &user.user_id).await;

    // The same user, rotated by the CLI in another process.
    let rotated = rotate_webhook(&test.url, &user.user_id).await;
    refused_once_announced(backend, "the rotated token", || async {
        authenticator
            .authenticate_token(&user.webhook_token)
            .await
            .expect("the store answers")
            .is_none()
    })
    .await;
    assert!(authenticator
        .authenticate_two_factor(&user.webhook_uuid, &user.webhook_secret)
        .await
        .expect("the store answers")
        .is_none());
    assert!(authenticator
        .authenticate_token(&rotated.webhook_token)
        .await
        .expect("the store answers")
        .is_some());

    // Changes made through the authenticator take effect here before they return.
    authenticator
        .set_rate_limit(
            &user.user_id,
            Some(RateLimit {
                requests: 5,
                window_seconds: 10,
            }),
        )
        .await
        .expect("the user exists");
    let found = authenticator
        .authenticate_token(&rotated.webhook_token)
        .await
        .expect("the store answers")
        .expect("the token is valid");
    assert_eq!(found.rate_limit_or_default().requests, 5);
    let again = authenticator
        .rotate_webhook(&sealing_vault(&store), &user.user_id)
        .await
        .expect("the user exists");
    assert!(authenticator
        .authenticate_token(&rotated.webhook_token)
        .await
        .expect("the store answers")
        .is_none());
    assert!(authenticator
        .authenticate_token(&again.webhook_token)
        .await
        .expect("the store answers")
        .is_some());
    // Disabled by the CLI in another process.
    cli(&test.url, &["users", "disable", &user.user_id]).await;
    refused_once_announced(backend, "the disabled user's token", || async {
        authenticator
            .authenticate_token(&again.webhook_token)
            .await
            .expect("the store answers")
            .is_none()
    })
    .await;
    assert!(matches!(
        users::rotate_webhook(&sealing_vault(&store), "no-such-user").await,
        Err(users::UserError::NoSuchUser(_))
    ));
}
on_both_stores!(remembered_credentials_never_outlive_an_announced_change);

/// A change made by another process takes effect on SQLite with the very next lookup (nothing is
/// remembered); on PostgreSQL as soon as its NOTIFY reaches this process — PostgreSQL forwards it
/// from the listening backend a moment after the commit, so there is no fixed point to assert at,
/// only that it happens (and, after it, the old credential never works again).
async fn refused_once_announced<F, Fut>(backend: Backend, what: &str, mut refused: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    match backend {
        Backend::Sqlite => assert!(refused().await, "{what} still works"),
        Backend::Postgres => {
            eventually(&format!("{what} to be refused"), || {
                let attempt = refused();
                async move { attempt.await.then_some(()) }
            })
            .await;
        }
    }
    assert!(refused().await, "{what} works again");
}

async fn silently_disable(store: &Store, user_id: &str) {
    set_disabled(store, user_id, true).await;
}

async fn reenable(store: &Store, user_id: &str) {
    set_disabled(store, user_id, false).await;
}

/// Raw SQL on purpose: the point is a change the store's own methods would have announced.
async fn set_disabled(store: &Store, user_id: &str, disabled: bool) {
    let value = disabled.then(|| Utc::now().to_rfc3339());
    match store {
        Store::Postgres(pg) => {
            sqlx::query("UPDATE users SET disabled_at = $1::timestamptz WHERE user_id = $2")
                .bind(value)
                .bind(user_id)
                .execute(pg.pool())
                .await
                .expect("the update runs");
        }
        Store::Sqlite(lite) => {
            sqlx::query("UPDATE users SET disabled_at = ? WHERE user_id = ?")
                .bind(value)
                .bind(user_id)
                .execute(lite.pool())
                .await
                .expect("the update runs");
        }
    }
}

/// A user stored before migration 0003 (only the 0001 columns) keeps its token; the two-factor
/// scheme and the API key fail for it like unknown credentials until they are issued.
async fn users_from_before_the_migration_keep_their_token(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let token = "ab".repeat(32);
    let digest = ledgerhook::users::credentials::sha256_hex(&token);
    let insert = "INSERT INTO users (user_id, display_name, webhook_token_sha256, created_at) \
                  VALUES ('legacy', 'legacy', $1, '2024-01-01T00:00:00Z')";
    match &store {
        Store::Postgres(pg) => {
            sqlx::query(&insert.replace("'2024-01-01T00:00:00Z'", "now()"))
                .bind(&digest)
                .execute(pg.pool())
                .await
                .expect("a legacy row");
        }
        Store::Sqlite(lite) => {
            sqlx::query(&insert.replace("$1", "?"))
                .bind(&digest)
                .execute(lite.pool())
                .await
                .expect("a legacy row");
        }
    }
    let authenticator = Authenticator::new(store.clone());
    assert!(authenticator
        .authenticate_token(&token)
        .await
        .expect("the store answers")
        .is_some());
    let profile = authenticator
        .profile("legacy")
        .await
        .expect("the store answers")
        .expect("the legacy user");
    assert_eq!(profile.webhook_uuid, None);

    let issued = authenticator
        .rotate_webhook(&sealing_vault(&store), "legacy")
        .await
        .expect("the legacy user exists");
    assert!(authenticator
        .authenticate_two_factor(&issued.webhook_uuid.to_string(), &issued.webhook_secret)
        .await
        .expect("the store answers")
        .is_some());
    assert!(authenticator
        .authenticate_token(&token)
        .await
        .expect("the store answers")
        .is_none());
    let api_key = users::rotate_api_key(&store, "legacy")
        .await
        .expect("the legacy user exists");
    assert!(authenticator
        .authenticate_api_key(&api_key)
        .await
        .expect("the store answers")
        .is_some());
}
on_both_stores!(users_from_before_the_migration_keep_their_token);
