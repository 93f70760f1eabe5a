//! Helpers shared by the aggregate's integration tests: terse constructors for values, commands and
//! events, and a way to fold commands into a history without the async `TestFramework`.

use std::collections::BTreeSet;

use aggregates::{
    AccountCommand, AccountError, AccountEvent, ClientOrderId, ExecutionReport, Fill, KeyMemory,
    Market, NotificationOutcome, OrderType, Quantity, RiskLimits, Side, SignalId, SignalIntent,
    TradeInstruction, TradingAccount, UsdAmount, FINGERPRINT_KEY_PREFIX,
    FINGERPRINT_WINDOW_SECONDS, IDEMPOTENCY_WINDOW_HOURS,
};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use rust_decimal::Decimal;

/// An RFC 3339 instant in UTC.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An exact decimal from its text, e.g. `dec("0.25")`.
pub fn dec(text: &str) -> Decimal {
    Decimal::from_str_exact(text).unwrap()
}

pub fn qty(text: &str) -> Quantity {
    Quantity::new(dec(text)).unwrap()
}

pub fn usd(text: &str) -> UsdAmount {
    UsdAmount::new(dec(text))
}

pub fn market(ticker: &str) -> Market {
    Market::parse(ticker).unwrap()
}

pub fn sid(id: &str) -> SignalId {
    SignalId(id.to_owned())
}

pub fn coid(id: &str) -> ClientOrderId {
    ClientOrderId::for_signal(&sid(id))
}

/// Notional limits and allowed markets; every other limit at its default.
pub fn limits(order: &str, position: &str, daily: &str, allowed: &[&str]) -> RiskLimits {
    RiskLimits {
        max_order_notional_usd: dec(order),
        max_position_notional_usd: dec(position),
        max_daily_volume_usd: dec(daily),
        allowed_markets: allowed.iter().map(|m| market(m)).collect::<BTreeSet<_>>(),
        ..RiskLimits::default()
    }
}

pub const OPENED_AT: &str = "2024-03-01T08:00:00Z";

pub fn open_command(limits: RiskLimits) -> AccountCommand {
    AccountCommand::OpenAccount {
        display_name: "alice".to_owned(),
        limits,
        opened_at: at(OPENED_AT),
    }
}

pub fn opened(limits: RiskLimits) -> AccountEvent {
    AccountEvent::AccountOpened {
        display_name: "alice".to_owned(),
        limits,
        opened_at: at(OPENED_AT),
    }
}

/// When the service would have the key forgotten: its default window, by the key's kind.
pub fn default_expiry(key: &str, received_at: DateTime<Utc>) -> DateTime<Utc> {
    if key.starts_with(FINGERPRINT_KEY_PREFIX) {
        received_at + Duration::seconds(FINGERPRINT_WINDOW_SECONDS)
    } else {
        received_at + Duration::hours(IDEMPOTENCY_WINDOW_HOURS)
    }
}

/// A signal with `instruction`, whose idempotency key is `key-<id>`: a market order, no brackets,
/// no alert price or timestamp.
pub fn signal(
    id: &str,
    ticker: &str,
    instruction: TradeInstruction,
    reference_price: &str,
    received_at: &str,
) -> SignalIntent {
    let key = format!("key-{id}");
    SignalIntent {
        signal_id: sid(id),
        key_expires_at: default_expiry(&key, at(received_at)),
        idempotency_key: key,
        market: market(ticker),
        instruction,
        order_type: OrderType::Market,
        take_profit: None,
        stop_loss: None,
        alert_price: None,
        reference_price: dec(reference_price),
        sent_at: None,
        max_lag_seconds: 30,
        emergency_stop: None,
        paper_only: false,
        quota: None,
        received_at: at(received_at),
        earlier_use: None,
    }
}

