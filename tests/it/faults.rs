//! The fault suite (issue 13): under load (a few clients sending alerts to several users'
//! webhooks as fast as the service answers), the service is killed with SIGKILL, PostgreSQL is
//! restarted, and the embedded store's disk fills up and turns read-only; the venue's faults are
//! dydx_faults.rs's, checked against the same invariants. After each case: no acknowledged signal
//! lost, no order placed twice, every signal final, the read models equal to a rebuild, `audit
//! verify` passing, and the service recovered by itself. Each case prints one line:
//! `faults case=NAME store=S faults_injected=N acknowledged=N lost=0 duplicated=0 recovered_in_ms=N`
//! (`recovered_in_ms`: the longest wait, after a fault ended, for the next acknowledged alert).
//!
//! The short variants run by default; `LEDGERHOOK_LONG_FAULTS=1` injects more faults over longer
//! load. Fault timings come from a seeded generator (`seed=N` printed, `LEDGERHOOK_TEST_SEED=N`
//! replays them).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use crate::on_both_stores;
use crate::support::disk::Tmpfs;
use crate::support::invariants::{check, Venue, Verdict};
use crate::support::load::{Load, Tally};
use crate::support::private_cluster::RestartableCluster;
use crate::support::seed::seeded_rng;
use crate::support::service::{create_user, Options, Service, User};
use crate::support::stores::{Backend, TestStore};

/// How hard a case pushes: the short variant by default, the long one under the flag.
struct Scale {
    faults: usize,
    clients: usize,
    users: usize,
}

impl Scale {
    fn of(short_faults: usize, long_faults: usize) -> Self {
        if std::env::var("LEDGERHOOK_LONG_FAULTS").is_ok_and(|value| value == "1") {
            Self {
                faults: long_faults,
                clients: 8,
                users: 8,
            }
        } else {
            Self {
                faults: short_faults,
                clients: 4,
                users: 4,
            }
        }
    }
}

/// The longest a recovery (or the load getting going) may take before the case fails.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

async fn users(url: &str, n: usize) -> Vec<User> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        users.push(create_user(url, &format!("trader {i}")).await);
    }
    users
}

fn accounts(users: &[User]) -> Vec<String> {
    users.iter().map(|user| user.user_id.clone()).collect()
}

/// Waits until the load has had `more` alerts acknowledged beyond what it had: the service is
/// taking load when the next fault hits.
async fn flowing(load: &Load, more: usize) {
    let target = load.acknowledged() + more;
    poll("the load to be acknowledged again", || {
        (load.acknowledged() >= target).then_some(())
    })
    .await;
}

/// How long after `since` (the end of a fault) the first alert was acknowledged, waiting for it.
async fn recovery(load: &Load, since: Instant) -> Duration {
    let first = poll("the service to acknowledge alerts again by itself", || {
        load.tally().first_ack_after(since)
    })
    .await;
    first - since
}

/// Polls an observable condition every 20 ms until it holds, failing after `RECOVERY_DEADLINE`.
async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A random pause before a fault, in ms, printed so a failure can be read against it.
fn pause(rng: &mut StdRng, case: &str, fault: usize, range: std::ops::Range<u64>) -> Duration {
    let ms = rng.random_range(range);
    println!("faults case={case} fault={fault} after_ms={ms}");
    Duration::from_millis(ms)
}

/// Every answer the load got was a 200 or a 503 with a JSON error body (the refusals counted).
fn answered_by_the_rules(tally: &Tally) {
    assert!(
        tally.wrong.is_empty(),
        "{} answers broke the rules, e.g. {:?}",
        tally.wrong.len(),
        &tally.wrong[..tally.wrong.len().min(3)]
    );
    assert!(
        tally.refused.keys().all(|status| *status == 503),
        "only 503 may refuse an alert under these faults: {:?}",
        tally.refused
    );
}

/// The case's line; after the counts the issue asks for, the refusals seen (503s, and requests
/// nothing answered while the service was down).
fn summary(
    case: &str,
    store: &str,
    faults: usize,
    verdict: Verdict,
    recovered: Duration,
    tally: &Tally,
) {
    println!(
        "faults case={case} store={store} faults_injected={faults} acknowledged={} lost={} \
         duplicated={} recovered_in_ms={} refused_503={} unanswered={}",
        verdict.acknowledged,
        verdict.lost,
        verdict.duplicated,
        recovered.as_millis(),
        tally.refused.get(&503).copied().unwrap_or(0),
        tally.unanswered
    );
}

/// How every case ends: the load flows once more and stops, its answers are held to the rules,
/// the store is checked against the invariants, and the case's line is printed.
async fn settle_and_report(
    load: Load,
    url: &str,
    users: &[User],
    case: &str,
    faults: usize,
    recovered: Duration,
) {
    flowing(&load, 10).await;
    let tally = load.stop().await;
    answered_by_the_rules(&tally);
    let store = ledgerhook::app::open_store(url)
        .await
        .expect("the ledger opens");
    let verdict = check(url, &store, &accounts(users), &tally.acked, Venue::Paper).await;
    let store_kind = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    summary(case, store_kind, faults, verdict, recovered, &tally);
}

