//! Recording what the exchange did with a signal's order, and the automatic halt when it keeps
//! failing.

use chrono::{DateTime, Utc};

use crate::{
    fills, AccountError, AccountEvent, ExecutionReport, SignalStage, TradingAccount, UsdAmount,
};

/// Who the automatic halt after repeated exchange failures is recorded as.
pub const AUTOMATIC_HALT_BY: &str = "risk";

impl TradingAccount {
    pub(crate) fn record_execution(
        &self,
        report: ExecutionReport,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let limits = &self.profile()?.limits;
        let signal_id = report.signal_id().clone();
        let in_flight = self.in_flight_signal(&signal_id)?;
        if in_flight.stage != SignalStage::AwaitingExecution {
            // Already recorded: a resumed saga reports again. Nothing new happened.
            return Ok(vec![]);
        }
        let reported = report.client_order_id();
        if reported != &in_flight.client_order_id {
            return Err(AccountError::ClientOrderIdMismatch {
                expected: in_flight.client_order_id.clone(),
                reported: reported.clone(),
            });
        }
        let submitted = |at: DateTime<Utc>| AccountEvent::OrderSubmitted {
            signal_id: signal_id.clone(),
            client_order_id: in_flight.client_order_id.clone(),
            market: in_flight.market.clone(),
            side: in_flight.side,
            size: in_flight.size,
            submitted_at: at,
        };
        let released = AccountEvent::RiskReservationReleased {
            signal_id: signal_id.clone(),
            notional_usd: in_flight.reserved_usd,
        };
        Ok(match report {
            ExecutionReport::Filled {
                client_order_id,
                exchange_order_id,
                fill,
                at,
                ..
            } => {
                let position = self
                    .positions
                    .get(&in_flight.market)
                    .cloned()
                    .unwrap_or_default();
                let mut problems = fills::problems(in_flight, &fill);
                let moved = if problems.is_empty() {
                    position
                        .events_for_fill(
                            &signal_id,
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
                            "the exchange reported a fill that is not order {client_order_id}'s: \
                             {reason}"
                        ),
                        at,
                    });
                    let mut events = vec![
                        submitted(at),
                        AccountEvent::FillMismatch {
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
                        },
                    ];
                    events.extend(halt);
                    return Ok(events);
                };
                let mut events = vec![
                    submitted(at),
                    AccountEvent::OrderFilled {
                        signal_id: signal_id.clone(),
                        client_order_id,
                        exchange_order_id,
                        market: in_flight.market.clone(),
                        side: in_flight.side,
                        price: fill.price,
                        size: fill.size,
                        fee_usd: UsdAmount::new(fill.fee),
                        filled_at: at,
                    },
                ];
                events.extend(moved);
                events
            }
            ExecutionReport::Rejected {
                client_order_id,
                reason,
                at,
                ..
            } => vec![
                submitted(at),
                AccountEvent::OrderRejected {
                    signal_id: signal_id.clone(),
                    client_order_id,
                    reason,
                    at,
                },
                released,
            ],
            ExecutionReport::Failed {
                client_order_id,
                reason,
                at,
                ..
            } => {
                let failures = self.consecutive_failures.saturating_add(1);
                let threshold = limits.halt_after_consecutive_failures;
                let halt =
                    (threshold > 0 && failures >= threshold && self.halt.is_none()).then(|| {
                        AccountEvent::TradingHalted {
                            by: AUTOMATIC_HALT_BY.to_owned(),
                            reason: format!(
                            "{failures} orders in a row could not be placed; the last: {reason}"
                        ),
                            at,
                        }
                    });
                let mut events = vec![
                    AccountEvent::OrderFailed {
                        signal_id: signal_id.clone(),
                        client_order_id,
                        reason,
                        at,
                    },
                    released,
                ];
                events.extend(halt);
                events
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
}