/// A signal ordering `side`/`size`, whose idempotency key is `key-<id>`.
pub fn intent(
    id: &str,
    ticker: &str,
    side: Side,
    size: &str,
    reference_price: &str,
    received_at: &str,
) -> SignalIntent {
    let instruction = TradeInstruction::Order {
        side,
        size: qty(size),
    };
    signal(id, ticker, instruction, reference_price, received_at)
}

/// A signal asking to hold `size` (signed) afterwards.
pub fn target(
    id: &str,
    ticker: &str,
    size: &str,
    reference_price: &str,
    received_at: &str,
) -> SignalIntent {
    let instruction = TradeInstruction::TargetPosition { size: dec(size) };
    signal(id, ticker, instruction, reference_price, received_at)
}

/// A signal asking to close the whole position.
pub fn close(id: &str, ticker: &str, reference_price: &str, received_at: &str) -> SignalIntent {
    signal(
        id,
        ticker,
        TradeInstruction::Close,
        reference_price,
        received_at,
    )
}

/// The same signal under another key, remembered for the service's default window.
pub fn with_key(mut intent: SignalIntent, key: &str) -> SignalIntent {
    intent.idempotency_key = key.to_owned();
    intent.key_expires_at = default_expiry(key, intent.received_at);
    intent
}

pub fn receive(intent: &SignalIntent) -> AccountCommand {
    AccountCommand::ReceiveSignal(intent.clone())
}

pub fn signal_received(intent: &SignalIntent) -> AccountEvent {
    AccountEvent::SignalReceived {
        signal_id: intent.signal_id.clone(),
        idempotency_key: intent.idempotency_key.clone(),
        key_expires_at: intent.key_expires_at,
        market: intent.market.clone(),
        instruction: intent.instruction.clone(),
        order_type: intent.order_type.clone(),
        take_profit: intent.take_profit,
        stop_loss: intent.stop_loss,
        alert_price: intent.alert_price,
        reference_price: intent.reference_price,
        sent_at: intent.sent_at,
        received_at: intent.received_at,
    }
}

/// The approval of an `Order` signal: its side and size, as it asked.
pub fn risk_approved(intent: &SignalIntent, notional: &str) -> AccountEvent {
    let TradeInstruction::Order { side, size } = &intent.instruction else {
        panic!("risk_approved is for Order signals; use approved_order");
    };
    approved_order(intent, *side, &size.to_string(), false, notional)
}

/// The approval of any signal, resolved to `side`/`size`; brackets only when not reduce-only.
pub fn approved_order(
    intent: &SignalIntent,
    side: Side,
    size: &str,
    reduce_only: bool,
    notional: &str,
) -> AccountEvent {
    AccountEvent::RiskApproved {
        signal_id: intent.signal_id.clone(),
        client_order_id: ClientOrderId::for_signal(&intent.signal_id),
        market: intent.market.clone(),
        side,
        size: qty(size),
        reduce_only,
        order_type: intent.order_type.clone(),
        take_profit: intent.take_profit.filter(|_| !reduce_only),
        stop_loss: intent.stop_loss.filter(|_| !reduce_only),
        notional_usd: usd(notional),
    }
}

/// The rejection of a signal not taken up, for `reason`.
pub fn signal_rejected(intent: &SignalIntent, reason: aggregates::RejectionReason) -> AccountEvent {
    AccountEvent::SignalRejected {
        signal_id: intent.signal_id.clone(),
        idempotency_key: intent.idempotency_key.clone(),
        key_expires_at: intent.key_expires_at,
        reason,
        received_at: intent.received_at,
    }
}

/// The exchange's report that the BTC-USD buy of signal `id` filled.
pub fn filled(id: &str, price: &str, size: &str, fee: &str, when: &str) -> AccountCommand {
    filled_in("BTC-USD", Side::Buy, id, price, size, fee, when)
}

