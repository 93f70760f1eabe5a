//! Losing the primary loses nothing acknowledged (issue 13, target 6): a private primary with a
//! synchronous standby, the service on a multi-host `DATABASE_URL`; under load the primary's
//! postmaster is killed (-9) and the standby promoted. Every signal answered 200 before the kill
//! is in the promoted ledger, nothing is executed twice, and the same service process, never
//! restarted, acknowledges again. Prints `failover reacknowledged_after_ms=…` (from the kill) and
//! `after_promote_ms=…`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use ledgerhook::exchange::PaperBook;
use ledgerhook::store::Store;

use crate::support::alerts::Alert;
use crate::support::replication::{Cluster, ReplicatedPair};
use crate::support::service::{cli_output, create_user, Options, Service};

const DATABASE: &str = "ledger";
const CLIENTS: usize = 4;
/// Acknowledgements before the kill, and after it, before the load stops.
const ACKS_BEFORE_KILL: usize = 40;
const ACKS_AFTER_KILL: usize = 20;
/// Bound on every wait of this test.
const PATIENCE: Duration = Duration::from_secs(45);

/// An alert answered 200 with a signal id.
#[derive(Debug, Clone)]
struct Ack {
    account: String,
    signal_id: String,
    sent: Instant,
    answered: Instant,
}

#[derive(Default)]
struct Load {
    acks: Mutex<Vec<Ack>>,
    /// Answers other than 200, and requests that got no answer, while the primary was away.
    failures: Mutex<BTreeMap<String, usize>>,
    stop: AtomicBool,
}

impl Load {
    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("not poisoned").clone()
    }

    fn acks_sent_after(&self, at: Instant) -> Vec<Ack> {
        let mut acks: Vec<Ack> = self.acks().into_iter().filter(|a| a.sent > at).collect();
        acks.sort_by_key(|ack| ack.answered);
        acks
    }

    fn fail(&self, what: String) {
        *self
            .failures
            .lock()
            .expect("not poisoned")
            .entry(what)
            .or_default() += 1;
    }
}

