//! Receiving a signal: whether it is taken up at all, the order it resolves to, and risk's verdict
//! on that order.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::risk::{rule, ProposedOrder, RiskCheck};
use crate::{
    AccountError, AccountEvent, ClientOrderId, Quantity, RejectionReason, Side, SignalIntent,
    TradeInstruction, TradingAccount, Venue,
};

/// What a signal's instruction comes to, given the account's exposure in its market.
#[derive(Debug, Clone, PartialEq)]
enum Resolution {
    Order(ProposedOrder),
    /// The account already holds what the signal asks for.
    NoChange(String),
    /// The instruction cannot be turned into an order at all.
    Refused(RiskCheck),
}

impl TradingAccount {
    /// Decides in this order: duplicate key, same signal in flight, the user's quota (spent: an
    /// error, nothing recorded), account halt, emergency stop,
    /// staleness, nothing to do, then risk. A signal that is not taken up is one `SignalRejected`;
    /// one that is, is `SignalReceived` and then `RiskApproved` or `RiskRejected`.
    pub(crate) fn receive_signal(
        &self,
        intent: SignalIntent,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let profile = self.profile()?;
        if let Some(venue) = self
            .venue
            .filter(|venue| intent.paper_only && *venue != Venue::Paper)
        {
            return Err(AccountError::NotOnPaper(venue));
        }
        let rejected = |reason: RejectionReason| {
            Ok(vec![AccountEvent::SignalRejected {
                signal_id: intent.signal_id.clone(),
                idempotency_key: intent.idempotency_key.clone(),
                key_expires_at: intent.key_expires_at,
                reason,
                received_at: intent.received_at,
            }])
        };
        let seen = intent
            .earlier_use
            .as_ref()
            .filter(|seen| seen.expires_at > intent.received_at);
        if let Some(original) = seen {
            // A resend is the original signal again: recorded under its id, so every view of
            // the ledger counts it there.
            return Ok(vec![AccountEvent::SignalRejected {
                signal_id: original.signal_id.clone(),
                idempotency_key: intent.idempotency_key.clone(),
                key_expires_at: intent.key_expires_at,
                reason: RejectionReason::Duplicate {
                    original_signal_id: original.signal_id.clone(),
                },
                received_at: intent.received_at,
            }]);
        }
        // Ingest names every signal anew; an id still in flight is never approved twice, as
        // that would reuse its client order id.
        if self.in_flight.contains_key(&intent.signal_id) {
            return rejected(RejectionReason::Duplicate {
                original_signal_id: intent.signal_id.clone(),
            });
        }
        let quota_wait = intent
            .quota
            .and_then(|quota| self.recent_signals.wait_for(quota, intent.received_at));
        if let Some(wait) = quota_wait {
            return Err(AccountError::QuotaSpent {
                retry_after_ms: wait.num_milliseconds(),
            });
        }
        if let Some(halt) = &self.halt {
            return rejected(RejectionReason::Halted {
                detail: format!("trading halted by {}: {}", halt.by, halt.reason),
            });
        }
        if let Some(stop) = &intent.emergency_stop {
            return rejected(RejectionReason::Halted {
                detail: format!("emergency stop engaged by {}: {}", stop.by, stop.reason),
            });
        }
        if let Some(detail) = staleness(intent.sent_at, intent.received_at, intent.max_lag_seconds)
        {
            return rejected(RejectionReason::Stale { detail });
        }
        let exposure = self.exposure(&intent.market);
        let verdict = match resolve(&intent, exposure) {
            Resolution::NoChange(detail) => return rejected(RejectionReason::NoChange { detail }),
            Resolution::Refused(failed) => Err(failed),
            Resolution::Order(order) => {
                let traded_today = self.daily_volume.on(intent.received_at.date_naive());
                profile
                    .limits
                    .check(&order, exposure, traded_today)
                    .map(|notional| (order, notional))
            }
        };
        let verdict = match verdict {
            Ok((order, notional_usd)) => AccountEvent::RiskApproved {
                signal_id: intent.signal_id.clone(),
                client_order_id: ClientOrderId::for_signal(&intent.signal_id),
                market: order.market,
                side: order.side,
                size: order.size,
                reduce_only: order.reduce_only,
                order_type: order.order_type,
                take_profit: order.take_profit,
                stop_loss: order.stop_loss,
                notional_usd,
            },
            Err(failed) => AccountEvent::RiskRejected {
                signal_id: intent.signal_id.clone(),
                rule: failed.rule.to_owned(),
                detail: failed.detail,
            },
        };
        Ok(vec![received(intent), verdict])
    }
}

