//! The vault on both stores: the webhook URL shown again to its owner only, every reveal in the
//! owner's stream, no plaintext in the database, the ledger, the log or an error, `keys rotate`
//! beside a running service, and clear errors for a missing key version or a damaged value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinSet;

use aggregates::SERVICE_OWNER_ID;
use ledgerhook::app::start_ledger;
use ledgerhook::store::{SealedSecret, Store};
use ledgerhook::users::create_user as create_user_in_process;
use ledgerhook::vault::{generate_line, Access, Field, Keyring, Vault, VaultError};

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{cli_output, create_user, rotate_webhook, Options, Service, BINARY};
use crate::support::stores::{Backend, TestStore};
use crate::support::vault::{key_file, write_key_file, write_private, KEY_FILE_ENV};

/// `GET /api/config/webhook` with `api_key`: (status, Cache-Control, body).
async fn config(service: &Service, api_key: &str) -> (u16, String, Value) {
    let response = service
        .client()
        .get(format!("{}/api/config/webhook", service.base_url))
        .bearer_auth(api_key)
        .send()
        .await
        .expect("the service answers");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, cache, response.json().await.unwrap_or(Value::Null))
}

fn text(body: &Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {body}"))
        .to_owned()
}

/// `CredentialAccessed` payloads of one stream, in order.
async fn accesses(store: &Store, owner: &str) -> Vec<Value> {
    let events = if owner == SERVICE_OWNER_ID {
        store.events().load_service_credentials_after(0).await
    } else {
        store.events().load_account(owner).await
    };
    events
        .expect("the stream loads")
        .into_iter()
        .filter(|event| event.event_type == "CredentialAccessed")
        .map(|event| match event.payload {
            Value::Object(mut outer) if outer.len() == 1 => outer
                .remove("CredentialAccessed")
                .expect("the payload is the event"),
            other => panic!("unexpected payload {other}"),
        })
        .collect()
}

/// `ledgerhook credentials set OWNER FIELD` with `value` on standard input.
async fn credentials_set(
    url: &str,
    keys: &Path,
    owner: &str,
    field: &str,
    value: &str,
) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args(["credentials", "set", owner, field])
        .env("DATABASE_URL", url)
        .env(KEY_FILE_ENV, keys)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ledgerhook binary runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A command refusing its arguments exits before reading: the write may meet a closed pipe,
    // and the refusal is what the caller checks.
    let _ = stdin.write_all(value.as_bytes()).await;
    drop(stdin);
    child
        .wait_with_output()
        .await
        .expect("the command finishes")
}

