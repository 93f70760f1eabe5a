//! The texts a trader reads: what happened, to which market, at what price, what it left them
//! holding, and the signal id to look it up by. Plain text (no parse mode): nothing in a reason
//! can break the formatting.

use rust_decimal::Decimal;

use aggregates::{AccountEvent, Market, OrderType, Quantity, Side, SignalId};
use chrono::{DateTime, Utc};

/// The order a signal was approved as: what a message about it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
}

impl OrderSummary {
    fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.side.as_str().to_uppercase(),
            self.size,
            self.market
        )
    }
}

/// The message for a signal's outcome. `events` starts with the event that concluded it (a fill,
/// whole or partial, a rejection, failure, abandonment at the deadline, cancellation, mismatch,
/// or the outcome of a compensating close) and goes on with the events recorded beside it (the
/// position's change, the released reservation, an automatic halt); `order` is the approved
/// order, when known. `None` when the first event concludes nothing.
pub fn signal_outcome(order: Option<&OrderSummary>, events: &[AccountEvent]) -> Option<String> {
    let (concluding, beside) = events.split_first()?;
    let signal_id = concluding.signal_id()?;
    let beside: Vec<&AccountEvent> = beside
        .iter()
        .filter(|event| recorded_with(event, signal_id))
        .collect();
    // An automatic halt is decided with the failure that triggered it: the trader reads both.
    let halt = beside.iter().find_map(|event| match event {
        AccountEvent::TradingHalted { by, reason, .. } => Some(halted(by, reason)),
        _ => None,
    });
    let order_text = order.map(OrderSummary::describe);
    let released = beside
        .iter()
        .any(|event| matches!(event, AccountEvent::RiskReservationReleased { .. }));
    let with_halt = |text: String| match &halt {
        Some(halt) => format!("{text}\n\n{halt}"),
        None => text,
    };
    Some(match concluding {
        AccountEvent::OrderFilled {
            market,
            side,
            size,
            price,
            fee_usd,
            ..
        } => fill(
            &Fill {
                market,
                side: *side,
                size: *size,
                price: *price,
                fee_usd: Some(fee_usd.value()),
                unfilled: None,
            },
            &beside,
            signal_id,
        ),
        AccountEvent::OrderPartiallyFilled {
            market,
            side,
            size,
            price,
            unfilled,
            fee_usd,
            ..
        } => fill(
            &Fill {
                market,
                side: *side,
                size: *size,
                price: *price,
                fee_usd: Some(fee_usd.value()),
                unfilled: Some(*unfilled),
            },
            &beside,
            signal_id,
        ),
        AccountEvent::OrderRejected { reason, .. } => rejected(order_text, reason, signal_id),
        AccountEvent::OrderExpired { reason, .. } => expired(order_text, reason, signal_id),
        AccountEvent::OrderFailed { reason, .. } => {
            with_halt(failed(order_text, reason, released, signal_id))
        }
        AccountEvent::ExecutionAbandoned { reason, .. } => {
            with_halt(abandoned(order_text, reason, released, signal_id))
        }
        AccountEvent::OrderCancelled { reason, .. } => cancelled(order_text, reason, signal_id),
        AccountEvent::FillMismatch {
            client_order_id,
            reason,
            ..
        } => mismatch(&client_order_id.to_string(), reason, signal_id),
        AccountEvent::PositionCompensated {
            market,
            side,
            size,
            price,
            ..
        } => with_halt(compensated(
            order_text,
            &Fill {
                market,
                side: *side,
                size: *size,
                price: *price,
                fee_usd: None,
                unfilled: None,
            },
            &beside,
            signal_id,
        )),
        AccountEvent::CompensationFailed { reason, .. } => {
            with_halt(compensation_failed(order_text, reason, signal_id))
        }
        _ => return None,
    })
}

