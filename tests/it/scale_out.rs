//! Two `serve` instances on one PostgreSQL, signals for the same accounts arriving at both (as
//! behind a load balancer): every signal is executed exactly once, the user's quota holds across
//! the two, and so does a lockout. SQLite has one instance per file by design (`ServiceLock`).

use std::collections::HashMap;

use aggregates::AccountEvent;
use ledgerhook::ledger::decode;

use crate::support::alerts::Alert;
use crate::support::answer::Answer;
use crate::support::eventually;
use crate::support::service::{create_user, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

fn flags(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|flag| flag.to_string()).collect()
}

async fn two_instances(url: &str, options: Options) -> [Service; 2] {
    [
        Service::start(url, options.clone()).await,
        Service::start(url, options).await,
    ]
}

async fn post(service: &Service, user: &User, alert: &Alert) -> Answer {
    Answer::of(
        service
            .client()
            .post(format!(
                "{}/api/webhook?token={}",
                service.base_url, user.webhook_token
            ))
            .body(alert.json()),
    )
    .await
}

/// How many events of each kind every signal of `account` has, by signal id.
async fn events_per_signal(
    test: &TestStore,
    account: &str,
) -> HashMap<String, HashMap<&'static str, usize>> {
    let store = test.open().await;
    let upcasters = aggregates::upcasters();
    let mut per_signal: HashMap<String, HashMap<&'static str, usize>> = HashMap::new();
    for stored in store
        .events()
        .load_account(account)
        .await
        .expect("the account loads")
    {
        let recorded = decode(&stored, &upcasters).expect("every event decodes");
        let kind = match &recorded.event {
            AccountEvent::SignalReceived { .. } => "received",
            AccountEvent::OrderSubmitted { .. } => "submitted",
            AccountEvent::OrderFilled { .. } => "filled",
            _ => continue,
        };
        if let Some(signal_id) = recorded.event.signal_id() {
            *per_signal
                .entry(signal_id.to_string())
                .or_default()
                .entry(kind)
                .or_default() += 1;
        }
    }
    per_signal
}

/// Each of four users sends 12 signals, half to each instance, both at once: every one answered
/// `accepted` is recorded once, submitted to the venue once and filled once, whichever instance
/// took it and whichever runs the saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_for_the_same_accounts_at_two_instances_execute_exactly_once() {
    let test = TestStore::new(Backend::Postgres).await;
    let mut users = Vec::new();
    for n in 0..4 {
        users.push(create_user(&test.url, &format!("trader-{n}")).await);
    }
    let options = Options {
        args: flags(&["--rate-limit-requests", "1000"]),
        ..Options::default()
    };
    let instances = two_instances(&test.url, options).await;
    let mut sends = tokio::task::JoinSet::new();
    for (u, user) in users.iter().enumerate() {
        for (i, service) in instances.iter().enumerate() {
            let (user, http, base_url) = (
                user.clone(),
                service.client().clone(),
                service.base_url.clone(),
            );
            sends.spawn(async move {
                let mut accepted = Vec::new();
                for n in 0..6 {
                    let side = if n % 2 == 0 { "buy" } else { "sell" };
                    let alert = Alert::new(format!("u{u}-i{i}-{n}")).side(side);
                    let answer = Answer::of(
                        http.post(format!(
                            "{base_url}/api/webhook?token={}",
                            user.webhook_token
                        ))
                        .body(alert.json()),
                    )
                    .await;
                    assert_eq!(answer.status, 200, "{}", answer.json);
                    assert_eq!(answer.json["status"], "accepted", "{}", answer.json);
                    let signal_id = answer.json["signal_id"].as_str().expect("a signal id");
                    accepted.push((user.user_id.clone(), signal_id.to_owned()));
                }
                accepted
            });
        }
    }
    let mut accepted: Vec<(String, String)> = Vec::new();
    while let Some(sent) = sends.join_next().await {
        accepted.extend(sent.expect("the sender finished"));
    }
    assert_eq!(accepted.len(), 48);

    for user in &users {
        let mine: Vec<&String> = accepted
            .iter()
            .filter(|(owner, _)| *owner == user.user_id)
            .map(|(_, signal_id)| signal_id)
            .collect();
        let per_signal = eventually("every accepted signal filled", || async {
            let per_signal = events_per_signal(&test, &user.user_id).await;
            let filled = mine.iter().all(|id| {
                per_signal
                    .get(*id)
                    .is_some_and(|kinds| kinds.contains_key("filled"))
            });
            filled.then_some(per_signal)
        })
        .await;
        assert_eq!(per_signal.len(), 12, "no signal but the accepted ones");
        for signal_id in &mine {
            let kinds = &per_signal[*signal_id];
            for kind in ["received", "submitted", "filled"] {
                assert_eq!(kinds.get(kind), Some(&1), "{signal_id}: {kinds:?}");
            }
        }
    }
    let (verified, report) = crate::audit::audit_verify(&test.url, false).await;
    assert!(verified, "{report}");
    for service in instances {
        service.stop().await;
    }
}

