//! The fake dYdX venue's state: markets with oracle prices, the orders the node received, the
//! fills they made and the positions those moved, and the faults the control endpoint set.
//! One mutex: every critical section is a few map operations, never an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Taker fee on notional, as dYdX's base tier: 5 basis points.
const TAKER_FEE: Decimal = Decimal::from_parts(5, 0, 0, false, 4);
/// Buys fill this much above the oracle price and sells this much below: 2 basis points.
const SPREAD: Decimal = Decimal::from_parts(2, 0, 0, false, 4);
/// Height of the first block, so heights look like a running chain's.
const FIRST_HEIGHT: u32 = 1_000_000;
/// A short-term order may be good for at most this many blocks ahead, as on the chain.
pub const SHORT_TERM_WINDOW: u32 = 20;
/// Collateral every fake subaccount starts with, in USDC.
const STARTING_USDC: Decimal = Decimal::from_parts(100_000, 0, 0, false, 0);

pub const FLAG_SHORT_TERM: u32 = 0;
pub const FLAG_CONDITIONAL: u32 = 32;
pub const FLAG_LONG_TERM: u32 = 64;

/// A perpetual market's parameters as the chain defines them (the Indexer derives tick and step
/// sizes from these).
#[derive(Debug, Clone)]
pub struct FakeMarket {
    pub ticker: String,
    pub clob_pair_id: u32,
    pub atomic_resolution: i32,
    pub quantum_conversion_exponent: i32,
    pub step_base_quantums: u64,
    pub subticks_per_tick: u32,
    pub oracle_price: Decimal,
    pub initial_margin_fraction: Decimal,
    pub maintenance_margin_fraction: Decimal,
}

impl FakeMarket {
    /// Base units per quantum: 10^atomic_resolution.
    pub fn quantum(&self) -> Decimal {
        power_of_ten(self.atomic_resolution)
    }

    /// Quote units per subtick: 10^(quantum_conversion_exponent - atomic_resolution - 6).
    pub fn subtick(&self) -> Decimal {
        power_of_ten(self.quantum_conversion_exponent - self.atomic_resolution - 6)
    }

    pub fn step_size(&self) -> Decimal {
        (self.quantum() * Decimal::from(self.step_base_quantums)).normalize()
    }

    pub fn tick_size(&self) -> Decimal {
        (self.subtick() * Decimal::from(self.subticks_per_tick)).normalize()
    }

    pub fn size_of(&self, quantums: u64) -> Decimal {
        (Decimal::from(quantums) * self.quantum()).normalize()
    }

    pub fn price_of(&self, subticks: u64) -> Decimal {
        (Decimal::from(subticks) * self.subtick()).normalize()
    }

    /// The price a taker order of `side` fills at: the oracle price moved by the spread against
    /// the taker, on the tick grid.
    fn fill_price(&self, side: OrderSide) -> Decimal {
        let tick = self.tick_size();
        let (moved, strategy) = match side {
            OrderSide::Buy => (
                self.oracle_price * (Decimal::ONE + SPREAD),
                RoundingStrategy::ToPositiveInfinity,
            ),
            OrderSide::Sell => (
                self.oracle_price * (Decimal::ONE - SPREAD),
                RoundingStrategy::ToNegativeInfinity,
            ),
        };
        ((moved / tick).round_dp_with_strategy(0, strategy) * tick).normalize()
    }
}

fn power_of_ten(exponent: i32) -> Decimal {
    if exponent >= 0 {
        Decimal::from(10u64.pow(exponent.unsigned_abs()))
    } else {
        Decimal::new(1, exponent.unsigned_abs())
    }
}