/// The message for `signal_id` rebuilt from an account's whole history (a retry, long after).
pub fn from_history(history: &[AccountEvent], signal_id: &SignalId) -> Option<String> {
    let order = history.iter().find_map(|event| match event {
        AccountEvent::RiskApproved {
            signal_id: approved,
            market,
            side,
            size,
            ..
        } if approved == signal_id => Some(OrderSummary {
            market: market.clone(),
            side: *side,
            size: *size,
        }),
        _ => None,
    });
    // The last conclusion is the one told: a compensating close's outcome follows its fill.
    let start = history
        .iter()
        .rposition(|event| event.signal_id() == Some(signal_id) && concludes(event))?;
    // The events recorded with the conclusion follow it.
    let end = history[start + 1..]
        .iter()
        .position(|event| !recorded_with(event, signal_id))
        .map_or(history.len(), |offset| start + 1 + offset);
    signal_outcome(order.as_ref(), &history[start..end])
}

/// Whether `event`, following a signal's conclusion, can be part of the same decision: the
/// signal's own events, and the automatic halt the conclusion triggered.
pub fn recorded_with(event: &AccountEvent, signal_id: &SignalId) -> bool {
    event.signal_id() == Some(signal_id) || matches!(event, AccountEvent::TradingHalted { .. })
}

/// Whether the event ends a step of a signal's execution that the trader is told about: its
/// order's outcome, or the outcome of the close that compensated its fill.
pub fn concludes(event: &AccountEvent) -> bool {
    matches!(
        event,
        AccountEvent::OrderFilled { .. }
            | AccountEvent::OrderPartiallyFilled { .. }
            | AccountEvent::OrderRejected { .. }
            | AccountEvent::OrderExpired { .. }
            | AccountEvent::OrderFailed { .. }
            | AccountEvent::ExecutionAbandoned { .. }
            | AccountEvent::OrderCancelled { .. }
            | AccountEvent::FillMismatch { .. }
            | AccountEvent::PositionCompensated { .. }
            | AccountEvent::CompensationFailed { .. }
    )
}

pub struct Fill<'a> {
    pub market: &'a Market,
    pub side: Side,
    pub size: Quantity,
    pub price: Decimal,
    pub fee_usd: Option<Decimal>,
    /// What the exchange cancelled of a partially filled order.
    pub unfilled: Option<Quantity>,
}

/// A fill, with the position it left and the PnL it realized when those were recorded with it.
pub fn fill(fill: &Fill<'_>, beside: &[&AccountEvent], signal_id: &SignalId) -> String {
    let headline = if fill.unfilled.is_some() {
        "◐ Partially filled"
    } else {
        "✅ Filled"
    };
    let mut text = format!(
        "{headline}: {} {} {} at {}",
        fill.side.as_str().to_uppercase(),
        fill.size,
        fill.market,
        fill.price
    );
    if let Some(unfilled) = fill.unfilled {
        text.push_str(&format!(
            "\nNot filled: {unfilled} (the exchange cancelled the rest; its daily volume was \
             given back)"
        ));
    }
    if let Some(fee) = fill.fee_usd {
        text.push_str(&format!("\nFee: {fee} USD"));
    }
    text.push_str(&after_fill(fill, beside));
    text.push_str(&signal_line(signal_id));
    text
}

