//! Wiring: the store, the ledger, the exchange, the supervised catch-up readers (saga, audit
//! writer, read models) and the HTTP server, started together and shut down in order (stop
//! accepting, finish requests, finish each reader's page and collect how it ended, drain the
//! committers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use aggregates::{upcasters, Market, SERVICE_OWNER_ID};

use crate::audit::{monitor, AuditConfig, AuditWriter, LatestVerification};
use crate::catchup::{
    status, supervise, CatchUpReader, Context, ReaderExit, ReaderRegistry, ReadinessLimits,
    SupervisorConfig,
};
use crate::emergency::EmergencySwitch;
use crate::exchange::dydx::{DydxConfig, DydxExchange};
use crate::exchange::{Exchange, LedgerVenues, PaperExchange, StoredVenues, VenueRouter};
use crate::execution::{ExecutionSaga, NotificationRetryPolicy, RestingWatcher, RetryPolicy};
use crate::guard::{Guard, GuardConfig};
use crate::http::{self, AppState};
use crate::ingest::{Ingest, IngestConfig};
use crate::ledger::{Ledger, LedgerOptions};
use crate::markets::MarketList;
use crate::notify::{LogNotifier, Notifier, TelegramNotifier, TelegramOptions};
use crate::readside::ReadSide;
use crate::reconcile::Reconciler;
use crate::startup::{open_service_store, ServiceStore};
use crate::store::{ServiceLock, Store};
use crate::users::Authenticator;
use crate::vault::{load_keyring, Field, Vault};

/// Store connections opened before serving: the committers, the saga and a few request reads.
const WARM_CONNECTIONS: usize = 12;

pub struct AppConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub paper_prices: HashMap<Market, Decimal>,
    /// Run the execution saga in this process. Off for ingest-only instances (and for tests that
    /// need a signal acknowledged but not yet executed).
    pub execute_signals: bool,
    /// The saga's retries and deadline for placing an order.
    pub execution_retry: RetryPolicy,
    /// Run the audit writer and the read-model projections in this process. Off for instances
    /// that leave the read side to another instance sharing the store.
    pub run_read_side: bool,
    /// How often this instance reconciles every account with its venue (with the saga only).
    pub reconcile_every: Option<Duration>,
    /// How often this instance asks the venues how resting limit orders stand (with the saga).
    pub resting_check_every: Duration,
    /// How long a limit order that does not fill at once rests (paper; dYdX has its own in
    /// `dydx`).
    pub limit_order_lifetime: chrono::Duration,
    /// Rate limit, lockout and IP allowlist of the webhook.
    pub guard: GuardConfig,
    /// Base of the URLs shown to users (`--public-url` / `APP_HOST`); `None`: from each request's
    /// Host and X-Forwarded-Proto.
    pub public_url: Option<String>,
    /// The chain id a wallet's sign-in message must name.
    pub sign_in_chain_id: u64,
    pub ingest: IngestConfig,
    pub paper_equity_usd: Decimal,
    /// The audit trail's checkpoint key and interval. Every instance runs the audit writer; on
    /// PostgreSQL one at a time holds its lease.
    pub audit: AuditConfig,
    /// Serve even on a PostgreSQL login that could undo the audit trail (development).
    pub allow_privileged_login: bool,
    /// How far behind a reader may fall before `/readyz` says not ready.
    pub readiness: ReadinessLimits,
    /// Restart delays of the catch-up readers (and the test-only fault hook).
    pub supervisor: SupervisorConfig,
    /// The vault's master keys (`--vault-key-file`); `None`: only the embedded demo may start.
    pub vault_key_file: Option<PathBuf>,
    /// dYdX v4, for users whose venue is `dydx`; `None`: every account trades on paper.
    pub dydx: Option<DydxConfig>,
    /// Where trade notifications go, and how failed ones are retried.
    pub notifications: NotificationConfig,
}

/// Telegram when the vault holds a bot token, else the service log.
#[derive(Debug, Clone, Default)]
pub struct NotificationConfig {
    /// The Bot API's URL and pacing (`--telegram-api-url`).
    pub telegram: TelegramOptions,
    /// Delays between attempts at a failed notification (`--notification-retry-seconds`).
    pub retry: NotificationRetryPolicy,
}

