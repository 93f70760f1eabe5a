//! dYdX v4 behind the `Exchange` trait, with the official client (crate `dydx`).
//!
//! - **Markets** (tick, step = minimum size, oracle price) come from the Indexer and are cached;
//!   `reference_price` reads the cache only.
//! - **Orders** are short-term IOC orders on the validator node: market orders capped at the oracle
//!   price ± `slippage`, limit orders the oracle price has reached at their limit, reduce-only when
//!   asked. A limit it has not reached rests on the book as a long-term order (flags 64, good til
//!   `limit_order_lifetime` from now): `OrderOutcome::Resting`, whose end `order_status` reads
//!   later (and `cancel_resting` forces under a halt). A filled entry's take-profit and stop-loss
//!   follow as reduce-only conditional orders (flags 32).
//! - **Exactly once.** The client id is derived from the saga's client order id (`ids`), so a
//!   lookup on the Indexer's order list (there is no lookup by client id) finds an order sent
//!   earlier. Every placement asks first; an order whose answer was lost is waited for until it
//!   shows up or its last block (a long-term order's: its good-til time) has passed, after which
//!   it can never execute, so it is never sent twice while it may still trade. Each send, its
//!   last block or time and the subaccount it went to are recorded in the store (`dydx_sends`)
//!   before the order leaves, so a restarted service waits too, and looks on the wallet that sent
//!   it even if the trader has changed wallets since (only that wallet's key may cancel it).
//! - **Failures.** Anything that leaves the order's fate unknown is `Unavailable` (the saga asks
//!   again before retrying); a CheckTx refusal is `Rejected`. Requests are paced per service with a
//!   token bucket (`governor`), so bursts queue instead of meeting 429s.
//! - **Secrets.** The key is asked of [`DydxCredentials`] at the moment of use and dropped after
//!   signing; only the public address is kept, to look orders up.
//! - **Permissioned keys.** A trader may hand over a separate trading wallet instead of their own
//!   (`credentials::Signer`): it signs for the owner's address, naming the owner's authenticator
//!   in the transaction's extension, and everything else (subaccount, lookups, positions,
//!   reconciliation) is the owner's. The client selects the authenticator for short-term orders
//!   only; conditional (bracket) orders for the owner are built here (`place_for_owner`).
//!
//! Start-up traps of the client (`shared/design/dydx-v4.md`): the rustls ring provider is
//! installed once here; the node connection needs CA roots on the machine (`SSL_CERT_FILE` or
//! ca-certificates) even for `http://`; nothing is dialled until the first order, so the service
//! starts with the venue down.

mod credentials;
mod ids;
mod markets;

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{Timelike, Utc};
use dydx::indexer::{
    ApiOrderStatus, BestEffortOpenedStatus, IndexerClient, IndexerConfig, ListOrdersOpts,
    OrderExecution, OrderFlags, OrderResponseObject, OrderSide as IndexerSide, OrderStatus,
    PerpetualPositionStatus, RestConfig, SockConfig, Subaccount, SubaccountNumber, Ticker,
};
use dydx::indexer::{GetFillsOpts, ListPerpetualMarketsOpts, ListPositionsOpts};
use dydx::node::sequencer::Nonce;
use dydx::node::{
    Account, Address, BroadcastError, ChainId, NodeClient, NodeConfig, NodeError, OrderBuilder,
    OrderSide, OrderTimeInForce, PublicAccount, TxHash, Wallet,
};
use dydx_proto::dydxprotocol::clob::OrderId as ProtoOrderId;
use dydx_proto::dydxprotocol::clob::{msg_cancel_order, MsgCancelOrder, MsgPlaceOrder, Order};
use dydx_proto::ToAny;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Fill, Market, OrderType, Quantity, Side};

pub use self::credentials::{
    CredentialError, DydxCredentials, DydxKey, InMemoryCredentials, Signer,
};
pub use self::ids::{venue_ids, Leg, VenueIds};
use self::markets::{to_big, to_decimal, MarketCache, MarketParams};
use super::{Exchange, ExchangeError, OrderOutcome, OrderRequest};
use crate::store::{DydxSend, Store};

/// Which dYdX chain the node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DydxChain {
    Testnet,
    Mainnet,
}

impl FromStr for DydxChain {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "testnet" | "dydx-testnet-4" => Ok(Self::Testnet),
            "mainnet" | "dydx-mainnet-1" => Ok(Self::Mainnet),
            other => Err(format!(
                "dYdX chain must be testnet or mainnet, not {other}"
            )),
        }
    }
}

