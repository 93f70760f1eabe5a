//! No secret reaches a log line, an answer or the ledger: a full run at `debug` — both webhook
//! schemes, the config endpoint, every kind of failure, a rotation, execution — and then every
//! secret the run used is searched for in everything the service wrote.

use serde_json::Value;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::service::{create_user, rotate_webhook, Options, Service};
use crate::support::stores::{Backend, TestStore};

/// The credential with its last hex digit changed: as close as a wrong guess gets.
fn near_miss(credential: &str) -> String {
    let (head, last) = credential.split_at(credential.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

async fn no_secret_reaches_a_log_line_an_answer_or_the_ledger(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_file = dir.path().join("service.log");
    let service = Service::start(
        &test.url,
        Options {
            log_file: Some(log_file.clone()),
            ..Options::default()
        },
    )
    .await;
    let mut answers: Vec<Value> = Vec::new();

    let (status, body) = service
        .post_signal(
            &alice.webhook_token,
            &Alert::new("s-1").symbol("BTCUSDT.P").json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    answers.push(body);
    let (status, body) = service
        .post_two_factor(
            &alice.webhook_uuid,
            &Alert::new("s-2")
                .symbol("BTCUSDT.P")
                .secret(&alice.webhook_secret)
                .json(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    answers.push(body);
    let (status, body) = service
        .send(
            service
                .client()
                .get(format!("{}/api/config/webhook", service.base_url))
                .bearer_auth(&alice.api_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The config answer is the one place the trader's own credentials may appear; keep it out of
    // the search of error answers below.
    let near_misses = [
        near_miss(&alice.webhook_token),
        near_miss(&alice.webhook_secret),
        near_miss(&alice.api_key),
    ];
    for (index, wrong) in near_misses.iter().enumerate() {
        let (status, body) = service
            .post_signal(wrong, &Alert::new("s-3").symbol("BTCUSDT.P").json())
            .await;
        assert_eq!(status, 401);
        answers.push(body);
        let (status, body) = service
            .post_two_factor(
                &alice.webhook_uuid,
                &Alert::new(format!("s-4-{index}"))
                    .symbol("BTCUSDT.P")
                    .secret(wrong)
                    .json(),
            )
            .await;
        assert_eq!(status, 401);
        answers.push(body);
        let (_, body) = service
            .send(
                service
                    .client()
                    .get(format!("{}/api/config/webhook", service.base_url))
                    .bearer_auth(wrong),
            )
            .await;
        answers.push(body);
    }
    // A bad payload with the right credentials: the error names the field, never echoes the secret.
    let (status, body) = service
        .post_two_factor(
            &alice.webhook_uuid,
            &format!(
                r#"{{"symbol":"BTCUSDT.P","side":"hold","size":"1","secret":"{}"}}"#,
                alice.webhook_secret
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    answers.push(body);
    let rotated = rotate_webhook(&test.url, &alice.user_id).await;
    eventually("the rotated token to work", || async {
        let (status, _) = service
            .post_signal(
                &rotated.webhook_token,
                &Alert::new("s-5").symbol("BTCUSDT.P").json(),
            )
            .await;
        (status == 200).then_some(())
    })
    .await;
    let store = test.open().await;
    eventually("the signals to be executed", || async {
        let events = store.events().load_account(&alice.user_id).await.ok()?;
        let notified = events
            .iter()
            .filter(|event| event.event_type == "NotificationSent")
            .count();
        (notified >= 3).then_some(())
    })
    .await;
    service.stop().await;

    let log = std::fs::read_to_string(&log_file).expect("the log is readable");
    // The search means something only if the requests themselves were logged.
    assert!(
        log.contains("/api/webhook")
            && log.contains("/webhooks/")
            && log.contains("signal recorded"),
        "the run logged its requests at debug:\n{log}"
    );
    let ledger: String = store
        .events()
        .load_account(&alice.user_id)
        .await
        .expect("loads")
        .iter()
        .map(|event| format!("{} {}\n", event.payload, event.metadata))
        .collect();
    let answers: String = answers.iter().map(|body| format!("{body}\n")).collect();
    let secrets = [
        ("webhook token", alice.webhook_token.as_str()),
        ("webhook secret", alice.webhook_secret.as_str()),
        ("api key", alice.api_key.as_str()),
        ("rotated token", rotated.webhook_token.as_str()),
        ("rotated secret", rotated.webhook_secret.as_str()),
        ("wrong token", near_misses[0].as_str()),
        ("wrong secret", near_misses[1].as_str()),
        ("wrong api key", near_misses[2].as_str()),
    ];
    let mut found = Vec::new();
    for (what, secret) in secrets {
        for (place, text) in [("log", &log), ("ledger", &ledger), ("answers", &answers)] {
            if text.contains(secret) {
                found.push(format!("{what} in the {place}"));
            }
        }
    }
    println!(
        "secrets ({backend:?}): {} secrets searched in {} log lines, the ledger and {} answers",
        secrets.len(),
        log.lines().count(),
        answers.lines().count()
    );
    assert!(found.is_empty(), "secrets leaked: {found:?}");
}
on_both_stores!(no_secret_reaches_a_log_line_an_answer_or_the_ledger);