/// kill -9 of the serving instance at random moments under load, restarted each time on the same
/// store; the load follows it to its new port.
async fn kill_9_at_random_moments_under_load(backend: Backend) {
    let scale = Scale::of(3, 12);
    let test = TestStore::new(backend).await;
    let users = users(&test.url, scale.users).await;
    let mut rng = seeded_rng("faults kill_9");
    let mut service = Service::start(&test.url, Options::default()).await;
    let load = Load::start(&service.base_url, &users, scale.clients, "k9");
    let mut recovered = Duration::ZERO;
    for kill in 0..scale.faults {
        flowing(&load, 10).await;
        tokio::time::sleep(pause(&mut rng, "kill_9", kill, 0..800)).await;
        service.kill_9().await;
        let killed = Instant::now();
        service = Service::start(&test.url, Options::default()).await;
        load.aim(&service.base_url);
        recovered = recovered.max(recovery(&load, killed).await);
    }
    settle_and_report(load, &test.url, &users, "kill_9", scale.faults, recovered).await;
    service.stop().await;
}
on_both_stores!(kill_9_at_random_moments_under_load);

/// PostgreSQL (a private cluster) restarted under load, `-m immediate`, and stopped for a random
/// while then started: the service, never restarted, refuses with 503 meanwhile and takes alerts
/// again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let scale = Scale::of(2, 8);
    let cluster = RestartableCluster::start().await;
    let users = users(&cluster.url, scale.users).await;
    let mut rng = seeded_rng("faults postgres_restart");
    let service = Service::start(&cluster.url, Options::default()).await;
    let load = Load::start(&service.base_url, &users, scale.clients, "pg");
    let mut recovered = Duration::ZERO;
    for fault in 0..scale.faults {
        flowing(&load, 10).await;
        tokio::time::sleep(pause(&mut rng, "postgres_restart", fault, 0..800)).await;
        if fault % 2 == 0 {
            cluster.restart_immediate().await;
        } else {
            cluster.stop_immediate().await;
            let down = pause(&mut rng, "postgres_restart", fault, 200..2_000);
            tokio::time::sleep(down).await;
            cluster.start_again().await;
        }
        recovered = recovered.max(recovery(&load, Instant::now()).await);
    }
    settle_and_report(
        load,
        &cluster.url,
        &users,
        "postgres_restart",
        scale.faults,
        recovered,
    )
    .await;
    // The same process served throughout, and still shuts down cleanly.
    service.stop().await;
}

/// The embedded store's disk full (a ballast file fills its tmpfs), then freed; then read-only,
/// then writable again. Meanwhile alerts are refused with 503, never acknowledged unless durable;
/// afterwards the service takes them again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_and_read_only_under_load() {
    let scale = Scale::of(1, 4);
    let disk = Tmpfs::mount("64m");
    let database = disk.path().join("ledger.db");
    let url = format!("sqlite://{}", database.display());
    let users = users(&url, scale.users).await;
    let mut rng = seeded_rng("faults disk");
    let service = Service::start(&url, Options::default()).await;
    let pid = service.pid().expect("the service runs");
    let load = Load::start(&service.base_url, &users, scale.clients, "disk");
    let mut recovered = Duration::ZERO;
    let mut injected = 0;
    for round in 0..scale.faults {
        flowing(&load, 10).await;
        let ballast = disk.fill();
        injected += 1;
        println!(
            "faults case=disk_full fault={round} ballast_bytes={}",
            ballast.bytes
        );
        refused_meanwhile(&load, "the disk is full").await;
        tokio::time::sleep(pause(&mut rng, "disk_full", round, 100..1_000)).await;
        ballast.remove();
        recovered = recovered.max(recovery(&load, Instant::now()).await);

        flowing(&load, 10).await;
        let read_only = disk.read_only(pid, &database);
        injected += 1;
        println!(
            "faults case=read_only fault={round} how={}",
            read_only.how()
        );
        refused_meanwhile(&load, "the store is read-only").await;
        tokio::time::sleep(pause(&mut rng, "read_only", round, 100..1_000)).await;
        read_only.writable_again();
        recovered = recovered.max(recovery(&load, Instant::now()).await);
    }
    settle_and_report(
        load,
        &url,
        &users,
        "disk_full_and_read_only",
        injected,
        recovered,
    )
    .await;
    service.stop().await;
}

/// Waits until the load is refused (503) while a fault lasts: the fault reached the service.
async fn refused_meanwhile(load: &Load, fault: &str) {
    let before = load.tally().refused.get(&503).copied().unwrap_or(0);
    poll(&format!("a 503 while {fault}"), || {
        let now = load.tally().refused.get(&503).copied().unwrap_or(0);
        (now > before).then_some(())
    })
    .await;
}