fn received(intent: SignalIntent) -> AccountEvent {
    AccountEvent::SignalReceived {
        signal_id: intent.signal_id,
        idempotency_key: intent.idempotency_key,
        key_expires_at: intent.key_expires_at,
        market: intent.market,
        instruction: intent.instruction,
        order_type: intent.order_type,
        take_profit: intent.take_profit,
        stop_loss: intent.stop_loss,
        alert_price: intent.alert_price,
        reference_price: intent.reference_price,
        sent_at: intent.sent_at,
        received_at: intent.received_at,
    }
}

/// Why the alert is too old (or too far in the future) to act on, if it is.
fn staleness(
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    max_lag_seconds: u32,
) -> Option<String> {
    let sent_at = sent_at?;
    let max_lag = Duration::seconds(i64::from(max_lag_seconds));
    let lag = received_at.signed_duration_since(sent_at);
    let seconds = |d: Duration| Decimal::new(d.num_milliseconds(), 3).normalize();
    if lag > max_lag {
        Some(format!(
            "the alert was sent {} s before it arrived, more than the allowed lag of {max_lag_seconds} s",
            seconds(lag)
        ))
    } else if -lag > max_lag {
        Some(format!(
            "the alert's timestamp is {} s in the future, more than the allowed lag of {max_lag_seconds} s",
            seconds(-lag)
        ))
    } else {
        None
    }
}

/// Turns the instruction into one order against `exposure`, the signed position the account holds
/// once every approved order fills.
fn resolve(intent: &SignalIntent, exposure: Decimal) -> Resolution {
    let market = &intent.market;
    let order = |side: Side, size: Quantity, reduce_only: bool| {
        // Brackets protect a position being opened or added to; a reduce-only order has none.
        let (take_profit, stop_loss) = if reduce_only {
            (None, None)
        } else {
            (intent.take_profit, intent.stop_loss)
        };
        Resolution::Order(ProposedOrder {
            market: market.clone(),
            side,
            size,
            reduce_only,
            order_type: intent.order_type.clone(),
            take_profit,
            stop_loss,
            alert_price: intent.alert_price,
            reference_price: intent.reference_price,
        })
    };
    match &intent.instruction {
        TradeInstruction::Order { side, size } => order(*side, *size, false),
        TradeInstruction::TargetPosition { size: target } => {
            let Some(difference) = target.checked_sub(exposure) else {
                return Resolution::Refused(RiskCheck {
                    rule: rule::MAX_ORDER_SIZE,
                    detail: format!("target position {target} is beyond any limit"),
                });
            };
            let Ok(size) = Quantity::new(difference.abs()) else {
                return Resolution::NoChange(format!(
                    "the position in {market} is already {} (counting orders not yet filled)",
                    target.normalize()
                ));
            };
            let side = if difference.is_sign_positive() {
                Side::Buy
            } else {
                Side::Sell
            };
            let same_direction =
                target.is_zero() || target.is_sign_negative() == exposure.is_sign_negative();
            let reduce_only =
                !exposure.is_zero() && same_direction && target.abs() < exposure.abs();
            order(side, size, reduce_only)
        }
        TradeInstruction::Close => {
            let Ok(size) = Quantity::new(exposure.abs()) else {
                return Resolution::NoChange(format!(
                    "there is no position in {market} to close (counting orders not yet filled)"
                ));
            };
            let side = if exposure.is_sign_positive() {
                Side::Sell
            } else {
                Side::Buy
            };
            order(side, size, true)
        }
    }
}
