//! The paper exchange: deterministic fills at a configured reference price plus a fixed slippage,
//! booked durably by client order id so that a crashed and resumed saga never trades twice. A
//! limit order the reference price has not reached rests in the book until it does (asked by
//! `order_status`: a service started with other `--paper-price`s) or its good-til time passes.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Fill, Market, OrderType, Quantity, Side};

use super::paper_book::{PaperBook, PaperOrder, EXPIRED, FILLED, RESTING};
use super::{Exchange, ExchangeError, Found, OrderOutcome, OrderRequest};
use crate::markets::MarketList;
use crate::store::Store;

/// Reference prices used when none are configured.
pub const DEFAULT_PAPER_PRICES: &[(&str, &str)] = &[
    ("BTC-USD", "65000"),
    ("ETH-USD", "3200"),
    ("SOL-USD", "150"),
    ("DOGE-USD", "0.15"),
    ("LINK-USD", "15"),
    ("AVAX-USD", "35"),
];

/// Buys fill this much above the reference price and sells this much below: 5 basis points.
const SLIPPAGE: Decimal = Decimal::from_parts(5, 0, 0, false, 4);
/// Taker fee on notional: 5 basis points, as dYdX's base tier.
const FEE_RATE: Decimal = Decimal::from_parts(5, 0, 0, false, 4);

/// Every paper account's equity, for sizes given as a percent of it.
pub const DEFAULT_PAPER_EQUITY_USD: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

pub struct PaperExchange {
    store: Store,
    markets: MarketList,
    prices: HashMap<Market, Decimal>,
    equity_usd: Decimal,
    /// How long a limit order the reference price has not reached rests.
    limit_order_lifetime: chrono::Duration,
    /// Fault injection for the black-box tests: with `LEDGERHOOK_PAPER_UNAVAILABLE=1` every
    /// placement and lookup fails as an unreachable venue would (prices still quote, so alerts
    /// are approved).
    unreachable: bool,
}

/// The variable that makes the paper venue unreachable (see `PaperExchange::unreachable`).
pub const PAPER_UNAVAILABLE_VARIABLE: &str = "LEDGERHOOK_PAPER_UNAVAILABLE";

impl PaperExchange {
    pub fn new(store: Store, markets: MarketList, prices: HashMap<Market, Decimal>) -> Self {
        Self {
            store,
            markets,
            prices,
            equity_usd: DEFAULT_PAPER_EQUITY_USD,
            limit_order_lifetime: chrono::Duration::days(1),
            unreachable: std::env::var_os(PAPER_UNAVAILABLE_VARIABLE).is_some_and(|v| v == "1"),
        }
    }

    fn reachable(&self) -> Result<(), ExchangeError> {
        if self.unreachable {
            return Err(Self::unavailable(format!(
                "the paper venue is unreachable ({PAPER_UNAVAILABLE_VARIABLE}=1)"
            )));
        }
        Ok(())
    }

    pub fn with_equity(mut self, equity_usd: Decimal) -> Self {
        self.equity_usd = equity_usd;
        self
    }

    /// How long a limit order the reference price has not reached rests before it expires.
    pub fn with_limit_order_lifetime(mut self, lifetime: chrono::Duration) -> Self {
        self.limit_order_lifetime = lifetime;
        self
    }

    /// The price `order` fills at now (the reference price and the slippage, on the tick), and
    /// whether that is within its limit.
    fn fill_price(&self, order: &OrderRequest) -> Result<(Decimal, bool), String> {
        let (Some(spec), Some(reference)) = (
            self.markets.get(&order.market),
            self.reference_price(&order.market),
        ) else {
            return Err(format!(
                "{} is not traded on the paper exchange",
                order.market
            ));
        };
        let slipped = reference.checked_mul(Decimal::ONE + order.side.sign() * SLIPPAGE);
        let Some(Ok(price)) = slipped.map(|price| spec.quantize_price(price)) else {
            return Err(format!("{} has no valid paper price", order.market));
        };
        let marketable = match order.order_type {
            OrderType::Market => true,
            OrderType::Limit { price: limit } => match order.side {
                Side::Buy => price <= limit,
                Side::Sell => price >= limit,
            },
        };
        Ok((price, marketable))
    }