impl DydxChain {
    fn chain_id(self) -> ChainId {
        match self {
            Self::Testnet => ChainId::Testnet4,
            Self::Mainnet => ChainId::Mainnet1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DydxConfig {
    pub indexer_url: String,
    pub node_url: String,
    pub chain: DydxChain,
    /// A market order's price cap: this fraction beyond the oracle price.
    pub slippage: Decimal,
    /// A short-term order is good for this many blocks (the chain allows at most 20).
    pub short_term_blocks: u32,
    /// Any single request to the Indexer or the node.
    pub request_timeout: Duration,
    /// How long a placement waits for the Indexer to show what the order did.
    pub outcome_wait: Duration,
    /// Requests per second to each of the Indexer and the node; bursts queue.
    pub requests_per_second: NonZeroU32,
    /// Cached market parameters older than this are read again before an order.
    pub market_max_age: Duration,
    /// Blocks the Indexer may trail the chain by: an order missing from it this far past its
    /// last block never executed.
    pub indexer_lag_blocks: u32,
    /// Conditional (take-profit, stop-loss) orders live this long.
    pub bracket_lifetime: chrono::Duration,
    /// A limit order that does not fill at once rests on the book this long (long-term order;
    /// at most `MAX_LONG_TERM_SECONDS`).
    pub limit_order_lifetime: chrono::Duration,
}

/// The order flags of a long-term (stateful) order.
const LONG_TERM_FLAGS: u32 = 64;

/// dYdX's cap on a long-term order's good-til time: 95 days ahead.
pub const MAX_LONG_TERM_SECONDS: u64 = 95 * 24 * 60 * 60;

/// 1%: the default cap on how far from the oracle price a market order may fill.
pub const DEFAULT_SLIPPAGE: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
const INDEXER_PAGE: u32 = 100;
const POLL_INTERVAL: Duration = Duration::from_millis(200);

impl DydxConfig {
    pub fn new(indexer_url: &str, node_url: &str, chain: DydxChain) -> Self {
        Self {
            indexer_url: indexer_url.trim_end_matches('/').to_owned(),
            node_url: node_url.trim_end_matches('/').to_owned(),
            chain,
            slippage: DEFAULT_SLIPPAGE,
            short_term_blocks: 10,
            request_timeout: Duration::from_secs(5),
            outcome_wait: Duration::from_secs(15),
            requests_per_second: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            market_max_age: Duration::from_secs(60),
            // About 5 s on dYdX (blocks of ~1 s); the Indexer usually trails by well under 1 s.
            indexer_lag_blocks: 5,
            bracket_lifetime: chrono::Duration::days(28),
            limit_order_lifetime: chrono::Duration::days(1),
        }
    }
}

/// A position as dYdX reports it, for reconciliation. `size` is signed: negative is short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenuePosition {
    pub market: Market,
    pub size: Decimal,
    pub entry_price: Decimal,
}

/// A fill as dYdX reports it, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueFill {
    pub order_id: Option<String>,
    pub market: Market,
    pub side: Side,
    pub price: Decimal,
    pub size: Decimal,
    pub fee: Decimal,
    pub at: chrono::DateTime<Utc>,
}

#[derive(Clone)]
pub struct DydxExchange {
    inner: Arc<Inner>,
}

struct Inner {
    config: DydxConfig,
    credentials: Arc<dyn DydxCredentials>,
    /// Made on first use: the client dials the Indexer's websocket at once and needs a runtime.
    indexer: OnceLock<IndexerClient>,
    /// The client's methods take `&mut self`: one connection, one caller at a time (orders are
    /// paced anyway).
    node: tokio::sync::Mutex<Option<NodeClient>>,
    markets: MarketCache,
    /// Accounts' public subaccount ids, so a lookup needs no secret, each with the wallet
    /// revision it was derived under.
    subaccounts: Mutex<HashMap<String, KnownSubaccount>>,
    /// Orders this process sent whose outcome it has not seen yet, with their last valid block.
    in_flight: Mutex<HashMap<ClientOrderId, InFlightOrder>>,
    sends: Option<Store>,
    indexer_pace: DefaultDirectRateLimiter,
    node_pace: DefaultDirectRateLimiter,
}

struct KnownSubaccount {
    revision: Option<Vec<u8>>,
    subaccount: Subaccount,
}

#[derive(Debug, Clone)]
struct InFlightOrder {
    account_id: String,
    market: Market,
    side: Side,
    last: LastMoment,
    /// The subaccount it was sent to, where it is looked up whatever wallet the account holds
    /// later. `None` only in a send recorded before the wallet was.
    subaccount: Option<Subaccount>,
}

/// An order's outcome with the subaccount it was found on or sent to, where its brackets go:
/// `None` when nothing was sent (refused before leaving).
struct Located {
    outcome: OrderOutcome,
    subaccount: Option<Subaccount>,
}

/// Until when a sent order may still execute (and so may still show up on the Indexer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastMoment {
    /// A short-term order's last block.
    Block(u32),
    /// A long-term order's good-til time.
    Time(chrono::DateTime<Utc>),
}

/// What the credentials give for an account: a key, or why its orders are refused.
enum KeyLookup {
    Key(DydxKey),
    Refused(String),
}

/// How an order is signed: the wallet, and for a permissioned key the owner it signs for and
/// the owner's authenticator that allows it.
struct Signing {
    wallet: Wallet,
    permission: Option<(Address, u64)>,
}

/// What the Indexer shows of an order.
enum Seen {
    Nothing,
    /// Known but not final (or its fills not indexed yet).
    Live,
    /// A long-term order open on the book.
    Resting(OrderOutcome),
    Done(OrderOutcome),
}

fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Both ring and aws-lc-rs are in the build: without a process default the node client
        // panics on connect. Another component may have installed one already; either will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The order sits on a subaccount the account's current key cannot sign for (the trader changed