/// The position a fill left and the PnL it realized, when those were recorded with it.
fn after_fill(fill: &Fill<'_>, beside: &[&AccountEvent]) -> String {
    let mut text = String::new();
    let mut realized = None::<Decimal>;
    let mut after = None::<String>;
    for event in beside {
        match event {
            AccountEvent::PositionOpened {
                side,
                size,
                entry_price,
                ..
            } => after = Some(holding(*side, *size, *entry_price, fill.market)),
            AccountEvent::PositionIncreased {
                new_size,
                average_entry_price,
                ..
            } => {
                after = Some(holding(
                    fill.side,
                    *new_size,
                    *average_entry_price,
                    fill.market,
                ))
            }
            AccountEvent::PositionReduced {
                new_size,
                realized_pnl_usd,
                ..
            } => {
                // What is left is on the side this fill traded against.
                let held = match fill.side {
                    Side::Buy => "short",
                    Side::Sell => "long",
                };
                after = Some(format!("{held} {new_size} {}", fill.market));
                realized = Some(realized.unwrap_or_default() + realized_pnl_usd.value());
            }
            AccountEvent::PositionClosed {
                realized_pnl_usd, ..
            } => {
                after = Some(format!("flat in {}", fill.market));
                realized = Some(realized.unwrap_or_default() + realized_pnl_usd.value());
            }
            _ => {}
        }
    }
    if let Some(after) = after {
        text.push_str(&format!("\nPosition now: {after}"));
    }
    if let Some(pnl) = realized {
        let sign = if pnl.is_sign_positive() && !pnl.is_zero() {
            "+"
        } else {
            ""
        };
        text.push_str(&format!("\nRealized PnL: {sign}{pnl} USD"));
    }
    text
}

fn holding(side: Side, size: Quantity, entry: Decimal, market: &Market) -> String {
    let direction = match side {
        Side::Buy => "long",
        Side::Sell => "short",
    };
    format!("{direction} {size} {market} (entry {})", entry.normalize())
}

