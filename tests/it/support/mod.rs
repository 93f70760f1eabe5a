pub mod alerts;
pub mod answer;
pub mod audit;
pub mod browser;
pub mod busy_account;
pub mod clock;
pub mod disk;
pub mod fake_venues;
pub mod in_process;
pub mod invariants;
pub mod load;
pub mod log;
pub mod postgres;
pub mod private_cluster;
pub mod python_tools;
pub mod replication;
pub mod seed;
pub mod service;
pub mod sign_in;
pub mod stores;
pub mod tamper;
pub mod vault;

/// Runs an async test body once per store, as two tests named `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::support::stores::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test($crate::support::stores::Backend::Postgres).await;
            }
        }
    };
}

/// Waits for `check` to return `Some`, polling an observable condition until `what` is true or
/// the deadline passes (then the test fails, naming what it waited for).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, std::time::Duration::from_secs(30), check).await
}

/// `eventually` with a deadline of `within`, for what takes longer by design (a venue's own
/// waits add up).
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    within: std::time::Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The event types of one account but its notices' records (`NoticeSent`/`NoticeFailed`, and
/// `EmergencyStopNoted`),
/// which the saga appends beside its other steps, in no fixed order with them.
pub async fn event_types_but_notices(
    store: &ledgerhook::store::Store,
    account: &str,
) -> Vec<String> {
    let mut types = event_types(store, account).await;
    types.retain(|name| !name.starts_with("Notice") && name != "EmergencyStopNoted");
    types
}

/// The event types of one account, in sequence order, as stored.
pub async fn event_types(store: &ledgerhook::store::Store, account: &str) -> Vec<String> {
    store
        .events()
        .load_account(account)
        .await
        .expect("the account loads")
        .into_iter()
        .map(|event| event.event_type)
        .collect()
}

/// Installs Debian packages a test needs and the machine lacks (as root); whether they work is for
/// the caller to find out. A fresh machine has no package lists yet. Tests of this process install
/// one at a time: `apt-get update` does not wait for another's lock on the lists, it fails.
pub fn apt_install(packages: &[&str]) -> bool {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = APT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let install = [&["install", "-y", "-qq"][..], packages].concat();
    [&["update", "-qq"][..], &install[..]].iter().all(|args| {
        let status = std::process::Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(*args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        eprintln!(
            "{packages:?} missing; `apt-get {}`: {status:?}",
            args.join(" ")
        );
        status.is_ok_and(|status| status.success())
    })
}