/// The exchange's report that signal `id`'s order filled as a `side` in `ticker`.
pub fn filled_in(
    ticker: &str,
    side: Side,
    id: &str,
    price: &str,
    size: &str,
    fee: &str,
    when: &str,
) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Filled {
        signal_id: sid(id),
        client_order_id: coid(id),
        exchange_order_id: format!("ex-{id}"),
        fill: Fill {
            market: market(ticker),
            side,
            price: dec(price),
            size: qty(size),
            fee: dec(fee),
        },
        at: at(when),
    })
}

pub fn rejected(id: &str, reason: &str, when: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Rejected {
        signal_id: sid(id),
        client_order_id: coid(id),
        reason: reason.to_owned(),
        at: at(when),
    })
}

pub fn failed(id: &str, reason: &str, when: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Failed {
        signal_id: sid(id),
        client_order_id: coid(id),
        reason: reason.to_owned(),
        at: at(when),
    })
}

pub fn cancelled(id: &str, reason: &str, when: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Cancelled {
        signal_id: sid(id),
        client_order_id: coid(id),
        reason: reason.to_owned(),
        at: at(when),
    })
}

pub fn notified(id: &str, outcome: NotificationOutcome, when: &str) -> AccountCommand {
    AccountCommand::RecordNotification {
        signal_id: sid(id),
        channel: "telegram".to_owned(),
        outcome,
        at: at(when),
    }
}

pub fn halt(when: &str) -> AccountCommand {
    AccountCommand::HaltTrading {
        by: "ops".to_owned(),
        reason: "maintenance".to_owned(),
        at: at(when),
    }
}

pub fn resume(when: &str) -> AccountCommand {
    AccountCommand::ResumeTrading {
        by: "ops".to_owned(),
        reason: "done".to_owned(),
        at: at(when),
    }
}

/// Folds events into a fresh account, as a store load does.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> TradingAccount {
    let mut state = TradingAccount::default();
    for event in events {
        state.apply(event.clone());
    }
    state
}

/// Runs commands one after the other from a fresh account and returns every event they emitted.
/// Panics on the first rejected command: it is for building the `given` of a test.
pub fn history(commands: impl IntoIterator<Item = AccountCommand>) -> Vec<AccountEvent> {
    let mut state = TradingAccount::default();
    let mut keys = KeyMemory::default();
    let mut all = Vec::new();
    for command in commands {
        let events = decide_as_ledger(&mut state, &mut keys, command.clone())
            .unwrap_or_else(|err| panic!("{command:?} was refused: {err}"));
        all.extend(events);
    }
    all
}

/// Decides `command` as the ledger does: a signal is first told what `keys` (the store's memory)
/// remember of its key, and what it decided is applied to `state` and folded into `keys`.
pub fn decide_as_ledger(
    state: &mut TradingAccount,
    keys: &mut KeyMemory,
    mut command: AccountCommand,
) -> Result<Vec<AccountEvent>, AccountError> {
    if let AccountCommand::ReceiveSignal(intent) = &mut command {
        intent.earlier_use = keys.recall(&intent.idempotency_key).cloned();
    }
    let events = state.decide(command)?;
    for event in &events {
        state.apply(event.clone());
        keys.fold(event);
    }
    Ok(events)
}

/// The keys `history` remembers, as the store would.
pub fn remembered_keys(history: &[AccountEvent]) -> KeyMemory {
    let mut keys = KeyMemory::default();
    for event in history {
        keys.fold(event);
    }
    keys
}

/// The names of `events`, in order.
pub fn names(events: &[AccountEvent]) -> Vec<&'static str> {
    events.iter().map(AccountEvent::name).collect()
}

/// The signal as the ledger hands it to the account: told what `history` remembers of its key
/// (the store's memory of keys, folded from the same events).
pub fn recalling(history: &[AccountEvent], mut intent: SignalIntent) -> SignalIntent {
    intent.earlier_use = remembered_keys(history)
        .recall(&intent.idempotency_key)
        .cloned();
    intent
}