impl NotificationConfig {
    /// The notifier `serve` uses: Telegram if the vault holds a bot token at start (`ledgerhook
    /// credentials set service telegram_bot_token`), else the log. Whether one is stored is read
    /// without decrypting it; the token and each chat id are revealed per message, each reveal
    /// recorded (`vault::telegram`).
    pub async fn notifier(&self, vault: &Vault) -> anyhow::Result<Arc<dyn Notifier>> {
        if !vault
            .holds(SERVICE_OWNER_ID, Field::TelegramBotToken)
            .await?
        {
            tracing::info!("no Telegram bot token in the vault: notifications go to the log");
            return Ok(Arc::new(LogNotifier));
        }
        tracing::info!(api_url = %self.telegram.api_url, "notifications go to Telegram");
        let notifier = TelegramNotifier::new(Arc::new(vault.clone()), self.telegram.clone())?;
        Ok(Arc::new(notifier))
    }
}

/// Connects to the store and applies pending migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(database_url).await?;
    store.migrate_if_pending().await?;
    Ok(store)
}

/// A ledger with its committers, for commands run outside the server (CLI).
pub fn start_ledger(store: Store, tasks: &mut JoinSet<()>) -> Ledger {
    let options = LedgerOptions::for_store(&store);
    Ledger::start(store, options, upcasters(), tasks)
}

pub struct RunningApp {
    pub address: SocketAddr,
    pub store: Store,
    pub ledger: Ledger,
    pub emergency: Arc<EmergencySwitch>,
    pub vault: Vault,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    readers: Vec<tokio::task::JoinHandle<ReaderExit>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    committers: JoinSet<()>,
    /// Held while the service runs (embedded store: this process is its only service).
    _service_lock: Option<ServiceLock>,
}

