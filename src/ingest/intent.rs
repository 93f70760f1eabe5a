//! From a parsed alert to what the account is asked: sizes in base units of the market's step,
//! prices on its tick, the signal's identity (idempotency key, how long it is remembered) and the
//! id a signal gets from where the account records it.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use aggregates::{
    Market, OrderType, SignalId, TradeInstruction, FINGERPRINT_KEY_PREFIX,
    FINGERPRINT_WINDOW_SECONDS, IDEMPOTENCY_WINDOW_HOURS,
};

use super::payload::{AlertAction, AlertOrderType, SizeSpec, TargetSpec};
use crate::markets::{MarketError, MarketSpec};

/// Namespace of signal ids: UUIDv5 of (account, sequence of the signal's first event) under it.
/// Signals recorded before keep their UUIDv5s of (account, idempotency key) under another
/// namespace, so no new id can equal an old one.
const SIGNAL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_686f_6f6b_2d73_6571_2d31);

/// What ingest needs to know to turn sizes into base units.
pub struct Sizing {
    pub reference_price: Decimal,
    /// Applied when the alert gives no size (seed 000's simple format allows that).
    pub default_order_usd: Decimal,
    /// The account's equity, when the alert sizes by a percent of it (fetched only then).
    pub equity_usd: Option<Decimal>,
}

/// The instruction the alert gives, in base units quantized down to the step.
pub fn instruction(
    spec: &MarketSpec,
    action: AlertAction,
    sizing: &Sizing,
) -> Result<TradeInstruction, MarketError> {
    Ok(match action {
        AlertAction::Order { side, size } => TradeInstruction::Order {
            side,
            size: base_units(spec, size, sizing)?,
        },
        AlertAction::Target { position } => TradeInstruction::TargetPosition {
            size: match position {
                TargetSpec::Signed(size) if size.is_zero() => Decimal::ZERO,
                TargetSpec::Signed(size) => {
                    let magnitude = spec.quantize_size(size.abs())?.value();
                    if size.is_sign_negative() {
                        -magnitude
                    } else {
                        magnitude
                    }
                }
                TargetSpec::Long(size) => base_units(spec, size, sizing)?.value(),
                TargetSpec::Short(size) => -base_units(spec, size, sizing)?.value(),
                TargetSpec::Flat => Decimal::ZERO,
            },
        },
        AlertAction::Close => TradeInstruction::Close,
    })
}

/// Whether the alert gives no size, so the account's default applies.
pub fn needs_default_size(action: &AlertAction) -> bool {
    let default = |size: &SizeSpec| matches!(size, SizeSpec::Default);
    match action {
        AlertAction::Order { size, .. } => default(size),
        AlertAction::Target {
            position: TargetSpec::Long(size) | TargetSpec::Short(size),
        } => default(size),
        AlertAction::Target { .. } | AlertAction::Close => false,
    }
}

/// Whether sizing the alert needs the account's equity.
pub fn needs_equity(action: &AlertAction) -> bool {
    let percent = |size: &SizeSpec| matches!(size, SizeSpec::PercentOfEquity(_));
    match action {
        AlertAction::Order { size, .. } => percent(size),
        AlertAction::Target {
            position: TargetSpec::Long(size) | TargetSpec::Short(size),
        } => percent(size),
        AlertAction::Target { .. } | AlertAction::Close => false,
    }
}

fn base_units(
    spec: &MarketSpec,
    size: SizeSpec,
    sizing: &Sizing,
) -> Result<aggregates::Quantity, MarketError> {
    let equity = sizing.equity_usd.unwrap_or_default();
    match spec.base_size(size, sizing.reference_price, equity)? {
        Some(quantity) => Ok(quantity),
        None => spec
            .base_size(
                SizeSpec::Usd(sizing.default_order_usd),
                sizing.reference_price,
                equity,
            )?
            .ok_or(MarketError::NotPositive {
                what: "default order size",
            }),
    }
}

pub fn order_type(spec: &MarketSpec, order_type: AlertOrderType) -> Result<OrderType, MarketError> {
    Ok(match order_type {
        AlertOrderType::Market => OrderType::Market,
        AlertOrderType::Limit { price } => OrderType::Limit {
            price: spec.quantize_price(price)?,
        },
    })
}

pub fn price(spec: &MarketSpec, price: Option<Decimal>) -> Result<Option<Decimal>, MarketError> {
    price.map(|price| spec.quantize_price(price)).transpose()
}

/// A signal's identity: the key duplicates are found by, and until when it is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub idempotency_key: String,
    pub key_expires_at: DateTime<Utc>,
}

/// What an alert without an id is known by: everything it asks for.
pub struct Request<'a> {
    pub market: &'a Market,
    pub instruction: &'a TradeInstruction,
    pub order_type: &'a OrderType,
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
}

/// How long keys are remembered: explicit ids long enough to cover any resend and replay, and
/// fingerprints only TradingView's resends of one request (identical alerts without an id can be
/// two real trades).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWindows {
    pub explicit_id: Duration,
    pub fingerprint: Duration,
}

impl Default for KeyWindows {
    fn default() -> Self {
        Self {
            explicit_id: Duration::hours(IDEMPOTENCY_WINDOW_HOURS),
            fingerprint: Duration::seconds(FINGERPRINT_WINDOW_SECONDS),
        }
    }
}

pub fn identity(
    alert_id: Option<&str>,
    request: &Request<'_>,
    received_at: DateTime<Utc>,
    windows: KeyWindows,
) -> Identity {
    match alert_id {
        Some(id) => Identity {
            idempotency_key: format!("id:{id}"),
            key_expires_at: received_at + windows.explicit_id,
        },
        None => Identity {
            idempotency_key: fingerprint(request),
            key_expires_at: received_at + windows.fingerprint,
        },
    }
}

