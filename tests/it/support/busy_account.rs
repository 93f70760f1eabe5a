//! A busy strategy's account history, appended straight to a store as the service would have
//! written it: opened, then a signal every 30 s (received, approved, submitted, filled, the
//! position opened or closed, the trader told), all inside one idempotency window. Shared by the
//! replay tests and `benches/replay.rs` (included there by path), so both replay the same history.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use aggregates::{
    AccountEvent, ClientOrderId, Market, OrderType, Quantity, RiskLimits, Side, SignalId,
    TradeInstruction, UsdAmount, IDEMPOTENCY_WINDOW_HOURS,
};
use ledgerhook::ledger::{encode, EventContext};
use ledgerhook::store::Store;

/// Events appended per transaction while seeding.
const SEED_BATCH: usize = 2_000;

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Appends exactly `events` events to `account`. Returns how many signals they hold.
pub async fn seed(store: &Store, account: &str, events: usize) -> usize {
    let history = history(events);
    let signals = history
        .iter()
        .filter(|(_, event)| matches!(event, AccountEvent::SignalReceived { .. }))
        .count();
    for (index, chunk) in history.chunks(SEED_BATCH).enumerate() {
        let mut batch = Vec::with_capacity(chunk.len());
        for (offset, (at, event)) in chunk.iter().enumerate() {
            let context = EventContext::new("seed", *at);
            let sequence = index * SEED_BATCH + offset + 1;
            batch.extend(
                encode(account, sequence, std::slice::from_ref(event), &context).expect("encodes"),
            );
        }
        store
            .events()
            .append(&batch)
            .await
            .expect("the history appends");
    }
    signals
}

fn history(events: usize) -> Vec<(DateTime<Utc>, AccountEvent)> {
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
    history
}

/// One signal's whole life, as the service records it.
fn signal_life(n: usize, at: DateTime<Utc>) -> Vec<AccountEvent> {
    let signal_id = SignalId(format!("sig-{n}"));
    let client_order_id = ClientOrderId::for_signal(&signal_id);
    let market = Market::parse("BTC-USD").expect("a market");
    let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
    let size = Quantity::new(Decimal::new(1, 3)).expect("a size");
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
            notional_usd: UsdAmount::new(Decimal::from(65)),
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
            fee_usd: UsdAmount::new(Decimal::new(3, 2)),
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
