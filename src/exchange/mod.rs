//! Exchanges behind one trait. Orders are identified by a client order id derived from the signal.
//! No venue is trusted to deduplicate: the saga asks `find_orders` for the client ids before it
//! places anything, and `find_order` before every retry, so an order is sent at most once.

pub mod dydx;
mod paper;
mod paper_book;
mod router;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Fill, Market, OrderType, Quantity, Side};

/// The outcome of the client id at the same index in `find_orders`' argument.
pub type Found = Result<Option<OrderOutcome>, ExchangeError>;

pub use self::paper::{
    PaperExchange, DEFAULT_PAPER_EQUITY_USD, DEFAULT_PAPER_PRICES, PAPER_UNAVAILABLE_VARIABLE,
};
pub use self::paper_book::{PaperBook, PaperOrder};
pub use self::router::{LedgerVenues, StoredVenues, Venue, VenueChoice, VenueRouter};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub account_id: String,
    pub client_order_id: ClientOrderId,
    pub market: Market,
    pub side: Side,
    pub size: Quantity,
    /// May only shrink the position (closes, reductions toward a target).
    pub reduce_only: bool,
    pub order_type: OrderType,
    /// Bracket prices the exchange attaches to the position the order opens or adds to.
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
}

/// What became of an order. An adapter reports a fill of less than the order as
/// `PartiallyFilled` (the account also treats a `Filled` of less than the order as partial, so
/// nothing is booked beyond what filled either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The order traded. `fill.size` below the order's size is a partial fill: the rest was
    /// cancelled by the exchange (an immediate-or-cancel order finding too little liquidity).
    Filled {
        exchange_order_id: String,
        fill: Fill,
    },
    /// Part filled and the exchange cancelled the rest (an IOC order short of liquidity);
    /// `fill.size + unfilled` is the order's size.
    PartiallyFilled {
        exchange_order_id: String,
        fill: Fill,
        unfilled: Quantity,
    },
    /// The order filled, but what had to follow it on the exchange failed for good (its TP/SL
    /// bracket could not be placed): the saga closes the position it opened, reduce-only.
    FilledUnprotected {
        exchange_order_id: String,
        fill: Fill,
        reason: String,
    },
    /// The exchange saw the order and refused it; retrying will not help.
    Rejected { reason: String },
    /// A limit order the exchange took that did not fill at once: it rests on the book until
    /// `good_til`. `filled_so_far` is booked only when the order ends (`order_status`).
    Resting {
        exchange_order_id: String,
        good_til: DateTime<Utc>,
        filled_so_far: Decimal,
    },
    /// A resting order left the book with nothing filled: expired, or cancelled by the venue.
    Expired {
        exchange_order_id: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange could not be reached or did not answer: the order may or may not exist.
    #[error("exchange unavailable: {0}")]
    Unavailable(String),
}

impl ExchangeError {
    /// The failure's kind, as a metric label (the text may carry the venue's own words).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
        }
    }
}

#[async_trait]
pub trait Exchange: Send + Sync {
    /// The price risk checks value an order at (the mark price).
    fn reference_price(&self, market: &Market) -> Option<Decimal>;

    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError>;

    /// Places several orders; one answer per order, in order. Exchanges that can take a batch in
    /// one call override this; by default the orders go out one by one, concurrently.
    async fn place_orders(
        &self,
        orders: &[OrderRequest],
    ) -> Vec<Result<OrderOutcome, ExchangeError>> {
        futures::future::join_all(orders.iter().map(|order| self.place_order(order))).await
    }

    /// The account's equity in USD, for sizes given as a percent of it.
    async fn account_equity(&self, _account_id: &str) -> Result<Decimal, ExchangeError> {
        Err(ExchangeError::Unavailable(
            "this exchange does not report equity".to_owned(),
        ))
    }

    /// The signed size the account holds in each market where it holds anything, as the venue
    /// sees it: what reconciliation compares the ledger with.
    async fn positions(
        &self,
        _account_id: &str,
    ) -> Result<BTreeMap<Market, Decimal>, ExchangeError> {
        Err(ExchangeError::Unavailable(
            "this exchange does not report positions".to_owned(),
        ))
    }

    /// The venue's name, as reconciliation records it.
    fn venue(&self) -> &'static str;

