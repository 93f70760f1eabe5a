//! Recording what the exchange did with a signal's order: fills (whole or partial), refusals,
//! failures and abandonment at the deadline, the compensating close of a position left without
//! protection, and the automatic halt when the exchange keeps failing.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::{
    fills, AccountError, AccountEvent, ClientOrderId, CompensationReport, ExecutionReport, Fill,
    InFlight, Position, Quantity, SignalId, SignalStage, TradingAccount, UsdAmount,
};

/// Who an automatic halt (repeated exchange failures, a fill that is not the order's, a failed
/// compensation) is recorded as: the execution saga's decision, not an operator's.
pub const AUTOMATIC_HALT_BY: &str = "execution";

/// A fill the account can book: the events it makes, and the position it leaves.
struct Booking {
    events: Vec<AccountEvent>,
    position_after: Decimal,
}

impl TradingAccount {
    pub(crate) fn record_execution(
        &self,
        report: ExecutionReport,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let limits = &self.profile()?.limits;
        let signal_id = report.signal_id().clone();
        let in_flight = self.in_flight_signal(&signal_id)?;
        let resting = match in_flight.stage {
            SignalStage::AwaitingExecution => false,
            // The order is on the book: only its end (a fill, or leaving the book) is news.
            SignalStage::Resting => true,
            // Already recorded: a resumed saga (or a second watcher) reports again.
            _ => return Ok(vec![]),
        };
        if resting
            && !matches!(
                report,
                ExecutionReport::Filled { .. }
                    | ExecutionReport::PartiallyFilled { .. }
                    | ExecutionReport::FilledUnprotected { .. }
                    | ExecutionReport::Expired { .. }
            )
        {
            return Ok(vec![]);
        }
        let reported = report.client_order_id();
        if reported != &in_flight.client_order_id {
            return Err(AccountError::ClientOrderIdMismatch {
                expected: in_flight.client_order_id.clone(),
                reported: reported.clone(),
            });
        }
        // The order's submission, unless it was recorded when the order came to rest.
        let submitted = |at: DateTime<Utc>| {
            (!resting).then(|| AccountEvent::OrderSubmitted {
                signal_id: signal_id.clone(),
                client_order_id: in_flight.client_order_id.clone(),
                market: in_flight.market.clone(),
                side: in_flight.side,
                size: in_flight.size,
                submitted_at: at,
            })
        };
        let released = AccountEvent::RiskReservationReleased {
            signal_id: signal_id.clone(),
            notional_usd: in_flight.reserved_usd,
        };
        // The exchange failed this order: one more in the streak, and the halt when it is long
        // enough.
        let failed = |event: AccountEvent, reason: &str, at: DateTime<Utc>| {
            let failures = self.consecutive_failures.saturating_add(1);
            let threshold = limits.halt_after_consecutive_failures;
            let halt = (threshold > 0 && failures >= threshold && self.halt.is_none()).then(|| {
                AccountEvent::TradingHalted {
                    by: AUTOMATIC_HALT_BY.to_owned(),
                    reason: format!(
                        "{failures} orders in a row could not be placed; the last: {reason}"
                    ),
                    at,
                }
            });
            let mut events = vec![event, released.clone()];
            events.extend(halt);
            events
        };
        Ok(match report {
            ExecutionReport::Filled {
                client_order_id,
                exchange_order_id,
                fill,
                at,
                ..
            } => {
                let mut events: Vec<AccountEvent> = submitted(at).into_iter().collect();
                match self.book(
                    in_flight,
                    &signal_id,
                    client_order_id,
                    exchange_order_id,
                    fill,
                    None,
                    at,
                ) {
                    Ok(booking) => events.extend(booking.events),
                    Err(mismatch) => events.extend(mismatch),
                }
                events
            }
            ExecutionReport::PartiallyFilled {
                client_order_id,
                exchange_order_id,
                fill,
                unfilled,
                at,
                ..
            } => {
                let mut events: Vec<AccountEvent> = submitted(at).into_iter().collect();
                let booked = self.book(
                    in_flight,
                    &signal_id,
                    client_order_id,
                    exchange_order_id,
                    fill,
                    Some(unfilled),
                    at,
                );
                match booked {
                    Ok(booking) => events.extend(booking.events),
                    Err(mismatch) => events.extend(mismatch),
                }
                events
            }
            ExecutionReport::FilledUnprotected {
                client_order_id,
                exchange_order_id,
                fill,
                reason,
                at,
                ..
            } => {
                let mut events: Vec<AccountEvent> = submitted(at).into_iter().collect();
                let side = fill.side;
                let size = fill.size.value();
                let booked = self.book(
                    in_flight,
                    &signal_id,
                    client_order_id,
                    exchange_order_id,
                    fill,
                    None,
                    at,
                );
                match booked {
                    Ok(booking) => {
                        events.extend(booking.events);
                        // What this fill left open in its own direction: never more than the
                        // fill, never what was held before on the other side.
                        let open = (side.sign() * booking.position_after).min(size);
                        if let Ok(size) = Quantity::new(open) {
                            events.push(AccountEvent::CompensationRequired {
                                signal_id: signal_id.clone(),
                                client_order_id: ClientOrderId::compensation_for(&signal_id),
                                market: in_flight.market.clone(),
                                side: side.opposite(),
                                size,
                                reason,
                                at,
                            });
                        }
                    }
                    Err(mismatch) => events.extend(mismatch),
                }
                events
            }
            ExecutionReport::Rejected {
                client_order_id,
                reason,
                at,
                ..
            } => submitted(at)
                .into_iter()
                .chain([
                    AccountEvent::OrderRejected {
                        signal_id: signal_id.clone(),
                        client_order_id,
                        reason,
                        at,
                    },
                    released,
                ])
                .collect(),
            ExecutionReport::Resting {
                client_order_id,
                exchange_order_id,
                good_til,
                at,
                ..
            } => submitted(at)
                .into_iter()
                .chain([AccountEvent::OrderResting {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    exchange_order_id,
                    good_til,
                    at,
                }])
                .collect(),
            // Compensation: nothing traded, the reservation goes back.
            ExecutionReport::Expired {
                client_order_id,
                exchange_order_id,
                reason,
                at,
                ..
            } => submitted(at)
                .into_iter()
                .chain([
                    AccountEvent::OrderExpired {
                        signal_id: signal_id.clone(),
                        client_order_id,
                        exchange_order_id,
                        reason,
                        at,
                    },
                    released,
                ])
                .collect(),
            ExecutionReport::Failed {
                client_order_id,
                reason,
                at,
                ..
            } => {
                let event = AccountEvent::OrderFailed {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason: reason.clone(),
                    at,
                };
                failed(event, &reason, at)
            }
            ExecutionReport::Abandoned {
                client_order_id,
                reason,
                at,
                ..
            } => {
                let event = AccountEvent::ExecutionAbandoned {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason: reason.clone(),
                    at,
                };
                failed(event, &reason, at)
            }
            // Compensation: the reservation made at approval is given back; nothing was sent.
            ExecutionReport::Cancelled {
                client_order_id,
                reason,
                at,
                ..
            } => vec![
                AccountEvent::OrderCancelled {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason,
                    at,
                },
                released,
            ],
        })
    }