/// The markets a fresh fake lists: the service's default markets with mainnet's parameters.
pub fn default_markets() -> Vec<FakeMarket> {
    let market = |ticker: &str, clob: u32, resolution: i32, step: u64, spt: u32, price: Decimal| {
        FakeMarket {
            ticker: ticker.to_owned(),
            clob_pair_id: clob,
            atomic_resolution: resolution,
            quantum_conversion_exponent: -9,
            step_base_quantums: step,
            subticks_per_tick: spt,
            oracle_price: price,
            initial_margin_fraction: Decimal::new(2, 2),
            maintenance_margin_fraction: Decimal::new(12, 3),
        }
    };
    vec![
        market(
            "BTC-USD",
            0,
            -10,
            1_000_000,
            100_000,
            Decimal::new(65_000, 0),
        ),
        market("ETH-USD", 1, -9, 1_000_000, 100_000, Decimal::new(3_200, 0)),
        market("LINK-USD", 2, -6, 100_000, 1_000_000, Decimal::new(15, 0)),
        market("SOL-USD", 5, -7, 1_000_000, 1_000_000, Decimal::new(150, 0)),
        market("DOGE-USD", 6, -5, 1_000_000, 100_000, Decimal::new(15, 2)),
        market("AVAX-USD", 7, -7, 1_000_000, 1_000_000, Decimal::new(35, 0)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    fn sign(self) -> Decimal {
        match self {
            Self::Buy => Decimal::ONE,
            Self::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeInForce {
    Gtt,
    Ioc,
    Fok,
    PostOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Open,
    Filled,
    Canceled,
    Untriggered,
}

/// An order as the node decoded it from a transaction.
#[derive(Debug, Clone)]
pub struct Placement {
    pub address: String,
    pub subaccount: u32,
    pub client_id: u32,
    pub client_metadata: u32,
    pub clob_pair_id: u32,
    pub order_flags: u32,
    pub side: OrderSide,
    pub quantums: u64,
    pub subticks: u64,
    pub time_in_force: TimeInForce,
    pub reduce_only: bool,
    /// 1 stop-loss, 2 take-profit, 0 none.
    pub condition_type: i32,
    pub trigger_subticks: u64,
    pub good_til_block: Option<u32>,
    pub good_til_block_time: Option<u32>,
    /// The address of the key that signed the transaction.
    pub signer: Option<String>,
    /// The authenticators the transaction selected (x/accountplus), when it selected any.
    pub authenticators: Option<Vec<u64>>,
}

/// An order the venue holds, with what the Indexer says about it.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub id: String,
    pub placement: Placement,
    pub ticker: String,
    pub size: Decimal,
    pub price: Decimal,
    pub trigger_price: Option<Decimal>,
    pub total_filled: Decimal,
    pub status: OrderStatus,
    pub order_type: &'static str,
    pub created_at_height: u32,
    pub updated_at: DateTime<Utc>,
    pub updated_at_height: u32,
    /// When the Indexer starts showing it (it trails the chain).
    pub visible_at: Instant,
}

#[derive(Debug, Clone)]
pub struct FakeFill {
    pub id: String,
    pub address: String,
    pub subaccount: u32,
    pub side: OrderSide,
    pub ticker: String,
    pub price: Decimal,
    pub size: Decimal,
    pub fee: Decimal,
    pub created_at: DateTime<Utc>,
    pub created_at_height: u32,
    pub order_id: String,
    pub client_metadata: u32,
    pub visible_at: Instant,
}

/// A subaccount's position in one market, signed (negative is short).
#[derive(Debug, Clone)]
pub struct FakePosition {
    pub size: Decimal,
    pub max_size: Decimal,
    pub entry_price: Decimal,
    pub realized_pnl: Decimal,
    pub sum_open: Decimal,
    pub sum_close: Decimal,
    pub created_at: DateTime<Utc>,
    pub created_at_height: u32,
}

/// The faults `POST /_fake/faults` sets. Counts are used up one per request they hit.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// New connections are refused and requests on open ones get 503 / UNAVAILABLE.
    pub down: bool,
    /// Every request waits this long before it is handled.
    pub slow_ms: u64,
    /// The next N requests get 503 (Indexer) / UNAVAILABLE (node).
    pub status_5xx: u32,
    /// The next N requests get 429 (Indexer) / RESOURCE_EXHAUSTED (node).
    pub rate_limited: u32,
    /// The next N order placements are accepted and recorded, then the call fails.
    pub drop_response_after_accept: u32,
    /// The next N short-term orders pass CheckTx and are answered as accepted (code 0), but never
    /// reach a block: a short-term order lives only in the validators' memory until its
    /// GoodTilBlock, and one the proposers never include simply expires. The book, the Indexer
    /// and the positions never show it.
    pub never_included: u32,
    /// Orders fill this fraction of their size (rounded down to the step); the rest is cancelled.
    pub partial_fill: Option<Decimal>,
    /// Like a venue's rate limit: beyond this many requests (Indexer and node together) in any
    /// second, requests get 429 / RESOURCE_EXHAUSTED.
    pub max_requests_per_second: Option<u32>,
    /// Orders and fills show on the Indexer this long after the node took them.
    pub indexer_lag_ms: u64,
    /// Fills show this much later again than the orders they belong to: comlink learns an
    /// order's filled total and its fills by different paths (vulcan's off-chain order updates,
    /// ender's on-chain fills), so the total can lead.
    pub fills_lag_ms: u64,
    /// The next N placements fail CheckTx with `reject_code` and `reject_log`.
    pub reject: u32,
    pub reject_code: Option<u32>,
    pub reject_log: Option<String>,
    /// Which requests the request faults (down, slow, 5xx, 429) apply to: "indexer", "node",
    /// "broadcast" (the node's order placements only), or all when absent.
    pub scope: Option<String>,
    /// The Telegram fake's faults, handed to it unread.
    pub telegram: Option<serde_json::Value>,
    /// The Indexer shows what filled other than the book has it, as a faulty or hostile one
    /// could; the book itself (positions, balances) is untouched.
    pub misreport: Option<Misreport>,
}

/// How the Indexer misreports orders and fills (`Faults::misreport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Misreport {
    /// Orders and fills show the other side.
    Side,
    /// Orders show twice their size filled, and fills twice their size.
    Oversize,
    /// Fills at a price of zero.
    ZeroPrice,
    /// Fills at 79,228,162,514,264,337,593,543,950 (within a decimal's range, not any market's).
    AbsurdPrice,
    /// Numbers no decimal holds (`OUT_OF_RANGE`), as a corrupted answer could carry: orders'
    /// filled sizes, fills' sizes, positions' sizes and the subaccount's equity. The Indexer's
    /// JSON writes them (`indexer.rs`); the book is untouched.
    OutOfRange,
}

/// 10^40, beyond a 96-bit decimal: what `Misreport::OutOfRange` answers, as comlink's number text.
pub const OUT_OF_RANGE: &str = "1e40";

impl Misreport {
    /// The order as the misreporting Indexer shows it.
    pub fn order(self, order: &FakeOrder) -> FakeOrder {
        let mut shown = order.clone();
        shown.placement.side = self.side(order.placement.side);
        shown.total_filled = self.filled(order.total_filled);
        shown
    }

    /// The fill as the misreporting Indexer shows it.
    pub fn fill(self, fill: &FakeFill) -> FakeFill {
        let mut shown = fill.clone();
        shown.side = self.side(fill.side);
        shown.size = self.filled(fill.size);
        shown.price = self.price(fill.price);
        shown
    }

    fn side(self, side: OrderSide) -> OrderSide {
        match (self, side) {
            (Self::Side, OrderSide::Buy) => OrderSide::Sell,
            (Self::Side, OrderSide::Sell) => OrderSide::Buy,
            _ => side,
        }
    }

    fn filled(self, size: Decimal) -> Decimal {
        match self {
            Self::Oversize => size * Decimal::TWO,
            _ => size,
        }
    }

    fn price(self, price: Decimal) -> Decimal {
        match self {
            Self::ZeroPrice => Decimal::ZERO,
            Self::AbsurdPrice => {
                Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950, 0)
            }
            _ => price,
        }
    }
}

/// CheckTx's answer when an equity tier forbids another order: a real rejection's code and log.
pub const DEFAULT_REJECT_CODE: u32 = 10001;
pub const DEFAULT_REJECT_LOG: &str = "Opening order would exceed equity tier limit of 0, for \
    subaccount with net collateral 0: Subaccount cannot open more orders due to equity tier limit.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Indexer,
    Node,
    /// The node's BroadcastTx alone, so a fault can hit the placement itself.
    Broadcast,
}