/// Posts alerts for one account, one after another, buying and selling in turn (the position
/// stays within the risk limits), until told to stop.
async fn post_until_stopped(load: Arc<Load>, base_url: String, account: String, token: String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let side = if n % 2 == 0 { "sell" } else { "buy" };
        let body = Alert::new(format!("{account}-{n}")).side(side).json();
        let sent = Instant::now();
        let response = http
            .post(format!("{base_url}/api/webhook?token={token}"))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                load.fail(format!("no answer ({})", error.without_url()));
                continue;
            }
        };
        let status = response.status().as_u16();
        let json: Value = response.json().await.unwrap_or(Value::Null);
        match (status, json["signal_id"].as_str()) {
            (200, Some(signal_id)) => load.acks.lock().expect("not poisoned").push(Ack {
                account: account.clone(),
                signal_id: signal_id.to_owned(),
                sent,
                answered: Instant::now(),
            }),
            _ => {
                load.fail(format!("{status}"));
                // A 5xx comes back at once while no server is usable: do not spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Polls `check` until it holds, at most `PATIENCE`.
async fn within_patience<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Blocking cluster operations (pg_ctl, kill), off the runtime's worker.
async fn on_cluster(cluster: &Cluster, what: fn(&Cluster) -> Result<(), String>) {
    tokio::task::block_in_place(|| what(cluster))
        .unwrap_or_else(|err| panic!("{err}\n{}", cluster.log_tail()));
}

/// Each account's signal ids by the event types that name them, as the promoted ledger holds them.
async fn signal_events(store: &Store, account: &str) -> HashMap<String, Vec<String>> {
    let mut by_type: HashMap<String, Vec<String>> = HashMap::new();
    for event in store
        .events()
        .load_account(account)
        .await
        .expect("the account loads")
    {
        if let Some(signal_id) = event.payload[&event.event_type]["signal_id"].as_str() {
            by_type
                .entry(event.event_type.clone())
                .or_default()
                .push(signal_id.to_owned());
        }
    }
    by_type
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_promoted_synchronous_standby_loses_nothing_acknowledged() {
    let pair = ReplicatedPair::start(DATABASE).await;
    let url = pair.multi_host_url(DATABASE);

    // A read-only server is refused at once, in words, when a writable one is asked for.
    let standby_only = format!(
        "{}?target_session_attrs=read-write",
        pair.standby.url(DATABASE)
    );
    let refused = cli_output(&standby_only, &["users", "create", "--name", "x"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("is read-only (a standby, in recovery)"),
        "{stderr}"
    );

    let mut users = Vec::new();
    for i in 0..CLIENTS {
        users.push(create_user(&url, &format!("trader{i}")).await);
    }
    let logs = tempfile::tempdir().expect("a directory for the service's log");
    let log_file = logs.path().join("service.log");
    let service = Service::start(
        &url,
        Options {
            log_file: Some(log_file.clone()),
            // What the service says about its connections, not every query at `debug`.
            env: vec![(
                "RUST_LOG".to_owned(),
                "warn,ledgerhook::users::authenticator=debug".to_owned(),
            )],
            ..Options::default()
        },
    )
    .await;
    let pid = service.pid();

    let load = Arc::new(Load::default());
    let mut clients = JoinSet::new();
    for user in &users {
        clients.spawn(post_until_stopped(
            load.clone(),
            service.base_url.clone(),
            user.user_id.clone(),
            user.webhook_token.clone(),
        ));
    }
    within_patience("acknowledgements before the kill", || async {
        (load.acks().len() >= ACKS_BEFORE_KILL).then_some(())
    })
    .await;

    on_cluster(&pair.primary, Cluster::kill_9).await;
    let killed = Instant::now();
    let acked_before_kill: Vec<Ack> = load
        .acks()
        .into_iter()
        .filter(|ack| ack.answered <= killed)
        .collect();
    on_cluster(&pair.standby, Cluster::promote).await;
    let promoted = Instant::now();

    let after = within_patience("acknowledgements again, from the same process", || async {
        let after = load.acks_sent_after(killed);
        (after.len() >= ACKS_AFTER_KILL).then_some(after)
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    while let Some(client) = clients.join_next().await {
        client.expect("a client task");
    }
    let first = after[0].answered;
    let ms = |from: Instant| first.saturating_duration_since(from).as_millis();
    println!(
        "failover reacknowledged_after_ms={} after_promote_ms={} promote_took_ms={} \
         acknowledged_before_kill={} failures={:?}",
        ms(killed),
        ms(promoted),
        promoted.duration_since(killed).as_millis(),
        acked_before_kill.len(),
        load.failures.lock().expect("not poisoned")
    );
    assert_eq!(service.pid(), pid, "the same process, never restarted");

    // The promoted server alone, as an operator would read it after the failover.
    let store = Store::connect(&pair.standby.url(DATABASE))
        .await
        .expect("the promoted standby");
    let acks = load.acks();
    let mut signals = HashMap::new();
    for user in &users {
        signals.insert(
            user.user_id.clone(),
            signal_events(&store, &user.user_id).await,
        );
    }
    for ack in &acked_before_kill {
        let received = &signals[&ack.account]["SignalReceived"];
        assert!(
            received.contains(&ack.signal_id),
            "signal {} of {} was answered 200 before the kill but is not in the promoted ledger",
            ack.signal_id,
            ack.account
        );
    }
    for (account, by_type) in &signals {
        let received = &by_type["SignalReceived"];
        let distinct: HashSet<&String> = received.iter().collect();
        assert_eq!(distinct.len(), received.len(), "{account}: a signal twice");
    }
    let acked: HashSet<&str> = acks.iter().map(|ack| ack.signal_id.as_str()).collect();
    assert_eq!(acked.len(), acks.len(), "no signal id answered twice");

    // The readers reconnect too: every approved signal, acknowledged or left in doubt by the
    // kill, is executed and notified, each once.
    within_patience("every approved signal executed and notified", || async {
        let mut done = true;
        for user in &users {
            let by_type = signal_events(&store, &user.user_id).await;
            let ids = |kind: &str| -> HashSet<String> {
                by_type.get(kind).into_iter().flatten().cloned().collect()
            };
            let told: HashSet<String> = ids("NotificationSent")
                .union(&ids("NotificationFailed"))
                .cloned()
                .collect();
            let approved = ids("RiskApproved");
            done &= !approved.is_empty() && approved.is_subset(&told);
        }
        done.then_some(())
    })
    .await;
    let mut submitted = 0;
    for user in &users {
        let by_type = signal_events(&store, &user.user_id).await;
        let orders = &by_type["OrderSubmitted"];
        let distinct: HashSet<&String> = orders.iter().collect();
        assert_eq!(distinct.len(), orders.len(), "an order submitted twice");
        submitted += orders.len();
    }
    let placements = PaperBook::of(&store).placements().await.expect("the book");
    assert!(
        placements.iter().all(|(_, sent)| *sent == 1),
        "an order sent to the venue twice: {placements:?}"
    );
    assert_eq!(
        placements.len(),
        submitted,
        "one booked order per submission"
    );

    let readyz = format!("{}/readyz", service.base_url);
    within_patience("/readyz again", || async {
        let response = service.client().get(&readyz).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    // The pool moved by itself, and the credential listener came back on the new primary.
    let log = std::fs::read_to_string(&log_file).expect("the service's log");
    let moved = format!("server=\"127.0.0.1:{}\"", pair.standby.port);
    assert!(
        log.lines().any(
            |line| line.contains("connections now go to this PostgreSQL server")
                && line.contains(&moved)
        ),
        "{log}"
    );
    within_patience("the credential listener back", || async {
        let log = std::fs::read_to_string(&log_file).ok()?;
        (log.matches("listening for credential changes").count() >= 2).then_some(())
    })
    .await;
    service.stop().await;
}

/// Start-up with no usable server says so at once, server by server, and never shows the
/// password; a malformed list is named as such.
#[tokio::test]
async fn failover_url_with_no_server_answering_names_each_at_once() {
    let url = "postgres://postgres:hunter2-never-printed@127.0.0.1:1,127.0.0.1:2/x\
               ?target_session_attrs=read-write";
    let started = Instant::now();
    let output = cli_output(url, &["users", "create", "--name", "x"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "cannot connect to PostgreSQL at 127.0.0.1:1,127.0.0.1:2: none suits \
             target_session_attrs=read-write: 127.0.0.1:1: connection refused; \
             127.0.0.1:2: connection refused"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");

    let malformed = cli_output(
        "postgres://u@a:1,b:x/d",
        &["users", "create", "--name", "x"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        !malformed.status.success()
            && stderr.contains("the database URL's host b:x has a port that is not a number"),
        "{stderr}"
    );
}