    /// The events a fill of the signal's order makes: the fill (whole, or partial with the rest's
    /// reservation released) and the position it moves; or, when it is not the order's fill, the
    /// mismatch and the halt, with nothing booked.
    #[allow(clippy::too_many_arguments)]
    fn book(
        &self,
        in_flight: &InFlight,
        signal_id: &SignalId,
        client_order_id: ClientOrderId,
        exchange_order_id: String,
        fill: Fill,
        claimed_unfilled: Option<Quantity>,
        at: DateTime<Utc>,
    ) -> Result<Booking, Vec<AccountEvent>> {
        let position = self
            .positions
            .get(&in_flight.market)
            .cloned()
            .unwrap_or_default();
        let mut problems = fills::problems(in_flight, &fill);
        // Whatever the report calls it, less than the order is a partial fill: the rest is
        // never booked, and its reservation goes back.
        let unfilled = in_flight
            .size
            .value()
            .checked_sub(fill.size.value())
            .and_then(|rest| Quantity::new(rest).ok());
        if let Some(claimed) = claimed_unfilled {
            let adds_up = fill
                .size
                .value()
                .checked_add(claimed.value())
                .is_some_and(|total| total == in_flight.size.value());
            if !adds_up {
                problems.push(format!(
                    "filled {} and unfilled {claimed} do not add up to the order's {}",
                    fill.size, in_flight.size
                ));
            }
        }
        let moved = if problems.is_empty() {
            position
                .events_for_fill(
                    signal_id,
                    &in_flight.market,
                    in_flight.side,
                    fill.size,
                    fill.price,
                )
                .map_err(|refused| problems.push(refused.to_string()))
                .ok()
        } else {
            None
        };
        let Some(moved) = moved else {
            let reason = problems.join("; ");
            let halt = self.halt.is_none().then(|| AccountEvent::TradingHalted {
                by: AUTOMATIC_HALT_BY.to_owned(),
                reason: format!(
                    "the exchange reported a fill that is not order {client_order_id}'s: {reason}"
                ),
                at,
            });
            let mut events = vec![AccountEvent::FillMismatch {
                signal_id: signal_id.clone(),
                client_order_id,
                exchange_order_id,
                expected_market: in_flight.market.clone(),
                expected_side: in_flight.side,
                expected_remaining: in_flight.remaining(),
                reported_market: fill.market,
                reported_side: fill.side,
                reported_size: fill.size,
                reported_price: fill.price,
                reported_fee: fill.fee,
                reason,
                at,
            }];
            events.extend(halt);
            return Err(events);
        };
        let position_after = position_after(&position, &moved);
        let fee_usd = UsdAmount::new(fill.fee);
        let mut events = vec![match unfilled {
            None => AccountEvent::OrderFilled {
                signal_id: signal_id.clone(),
                client_order_id,
                exchange_order_id,
                market: in_flight.market.clone(),
                side: in_flight.side,
                price: fill.price,
                size: fill.size,
                fee_usd,
                filled_at: at,
            },
            Some(unfilled) => AccountEvent::OrderPartiallyFilled {
                signal_id: signal_id.clone(),
                client_order_id,
                exchange_order_id,
                market: in_flight.market.clone(),
                side: in_flight.side,
                price: fill.price,
                size: fill.size,
                unfilled,
                fee_usd,
                filled_at: at,
            },
        }];
        events.extend(moved);
        if let Some(unfilled) = unfilled {
            events.push(AccountEvent::RiskReservationReleased {
                signal_id: signal_id.clone(),
                notional_usd: unfilled_share(in_flight, unfilled),
            });
        }
        Ok(Booking {
            events,
            position_after,
        })
    }