/// What a request fault asks of one request.
pub enum RequestFault {
    Down,
    ServerError,
    RateLimited,
}

/// How the node answers a placement.
pub enum PlaceAnswer {
    Accepted,
    AcceptedThenDropped,
    Rejected { code: u32, log: String },
}

pub struct Venue {
    started: Instant,
    block_ms: u64,
    pub chain_id: String,
    /// The owners' authenticators (x/accountplus).
    pub authenticators: crate::accountplus::Registry,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    markets: BTreeMap<String, FakeMarket>,
    orders: Vec<FakeOrder>,
    /// Every placement received, accepted or not, in arrival order.
    received: Vec<Placement>,
    fills: Vec<FakeFill>,
    positions: HashMap<(String, u32, String), FakePosition>,
    sequences: HashMap<String, u64>,
    faults: Faults,
    /// When the requests of the last second arrived, for `max_requests_per_second`.
    recent_requests: std::collections::VecDeque<Instant>,
    /// Requests refused by `max_requests_per_second`.
    throttled: u64,
}

impl Venue {
    pub fn new(block_ms: u64, chain_id: String) -> Self {
        let markets = default_markets()
            .into_iter()
            .map(|market| (market.ticker.clone(), market))
            .collect();
        Self {
            started: Instant::now(),
            block_ms: block_ms.max(1),
            chain_id,
            authenticators: crate::accountplus::Registry::default(),
            state: Mutex::new(State {
                markets,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The chain advances one block every `block_ms`.
    pub fn height(&self) -> u32 {
        let blocks = self.started.elapsed().as_millis() / u128::from(self.block_ms);
        FIRST_HEIGHT.saturating_add(u32::try_from(blocks).unwrap_or(u32::MAX))
    }

    pub fn markets(&self) -> Vec<FakeMarket> {
        self.state().markets.values().cloned().collect()
    }

    pub fn set_prices(&self, prices: &HashMap<String, Decimal>) -> Result<(), String> {
        let mut state = self.state();
        for (ticker, price) in prices {
            if *price <= Decimal::ZERO {
                return Err(format!("{ticker}: a price must be positive"));
            }
            if !state.markets.contains_key(ticker) {
                return Err(format!("{ticker} is not listed"));
            }
        }
        for (ticker, price) in prices {
            if let Some(market) = state.markets.get_mut(ticker) {
                market.oracle_price = *price;
            }
        }
        settle(&mut state, self.height());
        Ok(())
    }

    pub fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    pub fn slow_ms(&self, service: Service) -> u64 {
        let state = self.state();
        if applies(&state.faults, service) {
            state.faults.slow_ms
        } else {
            0
        }
    }

    pub fn is_down(&self, service: Service) -> bool {
        let state = self.state();
        applies(&state.faults, service) && state.faults.down
    }

    /// The fault this request meets, using up one count.
    pub fn request_fault(&self, service: Service) -> Option<RequestFault> {
        let mut state = self.state();
        if !applies(&state.faults, service) {
            return None;
        }
        let faults = &mut state.faults;
        if faults.down {
            return Some(RequestFault::Down);
        }
        if faults.status_5xx > 0 {
            faults.status_5xx -= 1;
            return Some(RequestFault::ServerError);
        }
        if faults.rate_limited > 0 {
            faults.rate_limited -= 1;
            return Some(RequestFault::RateLimited);
        }
        if let Some(limit) = state.faults.max_requests_per_second {
            let now = Instant::now();
            while state
                .recent_requests
                .front()
                .is_some_and(|at| now.duration_since(*at) >= std::time::Duration::from_secs(1))
            {
                state.recent_requests.pop_front();
            }
            if state.recent_requests.len() >= limit as usize {
                state.throttled += 1;
                return Some(RequestFault::RateLimited);
            }
            state.recent_requests.push_back(now);
        }
        None
    }

    /// How many requests `max_requests_per_second` refused.
    pub fn throttled(&self) -> u64 {
        self.state().throttled
    }

    pub fn next_sequence(&self, address: &str) -> u64 {
        self.state().sequences.get(address).copied().unwrap_or(0)
    }

    pub fn received(&self) -> Vec<(Placement, Option<String>)> {
        let state = self.state();
        state
            .received
            .iter()
            .map(|placement| {
                let ticker = state
                    .markets
                    .values()
                    .find(|market| market.clob_pair_id == placement.clob_pair_id)
                    .map(|market| market.ticker.clone());
                (placement.clone(), ticker)
            })
            .collect()
    }

    pub fn market_by_clob(&self, clob_pair_id: u32) -> Option<FakeMarket> {
        self.state()
            .markets
            .values()
            .find(|market| market.clob_pair_id == clob_pair_id)
            .cloned()
    }

    /// Cancels an order by its id fields; unknown orders are ignored, as the chain's best-effort
    /// cancels are.
    pub fn cancel(&self, address: &str, subaccount: u32, client_id: u32, flags: u32, clob: u32) {
        let height = self.height();
        let mut state = self.state();
        if let Some(order) = state.orders.iter_mut().rev().find(|order| {
            let p = &order.placement;
            p.address == address
                && p.subaccount == subaccount
                && p.client_id == client_id
                && p.order_flags == flags
                && p.clob_pair_id == clob
        }) {
            if matches!(order.status, OrderStatus::Open | OrderStatus::Untriggered) {
                order.status = OrderStatus::Canceled;
                order.updated_at = Utc::now();
                order.updated_at_height = height;
            }
        }
    }

    /// Records an order whose transaction CheckTx refused before its messages were looked at.
    pub fn refused(&self, placement: Placement) {
        self.state().received.push(placement);
    }

    /// Receives an order from a broadcast transaction: records it, decides what CheckTx says,
    /// and if accepted matches it against the oracle price at once.
    pub fn place(&self, placement: Placement) -> PlaceAnswer {
        let height = self.height();
        let mut state = self.state();
        state.received.push(placement.clone());
        if state.faults.reject > 0 {
            state.faults.reject -= 1;
            return PlaceAnswer::Rejected {
                code: state.faults.reject_code.unwrap_or(DEFAULT_REJECT_CODE),
                log: state
                    .faults
                    .reject_log
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REJECT_LOG.to_owned()),
            };
        }
        let Some(market) = state
            .markets
            .values()
            .find(|market| market.clob_pair_id == placement.clob_pair_id)
            .cloned()
        else {
            return PlaceAnswer::Rejected {
                code: 3002,
                log: format!("ClobPair with id {} does not exist", placement.clob_pair_id),
            };
        };
        if let Some(rejected) = check_order(&state, &placement, &market, height) {
            return rejected;
        }
        if placement.order_flags == FLAG_LONG_TERM || placement.order_flags == FLAG_CONDITIONAL {
            *state
                .sequences
                .entry(placement.address.clone())
                .or_insert(0) += 1;
        }
        if placement.order_flags == FLAG_SHORT_TERM && state.faults.never_included > 0 {
            state.faults.never_included -= 1;
            return PlaceAnswer::Accepted;
        }
        let partial = state.faults.partial_fill;
        let visible_at =
            Instant::now() + std::time::Duration::from_millis(state.faults.indexer_lag_ms);
        let order = accept(&mut state, placement, &market, height, partial, visible_at);
        state.orders.push(order);
        if state.faults.drop_response_after_accept > 0 {
            state.faults.drop_response_after_accept -= 1;
            return PlaceAnswer::AcceptedThenDropped;
        }
        PlaceAnswer::Accepted
    }

    /// The orders the Indexer shows now.
    pub fn orders(&self) -> Vec<FakeOrder> {
        let now = Instant::now();
        let height = self.height();
        let mut state = self.state();
        settle(&mut state, height);
        state
            .orders
            .iter()
            .filter(|o| o.visible_at <= now)
            .cloned()
            .collect()
    }

    /// The fills the Indexer shows now.
    pub fn fills(&self) -> Vec<FakeFill> {
        let now = Instant::now();
        let height = self.height();
        let mut state = self.state();
        settle(&mut state, height);
        state
            .fills
            .iter()
            .filter(|f| f.visible_at <= now)
            .cloned()
            .collect()
    }

    pub fn positions(&self, address: &str, subaccount: u32) -> Vec<(String, FakePosition)> {
        self.state()
            .positions
            .iter()
            .filter(|((owner, number, _), _)| owner == address && *number == subaccount)
            .map(|((_, _, ticker), position)| (ticker.clone(), position.clone()))
            .collect()
    }

    /// Collateral plus realized profit and loss, less fees.
    pub fn usdc_balance(&self, address: &str, subaccount: u32) -> Decimal {
        let state = self.state();
        let realized: Decimal = state
            .positions
            .iter()
            .filter(|((owner, number, _), _)| owner == address && *number == subaccount)
            .map(|(_, position)| position.realized_pnl)
            .sum();
        let fees: Decimal = state
            .fills
            .iter()
            .filter(|fill| fill.address == address && fill.subaccount == subaccount)
            .map(|fill| fill.fee)
            .sum();
        STARTING_USDC + realized - fees
    }

    pub fn oracle(&self, ticker: &str) -> Option<Decimal> {
        self.state().markets.get(ticker).map(|m| m.oracle_price)
    }
}

fn applies(faults: &Faults, service: Service) -> bool {
    match faults.scope.as_deref() {
        Some("indexer") => service == Service::Indexer,
        Some("node") => service != Service::Indexer,
        Some("broadcast") => service == Service::Broadcast,
        _ => true,
    }
}

/// The chain's stateless checks that an order from this client could fail.
fn check_order(
    state: &State,
    placement: &Placement,
    market: &FakeMarket,
    height: u32,
) -> Option<PlaceAnswer> {
    let reject = |code: u32, log: String| Some(PlaceAnswer::Rejected { code, log });
    if placement.quantums == 0 || placement.quantums % market.step_base_quantums != 0 {
        return reject(
            3005,
            format!(
                "Order size in base quantums is not a multiple of the ClobPair's StepBaseQuantums: \
                 {} quantums, step {}",
                placement.quantums, market.step_base_quantums
            ),
        );
    }
    if placement.subticks == 0 || placement.subticks % u64::from(market.subticks_per_tick) != 0 {
        return reject(
            3006,
            format!(
                "Order subticks is not a multiple of the ClobPair's SubticksPerTick: {} subticks, \
                 {} per tick",
                placement.subticks, market.subticks_per_tick
            ),
        );
    }
    if placement.order_flags == FLAG_SHORT_TERM {
        let Some(good_til) = placement.good_til_block else {
            return reject(3004, "Short-term order requires GoodTilBlock".to_owned());
        };
        if good_til <= height || good_til > height + SHORT_TERM_WINDOW {
            return reject(
                3012,
                format!(
                    "GoodTilBlock {good_til} is not in the window ({height}, {}]",
                    height + SHORT_TERM_WINDOW
                ),
            );
        }
    }
    // The same order id again while the first is known: the chain refuses a duplicate that does
    // not raise GoodTilBlock, and a fully filled order for the rest of its life.
    let duplicate = state.orders.iter().any(|order| {
        let p = &order.placement;
        p.address == placement.address
            && p.subaccount == placement.subaccount
            && p.client_id == placement.client_id
            && p.order_flags == placement.order_flags
            && p.clob_pair_id == placement.clob_pair_id
            && (order.status == OrderStatus::Filled || p.good_til_block >= placement.good_til_block)
    });
    if duplicate {
        return reject(
            3000,
            "An order with the same order id, which is fully filled or has an equal or later \
             GoodTilBlock, already exists"
                .to_owned(),
        );
    }
    None
}

fn accept(
    state: &mut State,
    placement: Placement,
    market: &FakeMarket,
    height: u32,
    partial: Option<Decimal>,
    visible_at: Instant,
) -> FakeOrder {
    let now = Utc::now();
    let size = market.size_of(placement.quantums);
    let price = market.price_of(placement.subticks);
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!(
            "{}/{}/{}/{}/{}/{}",
            placement.address,
            placement.subaccount,
            placement.client_id,
            placement.clob_pair_id,
            placement.order_flags,
            state.received.len()
        )
        .as_bytes(),
    )
    .to_string();
    let conditional = placement.order_flags == FLAG_CONDITIONAL;
    let market_like = matches!(placement.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
    let order_type = match (placement.condition_type, market_like) {
        (1, true) => "STOP_MARKET",
        (1, false) => "STOP_LIMIT",
        (2, true) => "TAKE_PROFIT_MARKET",
        (2, false) => "TAKE_PROFIT",
        _ => "LIMIT",
    };
    let trigger_price = conditional.then(|| market.price_of(placement.trigger_subticks));
    let mut order = FakeOrder {
        id,
        ticker: market.ticker.clone(),
        size,
        price,
        trigger_price,
        total_filled: Decimal::ZERO,
        status: if conditional {
            OrderStatus::Untriggered
        } else {
            OrderStatus::Open
        },
        order_type,
        created_at_height: height,
        updated_at: now,
        updated_at_height: height,
        visible_at,
        placement,
    };
    if conditional {
        return order;
    }
    let side = order.placement.side;
    let fill_price = market.fill_price(side);
    let marketable = match side {
        OrderSide::Buy => fill_price <= price,
        OrderSide::Sell => fill_price >= price,
    };
    let mut fill_size = Decimal::ZERO;
    if marketable && order.placement.time_in_force != TimeInForce::PostOnly {
        fill_size = match partial {
            Some(fraction) => {
                let step = market.step_size();
                ((size * fraction.clamp(Decimal::ZERO, Decimal::ONE) / step).floor() * step)
                    .normalize()
            }
            None => size,
        };
        if order.placement.time_in_force == TimeInForce::Fok && fill_size < size {
            fill_size = Decimal::ZERO;
        }
        if order.placement.reduce_only {
            let key = (
                order.placement.address.clone(),
                order.placement.subaccount,
                market.ticker.clone(),
            );
            let held = state.positions.get(&key).map_or(Decimal::ZERO, |p| p.size);
            // Reduce-only may only shrink a position of the other side.
            let reducible = if held * side.sign() < Decimal::ZERO {
                held.abs()
            } else {
                Decimal::ZERO
            };
            fill_size = fill_size.min(reducible);
        }
    }
    if fill_size > Decimal::ZERO {
        let fee = (fill_price * fill_size * TAKER_FEE).round_dp(6).normalize();
        state.fills.push(FakeFill {
            id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("fill/{}", order.id).as_bytes(),
            )
            .to_string(),
            address: order.placement.address.clone(),
            subaccount: order.placement.subaccount,
            side,
            ticker: market.ticker.clone(),
            price: fill_price,
            size: fill_size,
            fee,
            created_at: now,
            created_at_height: height,
            order_id: order.id.clone(),
            client_metadata: order.placement.client_metadata,
            visible_at: visible_at + std::time::Duration::from_millis(state.faults.fills_lag_ms),
        });
        move_position(state, &order, fill_size, fill_price, now, height);
        order.total_filled = fill_size;
    }
    let resting = matches!(
        order.placement.time_in_force,
        TimeInForce::Gtt | TimeInForce::PostOnly
    );
    order.status = if order.total_filled == size {
        OrderStatus::Filled
    } else if resting {
        OrderStatus::Open
    } else {
        // An IOC or FOK order's remainder never rests on the book.
        OrderStatus::Canceled
    };
    order
}

/// Brings the resting (long-term) orders up to date: those past their good-til time expire
/// (CANCELED, as the Indexer shows an expired order), and those the oracle price now crosses fill
/// what is left of them at the taker price.
fn settle(state: &mut State, height: u32) {
    let now = Utc::now();
    let lag = std::time::Duration::from_millis(state.faults.indexer_lag_ms);
    let fills_lag = std::time::Duration::from_millis(state.faults.fills_lag_ms);
    for index in 0..state.orders.len() {
        let order = &state.orders[index];
        if order.placement.order_flags != FLAG_LONG_TERM || order.status != OrderStatus::Open {
            continue;
        }
        let expired = order
            .placement
            .good_til_block_time
            .is_some_and(|until| now.timestamp() >= i64::from(until));
        if expired {
            let order = &mut state.orders[index];
            order.status = OrderStatus::Canceled;
            order.updated_at = now;
            order.updated_at_height = height;
            continue;
        }
        let Some(market) = state.markets.get(&order.ticker).cloned() else {
            continue;
        };
        let side = order.placement.side;
        let fill_price = market.fill_price(side);
        let crosses = match side {
            OrderSide::Buy => fill_price <= order.price,
            OrderSide::Sell => fill_price >= order.price,
        };
        let rest = order.size - order.total_filled;
        if !crosses || rest <= Decimal::ZERO {
            continue;
        }
        let order = order.clone();
        let fee = (fill_price * rest * TAKER_FEE).round_dp(6).normalize();
        state.fills.push(FakeFill {
            id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("fill/{}/{}", order.id, order.total_filled).as_bytes(),
            )
            .to_string(),
            address: order.placement.address.clone(),
            subaccount: order.placement.subaccount,
            side,
            ticker: market.ticker.clone(),
            price: fill_price,
            size: rest,
            fee,
            created_at: now,
            created_at_height: height,
            order_id: order.id.clone(),
            client_metadata: order.placement.client_metadata,
            visible_at: Instant::now() + lag + fills_lag,
        });
        move_position(state, &order, rest, fill_price, now, height);
        let resting = &mut state.orders[index];
        resting.total_filled = resting.size;
        resting.status = OrderStatus::Filled;
        resting.updated_at = now;
        resting.updated_at_height = height;
    }
}

fn move_position(
    state: &mut State,
    order: &FakeOrder,
    size: Decimal,
    price: Decimal,
    now: DateTime<Utc>,
    height: u32,
) {
    let key = (
        order.placement.address.clone(),
        order.placement.subaccount,
        order.ticker.clone(),
    );
    let delta = size * order.placement.side.sign();
    let position = state.positions.entry(key).or_insert_with(|| FakePosition {
        size: Decimal::ZERO,
        max_size: Decimal::ZERO,
        entry_price: Decimal::ZERO,
        realized_pnl: Decimal::ZERO,
        sum_open: Decimal::ZERO,
        sum_close: Decimal::ZERO,
        created_at: now,
        created_at_height: height,
    });
    if position.size.is_zero() {
        position.created_at = now;
        position.created_at_height = height;
    }
    let opening =
        position.size.is_zero() || position.size.is_sign_positive() == delta.is_sign_positive();
    if opening {
        let cost = position.entry_price * position.size.abs() + price * size;
        position.size += delta;
        position.entry_price = (cost / position.size.abs()).round_dp(8).normalize();
        position.sum_open += size;
    } else {
        let closed = size.min(position.size.abs());
        let direction = if position.size.is_sign_positive() {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        position.realized_pnl += (price - position.entry_price) * closed * direction;
        position.sum_close += closed;
        position.size += delta;
        let flipped = size - closed;
        if flipped > Decimal::ZERO {
            position.entry_price = price;
            position.sum_open += flipped;
        }
    }
    position.max_size = position.max_size.max(position.size.abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_markets_have_the_services_steps_and_ticks() {
        let expected = [
            ("BTC-USD", "0.0001", "1"),
            ("ETH-USD", "0.001", "0.1"),
            ("LINK-USD", "0.1", "0.001"),
            ("SOL-USD", "0.1", "0.01"),
            ("DOGE-USD", "10", "0.00001"),
            ("AVAX-USD", "0.1", "0.01"),
        ];
        for (market, (ticker, step, tick)) in default_markets().iter().zip(expected) {
            assert_eq!(market.ticker, ticker);
            assert_eq!(market.step_size().to_string(), step, "{ticker} step");
            assert_eq!(market.tick_size().to_string(), tick, "{ticker} tick");
        }
    }
}