async fn the_webhook_url_is_shown_again_to_its_owner_only(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    // The whole service: the saga, the audit writer and the read models meet the new events too.
    let service = Service::start(&test.url, Options::default()).await;

    let (status, cache, body) = config(&service, &alice.api_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache, "no-store");
    let webhook_url = text(&body, "/webhook_url");
    assert_eq!(
        webhook_url,
        format!(
            "{}/api/webhook?token={}",
            service.base_url, alice.webhook_token
        )
    );
    assert_eq!(
        text(&body, "/two_factor_url"),
        format!("{}/webhooks/{}", service.base_url, alice.webhook_uuid)
    );
    assert_eq!(
        text(&body, "/credentials/webhook_secret"),
        alice.webhook_secret
    );
    assert!(!body.to_string().contains("<webhook_token>"), "{body}");
    // The URL as shown works: TradingView posting to it is accepted.
    let (status, answer) = service
        .send(
            service
                .client()
                .post(&webhook_url)
                .body(Alert::new("shown-1").json()),
        )
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    // So does the two-factor template, secret included, posted to the two-factor URL.
    let template = text(&body, "/tradingview_setup/two_factor/message_template");
    let filled = template
        .replace("{{ticker}}", "BTCUSDT.P")
        .replace("{{strategy.order.action}}", "buy")
        .replace("{{strategy.order.contracts}}", "0.001")
        .replace("{{close}}", "65000")
        .replace("{{strategy.order.id}}", "shown-2")
        .replace("{{strategy.position_size}}", "0.001")
        .replace(
            "{{timenow}}",
            &Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    let (status, answer) = service
        .send(
            service
                .client()
                .post(text(&body, "/two_factor_url"))
                .body(filled),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );

    // Bob's key shows Bob's credentials, and nothing of Alice's.
    let (status, _, bob_body) = config(&service, &bob.api_key).await;
    assert_eq!(status, 200);
    assert!(text(&bob_body, "/webhook_url").ends_with(&bob.webhook_token));
    let shown = bob_body.to_string();
    assert!(!shown.contains(&alice.webhook_token) && !shown.contains(&alice.webhook_secret));

    // Each reveal is in the owner's own stream: field, purpose, who, key version; no value.
    let store = test.open().await;
    let alice_reads = accesses(&store, &alice.user_id).await;
    let fields: Vec<&str> = alice_reads
        .iter()
        .map(|access| access["field"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(fields, ["webhook_token", "webhook_secret"]);
    for access in &alice_reads {
        assert_eq!(access["purpose"], "show webhook url");
        assert_eq!(access["by"], alice.user_id.as_str());
        assert_eq!(access["key_version"], 1);
        let recorded = access.to_string();
        assert!(!recorded.contains(&alice.webhook_token));
        assert!(!recorded.contains(&alice.webhook_secret));
    }
    assert_eq!(accesses(&store, &bob.user_id).await.len(), 2);
    // Compliance sees them in the trail (the trader too, in their own), and the chain verifies.
    crate::support::eventually("the reveals in Alice's own audit trail", || async {
        let (status, trail) = service
            .send(
                service
                    .client()
                    .get(format!(
                        "{}/api/audit?event_type=CredentialAccessed",
                        service.base_url
                    ))
                    .bearer_auth(&alice.api_key),
            )
            .await;
        let rows = trail["rows"].as_array()?.len();
        (status == 200 && rows == 2).then_some(())
    })
    .await;
    let (verified, report) = crate::audit::audit_verify(&test.url, false).await;
    assert!(verified, "{report}");

    // After a rotation the new URL is shown, and the old one no longer works.
    let rotated = rotate_webhook(&test.url, &alice.user_id).await;
    let (_, _, body) = config(&service, &alice.api_key).await;
    assert!(text(&body, "/webhook_url").ends_with(&rotated.webhook_token));
    assert_eq!(
        text(&body, "/credentials/webhook_secret"),
        rotated.webhook_secret
    );
    crate::support::eventually("the old URL to stop working", || async {
        let (status, _) = service
            .send(
                service
                    .client()
                    .post(&webhook_url)
                    .body(Alert::new("old").json()),
            )
            .await;
        (status == 401).then_some(())
    })
    .await;
    service.stop().await;
    // The read models ignore the reveals: a rebuild from the log equals the live rows.
    let rebuilt = crate::support::service::cli(&test.url, &["projections", "rebuild"]).await;
    assert_eq!(
        rebuilt.matches("equals the live rows").count(),
        4,
        "{rebuilt}"
    );
}
on_both_stores!(the_webhook_url_is_shown_again_to_its_owner_only);

/// Credentials issued before the vault existed cannot be shown: the answer says to rotate them.
async fn a_user_from_before_the_vault_is_told_to_rotate(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "legacy").await;
    let store = test.open().await;
    forget_vault_rows(&store, &user.user_id).await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let (status, _, body) = config(&service, &user.api_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["webhook_url"], Value::Null);
    assert_eq!(body["two_factor_url"], Value::Null);
    assert!(
        text(&body, "/action_required").contains("users rotate-webhook"),
        "{body}"
    );
    assert!(
        accesses(&store, &user.user_id).await.is_empty(),
        "nothing was decrypted"
    );
    let rotated = rotate_webhook(&test.url, &user.user_id).await;
    let (_, _, body) = config(&service, &user.api_key).await;
    assert!(text(&body, "/webhook_url").ends_with(&rotated.webhook_token));
    assert_eq!(body.get("action_required"), None);
    service.stop().await;
}
on_both_stores!(a_user_from_before_the_vault_is_told_to_rotate);

/// Raw SQL on purpose: a row the vault's own methods never remove.
async fn forget_vault_rows(store: &Store, owner: &str) {
    let sql = "DELETE FROM vault_secrets WHERE owner_id = $1";
    match store {
        Store::Postgres(pg) => sqlx::query(sql)
            .bind(owner)
            .execute(pg.pool())
            .await
            .map(drop),
        Store::Sqlite(lite) => sqlx::query(sql)
            .bind(owner)
            .execute(lite.pool())
            .await
            .map(drop),
    }
    .expect("the rows are deleted");
}

/// Every text the database holds: each table's rows as text (PostgreSQL), or the bytes of every
/// file of the embedded store, its WAL included (SQLite).
async fn database_text(store: &Store, url: &str) -> String {
    match store {
        Store::Postgres(pg) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                  WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(pg.pool())
            .await
            .expect("the tables are listed");
            assert!(tables.iter().any(|table| table == "vault_secrets"));
            let mut all = String::new();
            for table in tables {
                let rows: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT string_agg(t::text, E'\\n') FROM \"{table}\" t"
                ))
                .fetch_one(pg.pool())
                .await
                .expect("the table reads");
                all.push_str(&rows.unwrap_or_default());
            }
            all
        }
        Store::Sqlite(_) => {
            let path = url.strip_prefix("sqlite://").expect("a SQLite URL");
            let dir = Path::new(path).parent().expect("the database's directory");
            let mut all = String::new();
            for entry in std::fs::read_dir(dir).expect("the directory lists") {
                let bytes = std::fs::read(entry.expect("an entry").path()).unwrap_or_default();
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
            assert!(all.contains("vault_secrets"));
            all
        }
    }
}

