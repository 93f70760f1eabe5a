//! Helpers shared by the aggregate's integration tests: terse constructors for values, commands and
//! events, and a way to fold commands into a history without the async `TestFramework`.
#![allow(dead_code)]

use std::collections::BTreeSet;

use aggregates::{
    AccountCommand, AccountEvent, ClientOrderId, ExecutionReport, Fill, Market,
    NotificationOutcome, Quantity, RiskLimits, Side, SignalId, SignalIntent, TradingAccount,
    UsdAmount,
};
use chrono::{DateTime, Utc};
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

pub fn limits(order: &str, position: &str, daily: &str, allowed: &[&str]) -> RiskLimits {
    RiskLimits {
        max_order_notional_usd: dec(order),
        max_position_notional_usd: dec(position),
        max_daily_volume_usd: dec(daily),
        allowed_markets: allowed.iter().map(|m| market(m)).collect::<BTreeSet<_>>(),
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

/// A signal whose idempotency key is `key-<id>`.
pub fn intent(
    id: &str,
    ticker: &str,
    side: Side,
    size: &str,
    reference_price: &str,
    received_at: &str,
) -> SignalIntent {
    SignalIntent {
        signal_id: sid(id),
        idempotency_key: format!("key-{id}"),
        market: market(ticker),
        side,
        size: qty(size),
        reference_price: dec(reference_price),
        received_at: at(received_at),
    }
}

pub fn with_key(mut intent: SignalIntent, key: &str) -> SignalIntent {
    intent.idempotency_key = key.to_owned();
    intent
}

pub fn receive(intent: &SignalIntent) -> AccountCommand {
    AccountCommand::ReceiveSignal(intent.clone())
}

pub fn signal_received(intent: &SignalIntent) -> AccountEvent {
    AccountEvent::SignalReceived {
        signal_id: intent.signal_id.clone(),
        idempotency_key: intent.idempotency_key.clone(),
        market: intent.market.clone(),
        side: intent.side,
        size: intent.size,
        reference_price: intent.reference_price,
        received_at: intent.received_at,
    }
}

pub fn risk_approved(intent: &SignalIntent, notional: &str) -> AccountEvent {
    AccountEvent::RiskApproved {
        signal_id: intent.signal_id.clone(),
        client_order_id: ClientOrderId::for_signal(&intent.signal_id),
        market: intent.market.clone(),
        side: intent.side,
        size: intent.size,
        notional_usd: usd(notional),
    }
}

pub fn filled(id: &str, price: &str, size: &str, fee: &str, when: &str) -> AccountCommand {
    AccountCommand::RecordExecution(ExecutionReport::Filled {
        signal_id: sid(id),
        client_order_id: coid(id),
        exchange_order_id: format!("ex-{id}"),
        fill: Fill {
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
    let mut all = Vec::new();
    for command in commands {
        let events = state
            .decide(command.clone())
            .unwrap_or_else(|err| panic!("{command:?} was refused: {err}"));
        for event in &events {
            state.apply(event.clone());
        }
        all.extend(events);
    }
    all
}