    pub(crate) fn record_compensation(
        &self,
        report: CompensationReport,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.profile()?;
        let signal_id = report.signal_id().clone();
        let in_flight = self.in_flight_signal(&signal_id)?;
        let close = match (&in_flight.stage, &in_flight.compensation) {
            (SignalStage::AwaitingCompensation, Some(close)) => close,
            // Already recorded (a resumed saga reports again), or never required.
            _ => return Ok(vec![]),
        };
        let halt = |reason: String, at: DateTime<Utc>| {
            self.halt.is_none().then(|| AccountEvent::TradingHalted {
                by: AUTOMATIC_HALT_BY.to_owned(),
                reason,
                at,
            })
        };
        let failed = |reason: String, at: DateTime<Utc>| {
            let mut events = vec![AccountEvent::CompensationFailed {
                signal_id: signal_id.clone(),
                client_order_id: close.client_order_id.clone(),
                reason: reason.clone(),
                at,
            }];
            events.extend(halt(
                format!(
                    "the {} {} position signal {signal_id} opened could not be closed: {reason}",
                    close.size, close.market
                ),
                at,
            ));
            events
        };
        match report {
            CompensationReport::Failed {
                client_order_id,
                reason,
                at,
                ..
            } => {
                if client_order_id != close.client_order_id {
                    return Err(AccountError::ClientOrderIdMismatch {
                        expected: close.client_order_id.clone(),
                        reported: client_order_id,
                    });
                }
                Ok(failed(reason, at))
            }
            CompensationReport::Closed {
                client_order_id,
                exchange_order_id,
                fill,
                at,
                ..
            } => {
                if client_order_id != close.client_order_id {
                    return Err(AccountError::ClientOrderIdMismatch {
                        expected: close.client_order_id.clone(),
                        reported: client_order_id,
                    });
                }
                let position = self
                    .positions
                    .get(&close.market)
                    .cloned()
                    .unwrap_or_default();
                let mut problems =
                    fills::problems_against(&close.market, close.side, close.size, &fill);
                // Reduce-only: it may shrink the position, never turn it around.
                if close.side.sign() * position.size >= Decimal::ZERO
                    || fill.size.value() > position.size.abs()
                {
                    problems.push(format!(
                        "a {} close of {} is not reduce-only against the position of {}",
                        close.side.as_str(),
                        fill.size,
                        position.size
                    ));
                }
                let moved = if problems.is_empty() {
                    position
                        .events_for_fill(
                            &signal_id,
                            &close.market,
                            close.side,
                            fill.size,
                            fill.price,
                        )
                        .map_err(|refused| problems.push(refused.to_string()))
                        .ok()
                } else {
                    None
                };
                let Some(moved) = moved else {
                    return Ok(failed(
                        format!(
                            "the exchange reported a fill that is not the close's: {}",
                            problems.join("; ")
                        ),
                        at,
                    ));
                };
                let mut events = vec![AccountEvent::PositionCompensated {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    exchange_order_id,
                    market: close.market.clone(),
                    side: close.side,
                    price: fill.price,
                    size: fill.size,
                    fee_usd: UsdAmount::new(fill.fee),
                    at,
                }];
                events.extend(moved);
                if fill.size < close.size {
                    events.extend(halt(
                        format!(
                            "only {} of the {} {} position signal {signal_id} opened could be \
                             closed",
                            fill.size, close.size, close.market
                        ),
                        at,
                    ));
                }
                Ok(events)
            }
        }
    }
}

/// The signed size `position` holds after `moved`, its fill's events.
fn position_after(position: &Position, moved: &[AccountEvent]) -> Decimal {
    let mut after = position.clone();
    for event in moved {
        after.apply(event);
    }
    after.size
}

/// The part of the signal's reservation its unfilled rest stands for. At most the reservation:
/// the rest is less than the order.
fn unfilled_share(in_flight: &InFlight, unfilled: Quantity) -> UsdAmount {
    in_flight
        .reserved_usd
        .value()
        .checked_mul(unfilled.value())
        .and_then(|part| part.checked_div(in_flight.size.value()))
        .map_or(in_flight.reserved_usd, UsdAmount::new)
        .min(in_flight.reserved_usd)
}