fn mnemonic(marker: &str) -> String {
    (0..24)
        .map(|n| format!("{marker}word{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn no_plaintext_reaches_the_database_the_ledger_the_log_or_an_error(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_file = dir.path().join("service.log");
    let service = Service::start(
        &test.url,
        Options {
            log_file: Some(log_file.clone()),
            no_execution: true,
            ..Options::default()
        },
    )
    .await;
    let words = mnemonic("zq7");
    let chat_id = "-100987654321";
    let bot_token = "7771234567:AAzq7BotTokenNeverLogged_x9";
    let keys = key_file();
    let mut outputs = Vec::new();
    for (owner, field, value) in [
        (
            alice.user_id.as_str(),
            "dydx_mnemonic",
            format!("{words}\n"),
        ),
        (
            alice.user_id.as_str(),
            "telegram_chat_id",
            chat_id.to_owned(),
        ),
        (alice.user_id.as_str(), "dydx_subaccount", "3\n".to_owned()),
        (
            SERVICE_OWNER_ID,
            "telegram_bot_token",
            format!("{bot_token}\n"),
        ),
    ] {
        let output = credentials_set(&test.url, keys, owner, field, &value).await;
        assert!(output.status.success(), "{field}: {output:?}");
        outputs.push(output);
    }
    // Refusals name the rule, never the value.
    for (owner, field, value, rule) in [
        (
            alice.user_id.as_str(),
            "dydx_mnemonic",
            mnemonic("zq7")[..60].to_owned(),
            "24 words",
        ),
        (
            alice.user_id.as_str(),
            "dydx_subaccount",
            "128".to_owned(),
            "0 to 127",
        ),
        (
            alice.user_id.as_str(),
            "telegram_chat_id",
            "zq7chat".to_owned(),
            "integer",
        ),
        (
            alice.user_id.as_str(),
            "telegram_bot_token",
            bot_token.to_owned(),
            "service",
        ),
        (SERVICE_OWNER_ID, "dydx_mnemonic", words.clone(), "a user"),
        (
            "no-such-user",
            "telegram_chat_id",
            chat_id.to_owned(),
            "no user",
        ),
        (
            alice.user_id.as_str(),
            "telegram_chat_id",
            "\n".to_owned(),
            "empty",
        ),
        (
            alice.user_id.as_str(),
            "password",
            "zq7pw".to_owned(),
            "unknown vault field",
        ),
    ] {
        let output = credentials_set(&test.url, keys, owner, field, &value).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{field} {rule}: accepted");
        assert!(stderr.contains(rule), "{field}: {stderr}");
        outputs.push(output);
    }
    // The values are there, for their owner's purposes: each reveal recorded.
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(store.clone(), &mut tasks);
    let vault = crate::support::vault::vault(&ledger);
    let read = |owner: &str, field| {
        let vault = vault.clone();
        let owner = owner.to_owned();
        async move {
            vault
                .reveal(&owner, field, Access::new("place order", "execution"))
                .await
                .expect("the value opens")
                .map(|value| value.as_str().to_owned())
        }
    };
    assert_eq!(
        read(&alice.user_id, Field::DydxMnemonic).await,
        Some(words.clone())
    );
    assert_eq!(
        read(&alice.user_id, Field::TelegramChatId).await.as_deref(),
        Some(chat_id)
    );
    assert_eq!(
        read(&alice.user_id, Field::DydxSubaccount).await.as_deref(),
        Some("3")
    );
    assert_eq!(
        read(SERVICE_OWNER_ID, Field::TelegramBotToken)
            .await
            .as_deref(),
        Some(bot_token)
    );
    let service_reads = accesses(&store, SERVICE_OWNER_ID).await;
    assert_eq!(service_reads.len(), 1);
    assert_eq!(service_reads[0]["field"], "telegram_bot_token");
    assert_eq!(service_reads[0]["by"], "execution");
    // The service reveals the webhook credentials; a wrong key gets a plain 401.
    let (status, _, _) = config(&service, &alice.api_key).await;
    assert_eq!(status, 200);
    let (status, _, refused) = config(&service, &format!("{}0", alice.api_key)).await;
    assert_eq!(status, 401);
    service.stop().await;

    let database = database_text(&store, &test.url).await;
    let ledger_text: String = [
        store.events().load_account(&alice.user_id).await,
        store.events().load_service_credentials_after(0).await,
    ]
    .into_iter()
    .flat_map(|events| events.expect("the stream loads"))
    .map(|event| format!("{} {}\n", event.payload, event.metadata))
    .collect();
    assert!(ledger_text.contains("CredentialAccessed") || ledger_text.contains("dydx_mnemonic"));
    let log = std::fs::read_to_string(&log_file).expect("the log is readable");
    assert!(
        log.contains("/api/config/webhook"),
        "the run logged its requests:\n{log}"
    );
    let cli_text: String = outputs
        .iter()
        .map(|output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .collect();
    let errors = refused.to_string();
    let secrets = [
        ("mnemonic", "zq7word"),
        ("chat id", chat_id),
        ("bot token", bot_token),
        ("webhook token", alice.webhook_token.as_str()),
        ("webhook secret", alice.webhook_secret.as_str()),
    ];
    let mut found = Vec::new();
    for (what, secret) in secrets {
        for (place, text) in [
            ("database", &database),
            ("ledger", &ledger_text),
            ("log", &log),
            ("CLI output", &cli_text),
            ("error body", &errors),
        ] {
            if text.contains(secret) {
                found.push(format!("{what} in the {place}"));
            }
        }
    }
    assert!(found.is_empty(), "plaintext leaked: {found:?}");
}
on_both_stores!(no_plaintext_reaches_the_database_the_ledger_the_log_or_an_error);

/// A key file holding `versions`' lines of `from` plus fresh keys for `fresh`.
fn key_file_with(path: &Path, from: &Path, keep: &[u32], fresh: &[u32]) {
    let existing = std::fs::read_to_string(from).expect("the key file reads");
    let mut text: String = existing
        .lines()
        .filter(|line| {
            line.split_once(':')
                .and_then(|(version, _)| version.parse::<u32>().ok())
                .is_some_and(|version| keep.contains(&version))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    for version in fresh {
        text.push_str(&format!("{}\n", generate_line(*version).as_str()));
    }
    write_private(path, &text);
}

async fn keys_rotate_moves_every_value_while_the_service_runs(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let old_keys = dir.path().join("old.keys");
    let both_keys = dir.path().join("both.keys");
    let new_keys = dir.path().join("new.keys");
    write_key_file(&old_keys, &[1]);
    key_file_with(&both_keys, &old_keys, &[1], &[2]);
    key_file_with(&new_keys, &both_keys, &[2], &[]);
    let load = |path: &PathBuf| Arc::new(Keyring::load(path).expect("the key file loads"));

    // 20 users with five sealed values each, and the bot token: 101 rows under key version 1.
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(store.clone(), &mut tasks);
    let old_vault = Vault::with_ledger(ledger.clone(), load(&old_keys));
    let mut users = Vec::new();
    let mut expected: HashMap<(String, Field), String> = HashMap::new();
    for n in 0..20 {
        let issued =
            create_user_in_process(&ledger, &old_vault, &format!("u{n}"), "test", Utc::now())
                .await
                .expect("a user");
        let owner = issued.user_id.clone();
        let values = [
            (Field::DydxMnemonic, mnemonic(&format!("u{n}"))),
            (Field::DydxSubaccount, (n % 128).to_string()),
            (Field::TelegramChatId, format!("-100{n:09}")),
        ];
        for (field, value) in values {
            old_vault.seal(&owner, field, &value).await.expect("sealed");
            expected.insert((owner.clone(), field), value);
        }
        expected.insert(
            (owner.clone(), Field::WebhookToken),
            issued.webhook.webhook_token.clone(),
        );
        expected.insert(
            (owner.clone(), Field::WebhookSecret),
            issued.webhook.webhook_secret.clone(),
        );
        users.push(issued);
    }
    old_vault
        .seal(SERVICE_OWNER_ID, Field::TelegramBotToken, "42:bot")
        .await
        .expect("sealed");
    expected.insert(
        (SERVICE_OWNER_ID.to_owned(), Field::TelegramBotToken),
        "42:bot".to_owned(),
    );
    assert_eq!(
        store.vault().count_by_version().await.expect("counts"),
        vec![(1, 101)]
    );

    // The service knows both keys (as it would after a restart with the new line appended).
    let both = both_keys.to_string_lossy().into_owned();
    let service = Service::start(
        &test.url,
        Options {
            no_execution: true,
            args: vec!["--vault-key-file".into(), both.clone()],
            ..Options::default()
        },
    )
    .await;
    let api_key = users[0].api_key.clone();
    let both_vault = Vault::with_ledger(ledger.clone(), load(&both_keys));
    let resealed = "-100999999999".to_owned();
    let rotate_args = ["keys", "rotate", "--vault-key-file", both.as_str()];
    let rotating = cli_output(&test.url, &rotate_args);
    let meanwhile = async {
        // The service reveals and the vault seals while the rotation runs.
        both_vault
            .seal(&users[1].user_id, Field::TelegramChatId, &resealed)
            .await
            .expect("sealed meanwhile");
        for _ in 0..5 {
            let (status, _, body) = config(&service, &api_key).await;
            assert_eq!(status, 200, "{body}");
            assert!(text(&body, "/webhook_url").ends_with(&users[0].webhook.webhook_token));
        }
    };
    let (rotated, ()) = tokio::join!(rotating, meanwhile);
    expected.insert((users[1].user_id.clone(), Field::TelegramChatId), resealed);
    let stdout = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let moved: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("keys rotate prints how many moved: {stdout}"));
    assert!((100..=101).contains(&moved), "{stdout}");
    assert!(stdout.contains("older keys can be removed"), "{stdout}");
    assert_eq!(
        store.vault().count_by_version().await.expect("counts"),
        vec![(2, 101)]
    );

    // Version 1 can go: everything opens with the new key alone.
    let new_vault = Vault::with_ledger(ledger.clone(), load(&new_keys));
    for ((owner, field), value) in &expected {
        let revealed = new_vault
            .reveal(owner, *field, Access::new("verify rotation", "test"))
            .await
            .expect("the value opens under the new key")
            .expect("the value is there");
        assert_eq!(revealed.as_str(), value, "{owner} {field}");
    }
    // The running service still shows a working URL.
    let (status, _, body) = config(&service, &api_key).await;
    assert_eq!(status, 200);
    let (status, answer) = service
        .send(
            service
                .client()
                .post(text(&body, "/webhook_url"))
                .body(Alert::new("after-rotation").json()),
        )
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    // Every reveal is in its owner's stream: the service's five and this test's two for user 0.
    let reads = accesses(&store, &users[0].user_id).await;
    assert_eq!(reads.len(), 5 * 2 + 2 + 5, "{reads:?}");
    assert!(reads.iter().any(|read| read["key_version"] == 2));
    assert_eq!(accesses(&store, SERVICE_OWNER_ID).await.len(), 1);
    service.stop().await;
}
on_both_stores!(keys_rotate_moves_every_value_while_the_service_runs);

/// A key file without the value's version, a truncated or moved ciphertext: each a clear error,
/// never a panic, and over HTTP a 500 JSON error without the value.
async fn a_missing_key_or_a_damaged_value_is_a_clear_error(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    let store = test.open().await;
    let mut tasks = JoinSet::new();
    let ledger = start_ledger(store.clone(), &mut tasks);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let other_keys = dir.path().join("other.keys");
    write_key_file(&other_keys, &[2]);
    let other = Vault::with_ledger(
        ledger.clone(),
        Arc::new(Keyring::load(&other_keys).expect("loads")),
    );
    let access = || Access::new("show webhook url", "test");
    match other
        .reveal(&alice.user_id, Field::WebhookToken, access())
        .await
    {
        Err(error @ VaultError::KeyVersionAbsent { version: 1, .. }) => {
            let message = error.to_string();
            assert!(message.contains("key version 1"), "{message}");
        }
        unexpected => panic!("expected a missing key version, got {unexpected:?}"),
    }
    let vault = crate::support::vault::vault(&ledger);
    let table = store.vault();
    let alices = table
        .get(&alice.user_id, "webhook_token")
        .await
        .expect("reads")
        .expect("alice's token is stored");
    // Alice's ciphertext under Bob's name does not open as Bob's.
    table
        .put(&SealedSecret {
            owner_id: bob.user_id.clone(),
            ..alices.clone()
        })
        .await
        .expect("written");
    assert!(matches!(
        vault
            .reveal(&bob.user_id, Field::WebhookToken, access())
            .await,
        Err(VaultError::Unopenable { .. })
    ));
    // Nor as another field of Alice's.
    table
        .put(&SealedSecret {
            field: "webhook_secret".into(),
            ..alices.clone()
        })
        .await
        .expect("written");
    assert!(matches!(
        vault
            .reveal(&alice.user_id, Field::WebhookSecret, access())
            .await,
        Err(VaultError::Unopenable { .. })
    ));
    // A truncated ciphertext, over HTTP: a 500 JSON error, nothing of the value.
    table
        .put(&SealedSecret {
            ciphertext: alices.ciphertext[..5].to_vec(),
            ..alices.clone()
        })
        .await
        .expect("written");
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let (status, _, body) = config(&service, &alice.api_key).await;
    assert_eq!(status, 500, "{body}");
    for field in ["error", "code", "timestamp"] {
        assert!(body.get(field).is_some(), "{body}");
    }
    assert!(!body.to_string().contains(&alice.webhook_token));
    // Bob's row holds Alice's ciphertext: refused too, and the service stays up.
    let (status, _, _) = config(&service, &bob.api_key).await;
    assert_eq!(status, 500);
    let health = service
        .client()
        .get(format!("{}/healthz", service.base_url))
        .send()
        .await
        .expect("the service answers");
    assert!(health.status().is_success());
    service.stop().await;
}
on_both_stores!(a_missing_key_or_a_damaged_value_is_a_clear_error);

/// `serve` without a key file (but for the demo) or with a bad one refuses to start, saying how
/// to fix it and never quoting a key.
async fn serve_refuses_to_start_without_usable_keys(backend: Backend) {
    let test = TestStore::new(backend).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let short = dir.path().join("short.keys");
    let short_key = "c2hvcnRrZXlzaG9ydGtleQ==";
    write_private(&short, &format!("1:{short_key}\n"));
    let duplicate = dir.path().join("duplicate.keys");
    let line = generate_line(1);
    write_private(
        &duplicate,
        &format!("{}\n{}\n", line.as_str(), line.as_str()),
    );
    let missing = dir.path().join("missing.keys");
    let cases: [(Option<&Path>, &str); 4] = [
        (None, "--vault-key-file"),
        (Some(&short), "exactly 32 bytes"),
        (Some(&duplicate), "appears twice"),
        (Some(&missing), "cannot be read"),
    ];
    for (keys, expected) in cases {
        let mut command = Command::new(BINARY);
        command
            .arg("serve")
            .env("DATABASE_URL", &test.url)
            .env("LEDGERHOOK_LISTEN", "127.0.0.1:0")
            .env("LEDGERHOOK_NO_DEMO", "true")
            .env("LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN", "true")
            .env("RUST_LOG", "warn")
            .env_remove(KEY_FILE_ENV)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(keys) = keys {
            command.env(KEY_FILE_ENV, keys);
        }
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("serve gives up")
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{expected}: served");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains(short_key) && !stderr.contains(line.as_str()));
    }
}
on_both_stores!(serve_refuses_to_start_without_usable_keys);

/// `keys generate` prints a line the key file accepts, one version above its highest.
#[tokio::test]
async fn keys_generate_prints_the_next_version() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = dir.path().join("vault.keys");
    write_key_file(&keys, &[1, 3]);
    let output = Command::new(BINARY)
        .args(["keys", "generate", "--vault-key-file"])
        .arg(&keys)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(line.starts_with("4:"), "{line}");
    let existing = std::fs::read_to_string(&keys).expect("reads");
    write_private(&keys, &format!("{existing}{line}"));
    let ring = Keyring::load(&keys).expect("the appended line is valid");
    assert_eq!(ring.versions(), vec![1, 3, 4]);
}

/// `keys rotate` meeting a value it cannot move (sealed under a version the key file lacks, or
/// damaged) stops there with an error naming the owner, the field and why, quoting no value; the
/// value is left as it was, and the service still shows the owner's webhook with the key file
/// that opens it.
async fn keys_rotate_stops_at_a_value_it_cannot_open_and_says_which(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let store = test.open().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let newer_only = dir.path().join("newer-only.keys");
    write_key_file(&newer_only, &[2]);
    let both = dir.path().join("both.keys");
    key_file_with(&both, key_file(), &[1], &[2]);
    let rotate = |keys: &Path| {
        let keys = keys.display().to_string();
        let url = test.url.clone();
        async move { cli_output(&url, &["keys", "rotate", "--vault-key-file", &keys]).await }
    };
    // Alice's first row in the rotation's order (owner, then field).
    let table = store.vault();
    let first = table
        .get(&alice.user_id, "webhook_secret")
        .await
        .expect("reads")
        .expect("alice's secret is stored");

    let missing = rotate(&newer_only).await;

    assert!(!missing.status.success(), "the rotation stops");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!(
            "webhook_secret of {} was sealed under key version 1, which the vault key file does \
             not hold (it has [2])",
            alice.user_id
        )),
        "{stderr}"
    );
    let after = table
        .get(&alice.user_id, "webhook_secret")
        .await
        .expect("reads")
        .expect("still stored");
    assert_eq!(after.key_version, 1, "left as it was");

    // The same value, damaged: the rotation stops there and says so.
    table
        .put(&SealedSecret {
            ciphertext: first.ciphertext[..5].to_vec(),
            ..first.clone()
        })
        .await
        .expect("written");
    let damaged = rotate(&both).await;
    assert!(!damaged.status.success(), "the rotation stops");
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert!(
        stderr.contains(&format!(
            "webhook_secret of {} cannot be opened",
            alice.user_id
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&alice.webhook_secret), "{stderr}");

    // Restored, everything opens under the shared key file: the rotation moved nothing.
    table.put(&first).await.expect("written");
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let (status, _, body) = config(&service, &alice.api_key).await;
    assert_eq!(status, 200, "{body}");
    assert!(text(&body, "/webhook_url").ends_with(&alice.webhook_token));
    service.stop().await;
}
on_both_stores!(keys_rotate_stops_at_a_value_it_cannot_open_and_says_which);

/// A value sealed under the wrong owner is refused before anything is stored, naming whose field
/// it is: a trader's dYdX phrase under the service, the service's bot token under a trader. The
/// vault printed into a log line shows its key versions, never a key.
async fn a_value_under_the_wrong_owner_is_refused_and_not_stored(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let vault = crate::support::vault::sealing_vault(&store);
    let cases = [
        (SERVICE_OWNER_ID, Field::DydxMnemonic, "a user"),
        ("trader-1", Field::TelegramBotToken, "the service"),
    ];
    for (owner, field, expected) in cases {
        let refused = vault.seal(owner, field, "123456:secret-value").await;
        let Err(error @ VaultError::WrongOwner { .. }) = refused else {
            panic!("{field} under {owner}: {refused:?}");
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("secret-value"), "{message}");
        let held = store.vault().fields_of(owner).await.expect("reads");
        assert!(held.is_empty(), "nothing stored for {owner}: {held:?}");
    }
    let printed = format!("{vault:?}");
    assert!(printed.contains("versions: [1]"), "{printed}");
    let key_line = std::fs::read_to_string(key_file()).expect("the key file reads");
    let (_, key) = key_line.trim().split_once(':').expect("version:key");
    assert!(!printed.contains(key), "{printed}");
}
on_both_stores!(a_value_under_the_wrong_owner_is_refused_and_not_stored);

/// A change the settings API must undo (its ledger record failed) puts back exactly the sealed
/// row that was there, or removes the field when there was none; a sealed row printed into a
/// log line shows its size, never its bytes.
async fn an_undone_change_puts_back_exactly_what_was_there(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let vault = crate::support::vault::sealing_vault(&store);
    let owner = "trader-1";
    vault
        .seal(owner, Field::TelegramChatId, "1001")
        .await
        .expect("sealed");
    let before = vault
        .sealed(owner, Field::TelegramChatId)
        .await
        .expect("reads")
        .expect("held");
    vault
        .seal(owner, Field::TelegramChatId, "2002")
        .await
        .expect("sealed");
    assert_ne!(
        vault
            .sealed(owner, Field::TelegramChatId)
            .await
            .expect("reads")
            .as_ref(),
        Some(&before)
    );
    vault
        .restore(owner, Field::TelegramChatId, Some(&before))
        .await
        .expect("restored");
    assert_eq!(
        vault
            .sealed(owner, Field::TelegramChatId)
            .await
            .expect("reads"),
        Some(before.clone())
    );

    vault
        .seal(owner, Field::DydxSubaccount, "3")
        .await
        .expect("sealed");
    vault
        .restore(owner, Field::DydxSubaccount, None)
        .await
        .expect("restored");
    assert!(!vault
        .holds(owner, Field::DydxSubaccount)
        .await
        .expect("reads"));

    let printed = format!("{before:?}");
    assert!(
        printed.contains(&format!("ciphertext_bytes: {}", before.ciphertext.len())),
        "{printed}"
    );
    assert!(!printed.contains("nonce"), "{printed}");
}
on_both_stores!(an_undone_change_puts_back_exactly_what_was_there);