pub fn rejected(order: Option<String>, reason: &str, signal_id: &SignalId) -> String {
    format!(
        "❌ Order rejected by the exchange{}\nReason: {reason}\nNothing was traded.{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

/// A limit order resting on the book: its outcome is told when it ends.
pub fn resting(
    order: &OrderSummary,
    order_type: &OrderType,
    good_til: DateTime<Utc>,
    signal_id: &SignalId,
) -> String {
    let limit = match order_type {
        OrderType::Limit { price } => format!(" at {}", price.normalize()),
        OrderType::Market => String::new(),
    };
    format!(
        "📌 Limit order resting on the book: {}{limit}\nIt stays until it fills or expires at {} \
         UTC; you will be told how it ends.{}",
        order.describe(),
        good_til.format("%Y-%m-%d %H:%M:%S"),
        signal_line(signal_id)
    )
}

/// A resting order left the book with nothing filled (compensation: the reservation given back).
pub fn expired(order: Option<String>, reason: &str, signal_id: &SignalId) -> String {
    format!(
        "⌛ Limit order ended unfilled{}\nReason: {reason}\nNothing was traded; the daily volume \
         it reserved was given back.{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

pub fn failed(order: Option<String>, reason: &str, released: bool, signal_id: &SignalId) -> String {
    let compensation = if released {
        "\nNothing was traded; the daily volume it reserved was given back."
    } else {
        "\nNothing was traded."
    };
    format!(
        "⚠️ Order could not be placed{}\nReason: {reason}{compensation}{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

/// The deadline passed before the exchange took the order (compensation: nothing traded, the
/// reservation given back).
pub fn abandoned(
    order: Option<String>,
    reason: &str,
    released: bool,
    signal_id: &SignalId,
) -> String {
    let compensation = if released {
        "\nNothing was traded; the daily volume it reserved was given back."
    } else {
        "\nNothing was traded."
    };
    format!(
        "⌛ Order abandoned at its deadline{}\nReason: {reason}{compensation}{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

pub fn cancelled(order: Option<String>, reason: &str, signal_id: &SignalId) -> String {
    format!(
        "⏸️ Order not placed{}\nReason: {reason}\nNothing was traded.{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

pub fn mismatch(client_order_id: &str, reason: &str, signal_id: &SignalId) -> String {
    format!(
        "🛑 The exchange reported a fill that is not order {client_order_id}'s ({reason}).\n\
         Nothing was booked and trading is halted until an operator resumes it.{}",
        signal_line(signal_id)
    )
}

/// A risk rule refused the signal before any order.
pub fn risk_rejected(rule: &str, detail: &str, signal_id: &SignalId) -> String {
    format!(
        "🚫 Signal refused by the risk rule {rule}: {detail}\nNothing was traded.{}",
        signal_line(signal_id)
    )
}

/// Trading on the account was halted (by an operator, or automatically after failures).
pub fn halted(by: &str, reason: &str) -> String {
    format!("🛑 Trading halted by {by}: {reason}\nNew signals are refused until it is resumed.")
}

pub fn resumed(by: &str, reason: &str) -> String {
    format!("▶️ Trading resumed by {by}: {reason}")
}

/// The message for an account notice (`aggregates::is_notice`): an operator's halt or resume, a
/// drift found or cleared. `None` for any other event.
pub fn notice(event: &AccountEvent) -> Option<String> {
    Some(match event {
        AccountEvent::TradingHalted { by, reason, at } => operator_halt(by, reason, at),
        AccountEvent::TradingResumed { by, reason, at } => format!(
            "{}\nNew signals are taken again from now on (since {}).",
            resumed(by, reason),
            at.format(AT)
        ),
        AccountEvent::PositionDriftDetected {
            venue,
            market,
            ledger_size,
            venue_size,
            ..
        } => drift(venue, market, *ledger_size, *venue_size),
        AccountEvent::PositionDriftCleared {
            venue,
            market,
            size,
            ..
        } => drift_cleared(venue, market, *size),
        AccountEvent::EmergencyStopNoted {
            engaged: true,
            by,
            reason,
            at,
            ..
        } => format!(
            "🚨 Emergency stop: all trading on this service halted by {by} at {}: {reason}\n\
             Every new signal is refused until it is released; resting orders are cancelled. \
             Open positions stay open: nothing is closed for you.",
            at.format(AT)
        ),
        AccountEvent::EmergencyStopNoted {
            engaged: false,
            by,
            reason,
            at,
            ..
        } => format!(
            "✅ Emergency stop released by {by} at {}: {reason}\nNew signals are taken again.",
            at.format(AT)
        ),
        _ => return None,
    })
}

/// How a notice dates what it tells: a retried message may arrive after a later one.
const AT: &str = "%Y-%m-%d %H:%M UTC";

/// An operator halted the account: who, why, and what it means for the trader.
fn operator_halt(by: &str, reason: &str, at: &chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "🛑 Trading halted by {by} at {}: {reason}\nEvery new signal is refused until trading is \
         resumed. Open positions stay open: nothing is closed for you.",
        at.format(AT)
    )
}

/// A compensating close: the signal's order filled but its take-profit/stop-loss could not be
/// placed, so the service closed what the fill opened with a reduce-only order.
pub fn compensated(
    order: Option<String>,
    close: &Fill<'_>,
    beside: &[&AccountEvent],
    signal_id: &SignalId,
) -> String {
    format!(
        "↩️ Order filled{}, but its take-profit/stop-loss could not be placed, so the position \
         was closed.\nClosed with a reduce-only {} {} {} at {}{}{}",
        order_suffix(order),
        close.side.as_str().to_uppercase(),
        close.size,
        close.market,
        close.price,
        after_fill(close, beside),
        signal_line(signal_id)
    )
}

/// The compensating close could not be made: the position stands without protection.
pub fn compensation_failed(order: Option<String>, reason: &str, signal_id: &SignalId) -> String {
    format!(
        "🚨 Order filled{}, but its take-profit/stop-loss could not be placed, and closing the \
         position failed.\nReason: {reason}\nThe position is open without protection: close it \
         by hand.{}",
        order_suffix(order),
        signal_line(signal_id)
    )
}

/// Reconciliation found the venue holding something other than the ledger. Nothing is changed:
/// which side is right is for a person to find out.
pub fn drift(venue: &str, market: &Market, ledger_size: Decimal, venue_size: Decimal) -> String {
    format!(
        "🔎 Position drift in {market}: the ledger holds {} but {venue} reports {}.\n\
         Nothing was changed; check the account on {venue} before trading {market} again.",
        signed(ledger_size),
        signed(venue_size)
    )
}

/// A drift reconciliation reported earlier is gone.
pub fn drift_cleared(venue: &str, market: &Market, size: Decimal) -> String {
    format!(
        "✔️ Position drift in {market} resolved: {venue} and the ledger both hold {}.",
        signed(size)
    )
}

fn signed(size: Decimal) -> String {
    if size.is_zero() {
        "nothing".to_owned()
    } else if size.is_sign_negative() {
        format!("short {}", size.abs().normalize())
    } else {
        format!("long {}", size.normalize())
    }
}

fn order_suffix(order: Option<String>) -> String {
    order.map(|order| format!(": {order}")).unwrap_or_default()
}

fn signal_line(signal_id: &SignalId) -> String {
    format!("\nSignal: {signal_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::{ClientOrderId, UsdAmount};
    use chrono::Utc;

    fn market() -> Market {
        Market::parse("ETH-USD").unwrap_or_else(|_| panic!("a market"))
    }

    fn qty(text: &str) -> Quantity {
        Quantity::new(text.parse().unwrap_or_default()).unwrap_or_else(|_| panic!("a quantity"))
    }

    #[test]
    fn a_resting_order_is_told_with_its_limit_and_its_end_says_nothing_traded() {
        let signal = SignalId("sig-r".into());
        let order = OrderSummary {
            market: market(),
            side: Side::Buy,
            size: qty("0.5"),
        };
        let until = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let limit = OrderType::Limit {
            price: Decimal::new(29_500, 1),
        };
        let resting = resting(&order, &limit, until, &signal);
        assert!(
            resting.contains("resting on the book: BUY 0.5 ETH-USD at 2950"),
            "{resting}"
        );
        assert!(resting.contains("2027-01-15 08:00:00 UTC"), "{resting}");

        let events = vec![
            AccountEvent::OrderExpired {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-r".into()),
                exchange_order_id: "x1".into(),
                reason: "expired".into(),
                at: Utc::now(),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: signal.clone(),
                notional_usd: UsdAmount::new(Decimal::new(1475, 0)),
            },
        ];
        let ended = signal_outcome(Some(&order), &events).unwrap_or_default();
        assert!(ended.contains("ended unfilled: BUY 0.5 ETH-USD"), "{ended}");
        assert!(ended.contains("Nothing was traded"), "{ended}");
        assert!(ended.contains("Signal: sig-r"), "{ended}");
    }

    #[test]
    fn a_fill_that_reduces_a_position_tells_what_is_left_and_the_pnl() {
        let signal = SignalId("sig-1".into());
        let events = vec![
            AccountEvent::OrderFilled {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-1".into()),
                exchange_order_id: "x1".into(),
                market: market(),
                side: Side::Sell,
                price: Decimal::new(3100, 0),
                size: qty("0.2"),
                fee_usd: UsdAmount::new(Decimal::new(31, 2)),
                filled_at: Utc::now(),
            },
            AccountEvent::PositionReduced {
                signal_id: signal.clone(),
                market: market(),
                size_delta: qty("0.2"),
                new_size: qty("0.3"),
                realized_pnl_usd: UsdAmount::new(Decimal::new(20, 0)),
            },
        ];
        let text = signal_outcome(None, &events).unwrap_or_default();
        assert_eq!(
            text,
            "✅ Filled: SELL 0.2 ETH-USD at 3100\nFee: 0.31 USD\nPosition now: long 0.3 ETH-USD\n\
             Realized PnL: +20 USD\nSignal: sig-1"
        );
    }

    #[test]
    fn a_failure_names_the_order_and_the_compensation() {
        let signal = SignalId("sig-2".into());
        let events = vec![
            AccountEvent::OrderFailed {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-2".into()),
                reason: "exchange unavailable".into(),
                at: Utc::now(),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: signal.clone(),
                notional_usd: UsdAmount::new(Decimal::from(100)),
            },
        ];
        let order = OrderSummary {
            market: market(),
            side: Side::Buy,
            size: qty("0.5"),
        };
        let text = signal_outcome(Some(&order), &events).unwrap_or_default();
        assert!(text.contains("BUY 0.5 ETH-USD"), "{text}");
        assert!(text.contains("exchange unavailable"), "{text}");
        assert!(text.contains("given back"), "{text}");
        assert!(text.ends_with("Signal: sig-2"), "{text}");
    }

    #[test]
    fn a_failure_that_halts_the_account_says_so() {
        let signal = SignalId("sig-3".into());
        let history = vec![
            AccountEvent::OrderFailed {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-3".into()),
                reason: "exchange unavailable".into(),
                at: Utc::now(),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: signal.clone(),
                notional_usd: UsdAmount::new(Decimal::from(100)),
            },
            AccountEvent::TradingHalted {
                by: "risk".into(),
                reason: "3 orders in a row could not be placed".into(),
                at: Utc::now(),
            },
        ];
        let text = from_history(&history, &signal).unwrap_or_default();
        assert!(text.contains("Order could not be placed"), "{text}");
        assert!(
            text.ends_with(
                "🛑 Trading halted by risk: 3 orders in a row could not be placed\n\
                 New signals are refused until it is resumed."
            ),
            "{text}"
        );
    }

    fn eth_buy(size: &str) -> OrderSummary {
        OrderSummary {
            market: market(),
            side: Side::Buy,
            size: qty(size),
        }
    }

    fn automatic_halt(reason: &str) -> AccountEvent {
        AccountEvent::TradingHalted {
            by: "execution".into(),
            reason: reason.into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_partial_fill_tells_what_filled_and_what_did_not() {
        let signal = SignalId("sig-4".into());
        let events = vec![
            AccountEvent::OrderPartiallyFilled {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-4".into()),
                exchange_order_id: "x4".into(),
                market: market(),
                side: Side::Buy,
                price: Decimal::new(3200, 0),
                size: qty("0.25"),
                unfilled: qty("0.25"),
                fee_usd: UsdAmount::new(Decimal::new(40, 2)),
                filled_at: Utc::now(),
            },
            AccountEvent::PositionOpened {
                signal_id: signal.clone(),
                market: market(),
                side: Side::Buy,
                size: qty("0.25"),
                entry_price: Decimal::new(3200, 0),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: signal.clone(),
                notional_usd: UsdAmount::new(Decimal::from(800)),
            },
        ];
        let text = signal_outcome(Some(&eth_buy("0.5")), &events).unwrap_or_default();
        assert_eq!(
            text,
            "◐ Partially filled: BUY 0.25 ETH-USD at 3200\nNot filled: 0.25 (the exchange \
             cancelled the rest; its daily volume was given back)\nFee: 0.4 USD\nPosition now: \
             long 0.25 ETH-USD (entry 3200)\nSignal: sig-4"
        );
    }

    #[test]
    fn an_abandoned_signal_says_nothing_traded_and_adds_the_halt_it_caused() {
        let signal = SignalId("sig-5".into());
        let events = vec![
            AccountEvent::ExecutionAbandoned {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-5".into()),
                reason: "its deadline of 120 s from approval passed".into(),
                at: Utc::now(),
            },
            AccountEvent::RiskReservationReleased {
                signal_id: signal.clone(),
                notional_usd: UsdAmount::new(Decimal::from(100)),
            },
            automatic_halt("3 orders in a row could not be placed"),
        ];
        let text = signal_outcome(Some(&eth_buy("0.5")), &events).unwrap_or_default();
        assert!(
            text.starts_with("⌛ Order abandoned at its deadline: BUY 0.5 ETH-USD\n"),
            "{text}"
        );
        assert!(text.contains("deadline of 120 s"), "{text}");
        assert!(text.contains("given back"), "{text}");
        assert!(
            text.ends_with("🛑 Trading halted by execution: 3 orders in a row could not be placed\nNew signals are refused until it is resumed."),
            "{text}"
        );
    }

    /// The fill that needed a close is not what the trader reads: the close is, with the
    /// position it left.
    #[test]
    fn a_compensating_close_is_told_from_history_with_the_position_it_left() {
        let signal = SignalId("sig-6".into());
        let history = vec![
            AccountEvent::RiskApproved {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-6".into()),
                market: market(),
                side: Side::Buy,
                size: qty("0.5"),
                notional_usd: UsdAmount::new(Decimal::from(1600)),
                reduce_only: false,
                order_type: aggregates::OrderType::Market,
                take_profit: None,
                stop_loss: Some(Decimal::from(3000)),
            },
            AccountEvent::OrderFilled {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-6".into()),
                exchange_order_id: "x6".into(),
                market: market(),
                side: Side::Buy,
                price: Decimal::new(3200, 0),
                size: qty("0.5"),
                fee_usd: UsdAmount::new(Decimal::new(80, 2)),
                filled_at: Utc::now(),
            },
            AccountEvent::PositionCompensated {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-6-close".into()),
                exchange_order_id: "x7".into(),
                market: market(),
                side: Side::Sell,
                price: Decimal::new(3190, 0),
                size: qty("0.5"),
                fee_usd: UsdAmount::new(Decimal::new(80, 2)),
                at: Utc::now(),
            },
            AccountEvent::PositionClosed {
                signal_id: signal.clone(),
                market: market(),
                size_delta: qty("0.5"),
                realized_pnl_usd: UsdAmount::new(Decimal::from(-5)),
            },
        ];
        let text = from_history(&history, &signal).unwrap_or_default();
        assert_eq!(
            text,
            "↩️ Order filled: BUY 0.5 ETH-USD, but its take-profit/stop-loss could not be placed, \
             so the position was closed.\nClosed with a reduce-only SELL 0.5 ETH-USD at 3190\n\
             Position now: flat in ETH-USD\nRealized PnL: -5 USD\nSignal: sig-6"
        );
    }

    #[test]
    fn a_failed_close_says_to_close_by_hand_and_that_trading_is_halted() {
        let signal = SignalId("sig-7".into());
        let events = vec![
            AccountEvent::CompensationFailed {
                signal_id: signal.clone(),
                client_order_id: ClientOrderId("lh-sig-7-close".into()),
                reason: "exchange unavailable".into(),
                at: Utc::now(),
            },
            automatic_halt("the 0.5 ETH-USD position signal sig-7 opened could not be closed"),
        ];
        let text = signal_outcome(Some(&eth_buy("0.5")), &events).unwrap_or_default();
        assert!(
            text.starts_with("🚨 Order filled: BUY 0.5 ETH-USD, but"),
            "{text}"
        );
        assert!(text.contains("close it by hand"), "{text}");
        assert!(text.contains("Signal: sig-7"), "{text}");
        assert!(
            text.contains("🛑 Trading halted by execution: the 0.5 ETH-USD position"),
            "{text}"
        );
    }

    fn at_noon() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-28T12:05:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn an_operator_halt_says_who_why_and_what_it_means() {
        let text = notice(&AccountEvent::TradingHalted {
            by: "ops-carol".into(),
            reason: "margin call".into(),
            at: at_noon(),
        })
        .unwrap();
        assert_eq!(
            text,
            "🛑 Trading halted by ops-carol at 2026-11-28 12:05 UTC: margin call\nEvery new \
             signal is refused until trading is resumed. Open positions stay open: nothing is \
             closed for you."
        );
    }

    #[test]
    fn a_resume_says_signals_are_taken_again() {
        let text = notice(&AccountEvent::TradingResumed {
            by: "ops".into(),
            reason: "funded".into(),
            at: at_noon(),
        })
        .unwrap();
        assert_eq!(
            text,
            "▶️ Trading resumed by ops: funded\nNew signals are taken again from now on (since \
             2026-11-28 12:05 UTC)."
        );
    }

    #[test]
    fn only_account_notices_have_a_notice() {
        assert!(notice(&AccountEvent::RiskReservationReleased {
            signal_id: SignalId("s".into()),
            notional_usd: Default::default(),
        })
        .is_none());
    }
}