impl RunningApp {
    pub async fn start(config: AppConfig) -> anyhow::Result<Self> {
        let ServiceStore {
            store,
            lock: service_lock,
        } = open_service_store(&config.database_url, config.allow_privileged_login).await?;
        // After the store: a database that cannot be reached is the first thing to fix.
        let keys = Arc::new(load_keyring(
            &config.database_url,
            config.vault_key_file.as_deref(),
        )?);
        store.warm_up(WARM_CONNECTIONS).await?;
        let mut committers = JoinSet::new();
        let ledger = start_ledger(store.clone(), &mut committers);
        let vault = Vault::with_ledger(ledger.clone(), keys);
        let markets = MarketList::default();
        let paper: Arc<dyn Exchange> = Arc::new(
            PaperExchange::new(store.clone(), markets.clone(), config.paper_prices)
                .with_equity(config.paper_equity_usd)
                .with_limit_order_lifetime(config.limit_order_lifetime),
        );
        let (shutdown, shutdown_requested) = watch::channel(false);
        // Background tasks that hold the ledger (directly or through the vault), awaited before
        // the committers drain.
        let mut background = Vec::new();
        let dydx_configured = config.dydx.is_some();
        let dydx = config.dydx.clone().map(|dydx| {
            let exchange = DydxExchange::new(dydx, Arc::new(vault.clone()), Some(store.clone()));
            background.push(exchange.spawn_market_refresh(shutdown_requested.clone()));
            Arc::new(exchange) as Arc<dyn Exchange>
        });
        let exchange: Arc<dyn Exchange> = Arc::new(VenueRouter::new(
            paper,
            dydx,
            Arc::new(LedgerVenues {
                ledger: ledger.clone(),
                fallback: StoredVenues(store.clone()),
            }),
        ));
        let emergency = Arc::new(EmergencySwitch::load(store.clone()).await?);
        let refresher = emergency.clone();
        let stop_refreshing = shutdown_requested.clone();
        tokio::spawn(async move { refresher.keep_refreshed(stop_refreshing).await });
        let registry = Arc::new(ReaderRegistry::new(config.readiness));
        let cx = Context {
            ledger: ledger.clone(),
            shutdown: shutdown_requested.clone(),
            registry: registry.clone(),
            panic_once: Arc::default(),
        };
        let mut readers = Vec::new();
        let notifier = config.notifications.notifier(&vault).await?;
        if config.execute_signals {
            let saga = ExecutionSaga::new(
                ledger.clone(),
                exchange.clone(),
                notifier.clone(),
                emergency.clone(),
            )
            .with_retry_policy(config.execution_retry)
            .with_notification_retry_policy(config.notifications.retry);
            background.push(tokio::spawn(
                saga.clone().retry_notifications(shutdown_requested.clone()),
            ));
            readers.push(spawn_reader(saga, &cx, &config.supervisor));
            let watcher = RestingWatcher::new(ledger.clone(), exchange.clone(), emergency.clone());
            background.push(tokio::spawn(
                watcher.run(config.resting_check_every, shutdown_requested.clone()),
            ));
            if let Some(every) = config.reconcile_every {
                let reconciler = Reconciler::new(ledger.clone(), exchange.clone());
                background.push(tokio::spawn(
                    reconciler.run(every, shutdown_requested.clone()),
                ));
            }
        }
        // Every instance verifies the trail in the background (read-only) for the compliance API.
        let audit_verification = Arc::new(LatestVerification::default());
        tokio::spawn(monitor::run(
            store.clone(),
            config.audit.verify_options(),
            config.audit.verify_interval,
            audit_verification.clone(),
            shutdown_requested.clone(),
        ));
        if config.run_read_side {
            let audit = AuditWriter::new(store.clone(), config.audit);
            audit.warn_if_unsigned();
            readers.push(spawn_reader(audit, &cx, &config.supervisor));
            let projections = ReadSide::new(store.clone());
            readers.push(spawn_reader(projections, &cx, &config.supervisor));
        }
        // Not awaited at shutdown: a VACUUM or a forgetting cut short is harmless.
        tokio::spawn(crate::store::upkeep::run(
            store.clone(),
            crate::store::upkeep::UPKEEP_INTERVAL,
            shutdown_requested.clone(),
        ));
        tokio::spawn(status::monitor_lag(
            store.clone(),
            registry.clone(),
            shutdown_requested.clone(),
        ));
        let default_order_usd = config.ingest.default_order_usd;
        let ingest = Arc::new(
            Ingest::new(ledger.clone(), markets, exchange, emergency.clone())
                .with_config(config.ingest),
        );
        let authenticator = Arc::new(Authenticator::new(store.clone()));
        let metrics = crate::telemetry::install();
        background.push(tokio::spawn(crate::telemetry::keep_up(
            metrics.clone(),
            shutdown_requested.clone(),
        )));
        let (guard, sharing) = crate::peer_failures::share(
            &store,
            Guard::new(config.guard),
            shutdown_requested.clone(),
        );
        background.extend(sharing);
        let router = http::router(AppState {
            store: store.clone(),
            ingest,
            authenticator,
            vault: vault.clone(),
            guard,
            public_url: config.public_url.map(Arc::from),
            audit_verification,
            readers: registry,
            metrics,
            webhook_meters: Arc::new(crate::telemetry::WebhookMeters::register()),
            sign_in_chain_id: config.sign_in_chain_id,
            ledger: ledger.clone(),
            notifier,
            emergency: emergency.clone(),
            dydx_configured,
            default_order_usd,
        });
        let listener = TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let mut stop_serving = shutdown_requested;
        let server = tokio::spawn(async move {
            http::server::serve(listener, router, async move {
                let _ = stop_serving.wait_for(|stop| *stop).await;
            })
            .await
        });
        Ok(Self {
            address,
            store,
            ledger,
            emergency,
            vault,
            shutdown,
            server,
            readers,
            background,
            committers,
            _service_lock: service_lock,
        })
    }

    /// Stops accepting connections, lets in-flight requests and the current pages of the saga and
    /// the projections finish, then waits for every queued append to be committed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.server.await;
        for reader in self.readers {
            match reader.await {
                Ok(ReaderExit {
                    reader,
                    restarts,
                    down_with: Some(error),
                }) => tracing::error!(reader, restarts, %error, "reader was down at shutdown"),
                Ok(exit) => tracing::info!(
                    reader = exit.reader,
                    restarts = exit.restarts,
                    "reader stopped"
                ),
                Err(error) => tracing::error!(%error, "a reader's supervisor failed"),
            }
        }
        for task in self.background {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed");
            }
        }
        // The vault records reveals through the ledger: it must go too for the committers to end.
        drop(self.vault);
        drop(self.ledger);
        let mut committers = self.committers;
        while committers.join_next().await.is_some() {}
        served??;
        Ok(())
    }
}

fn spawn_reader<R: CatchUpReader>(
    reader: R,
    cx: &Context,
    config: &SupervisorConfig,
) -> tokio::task::JoinHandle<ReaderExit> {
    tokio::spawn(supervise(reader, cx.clone(), config.clone()))
}
