//! Black-box: replaying a long account with the real binary, on both stores. An account with
//! 10,000 events (about 1,700 signals inside one idempotency window, so the account remembers
//! every key) replays with output ten times that of a 1,000-event account, give or take: each line
//! carries what its event changed, the whole state only with `--full-state`, and the idempotency
//! memory is a count and the key the event touched, never the keys themselves.
//!
//! The history is appended straight to the store (as the service would have written it) rather
//! than sent as 1,700 alerts. A replay whose output outgrows the linear bound is stopped at that
//! bound, so the quadratic replay this replaced fails in seconds instead of writing gigabytes.

use std::process::Stdio;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use aggregates::{
    AccountEvent, ClientOrderId, Market, OrderType, Quantity, RiskLimits, Side, SignalId,
    TradeInstruction, UsdAmount, IDEMPOTENCY_WINDOW_HOURS,
};
use ledgerhook::ledger::{encode, EventContext};
use ledgerhook::store::Store;

use crate::on_both_stores;
use crate::support::service::BINARY;
use crate::support::stores::{Backend, TestStore};

const SMALL: usize = 1_000;
const LARGE: usize = 10_000;
/// Ten times the events may write at most this many times the bytes: linear, with room for the
/// longer numbers of a longer history. A quadratic replay writes ~100 times.
const LINEAR_FACTOR: usize = 15;
/// Plenty for the small account, whatever the replay does.
const UNBOUNDED: usize = 256 << 20;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn dec(units: i64, scale: u32) -> Decimal {
    Decimal::new(units, scale)
}

/// One signal's whole life, as the service records it: received, approved, submitted, filled,
/// the position opened (buys) or closed (sells), the trader told.
fn signal_life(n: usize, at: DateTime<Utc>) -> Vec<AccountEvent> {
    let signal_id = SignalId(format!("sig-{n}"));
    let client_order_id = ClientOrderId::for_signal(&signal_id);
    let market = Market::parse("BTC-USD").expect("a market");
    let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
    let size = Quantity::new(dec(1, 3)).expect("a size");
    let price = Decimal::from(65_000);
    let position = if side == Side::Buy {
        AccountEvent::PositionOpened {
            signal_id: signal_id.clone(),
            market: market.clone(),
            side,
            size,
            entry_price: price,
        }
    } else {
        AccountEvent::PositionClosed {
            signal_id: signal_id.clone(),
            market: market.clone(),
            size_delta: size,
            realized_pnl_usd: UsdAmount::ZERO,
        }
    };
    vec![
        AccountEvent::SignalReceived {
            signal_id: signal_id.clone(),
            idempotency_key: format!("id:alert-{n}"),
            key_expires_at: at + Duration::hours(IDEMPOTENCY_WINDOW_HOURS),
            market: market.clone(),
            instruction: TradeInstruction::Order { side, size },
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            alert_price: None,
            reference_price: price,
            sent_at: None,
            received_at: at,
        },
        AccountEvent::RiskApproved {
            signal_id: signal_id.clone(),
            client_order_id: client_order_id.clone(),
            market: market.clone(),
            side,
            size,
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            notional_usd: UsdAmount::new(dec(65, 0)),
        },
        AccountEvent::OrderSubmitted {
            signal_id: signal_id.clone(),
            client_order_id: client_order_id.clone(),
            market: market.clone(),
            side,
            size,
            submitted_at: at,
        },
        AccountEvent::OrderFilled {
            signal_id: signal_id.clone(),
            client_order_id,
            exchange_order_id: format!("paper-{n}"),
            market,
            side,
            price,
            size,
            fee_usd: UsdAmount::new(dec(3, 2)),
            filled_at: at,
        },
        position,
        AccountEvent::NotificationSent {
            signal_id,
            channel: "log".to_owned(),
            at,
        },
    ]
}

/// Appends exactly `events` events to `account`: opened, then a signal every 30 s, all inside one
/// idempotency window. Returns how many signals it holds.
async fn seed(store: &Store, account: &str, events: usize) -> usize {
    let opened = AccountEvent::AccountOpened {
        display_name: "busy strategy".to_owned(),
        limits: RiskLimits::default(),
        opened_at: start(),
    };
    let mut history = vec![(start(), opened)];
    let mut signals = 0;
    while history.len() < events {
        let at = start() + Duration::seconds(30 * (signals as i64 + 1));
        history.extend(signal_life(signals, at).into_iter().map(|e| (at, e)));
        signals += 1;
    }
    history.truncate(events);
    let signals = history
        .iter()
        .filter(|(_, e)| matches!(e, AccountEvent::SignalReceived { .. }))
        .count();
    for (index, chunk) in history.chunks(1_000).enumerate() {
        let mut encoded = Vec::with_capacity(chunk.len());
        for (offset, (at, event)) in chunk.iter().enumerate() {
            let context = EventContext::new("test-seed", *at);
            let sequence = index * 1_000 + offset + 1;
            encoded.extend(
                encode(account, sequence, std::slice::from_ref(event), &context).expect("encodes"),
            );
        }
        store.append(&encoded).await.expect("the history appends");
    }
    signals
}