    /// The taker fee on `size` at `price`.
    fn fee(order: &OrderRequest, price: Decimal) -> Result<Decimal, String> {
        price
            .checked_mul(order.size.value())
            .and_then(|notional| notional.checked_mul(FEE_RATE))
            .map(|fee| fee.round_dp(6).normalize())
            .ok_or_else(|| {
                format!(
                    "{} {} is beyond any order's notional",
                    order.size, order.market
                )
            })
    }

    pub fn default_prices() -> HashMap<Market, Decimal> {
        DEFAULT_PAPER_PRICES
            .iter()
            .filter_map(|(ticker, price)| {
                Some((Market::parse(ticker).ok()?, Decimal::from_str(price).ok()?))
            })
            .collect()
    }

    /// The order as the paper exchange books it — filled, or resting at its limit when the
    /// reference price has not reached it — or why it refuses it.
    fn price(&self, order: &OrderRequest) -> Result<PaperOrder, String> {
        let (price, marketable) = self.fill_price(order)?;
        let now = Utc::now();
        let (status, price, fee, good_til) = match (marketable, &order.order_type) {
            (false, OrderType::Limit { price: limit }) => (
                RESTING,
                *limit,
                Decimal::ZERO,
                Some(now + self.limit_order_lifetime),
            ),
            _ => (FILLED, price, Self::fee(order, price)?, None),
        };
        Ok(PaperOrder {
            client_order_id: order.client_order_id.0.clone(),
            account_id: order.account_id.clone(),
            market: order.market.to_string(),
            side: order.side.as_str().to_owned(),
            size: order.size.to_string(),
            price: price.to_string(),
            fee: fee.to_string(),
            exchange_order_id: format!("paper-{}", order.client_order_id),
            placed_at: now,
            status: status.to_owned(),
            good_til,
        })
    }

    fn unavailable(error: impl ToString) -> ExchangeError {
        ExchangeError::Unavailable(error.to_string())
    }
}