/// A quota of 6 an hour, 12 alerts alternating between the instances: exactly 6 are recorded
/// and the other 6 are refused with Retry-After, though each instance alone saw only 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_quota_holds_across_instances() {
    let test = TestStore::new(Backend::Postgres).await;
    let user = create_user(&test.url, "quota").await;
    let options = Options {
        no_execution: true,
        args: flags(&[
            "--rate-limit-requests",
            "6",
            "--rate-limit-window-seconds",
            "3600",
        ]),
        ..Options::default()
    };
    let instances = two_instances(&test.url, options).await;
    let mut answers = Vec::new();
    for n in 0..12 {
        let answer = post(&instances[n % 2], &user, &Alert::new(format!("q-{n}"))).await;
        answers.push(answer);
    }
    let accepted = answers.iter().filter(|answer| answer.status == 200).count();
    assert_eq!(accepted, 6, "{:?}", statuses(&answers));
    for refused in answers.iter().filter(|answer| answer.status != 200) {
        assert_eq!(refused.status, 429, "{}", refused.json);
        assert_eq!(refused.json["code"], "RATE_LIMITED", "{}", refused.json);
        let retry_after = refused.retry_after_seconds().expect("a Retry-After header");
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
    }
    let recorded = events_per_signal(&test, &user.user_id).await;
    assert_eq!(
        recorded.len(),
        6,
        "only the admitted signals are in the ledger"
    );
    for service in instances {
        service.stop().await;
    }
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|answer| answer.status).collect()
}

/// The `heard` count of failures shared by the other instance, from `/metrics`.
async fn failures_heard(service: &Service) -> u64 {
    let metrics = service.metrics().await;
    metrics
        .lines()
        .find(|line| line.starts_with("ledgerhook_peer_auth_failures_total{direction=\"heard\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

async fn guess(service: &Service, victim: &User) -> (u16, serde_json::Value) {
    // The victim's public webhook uuid with a wrong secret: a stranger's guess.
    let body = Alert::new("guess").secret(&"0".repeat(64)).json();
    service.post_two_factor(&victim.webhook_uuid, &body).await
}

/// Five wrong secrets lock (address, credential) out. Three at one instance and two at the other
/// lock it at both; the owner's right secret still goes through at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_holds_across_instances_and_never_locks_the_owner_out() {
    let test = TestStore::new(Backend::Postgres).await;
    let victim = create_user(&test.url, "victim").await;
    let [first, second] = two_instances(&test.url, Options::ingest_only()).await;
    for _ in 0..3 {
        assert_eq!(guess(&first, &victim).await.0, 401);
    }
    eventually(
        "the second instance to hear the first's failures",
        || async { (failures_heard(&second).await >= 3).then_some(()) },
    )
    .await;
    assert_eq!(guess(&second, &victim).await.0, 401);
    // The fifth failure in all locks (it is still answered 401); the next is refused.
    assert_eq!(guess(&second, &victim).await.0, 401);
    let (status, locked) = guess(&second, &victim).await;
    assert_eq!(status, 429, "{locked}");
    assert_eq!(locked["code"], "LOCKED_OUT");
    eventually(
        "the first instance to hear the second's failures",
        || async { (failures_heard(&first).await >= 2).then_some(()) },
    )
    .await;
    let (status, locked) = guess(&first, &victim).await;
    assert_eq!(status, 429, "{locked}");
    assert_eq!(locked["code"], "LOCKED_OUT");

    for (n, service) in [&first, &second].into_iter().enumerate() {
        let body = Alert::new(format!("owner-{n}"))
            .secret(&victim.webhook_secret)
            .json();
        let (status, answer) = service.post_two_factor(&victim.webhook_uuid, &body).await;
        assert_eq!(status, 200, "the owner is never locked out: {answer}");
    }
    first.stop().await;
    second.stop().await;
}

/// Every append another instance rolls back (each conflict is one) leaves a hole in the global
/// order. `audit verify` walks the log across holes: a hole is not the log's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_walks_across_holes_left_by_rolled_back_appends() {
    use sqlx::Connection;

    let test = TestStore::new(Backend::Postgres).await;
    let user = create_user(&test.url, "holes").await;
    let service = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    let accounts = [user.user_id.clone()];
    for n in 0..3 {
        assert_eq!(
            post(&service, &user, &Alert::new(format!("before-{n}")))
                .await
                .status,
            200
        );
    }
    crate::audit::wait_until_settled(&store, &accounts).await;
    // What a rolled-back append leaves: positions taken and never used.
    let mut connection = sqlx::PgConnection::connect(&test.url)
        .await
        .expect("the test database accepts connections");
    sqlx::query("SELECT nextval('events_global_seq') FROM generate_series(1, 3)")
        .execute(&mut connection)
        .await
        .expect("positions taken");
    for n in 0..3 {
        assert_eq!(
            post(&service, &user, &Alert::new(format!("after-{n}")))
                .await
                .status,
            200
        );
    }
    let logged = crate::audit::wait_until_settled(&store, &accounts).await;
    let (verified, report) = crate::audit::audit_verify(&test.url, false).await;
    assert!(verified, "{report}");
    assert_eq!(report["rows"], logged.len(), "{report}");
    service.stop().await;
}
