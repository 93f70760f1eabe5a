//! What must hold after any fault (the fault suite's, and the dYdX venue faults'): no acknowledged
//! signal lost, no order placed twice, every signal in a final state, the read models equal to a
//! rebuild from the log, and `audit verify` passing. Checked through what a user or an operator
//! sees: the ledger's streams, the venue's own count of sends, and the CLI.

use std::collections::{BTreeMap, HashMap};

use ledgerhook::exchange::PaperBook;
use ledgerhook::store::Store;

use super::load::Acked;
use super::service::cli_output;

/// The events that end a signal's execution; a signal refused at the door (risk, halt) ends in
/// its rejection instead.
pub const FINAL: [&str; 6] = [
    "OrderFilled",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderFailed",
    "ExecutionAbandoned",
    "FillMismatch",
];
const REFUSED: [&str; 2] = ["RiskRejected", "SignalRejected"];

/// Where orders went, to count how many times each was sent.
pub enum Venue<'a> {
    /// The paper exchange's book, in the ledger's own store.
    Paper,
    /// The fake dYdX node, through its control endpoint at this Indexer address.
    FakeDydx(&'a str),
}

/// The counts a fault case reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
}

/// The acknowledged signals missing from their account's stream. Read straight from the store,
/// without waiting: a 200 means the signal was already durable.
pub async fn lost(store: &Store, acked: &[Acked]) -> Vec<Acked> {
    let mut streams: HashMap<String, Signals> = HashMap::new();
    let mut missing = Vec::new();
    for signal in acked {
        if !streams.contains_key(&signal.user_id) {
            streams.insert(
                signal.user_id.clone(),
                signals_of(store, &signal.user_id).await,
            );
        }
        if !streams[&signal.user_id].contains_key(&signal.signal_id) {
            missing.push(signal.clone());
        }
    }
    missing
}

/// Checks every invariant once the service (running on `url`) has settled, and returns the counts.
/// Panics naming the first that fails.
pub async fn check(
    url: &str,
    store: &Store,
    accounts: &[String],
    acked: &[Acked],
    venue: Venue<'_>,
) -> Verdict {
    let missing = lost(store, acked).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged signals are not in the ledger: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let streams = every_signal_final(store, accounts, acked).await;
    crate::audit::wait_until_settled(store, accounts).await;

    let mut duplicated = 0;
    for (account, signals) in &streams {
        for (signal, events) in signals {
            let submitted = events.iter().filter(|e| *e == "OrderSubmitted").count();
            if submitted > 1 {
                eprintln!("{account} {signal}: {submitted} OrderSubmitted: {events:?}");
                duplicated += 1;
            }
        }
    }
    for (client_id, sends) in sends(store, venue).await {
        if sends > 1 {
            eprintln!("{client_id} reached the venue {sends} times");
            duplicated += 1;
        }
    }
    assert_eq!(duplicated, 0, "orders placed twice");

    let (verified, report) = crate::audit::audit_verify(url, false).await;
    assert!(verified, "audit verify fails after the faults: {report}");
    let rebuild = cli_output(url, &["projections", "rebuild"]).await;
    let rebuilt = String::from_utf8_lossy(&rebuild.stdout);
    assert!(
        rebuild.status.success() && rebuilt.matches("equals the live rows").count() == 4,
        "the read models differ from a rebuild: {rebuilt}{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    Verdict {
        acknowledged: acked.len(),
        lost: 0,
        duplicated,
    }
}

/// signal id → the types of the events that name it, in the account's order.
type Signals = BTreeMap<String, Vec<String>>;

async fn signals_of(store: &Store, account: &str) -> Signals {
    let mut signals = Signals::new();
    let events = store
        .events()
        .load_account(account)
        .await
        .expect("the account's stream reads");
    for event in events {
        let named = event.payload[&event.event_type]["signal_id"]
            .as_str()
            .map(str::to_owned);
        if let Some(signal) = named {
            signals.entry(signal).or_default().push(event.event_type);
        }
    }
    signals
}

/// Waits until every acknowledged signal has ended (filled, rejected, failed, abandoned...) and
/// returns each account's signals.
async fn every_signal_final(
    store: &Store,
    accounts: &[String],
    acked: &[Acked],
) -> BTreeMap<String, Signals> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut streams = BTreeMap::new();
        for account in accounts {
            streams.insert(account.clone(), signals_of(store, account).await);
        }
        let open: Vec<&Acked> = acked
            .iter()
            .filter(|signal| {
                let events = &streams[&signal.user_id][&signal.signal_id];
                // An accepted signal ends in its execution's outcome, a refused one in its
                // rejection; a duplicate in whichever its original had.
                let ends = |event: &String| match signal.status.as_str() {
                    "accepted" => FINAL.contains(&event.as_str()),
                    "rejected" => REFUSED.contains(&event.as_str()),
                    _ => FINAL.contains(&event.as_str()) || REFUSED.contains(&event.as_str()),
                };
                !events.iter().any(ends)
            })
            .collect();
        if open.is_empty() {
            return streams;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} acknowledged signals never reached a final state, e.g. {:?}: {:?}",
            open.len(),
            open[0],
            streams[&open[0].user_id][&open[0].signal_id]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many times each client order id reached the venue.
async fn sends(store: &Store, venue: Venue<'_>) -> Vec<(String, i64)> {
    match venue {
        Venue::Paper => PaperBook::of(store)
            .placements()
            .await
            .expect("the paper book reads"),
        Venue::FakeDydx(indexer) => {
            let http = reqwest::Client::new();
            let received = super::fake_venues::received_orders(&http, indexer).await;
            received["sends"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(id, sends)| (id, sends.as_i64().unwrap_or(0)))
                .collect::<Vec<(String, i64)>>()
        }
    }
}