    /// The name of the venue `account_id` trades on (a router answers for each account).
    async fn venue_for(&self, _account_id: &str) -> Result<&'static str, ExchangeError> {
        Ok(self.venue())
    }

    /// What became of an order placed earlier with this client id, if it reached the exchange.
    async fn find_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderOutcome>, ExchangeError>;

    /// `find_order` for an order the caller still has in hand: exchanges that list orders by
    /// account (dYdX) need the account and market to look it up. The saga always asks this way.
    async fn find_placed(
        &self,
        order: &OrderRequest,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.find_order(&order.client_order_id).await
    }

    /// Where an order that rested on the book (as `exchange_order_id`) stands now: `Resting`
    /// while it is there, else how it ended (filled, partially filled then expired or cancelled,
    /// expired with nothing). `None` when the venue does not know the order. The resting watcher
    /// asks this.
    async fn order_status(
        &self,
        order: &OrderRequest,
        _exchange_order_id: &str,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.find_placed(order).await
    }

    /// Cancels an order resting on the book (a halt stops trading); how it ended is then learnt
    /// from `order_status`. Exchanges whose orders never rest have nothing to cancel.
    async fn cancel_resting(&self, _order: &OrderRequest) -> Result<(), ExchangeError> {
        Ok(())
    }

    /// `find_placed` for several orders; one answer per order, in order. The saga asks this for a
    /// page's orders before placing any of them. By default the lookups go out concurrently.
    async fn find_orders(&self, orders: &[OrderRequest]) -> Vec<Found> {
        futures::future::join_all(orders.iter().map(|order| self.find_placed(order))).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An exchange with only what every exchange must have: it fills every order at 100 and
    /// remembers it.
    #[derive(Default)]
    pub(super) struct Minimal {
        filled: Mutex<BTreeMap<String, OrderOutcome>>,
    }

    #[async_trait]
    impl Exchange for Minimal {
        fn reference_price(&self, _: &Market) -> Option<Decimal> {
            Some(Decimal::ONE_HUNDRED)
        }

        async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
            let outcome = OrderOutcome::Filled {
                exchange_order_id: format!("x-{}", order.client_order_id.0),
                fill: Fill {
                    market: order.market.clone(),
                    side: order.side,
                    price: Decimal::ONE_HUNDRED,
                    size: order.size,
                    fee: Decimal::ZERO,
                },
            };
            let mut filled = self.filled.lock().unwrap_or_else(|p| p.into_inner());
            filled.insert(order.client_order_id.0.clone(), outcome.clone());
            Ok(outcome)
        }

        fn venue(&self) -> &'static str {
            "minimal"
        }

        async fn find_order(&self, id: &ClientOrderId) -> Found {
            let filled = self.filled.lock().unwrap_or_else(|p| p.into_inner());
            Ok(filled.get(&id.0).cloned())
        }
    }

    pub(super) fn order(id: &str) -> OrderRequest {
        OrderRequest {
            account_id: "a".to_owned(),
            client_order_id: ClientOrderId(id.to_owned()),
            market: Market::parse("BTC-USD").expect("market"),
            side: Side::Buy,
            size: Quantity::new(Decimal::ONE).expect("size"),
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
        }
    }

    /// What the saga and the readers may rely on from any exchange: equity and positions it does
    /// not report are refused as unavailable (a percent-sized alert is answered 503, not sized
    /// from a guess), batches answer per order in order, and lookups all come from `find_order`.
    #[tokio::test]
    async fn an_exchange_with_only_the_required_methods_behaves_as_the_saga_expects() {
        let exchange = Minimal::default();
        let equity = exchange.account_equity("a").await;
        assert!(
            matches!(&equity, Err(ExchangeError::Unavailable(m)) if m.contains("equity")),
            "{equity:?}"
        );
        let positions = exchange.positions("a").await;
        assert!(
            matches!(&positions, Err(ExchangeError::Unavailable(m)) if m.contains("positions")),
            "{positions:?}"
        );
        assert_eq!(exchange.venue_for("a").await, Ok("minimal"));

        let answers = exchange.place_orders(&[order("one"), order("two")]).await;
        let ids: Vec<String> = answers
            .into_iter()
            .map(|answer| match answer {
                Ok(OrderOutcome::Filled {
                    exchange_order_id, ..
                }) => exchange_order_id,
                other => panic!("filled: {other:?}"),
            })
            .collect();
        assert_eq!(ids, ["x-one", "x-two"]);

        let found = exchange.find_orders(&[order("two"), order("never")]).await;
        assert!(matches!(found[0], Ok(Some(OrderOutcome::Filled { .. }))));
        assert!(matches!(found[1], Ok(None)));
        let status = exchange.order_status(&order("one"), "x-one").await;
        assert!(matches!(status, Ok(Some(OrderOutcome::Filled { .. }))));
        assert_eq!(exchange.cancel_resting(&order("one")).await, Ok(()));
        assert_eq!(
            ExchangeError::Unavailable(String::new()).kind(),
            "unavailable"
        );
    }
}