#[async_trait]
impl Exchange for PaperExchange {
    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.prices.get(market).copied()
    }

    /// Booking is insert-or-get by client order id: placing an order again returns the first one.
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        let mut outcomes = self.place_orders(std::slice::from_ref(order)).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(Self::unavailable("no answer for the order")))
    }

    /// One transaction books the whole batch, so a page of the saga costs one commit, not one per
    /// order.
    async fn place_orders(
        &self,
        orders: &[OrderRequest],
    ) -> Vec<Result<OrderOutcome, ExchangeError>> {
        if let Err(error) = self.reachable() {
            return orders.iter().map(|_| Err(error.clone())).collect();
        }
        let priced: Vec<Result<PaperOrder, String>> =
            orders.iter().map(|order| self.price(order)).collect();
        let bookable: Vec<PaperOrder> = priced
            .iter()
            .filter_map(|priced| priced.as_ref().ok().cloned())
            .collect();
        let booked = match PaperBook::of(&self.store).book_all(&bookable).await {
            Ok(booked) => booked,
            Err(error) => {
                let error = Self::unavailable(error);
                return orders.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let mut booked = booked.iter();
        priced
            .into_iter()
            .map(|priced| match priced {
                Err(reason) => Ok(OrderOutcome::Rejected { reason }),
                Ok(_) => booked
                    .next()
                    .map_or_else(|| Err(Self::unavailable("order not booked")), outcome_of),
            })
            .collect()
    }

    async fn account_equity(&self, _account_id: &str) -> Result<Decimal, ExchangeError> {
        Ok(self.equity_usd)
    }

    fn venue(&self) -> &'static str {
        "paper"
    }

    /// Every booked order filled whole, so a position is the signed sum of the account's orders.
    async fn positions(
        &self,
        account_id: &str,
    ) -> Result<BTreeMap<Market, Decimal>, ExchangeError> {
        let orders = PaperBook::of(&self.store)
            .of_account(account_id)
            .await
            .map_err(Self::unavailable)?;
        let mut positions = BTreeMap::new();
        for order in &orders {
            let OrderOutcome::Filled { fill, .. } = outcome_of(order)? else {
                continue;
            };
            let size: &mut Decimal = positions.entry(fill.market).or_default();
            *size = size
                .checked_add(fill.side.sign() * fill.size.value())
                .ok_or_else(|| Self::unavailable("a position beyond any size"))?;
        }
        positions.retain(|_, size| !size.is_zero());
        Ok(positions)
    }

    /// A resting order fills once the reference price reaches its limit (at that price and the
    /// slippage, as any paper fill), and expires at its good-til time.
    async fn order_status(
        &self,
        order: &OrderRequest,
        _exchange_order_id: &str,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.reachable()?;
        let book = PaperBook::of(&self.store);
        let Some(booked) = book
            .find(&order.client_order_id.0)
            .await
            .map_err(Self::unavailable)?
        else {
            return Ok(None);
        };
        if booked.status != RESTING {
            return outcome_of(&booked).map(Some);
        }
        let (price, marketable) = self.fill_price(order).map_err(Self::unavailable)?;
        let settled = if marketable {
            let fee = Self::fee(order, price).map_err(Self::unavailable)?;
            book.settle(
                &booked.client_order_id,
                FILLED,
                &price.to_string(),
                &fee.to_string(),
            )
            .await
        } else if booked.good_til.is_some_and(|until| Utc::now() >= until) {
            book.settle(&booked.client_order_id, EXPIRED, &booked.price, &booked.fee)
                .await
        } else {
            return outcome_of(&booked).map(Some);
        };
        settled
            .map_err(Self::unavailable)?
            .as_ref()
            .map(outcome_of)
            .transpose()
    }

    async fn find_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        self.reachable()?;
        let booked = PaperBook::of(&self.store)
            .find(&client_order_id.0)
            .await
            .map_err(Self::unavailable)?;
        booked.as_ref().map(outcome_of).transpose()
    }

    /// One query for the whole page's client ids.
    async fn find_orders(&self, orders: &[OrderRequest]) -> Vec<Found> {
        if let Err(error) = self.reachable() {
            return orders.iter().map(|_| Err(error.clone())).collect();
        }
        let ids: Vec<&str> = orders
            .iter()
            .map(|order| order.client_order_id.0.as_str())
            .collect();
        let booked = match PaperBook::of(&self.store).find_all(&ids).await {
            Ok(booked) => booked,
            Err(error) => {
                let error = Self::unavailable(error);
                return ids.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let by_id: HashMap<&str, &PaperOrder> = booked
            .iter()
            .map(|order| (order.client_order_id.as_str(), order))
            .collect();
        ids.iter()
            .map(|id| by_id.get(id).map(|order| outcome_of(order)).transpose())
            .collect()
    }
}

fn outcome_of(order: &PaperOrder) -> Result<OrderOutcome, ExchangeError> {
    let decimal = |text: &str| Decimal::from_str(text).map_err(PaperExchange::unavailable);
    match (order.status.as_str(), order.good_til) {
        (FILLED, _) => {}
        (RESTING, Some(good_til)) => {
            return Ok(OrderOutcome::Resting {
                exchange_order_id: order.exchange_order_id.clone(),
                good_til,
                filled_so_far: Decimal::ZERO,
            })
        }
        (EXPIRED, _) => {
            return Ok(OrderOutcome::Expired {
                exchange_order_id: order.exchange_order_id.clone(),
                reason: format!(
                    "the paper price did not reach its limit {} before it expired",
                    order.price
                ),
            })
        }
        (status, _) => {
            return Err(PaperExchange::unavailable(format!(
                "paper order {} has an unreadable status {status}",
                order.client_order_id
            )))
        }
    }
    let size = Quantity::new(decimal(&order.size)?).map_err(PaperExchange::unavailable)?;
    // The book's own market and side: an order booked under this client id earlier says what it
    // was, and the account compares that with the order it placed.
    let side = Side::parse(&order.side).map_err(PaperExchange::unavailable)?;
    let market = Market::parse(&order.market).map_err(PaperExchange::unavailable)?;
    Ok(OrderOutcome::Filled {
        exchange_order_id: order.exchange_order_id.clone(),
        fill: Fill {
            market,
            side,
            price: decimal(&order.price)?,
            size,
            fee: decimal(&order.fee)?,
        },
    })
}
