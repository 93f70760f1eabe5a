//! Trades: one row per fill, with its fee.

use aggregates::AccountEvent;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::Envelope;

/// (account id, sequence of the fill's event): unique, and the order a trader pages in.
pub type TradeKey = (String, usize);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRow {
    pub account_id: String,
    pub sequence: usize,
    pub signal_id: String,
    pub client_order_id: String,
    pub exchange_order_id: String,
    pub market: String,
    /// `buy` or `sell`.
    pub side: String,
    pub size: Decimal,
    pub price: Decimal,
    pub fee_usd: Decimal,
    pub filled_at: DateTime<Utc>,
}

impl TradeRow {
    pub fn key(&self) -> TradeKey {
        (self.account_id.clone(), self.sequence)
    }
}

/// The trade `envelope` records, if it is a fill: a whole or partial fill of a signal's order, or
/// the reduce-only close that compensated one.
pub fn row(envelope: &Envelope) -> Option<TradeRow> {
    use AccountEvent::*;
    let (signal_id, client_order_id, exchange_order_id, market, side, price, size, fee_usd, at) =
        match &envelope.event {
            OrderFilled {
                signal_id,
                client_order_id,
                exchange_order_id,
                market,
                side,
                price,
                size,
                fee_usd,
                filled_at,
            }
            | OrderPartiallyFilled {
                signal_id,
                client_order_id,
                exchange_order_id,
                market,
                side,
                price,
                size,
                fee_usd,
                filled_at,
                ..
            }
            | PositionCompensated {
                signal_id,
                client_order_id,
                exchange_order_id,
                market,
                side,
                price,
                size,
                fee_usd,
                at: filled_at,
            } => (
                signal_id,
                client_order_id,
                exchange_order_id,
                market,
                side,
                price,
                size,
                fee_usd,
                filled_at,
            ),
            _ => return None,
        };
    Some(TradeRow {
        account_id: envelope.account_id.clone(),
        sequence: envelope.sequence,
        signal_id: signal_id.0.clone(),
        client_order_id: client_order_id.0.clone(),
        exchange_order_id: exchange_order_id.clone(),
        market: market.as_str().to_owned(),
        side: side.as_str().to_owned(),
        size: size.value().normalize(),
        price: price.normalize(),
        fee_usd: fee_usd.value().normalize(),
        filled_at: *at,
    })
}