/// wallets after it was sent).
fn not_held_by_current_wallet(what: &str, holder: &Subaccount) -> ExchangeError {
    unavailable(
        what,
        format!(
            "the order is held by subaccount {} of {}, which the account's current dYdX key \
             does not sign for",
            holder.number.value(),
            holder.address.as_ref()
        ),
    )
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> ExchangeError {
    ExchangeError::Unavailable(format!("dYdX {what}: {error}"))
}

impl DydxExchange {
    /// `sends`: where each send is recorded before it leaves, so a restarted service waits out an
    /// order still in flight; `None` keeps them in memory only (tests of the adapter alone).
    pub fn new(
        config: DydxConfig,
        credentials: Arc<dyn DydxCredentials>,
        sends: Option<Store>,
    ) -> Self {
        install_crypto_provider();
        let quota = Quota::per_second(config.requests_per_second);
        Self {
            inner: Arc::new(Inner {
                markets: MarketCache::new(config.market_max_age),
                config,
                credentials,
                indexer: OnceLock::new(),
                node: tokio::sync::Mutex::new(None),
                subaccounts: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
                sends,
                indexer_pace: RateLimiter::direct(quota),
                node_pace: RateLimiter::direct(quota),
            }),
        }
    }

    /// Reads every market's parameters and oracle price into the cache.
    pub async fn refresh_markets(&self) -> Result<usize, ExchangeError> {
        let markets = self
            .indexer_call("markets", |indexer| async move {
                indexer.markets().get_perpetual_markets(None).await
            })
            .await?;
        let mut stored = 0;
        for (ticker, model) in markets {
            let (Ok(market), Some(params)) =
                (Market::parse(&ticker.0), MarketParams::from_model(model))
            else {
                continue;
            };
            self.inner.markets.store(market, params);
            stored += 1;
        }
        Ok(stored)
    }

    /// Keeps the market cache fresh in the background until `shutdown` turns true. The task holds
    /// the adapter, hence its credentials (the vault, which appends through the ledger): it must
    /// end for the ledger's committers to drain at shutdown.
    pub fn spawn_market_refresh(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let exchange = self.clone();
        let every = (self.inner.config.market_max_age / 2).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    refreshed = exchange.refresh_markets() => {
                        if let Err(error) = refreshed {
                            tracing::warn!(%error, "dYdX markets not refreshed");
                        }
                    }
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                if crate::catchup::wait_or_shutdown(&mut shutdown, every).await {
                    return;
                }
            }
        })
    }

    /// The account's open positions on dYdX.
    pub async fn positions(&self, account_id: &str) -> Result<Vec<VenuePosition>, ExchangeError> {
        let Some(subaccount) = self.subaccount_of(account_id).await? else {
            return Ok(Vec::new());
        };
        let positions = self
            .indexer_call("positions", |indexer| async move {
                let options = ListPositionsOpts {
                    status: Some(PerpetualPositionStatus::Open),
                    limit: Some(INDEXER_PAGE),
                    ..ListPositionsOpts::default()
                };
                indexer
                    .accounts()
                    .get_subaccount_perpetual_positions(&subaccount, Some(options))
                    .await
            })
            .await?;
        let mut read = Vec::new();
        for position in positions {
            let market =
                Market::parse(&position.market.0).map_err(|e| unavailable("position", e))?;
            let size = to_decimal(&position.size.0)
                .ok_or_else(|| unavailable("position", "size out of range"))?
                .abs();
            let signed = match position.side {
                dydx::indexer::PositionSide::Long => size,
                dydx::indexer::PositionSide::Short => -size,
            };
            read.push(VenuePosition {
                market,
                size: signed,
                entry_price: to_decimal(&position.entry_price.0)
                    .ok_or_else(|| unavailable("position", "entry price out of range"))?,
            });
        }
        Ok(read)
    }

    /// The account's latest fills on dYdX, newest first, in one market or all.
    pub async fn fills(
        &self,
        account_id: &str,
        market: Option<&Market>,
    ) -> Result<Vec<VenueFill>, ExchangeError> {
        let Some(subaccount) = self.subaccount_of(account_id).await? else {
            return Ok(Vec::new());
        };
        let ticker = market.map(|market| Ticker(market.to_string()));
        let fills = self
            .indexer_call("fills", |indexer| async move {
                let options = GetFillsOpts {
                    market: ticker,
                    limit: Some(INDEXER_PAGE),
                    ..GetFillsOpts::default()
                };
                indexer
                    .accounts()
                    .get_subaccount_fills(&subaccount, Some(options))
                    .await
            })
            .await?;
        fills
            .into_iter()
            .map(|fill| {
                Ok(VenueFill {
                    order_id: fill.order_id.map(|id| id.0),
                    market: Market::parse(&fill.market.0).map_err(|e| unavailable("fill", e))?,
                    side: side_of(&fill.side),
                    price: to_decimal(&fill.price.0)
                        .ok_or_else(|| unavailable("fill", "price out of range"))?,
                    size: to_decimal(&fill.size)
                        .ok_or_else(|| unavailable("fill", "size out of range"))?,
                    fee: to_decimal(&fill.fee)
                        .ok_or_else(|| unavailable("fill", "fee out of range"))?,
                    at: fill.created_at,
                })
            })
            .collect()
    }

    fn indexer(&self) -> &IndexerClient {
        self.inner.indexer.get_or_init(|| {
            let rest = self.inner.config.indexer_url.clone();
            let sock = format!("{}/v4/ws", rest.replacen("http", "ws", 1));
            IndexerClient::new(IndexerConfig {
                rest: RestConfig { endpoint: rest },
                sock: SockConfig {
                    endpoint: sock,
                    timeout: 1_000,
                    rate_limit: NonZeroU32::MIN,
                },
            })
        })
    }

    /// One paced Indexer request with a deadline: every failure is `Unavailable`.
    async fn indexer_call<'a, T, F, Fut>(&'a self, what: &str, call: F) -> Result<T, ExchangeError>
    where
        F: FnOnce(&'a IndexerClient) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + 'a,
    {
        self.inner.indexer_pace.until_ready().await;
        match tokio::time::timeout(self.inner.config.request_timeout, call(self.indexer())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(unavailable(&format!("Indexer ({what})"), error)),
            Err(_) => Err(unavailable(
                &format!("Indexer ({what})"),
                "no answer in time",
            )),
        }
    }

    /// The node connection, made on first use and again after a failed attempt.
    async fn node(&self) -> Result<tokio::sync::MutexGuard<'_, Option<NodeClient>>, ExchangeError> {
        let mut node = self.inner.node.lock().await;
        if node.is_none() {
            let config = NodeConfig {
                endpoint: self.inner.config.node_url.clone(),
                timeout: u64::try_from(self.inner.config.request_timeout.as_millis())
                    .unwrap_or(u64::MAX),
                chain_id: self.inner.config.chain.chain_id(),
                fee_denom: dydx::indexer::Denom::Usdc,
                manage_sequencing: true,
            };
            self.inner.node_pace.until_ready().await;
            let connected = tokio::time::timeout(
                self.inner.config.request_timeout,
                NodeClient::connect(config),
            )
            .await
            .map_err(|_| unavailable("node", "no answer in time"))?
            .map_err(|error| unavailable("node connection", error))?;
            *node = Some(connected);
        }
        Ok(node)
    }

    async fn market(&self, market: &Market) -> Result<Option<MarketParams>, ExchangeError> {
        if let Some(params) = self.inner.markets.fresh(market) {
            return Ok(Some(params));
        }
        let ticker = Ticker(market.to_string());
        let listed = self
            .indexer_call("market", |indexer| async move {
                let options = ListPerpetualMarketsOpts {
                    limit: Some(1),
                    ticker: Some(ticker.clone()),
                };
                indexer.markets().get_perpetual_markets(Some(options)).await
            })
            .await?;
        let Some(params) = listed
            .into_values()
            .find(|model| model.ticker.0 == market.as_str())
            .and_then(MarketParams::from_model)
        else {
            return Ok(None);
        };
        self.inner.markets.store(market.clone(), params.clone());
        Ok(Some(params))
    }

    /// The account's subaccount, from memory while its wallet is unchanged, else derived again
    /// (from the owner's address for a permissioned key, needing no secret; else from the key).
    async fn subaccount_of(&self, account_id: &str) -> Result<Option<Subaccount>, ExchangeError> {
        let revision = self
            .inner
            .credentials
            .wallet_revision(account_id)
            .await
            .map_err(|error| ExchangeError::Unavailable(error.to_string()))?;
        if let Some(known) = self.known_subaccount(account_id, &revision) {
            return Ok(Some(known));
        }
        let subaccount = match self.inner.credentials.public_subaccount(account_id).await {
            Ok(Some((owner, number))) => subaccount_at(&owner_address(&owner)?, number)?,
            Ok(None) => {
                let KeyLookup::Key(key) = self.key_of(account_id).await? else {
                    return Ok(None);
                };
                subaccount_for(&signing_of(&key)?, key.subaccount)?
            }
            Err(CredentialError::Unusable(_)) => return Ok(None),
            Err(error) => return Err(ExchangeError::Unavailable(error.to_string())),
        };
        self.inner
            .subaccounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                account_id.to_owned(),
                KnownSubaccount {
                    revision,
                    subaccount: subaccount.clone(),
                },
            );
        Ok(Some(subaccount))
    }

    fn known_subaccount(&self, account_id: &str, revision: &Option<Vec<u8>>) -> Option<Subaccount> {
        self.inner
            .subaccounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(account_id)
            .filter(|known| &known.revision == revision)
            .map(|known| known.subaccount.clone())
    }

    async fn key_of(&self, account_id: &str) -> Result<KeyLookup, ExchangeError> {
        match self.inner.credentials.wallet_for(account_id).await {
            Ok(Some(key)) => Ok(KeyLookup::Key(key)),
            Ok(None) => Ok(KeyLookup::Refused(
                "this account has no dYdX credentials".to_owned(),
            )),
            Err(CredentialError::Unusable(reason)) => Ok(KeyLookup::Refused(reason)),
            Err(error) => Err(ExchangeError::Unavailable(error.to_string())),
        }
    }

    /// The account that signs, with the owner's authenticator selected for a permissioned key
    /// (the owner's account number and sequence are what the transaction is signed under).
    async fn signing_account(
        &self,
        signing: &Signing,
        client: &mut NodeClient,
    ) -> Result<Account, ExchangeError> {
        self.inner.node_pace.until_ready().await;
        let Some((owner, authenticator_id)) = &signing.permission else {
            return self
                .node_call("account", signing.wallet.account(0, client))
                .await;
        };
        let mut trader = signing
            .wallet
            .account_offline(0)
            .map_err(|_| unavailable("wallet", "cannot derive the trading key's account"))?;
        let owner = self
            .node_call(
                "owner account",
                PublicAccount::updated(owner.clone(), client),
            )
            .await?;
        trader.authenticators_mut().add(owner, *authenticator_id);
        Ok(trader)
    }

    /// The order this service sent under this client order id and whose fate it has not seen,
    /// from memory or, after a restart, from the store.
    async fn in_flight(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<InFlightOrder>, ExchangeError> {
        let remembered = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(client_order_id)
            .cloned();
        if remembered.is_some() {
            return Ok(remembered);
        }
        let Some(store) = &self.inner.sends else {
            return Ok(None);
        };
        let Some(send) = store
            .dydx_sends()
            .find(&client_order_id.0)
            .await
            .map_err(|error| unavailable("send record", error))?
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| unavailable("send record", format!("unreadable {what}"));
        let subaccount = match (&send.address, send.subaccount_number) {
            (Some(address), Some(number)) => {
                let address = Address::from_str(address).map_err(|_| corrupt("address"))?;
                let number = u32::try_from(number)
                    .ok()
                    .and_then(|number| SubaccountNumber::try_from(number).ok())
                    .ok_or_else(|| corrupt("subaccount number"))?;
                Some(Subaccount::new(address, number))
            }
            (None, None) => None,
            _ => return Err(corrupt("wallet")),
        };
        Ok(Some(InFlightOrder {
            account_id: send.account_id,
            market: Market::parse(&send.market).map_err(|_| corrupt("market"))?,
            side: Side::parse(&send.side).map_err(|_| corrupt("side"))?,
            last: match send.good_til_time {
                Some(time) => LastMoment::Time(time),
                None => LastMoment::Block(
                    u32::try_from(send.good_til_block).map_err(|_| corrupt("block"))?,
                ),
            },
            subaccount,
        }))
    }

    /// The subaccount that holds this account's order: the one it was sent to when that is
    /// recorded, else the account's current one. A placement knows it already (`Located`); this
    /// is for an order looked up later.
    async fn holding_subaccount(
        &self,
        order: &OrderRequest,
    ) -> Result<Option<Subaccount>, ExchangeError> {
        let sent = self.in_flight(&order.client_order_id).await?;
        self.sent_or_current(&order.account_id, sent.as_ref()).await
    }

    async fn sent_or_current(
        &self,
        account_id: &str,
        sent: Option<&InFlightOrder>,
    ) -> Result<Option<Subaccount>, ExchangeError> {
        match sent.and_then(|sent| sent.subaccount.clone()) {
            Some(subaccount) => Ok(Some(subaccount)),
            None => self.subaccount_of(account_id).await,
        }
    }

    /// Remembers an order about to leave, durably when the service has a store: if that fails
    /// the order does not leave.
    async fn record_send(
        &self,
        client_order_id: &ClientOrderId,
        order: InFlightOrder,
    ) -> Result<(), ExchangeError> {
        if let Some(store) = &self.inner.sends {
            let send = DydxSend {
                client_order_id: client_order_id.0.clone(),
                account_id: order.account_id.clone(),
                market: order.market.to_string(),
                side: order.side.as_str().to_owned(),
                good_til_block: match order.last {
                    LastMoment::Block(block) => i64::from(block),
                    LastMoment::Time(_) => 0,
                },
                good_til_time: match order.last {
                    LastMoment::Time(time) => Some(time),
                    LastMoment::Block(_) => None,
                },
                sent_at: Utc::now(),
                address: order
                    .subaccount
                    .as_ref()
                    .map(|subaccount| subaccount.address.as_ref().to_owned()),
                subaccount_number: order
                    .subaccount
                    .as_ref()
                    .map(|subaccount| i64::from(subaccount.number.value())),
            };
            store
                .dydx_sends()
                .record(&send)
                .await
                .map_err(|error| unavailable("send record", error))?;
        }
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(client_order_id.clone(), order);
        Ok(())
    }

    /// The order's fate is known: memory lets go of it (the stored record, past its last block,
    /// costs a later lookup one height check).
    fn forget(&self, client_order_id: &ClientOrderId) {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(client_order_id);
    }

    /// What the Indexer shows of the order with these ids in `market`.
    async fn seen(
        &self,
        subaccount: &Subaccount,
        market: &Market,
        ids: VenueIds,
    ) -> Result<Seen, ExchangeError> {
        let ticker = Ticker(market.to_string());
        let listed = self
            .indexer_call("orders", |indexer| async move {
                let options = ListOrdersOpts {
                    limit: Some(INDEXER_PAGE),
                    ticker: Some(ticker),
                    return_latest_orders: Some(true),
                    ..ListOrdersOpts::default()
                };
                indexer
                    .accounts()
                    .get_subaccount_orders(subaccount, Some(options))
                    .await
            })
            .await?;
        let Some(found) = listed.into_iter().find(|order| {
            order.client_id.0 == ids.client_id && order.client_metadata.0 == ids.client_metadata
        }) else {
            return Ok(Seen::Nothing);
        };
        self.outcome_of(subaccount, market, found).await
    }

    async fn outcome_of(
        &self,
        subaccount: &Subaccount,
        market: &Market,
        found: OrderResponseObject,
    ) -> Result<Seen, ExchangeError> {
        let finished = matches!(
            found.status,
            ApiOrderStatus::OrderStatus(
                OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::BestEffortCanceled
            )
        );
        let long_term = matches!(found.order_flags, OrderFlags::LongTerm);
        let filled = to_decimal(&found.total_filled)
            .ok_or_else(|| unavailable("order", "filled size out of range"))?;
        if !finished {
            let open = matches!(
                found.status,
                ApiOrderStatus::OrderStatus(OrderStatus::Open)
                    | ApiOrderStatus::BestEffort(BestEffortOpenedStatus::BestEffortOpened)
            );
            return Ok(match (long_term && open, found.good_til_block_time) {
                (true, Some(good_til)) => Seen::Resting(OrderOutcome::Resting {
                    exchange_order_id: found.id.0,
                    good_til,
                    filled_so_far: filled,
                }),
                _ => Seen::Live,
            });
        }
        if filled <= Decimal::ZERO && long_term {
            return Ok(Seen::Done(OrderOutcome::Expired {
                reason: format!(
                    "it left dYdX's book unfilled at its limit {} (expired or cancelled; dYdX \
                     order {})",
                    found.price.0, found.id.0
                ),
                exchange_order_id: found.id.0,
            }));
        }
        if filled <= Decimal::ZERO {
            return Ok(Seen::Done(OrderOutcome::Rejected {
                reason: format!(
                    "nothing filled: no liquidity within the order's price limit {} before it \
                     expired (dYdX order {})",
                    found.price.0, found.id.0
                ),
            }));
        }
        let ticker = Ticker(market.to_string());
        let fills = self
            .indexer_call("fills", |indexer| async move {
                let options = GetFillsOpts {
                    market: Some(ticker),
                    limit: Some(INDEXER_PAGE),
                    ..GetFillsOpts::default()
                };
                indexer
                    .accounts()
                    .get_subaccount_fills(subaccount, Some(options))
                    .await
            })
            .await?;
        let mut size = Decimal::ZERO;
        let mut notional = Decimal::ZERO;
        let mut fee = Decimal::ZERO;
        for fill in fills
            .iter()
            .filter(|fill| fill.order_id.as_ref() == Some(&found.id))
        {
            let (Some(fill_size), Some(price), Some(fill_fee)) = (
                to_decimal(&fill.size),
                to_decimal(&fill.price.0),
                to_decimal(&fill.fee),
            ) else {
                return Err(unavailable("fill", "number out of range"));
            };
            size = size
                .checked_add(fill_size)
                .ok_or_else(|| unavailable("fill", "size out of range"))?;
            notional = fill_size
                .checked_mul(price)
                .and_then(|value| notional.checked_add(value))
                .ok_or_else(|| unavailable("fill", "notional out of range"))?;
            fee = fee
                .checked_add(fill_fee)
                .ok_or_else(|| unavailable("fill", "fee out of range"))?;
        }
        // The order's total is indexed before all its fills may be: wait for them.
        if size < filled {
            return Ok(Seen::Live);
        }
        let price = notional
            .checked_div(size)
            .ok_or_else(|| unavailable("fill", "no size"))?
            .round_dp(12)
            .normalize();
        let size = Quantity::new(filled).map_err(|error| unavailable("fill", error))?;
        Ok(Seen::Done(OrderOutcome::Filled {
            exchange_order_id: found.id.0,
            fill: Fill {
                market: market.clone(),
                side: side_of(&found.side),
                price,
                size,
                fee: fee.normalize(),
            },
        }))
    }

    /// Waits for the Indexer to show the order's outcome (or, for a long-term order, that it
    /// rests on the book). `None` when it is not there and cannot appear any more: nothing was
    /// sent (`last` unknown) or the chain is past the order's last block or time.
    async fn await_outcome(
        &self,
        subaccount: &Subaccount,
        market: &Market,
        ids: VenueIds,
        last: Option<LastMoment>,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        let deadline = Instant::now() + self.inner.config.outcome_wait;
        loop {
            match self.seen(subaccount, market, ids).await? {
                Seen::Done(outcome) | Seen::Resting(outcome) => return Ok(Some(outcome)),
                Seen::Nothing => match last {
                    None => return Ok(None),
                    // Blocks of ~1 s: the Indexer's lag in blocks is as many seconds.
                    Some(LastMoment::Time(until)) => {
                        let lag = chrono::Duration::seconds(i64::from(
                            self.inner.config.indexer_lag_blocks,
                        ));
                        if Utc::now() > until + lag {
                            return Ok(None);
                        }
                    }
                    Some(LastMoment::Block(last)) => {
                        let height = self
                            .indexer_call("height", |indexer| async move {
                                indexer.utility().get_height().await
                            })
                            .await?;
                        if height.height.0
                            > last.saturating_add(self.inner.config.indexer_lag_blocks)
                        {
                            return Ok(None);
                        }
                    }
                },
                Seen::Live => {}
            }
            if Instant::now() >= deadline {
                return Err(ExchangeError::Unavailable(
                    "dYdX: the order was sent and its outcome is not known yet".to_owned(),
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Looks the order up, waiting out one this process sent while it may still trade. A sent
    /// order is looked up on the subaccount it was sent to: the trader may have changed wallets
    /// since, and not finding it on the new one must not send it a second time.
    async fn find(&self, order: &OrderRequest) -> Result<Option<Located>, ExchangeError> {
        let ids = venue_ids(&order.client_order_id, Leg::Entry);
        let sent = self.in_flight(&order.client_order_id).await?;
        let Some(subaccount) = self
            .sent_or_current(&order.account_id, sent.as_ref())
            .await?
        else {
            return Ok(None);
        };
        let found = self
            .await_outcome(
                &subaccount,
                &order.market,
                ids,
                sent.as_ref().map(|sent| sent.last),
            )
            .await?;
        if found.is_some() || sent.is_some() {
            self.forget(&order.client_order_id);
        }
        Ok(found.map(|outcome| Located {
            outcome,
            subaccount: Some(subaccount),
        }))
    }

    async fn place(&self, order: &OrderRequest) -> Result<Located, ExchangeError> {
        let unsent = |outcome| Located {
            outcome,
            subaccount: None,
        };
        let key = match self.key_of(&order.account_id).await? {
            KeyLookup::Key(key) => key,
            KeyLookup::Refused(reason) => return Ok(unsent(OrderOutcome::Rejected { reason })),
        };
        // Deriving the wallet is deliberately slow (PBKDF2): once per placement.
        let signing = signing_of(&key)?;
        let subaccount = subaccount_for(&signing, key.subaccount)?;
        let Some(params) = self.market(&order.market).await? else {
            return Ok(unsent(OrderOutcome::Rejected {
                reason: format!("{} is not listed on dYdX", order.market),
            }));
        };
        // A placement may follow a crash or a lost answer: the venue is asked first.
        if let Some(found) = self.find(order).await? {
            return Ok(found);
        }
        let Some(size) = params.quantize_size(order.size.value()) else {
            return Ok(unsent(OrderOutcome::Rejected {
                reason: format!(
                    "size {} is below {}'s step of {}",
                    order.size, order.market, params.step_size
                ),
            }));
        };
        let price = match order.order_type {
            OrderType::Market => params.worst_price(order.side, self.inner.config.slippage),
            OrderType::Limit { price } => params.quantize_limit(order.side, price),
        };
        // A limit the oracle price has not reached rests on the book (a long-term order); one it
        // has is sent immediate-or-cancel, as a market order is.
        let rests = match (&order.order_type, price) {
            (OrderType::Limit { .. }, Some(limit)) => match order.side {
                Side::Buy => limit < params.oracle_price,
                Side::Sell => limit > params.oracle_price,
            },
            _ => false,
        };
        let Some(price) = price else {
            return Ok(unsent(OrderOutcome::Rejected {
                reason: format!("no valid price for {} on dYdX", order.market),
            }));
        };
        let ids = venue_ids(&order.client_order_id, Leg::Entry);
        drop(key);

        let mut node = self.node().await?;
        let client = node
            .as_mut()
            .ok_or_else(|| unavailable("node", "not connected"))?;
        self.inner.node_pace.until_ready().await;
        let height = self
            .node_call("latest block", client.latest_block_height())
            .await?;
        let good_til = height.ahead(self.inner.config.short_term_blocks.min(20));
        let (Some(size_big), Some(price_big)) = (to_big(size), to_big(price)) else {
            return Err(unavailable("order", "size or price not convertible"));
        };
        let builder = OrderBuilder::new(params.model.clone(), subaccount.clone())
            .reduce_only(order.reduce_only);
        let (builder, last) = if rests {
            // dYdX's good-til time has whole seconds: the order's last moment is that second.
            let max = chrono::Duration::seconds(MAX_LONG_TERM_SECONDS as i64);
            let until = Utc::now() + self.inner.config.limit_order_lifetime.min(max);
            let until = until.with_nanosecond(0).unwrap_or(until);
            let builder = builder
                .limit(side_to(order.side), price_big, size_big)
                .time_in_force(OrderTimeInForce::Unspecified)
                .until(until)
                .long_term();
            (builder, LastMoment::Time(until))
        } else {
            let builder = builder.until(good_til.clone());
            let builder = match order.order_type {
                OrderType::Market => builder
                    .market(side_to(order.side), size_big)
                    .price(price_big),
                OrderType::Limit { .. } => builder
                    .limit(side_to(order.side), price_big, size_big)
                    .time_in_force(OrderTimeInForce::Ioc),
            };
            (builder.short_term(), LastMoment::Block(good_til.0))
        };
        let (_, mut proto) = builder
            .build(ids.client_id)
            .map_err(|error| unavailable("order", error))?;
        proto.client_metadata = ids.client_metadata;
        let mut account = self.signing_account(&signing, client).await?;
        // A resting (stateful) order for an owner needs the authenticator selected by hand.
        let owner_of_resting = signing
            .permission
            .as_ref()
            .filter(|_| rests)
            .map(|(owner, _)| owner.clone());
        drop(signing);
        self.record_send(
            &order.client_order_id,
            InFlightOrder {
                account_id: order.account_id.clone(),
                market: order.market.clone(),
                side: order.side,
                last,
                subaccount: Some(subaccount.clone()),
            },
        )
        .await?;
        self.inner.node_pace.until_ready().await;
        let send = async {
            match &owner_of_resting {
                Some(owner) => place_for_owner(client, &mut account, owner, proto).await,
                None => client.place_order(&mut account, proto).await,
            }
        };
        let placed = tokio::time::timeout(self.inner.config.request_timeout, send).await;
        drop(account);
        drop(node);
        match placed {
            Ok(Ok(_tx_hash)) => {}
            Ok(Err(NodeError::Broadcast(BroadcastError {
                code: Some(code),
                message,
            }))) => {
                self.forget(&order.client_order_id);
                return Ok(unsent(OrderOutcome::Rejected {
                    reason: format!("dYdX refused the order (code {code}): {message}"),
                }));
            }
            // The order may have reached the chain: its fate is asked before any retry.
            Ok(Err(error)) => return Err(unavailable("node", error)),
            Err(_) => return Err(unavailable("node", "no answer in time")),
        }
        let outcome = self
            .await_outcome(&subaccount, &order.market, ids, Some(last))
            .await?;
        self.forget(&order.client_order_id);
        let outcome = outcome.ok_or_else(|| {
            ExchangeError::Unavailable(
                "dYdX: the node took the order but it expired without being executed".to_owned(),
            )
        })?;
        Ok(Located {
            outcome,
            subaccount: Some(subaccount),
        })
    }

    /// After a fill, however it was learnt (the placement's answer or a lookup), the order's
    /// take-profit and stop-loss, on the subaccount that holds the entry; each is placed once
    /// (looked up first).
    async fn protect(&self, order: &OrderRequest, located: &Located) {
        let OrderOutcome::Filled { fill, .. } = &located.outcome else {
            return;
        };
        if order.take_profit.is_none() && order.stop_loss.is_none() {
            return;
        }
        let params = self.market(&order.market).await;
        let (Some(subaccount), Ok(Some(params))) = (&located.subaccount, params) else {
            tracing::error!(
                client_order_id = %order.client_order_id,
                "dYdX bracket orders not placed (account or market unavailable); the position is \
                 unprotected"
            );
            return;
        };
        self.attach_brackets(order, subaccount, &params, fill.size.value())
            .await;
    }

    async fn node_call<T, E: std::fmt::Display>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ExchangeError> {
        match tokio::time::timeout(self.inner.config.request_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(unavailable(&format!("node ({what})"), error)),
            Err(_) => Err(unavailable(&format!("node ({what})"), "no answer in time")),
        }
    }

    /// Places the filled entry's take-profit and stop-loss as reduce-only conditional market
    /// orders for the filled size. The entry stands whatever happens here: a failure is logged
    /// for the operator (reconciliation sees the unprotected position).
    async fn attach_brackets(
        &self,
        order: &OrderRequest,
        subaccount: &Subaccount,
        params: &MarketParams,
        filled: Decimal,
    ) {
        let legs = [
            (Leg::TakeProfit, order.take_profit),
            (Leg::StopLoss, order.stop_loss),
        ];
        for (leg, trigger) in legs {
            let Some(trigger) = trigger else { continue };
            if let Err(error) = self
                .place_bracket(order, subaccount, params, filled, leg, trigger)
                .await
            {
                tracing::error!(
                    %error,
                    client_order_id = %order.client_order_id,
                    leg = ?leg,
                    "dYdX bracket order not placed; the position is unprotected"
                );
            }
        }
    }

    async fn place_bracket(
        &self,
        order: &OrderRequest,
        subaccount: &Subaccount,
        params: &MarketParams,
        filled: Decimal,
        leg: Leg,
        trigger: Decimal,
    ) -> Result<(), ExchangeError> {
        let ids = venue_ids(&order.client_order_id, leg);
        if !matches!(
            self.seen(subaccount, &order.market, ids).await?,
            Seen::Nothing
        ) {
            return Ok(());
        }
        let closing = match order.side {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        let trigger = params
            .quantize_limit(closing, trigger)
            .ok_or_else(|| unavailable("bracket", "trigger price off the grid"))?;
        // Once triggered the order trades as a market order, capped like the entry.
        let cap = MarketParams {
            oracle_price: trigger,
            ..params.clone()
        }
        .worst_price(closing, self.inner.config.slippage)
        .ok_or_else(|| unavailable("bracket", "no price cap"))?;
        let (Some(size), Some(trigger_big), Some(cap_big)) =
            (to_big(filled), to_big(trigger), to_big(cap))
        else {
            return Err(unavailable("bracket", "numbers not convertible"));
        };
        let builder = OrderBuilder::new(params.model.clone(), subaccount.clone());
        let builder = match leg {
            Leg::TakeProfit => builder.take_profit_market(side_to(closing), trigger_big, size),
            _ => builder.stop_market(side_to(closing), trigger_big, size),
        };
        let (_, mut proto) = builder
            .price(cap_big)
            .execution(OrderExecution::Ioc)
            .reduce_only(true)
            .until(Utc::now() + self.inner.config.bracket_lifetime)
            .build(ids.client_id)
            .map_err(|error| unavailable("bracket", error))?;
        proto.client_metadata = ids.client_metadata;
        let KeyLookup::Key(key) = self.key_of(&order.account_id).await? else {
            return Err(unavailable("bracket", "the account's credentials are gone"));
        };
        let signing = signing_of(&key)?;
        if &subaccount_for(&signing, key.subaccount)? != subaccount {
            return Err(not_held_by_current_wallet("bracket", subaccount));
        }
        drop(key);
        let mut node = self.node().await?;
        let client = node
            .as_mut()
            .ok_or_else(|| unavailable("node", "not connected"))?;
        let mut account = self.signing_account(&signing, client).await?;
        let owner = signing.permission.as_ref().map(|(owner, _)| owner.clone());
        drop(signing);
        self.inner.node_pace.until_ready().await;
        let placed = match owner {
            None => {
                self.node_call("bracket", client.place_order(&mut account, proto))
                    .await
            }
            Some(owner) => {
                self.node_call(
                    "bracket",
                    place_for_owner(client, &mut account, &owner, proto),
                )
                .await
            }
        };
        placed.map(|_| ())
    }
}

/// A stateful order (conditional or long-term) signed by a permissioned key for `owner`, built
/// as the client builds its own stateful transactions (the owner's sequence, gas from a
/// simulation) but with the owner's authenticator selected, which 0.3.0's `place_order` does for
/// short-term orders only.
async fn place_for_owner(
    client: &mut NodeClient,
    account: &mut Account,
    owner: &Address,
    order: Order,
) -> Result<TxHash, NodeError> {
    broadcast_for_owner(
        client,
        account,
        owner,
        MsgPlaceOrder { order: Some(order) }.to_any(),
    )
    .await
}

/// A stateful cancel signed by a permissioned key for `owner` (0.3.0's `cancel_order` never
/// selects an authenticator).
async fn cancel_for_owner(
    client: &mut NodeClient,
    account: &mut Account,
    owner: &Address,
    order_id: ProtoOrderId,
    until: chrono::DateTime<Utc>,
) -> Result<TxHash, NodeError> {
    let message = MsgCancelOrder {
        order_id: Some(order_id),
        good_til_oneof: Some(msg_cancel_order::GoodTilOneof::GoodTilBlockTime(
            u32::try_from(until.timestamp()).unwrap_or(u32::MAX),
        )),
    };
    broadcast_for_owner(client, account, owner, message.to_any()).await
}

async fn broadcast_for_owner(
    client: &mut NodeClient,
    account: &mut Account,
    owner: &Address,
    message: dydx_proto::cosmos_sdk_proto::Any,
) -> Result<TxHash, NodeError> {
    if let Some((authing, _)) = account.authenticators_mut().get_mut(owner) {
        let sequence = authing.sequence_number();
        authing.set_next_nonce(Nonce::Sequence(sequence));
    }
    let unpriced = client.builder.build_transaction(
        account,
        std::iter::once(message.clone()),
        None,
        Some(owner),
    )?;
    let gas = client.simulate(&unpriced).await?.gas_used;
    let fee = client.builder.calculate_fee(Some(gas))?;
    let priced = client.builder.build_transaction(
        account,
        std::iter::once(message),
        Some(fee),
        Some(owner),
    )?;
    client.broadcast_transaction(priced).await
}

/// The subaccount orders signed this way go to: the signer's own, or with a permissioned key the
/// owner's.
fn subaccount_for(signing: &Signing, number: u32) -> Result<Subaccount, ExchangeError> {
    match &signing.permission {
        Some((owner, _)) => subaccount_at(owner, number),
        None => {
            let own = signing
                .wallet
                .account_offline(0)
                .map_err(|_| unavailable("wallet", "cannot derive the subaccount"))?;
            subaccount_at(own.address(), number)
        }
    }
}

fn subaccount_at(address: &Address, number: u32) -> Result<Subaccount, ExchangeError> {
    PublicAccount::new(address.clone())
        .subaccount(number)
        .map_err(|_| unavailable("wallet", "cannot derive the subaccount"))
}

fn signing_of(key: &DydxKey) -> Result<Signing, ExchangeError> {
    match &key.signer {
        Signer::Mnemonic(mnemonic) => Ok(Signing {
            wallet: wallet_of(mnemonic, "dydx_mnemonic")?,
            permission: None,
        }),
        Signer::Permissioned {
            owner,
            trading_mnemonic,
            authenticator_id,
        } => Ok(Signing {
            wallet: wallet_of(trading_mnemonic, "dydx_trading_mnemonic")?,
            permission: Some((owner_address(owner)?, *authenticator_id)),
        }),
    }
}

fn owner_address(owner: &str) -> Result<Address, ExchangeError> {
    owner.parse().map_err(|_| {
        unavailable(
            "wallet",
            "the stored dydx_owner_address is not a dYdX address",
        )
    })
}

fn wallet_of(mnemonic: &str, field: &str) -> Result<Wallet, ExchangeError> {
    // The parser's message could quote the phrase: it is never passed on.
    Wallet::from_mnemonic(mnemonic).map_err(|_| {
        unavailable(
            "wallet",
            format!("the stored {field} is not a valid 24-word phrase"),
        )
    })
}

fn side_of(side: &IndexerSide) -> Side {
    match side {
        IndexerSide::Buy => Side::Buy,
        IndexerSide::Sell => Side::Sell,
    }
}

fn side_to(side: Side) -> OrderSide {
    match side {
        Side::Buy => OrderSide::Buy,
        Side::Sell => OrderSide::Sell,
    }
}

#[async_trait]
impl Exchange for DydxExchange {
    fn venue(&self) -> &'static str {
        "dydx"
    }

    async fn positions(
        &self,
        account_id: &str,
    ) -> Result<std::collections::BTreeMap<Market, Decimal>, ExchangeError> {
        Ok(DydxExchange::positions(self, account_id)
            .await?
            .into_iter()
            .filter(|position| !position.size.is_zero())
            .map(|position| (position.market, position.size))
            .collect())
    }

    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.inner.markets.oracle_price(market)
    }

    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        let placed = self.place(order).await?;
        self.protect(order, &placed).await;
        Ok(placed.outcome)
    }

    async fn account_equity(&self, account_id: &str) -> Result<Decimal, ExchangeError> {
        let Some(subaccount) = self.subaccount_of(account_id).await? else {
            return Err(ExchangeError::Unavailable(
                "this account has no dYdX credentials".to_owned(),
            ));
        };
        let read = self
            .indexer_call("subaccount", |indexer| async move {
                indexer.accounts().get_subaccount(&subaccount).await
            })
            .await?;
        to_decimal(&read.equity).ok_or_else(|| unavailable("subaccount", "equity out of range"))
    }

    /// Without the account only an order this process sent can be looked up.
    async fn find_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        let Some(sent) = self.in_flight(client_order_id).await? else {
            return Err(ExchangeError::Unavailable(
                "dYdX looks orders up by account; the order is not one this process sent"
                    .to_owned(),
            ));
        };
        let order = OrderRequest {
            account_id: sent.account_id,
            client_order_id: client_order_id.clone(),
            market: sent.market,
            side: sent.side,
            size: Quantity::new(Decimal::ONE).map_err(|error| unavailable("order", error))?,
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
        };
        Ok(self.find(&order).await?.map(|found| found.outcome))
    }

    async fn find_placed(
        &self,
        order: &OrderRequest,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        let Some(found) = self.find(order).await? else {
            return Ok(None);
        };
        self.protect(order, &found).await;
        Ok(Some(found.outcome))
    }

    /// A long-term cancel of the entry's order id; the chain ignores it for an order already
    /// gone.
    async fn cancel_resting(&self, order: &OrderRequest) -> Result<(), ExchangeError> {
        let KeyLookup::Key(key) = self.key_of(&order.account_id).await? else {
            return Err(unavailable(
                "cancel",
                "the account has no usable dYdX credentials",
            ));
        };
        let signing = signing_of(&key)?;
        let subaccount = subaccount_for(&signing, key.subaccount)?;
        drop(key);
        // Only the wallet that holds the order can cancel it.
        let sent = self.in_flight(&order.client_order_id).await?;
        if let Some(sent_to) = sent.and_then(|sent| sent.subaccount) {
            if sent_to != subaccount {
                return Err(not_held_by_current_wallet("cancel", &sent_to));
            }
        }
        let Some(params) = self.market(&order.market).await? else {
            return Err(unavailable("cancel", "the market is not listed"));
        };
        let order_id = ProtoOrderId {
            subaccount_id: Some(subaccount.into()),
            client_id: venue_ids(&order.client_order_id, Leg::Entry).client_id,
            order_flags: LONG_TERM_FLAGS,
            clob_pair_id: params.model.clob_pair_id.0,
        };
        let mut node = self.node().await?;
        let client = node
            .as_mut()
            .ok_or_else(|| unavailable("node", "not connected"))?;
        let mut account = self.signing_account(&signing, client).await?;
        let owner = signing.permission.as_ref().map(|(owner, _)| owner.clone());
        drop(signing);
        // A stateful cancel is good for a while; the order's own end is learnt from the Indexer.
        let until = Utc::now() + chrono::Duration::minutes(5);
        let until = until.with_nanosecond(0).unwrap_or(until);
        self.inner.node_pace.until_ready().await;
        match owner {
            None => {
                self.node_call("cancel", client.cancel_order(&mut account, order_id, until))
                    .await
            }
            Some(owner) => {
                self.node_call(
                    "cancel",
                    cancel_for_owner(client, &mut account, &owner, order_id, until),
                )
                .await
            }
        }
        .map(drop)
    }

    /// The Indexer's order by its id (a long-resting order may have left the latest orders the
    /// list shows); a resting order that filled gets its brackets here.
    async fn order_status(
        &self,
        order: &OrderRequest,
        exchange_order_id: &str,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        let Some(subaccount) = self.holding_subaccount(order).await? else {
            return Ok(None);
        };
        let id = dydx::indexer::OrderId(exchange_order_id.to_owned());
        let found = self
            .indexer_call("order", |indexer| async move {
                indexer.accounts().get_order(&id).await
            })
            .await?;
        let ids = venue_ids(&order.client_order_id, Leg::Entry);
        // The id is the ledger's record of this order; the venue's answer must be that order.
        if found.client_id.0 != ids.client_id || found.client_metadata.0 != ids.client_metadata {
            return Err(unavailable(
                "order",
                "the Indexer answered with another order than the one asked",
            ));
        }
        let outcome = match self.outcome_of(&subaccount, &order.market, found).await? {
            Seen::Done(outcome) | Seen::Resting(outcome) => outcome,
            Seen::Nothing | Seen::Live => {
                return Err(ExchangeError::Unavailable(
                    "dYdX: the order's end is not indexed yet".to_owned(),
                ))
            }
        };
        self.forget(&order.client_order_id);
        let located = Located {
            outcome,
            subaccount: Some(subaccount),
        };
        self.protect(order, &located).await;
        Ok(Some(located.outcome))
    }
}