/// The id of the signal whose first event the account stores at `sequence`. An alert's key is
/// forgotten after its window and may then come back asking for another trade: naming the signal
/// by where it is recorded rather than by its key gives every signal, and so its client order id
/// `lh-<signal id>`, an id the account never used before. (A resend inside the window is answered
/// with the original's id by the account.)
pub fn signal_id_for(account_id: &str, sequence: usize) -> SignalId {
    let name = format!("{account_id}/{sequence}");
    SignalId(Uuid::new_v5(&SIGNAL_ID_NAMESPACE, name.as_bytes()).to_string())
}

fn fingerprint(request: &Request<'_>) -> String {
    let price = |price: Option<Decimal>| price.map(|p| p.normalize().to_string());
    let instruction = match request.instruction {
        TradeInstruction::Order { side, size } => format!("order:{}:{size}", side.as_str()),
        TradeInstruction::TargetPosition { size } => format!("target:{}", size.normalize()),
        TradeInstruction::Close => "close".to_owned(),
    };
    let order_type = match request.order_type {
        OrderType::Market => "market".to_owned(),
        OrderType::Limit { price } => format!("limit:{}", price.normalize()),
    };
    let canonical = format!(
        "{}|{instruction}|{order_type}|{:?}|{:?}",
        request.market,
        price(request.take_profit),
        price(request.stop_loss)
    );
    let digest = Sha256::digest(canonical.as_bytes());
    format!("{FINGERPRINT_KEY_PREFIX}{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markets::MarketList;
    use aggregates::Side;

    fn btc() -> MarketSpec {
        MarketList::default()
            .normalize("BTC-USD")
            .cloned()
            .expect("BTC-USD is listed")
    }

    fn sizing() -> Sizing {
        Sizing {
            reference_price: Decimal::from(50_000),
            default_order_usd: Decimal::from(100),
            equity_usd: Some(Decimal::from(10_000)),
        }
    }

    fn order_size(action: AlertAction) -> Decimal {
        match instruction(&btc(), action, &sizing()) {
            Ok(TradeInstruction::Order { size, .. }) => size.value(),
            other => panic!("an order, got {other:?}"),
        }
    }

    #[test]
    fn every_size_form_becomes_base_units_on_the_step() {
        let order = |size| AlertAction::Order {
            side: Side::Buy,
            size,
        };
        // 0.12345 BTC rounds down to the 0.0001 step.
        assert_eq!(
            order_size(order(SizeSpec::Base(Decimal::new(12_345, 5)))),
            Decimal::new(1234, 4)
        );
        // 1,000 USD at 50,000 = 0.02 BTC.
        assert_eq!(
            order_size(order(SizeSpec::Usd(Decimal::from(1_000)))),
            Decimal::new(2, 2)
        );
        // 5% of 10,000 USD = 500 USD = 0.01 BTC.
        assert_eq!(
            order_size(order(SizeSpec::PercentOfEquity(Decimal::from(5)))),
            Decimal::new(1, 2)
        );
        // No size: the default 100 USD = 0.002 BTC.
        assert_eq!(order_size(order(SizeSpec::Default)), Decimal::new(2, 3));
    }

    #[test]
    fn targets_keep_their_sign_and_flat_is_zero() {
        let target = |position| {
            instruction(&btc(), AlertAction::Target { position }, &sizing())
                .expect("a target resolves")
        };
        assert_eq!(
            target(TargetSpec::Signed(Decimal::new(-15, 3))),
            TradeInstruction::TargetPosition {
                size: Decimal::new(-15, 3)
            }
        );
        assert_eq!(
            target(TargetSpec::Short(SizeSpec::Usd(Decimal::from(1_000)))),
            TradeInstruction::TargetPosition {
                size: Decimal::new(-2, 2)
            }
        );
        assert_eq!(
            target(TargetSpec::Flat),
            TradeInstruction::TargetPosition {
                size: Decimal::ZERO
            }
        );
    }

    #[test]
    fn an_id_or_a_fingerprint_is_the_key_and_the_signal_is_named_by_its_place() {
        let market = btc().market;
        let buy = TradeInstruction::Order {
            side: Side::Buy,
            size: aggregates::Quantity::new(Decimal::ONE).expect("positive"),
        };
        let request = |instruction| Request {
            market: &market,
            instruction,
            order_type: &OrderType::Market,
            take_profit: None,
            stop_loss: None,
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let later = at + Duration::seconds(5);
        let windows = KeyWindows::default();
        let with_id = identity(Some("x"), &request(&buy), at, windows);
        assert_eq!(with_id.idempotency_key, "id:x");
        assert_eq!(
            with_id.key_expires_at,
            at + Duration::hours(IDEMPOTENCY_WINDOW_HOURS)
        );
        let plain = identity(None, &request(&buy), at, windows);
        assert_eq!(
            plain.idempotency_key,
            identity(None, &request(&buy), later, windows).idempotency_key
        );
        assert_ne!(
            plain.idempotency_key,
            identity(None, &request(&TradeInstruction::Close), at, windows).idempotency_key
        );
        assert!(plain.key_expires_at < with_id.key_expires_at);

        // Deterministic (a retried decision names the same signal), and apart per place and
        // per account.
        assert_eq!(signal_id_for("a", 7), signal_id_for("a", 7));
        assert_ne!(signal_id_for("a", 7), signal_id_for("a", 8));
        assert_ne!(signal_id_for("a", 7), signal_id_for("b", 7));
    }
}
