//! Exchanges behind one trait. Orders are identified by a client order id derived from the signal,
//! so placing the same order twice is recognised by the exchange and never trades twice.

pub mod dydx;
mod paper;
mod paper_book;
mod router;

use async_trait::async_trait;
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Fill, Market, OrderType, Quantity, Side};

pub use self::paper::{PaperExchange, DEFAULT_PAPER_EQUITY_USD, DEFAULT_PAPER_PRICES};
pub use self::paper_book::{PaperBook, PaperOrder};
pub use self::router::{StoredVenues, Venue, VenueChoice, VenueRouter};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The order traded. `fill.size` below the order's size is a partial fill: the rest was
    /// cancelled by the exchange (an immediate-or-cancel order finding too little liquidity).
    Filled {
        exchange_order_id: String,
        fill: Fill,
    },
    /// The exchange saw the order and refused it; retrying will not help.
    Rejected { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange could not be reached or did not answer: the order may or may not exist.
    #[error("exchange unavailable: {0}")]
    Unavailable(String),
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

    /// What became of an order placed earlier with this client id, if it reached the exchange.
    async fn find_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderOutcome>, ExchangeError>;

    /// `find_order` for an order the caller still has in hand: exchanges that list orders by
    /// account (dYdX) need the account and market to look it up.
    async fn find_placed(
        &self,
        order: &OrderRequest,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.find_order(&order.client_order_id).await
    }
}