/// The stdout of `ledgerhook replay USER ARGS...`, which must succeed. Fails as soon as the
/// output passes `limit` bytes, stopping the replay there.
async fn replay_output(database_url: &str, user_id: &str, args: &[&str], limit: usize) -> String {
    let mut child = Command::new(BINARY)
        .arg("replay")
        .arg(user_id)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ledgerhook binary runs");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut output = Vec::new();
    let mut chunk = vec![0; 1 << 16];
    loop {
        let read = stdout.read(&mut chunk).await.expect("stdout reads");
        if read == 0 {
            break;
        }
        output.extend_from_slice(&chunk[..read]);
        if output.len() > limit {
            let _ = child.kill().await;
            panic!(
                "replay {args:?} of {user_id} wrote more than {limit} bytes: its output grows \
                 faster than its history"
            );
        }
    }
    let finished = child.wait_with_output().await.expect("replay ends");
    assert!(
        finished.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    String::from_utf8(output).expect("UTF-8 output")
}

fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .map(|line| serde_json::from_str(line).expect("replay --json prints JSON lines"))
        .collect()
}

fn changes(line: &Value) -> &Vec<Value> {
    line["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("every line has its changes: {line}"))
}

async fn replay_output_grows_linearly_with_the_history(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let small_signals = seed(&store, "small-account", SMALL).await;
    let large_signals = seed(&store, "large-account", LARGE).await;
    let url = test.url.as_str();

    for args in [
        &["--json"][..],
        &[][..],
        &["--json", "--full-state"][..],
        &["--full-state"][..],
    ] {
        let small = replay_output(url, "small-account", args, UNBOUNDED).await;
        let bound = LINEAR_FACTOR * small.len();
        let large = replay_output(url, "large-account", args, bound).await;
        for (output, events) in [(&small, SMALL), (&large, LARGE)] {
            // The human form prints two or more lines an event.
            let lines = output.lines().count();
            assert!(
                lines >= events,
                "{args:?}: {lines} lines for {events} events"
            );
            assert!(
                !output.contains("seen_keys") && !output.contains("key_expiry"),
                "{args:?}: the idempotency memory is summarised, never dumped"
            );
        }
        if args.is_empty() {
            assert!(
                large.contains(&format!(
                    "idempotency.remembered: {} → {large_signals}",
                    large_signals - 1
                )),
                "the human form names the count of keys the last signal left"
            );
        }
    }

    // --json: `changes` on every line, `state` only with --full-state.
    let lines = json_lines(&replay_output(url, "large-account", &["--json"], UNBOUNDED).await);
    assert_eq!(lines.len(), LARGE);
    assert!(lines.iter().all(|line| line.get("state").is_none()));
    let received: Vec<&Value> = lines
        .iter()
        .filter(|line| line["event_type"] == "SignalReceived")
        .collect();
    assert_eq!(received.len(), large_signals);
    // Each signal adds its one key to the memory: the count and that key, nothing else of it.
    for (n, line) in received.iter().enumerate() {
        let idempotency: Vec<&Value> = changes(line)
            .iter()
            .filter(|change| {
                change["path"]
                    .as_str()
                    .is_some_and(|path| path.starts_with("idempotency"))
            })
            .collect();
        let key = format!("id:alert-{n}");
        assert_eq!(
            idempotency,
            [
                &json!({"path": "idempotency.remembered", "kind": "changed", "before": n, "after": n + 1}),
                &json!({
                    "path": format!("idempotency.touched.{key}"),
                    "kind": "added",
                    "before": null,
                    "after": {
                        "signal_id": format!("sig-{n}"),
                        "expires_at": line["payload"]["SignalReceived"]["key_expires_at"],
                    },
                }),
            ],
            "{line}"
        );
    }
    // The other events touch no key.
    assert!(lines
        .iter()
        .filter(|line| line["event_type"] != "SignalReceived")
        .flat_map(changes)
        .all(|change| !change["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("idempotency")));

    // --full-state: the state after each event, with the memory as a count and the touched key.
    let states = json_lines(
        &replay_output(url, "large-account", &["--json", "--full-state"], UNBOUNDED).await,
    );
    assert_eq!(states.len(), LARGE);
    let last_received = states
        .iter()
        .rposition(|line| line["event_type"] == "SignalReceived")
        .expect("a signal");
    let n = large_signals - 1;
    assert_eq!(
        states[last_received]["state"]["idempotency"],
        json!({
            "remembered": large_signals,
            "touched": {
                format!("id:alert-{n}"): {
                    "signal_id": format!("sig-{n}"),
                    "expires_at": states[last_received]["payload"]["SignalReceived"]["key_expires_at"],
                },
            },
        })
    );
    let last = states.last().expect("events");
    assert_eq!(
        last["state"]["idempotency"],
        json!({"remembered": large_signals, "touched": {}}),
        "{last}"
    );
    assert_eq!(last["state"]["signals_received"], large_signals);
    assert!(
        small_signals * 9 < large_signals,
        "{small_signals} {large_signals}"
    );
}
on_both_stores!(replay_output_grows_linearly_with_the_history);
