//! Wiring: the store, the ledger, the exchange, the saga and the HTTP server, started together
//! and shut down in order (stop accepting, finish requests, finish the saga's page, finish the
//! audit writer's page and checkpoint its head, drain the committers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use aggregates::{upcasters, Market};

use crate::audit::{monitor, AuditConfig, AuditWriter, LatestVerification};
use crate::emergency::EmergencySwitch;
use crate::exchange::{Exchange, PaperExchange};
use crate::execution::ExecutionSaga;
use crate::guard::{Guard, GuardConfig};
use crate::http::{self, AppState};
use crate::ingest::{Ingest, IngestConfig};
use crate::ledger::{Ledger, LedgerOptions};
use crate::markets::MarketList;
use crate::notify::LogNotifier;
use crate::readside::ReadSide;
use crate::startup::{open_service_store, ServiceStore};
use crate::store::{ServiceLock, Store};
use crate::users::Authenticator;

/// Store connections opened before serving: the committers, the saga and a few request reads.
const WARM_CONNECTIONS: usize = 12;

pub struct AppConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub paper_prices: HashMap<Market, Decimal>,
    /// Run the execution saga in this process. Off for ingest-only instances (and for tests that
    /// need a signal acknowledged but not yet executed).
    pub execute_signals: bool,
    /// Run the audit writer and the read-model projections in this process. Off for instances
    /// that leave the read side to another instance sharing the store.
    pub run_read_side: bool,
    /// Rate limit, lockout and IP allowlist of the webhook.
    pub guard: GuardConfig,
    /// Base of the URLs shown to users (`--public-url` / `APP_HOST`); `None`: from each request's
    /// Host and X-Forwarded-Proto.
    pub public_url: Option<String>,
    pub ingest: IngestConfig,
    pub paper_equity_usd: Decimal,
    /// The audit trail's checkpoint key and interval. Every instance runs the audit writer; on
    /// PostgreSQL one at a time holds its lease.
    pub audit: AuditConfig,
    /// Serve even on a PostgreSQL login that could undo the audit trail (development).
    pub allow_privileged_login: bool,
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
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    saga: tokio::task::JoinHandle<()>,
    audit: tokio::task::JoinHandle<()>,
    projections: tokio::task::JoinHandle<()>,
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
        store.warm_up(WARM_CONNECTIONS).await?;
        let mut committers = JoinSet::new();
        let ledger = start_ledger(store.clone(), &mut committers);
        let markets = MarketList::default();
        let exchange: Arc<dyn Exchange> = Arc::new(
            PaperExchange::new(store.clone(), markets.clone(), config.paper_prices)
                .with_equity(config.paper_equity_usd),
        );
        let (shutdown, shutdown_requested) = watch::channel(false);
        let emergency = Arc::new(EmergencySwitch::load(store.clone()).await?);
        let refresher = emergency.clone();
        let stop_refreshing = shutdown_requested.clone();
        tokio::spawn(async move { refresher.keep_refreshed(stop_refreshing).await });
        let saga = ExecutionSaga::new(
            ledger.clone(),
            exchange.clone(),
            Arc::new(LogNotifier),
            emergency.clone(),
        );
        let saga = if config.execute_signals {
            tokio::spawn(saga.run(shutdown_requested.clone()))
        } else {
            tokio::spawn(async {})
        };
        // Every instance verifies the trail in the background (read-only) for the compliance API.
        let audit_verification = Arc::new(LatestVerification::default());
        tokio::spawn(monitor::run(
            store.clone(),
            config.audit.verify_options(),
            config.audit.verify_interval,
            audit_verification.clone(),
            shutdown_requested.clone(),
        ));
        let (audit, projections) = if config.run_read_side {
            let audit = AuditWriter::new(ledger.clone(), config.audit);
            (
                tokio::spawn(audit.run(shutdown_requested.clone())),
                tokio::spawn(ReadSide::new(ledger.clone()).run(shutdown_requested.clone())),
            )
        } else {
            (tokio::spawn(async {}), tokio::spawn(async {}))
        };
        let ingest = Arc::new(
            Ingest::new(ledger.clone(), markets, exchange, emergency.clone())
                .with_config(config.ingest),
        );
        let authenticator = Arc::new(Authenticator::new(store.clone()));
        let router = http::router(AppState {
            ingest,
            authenticator,
            guard: Arc::new(Guard::new(config.guard)),
            public_url: config.public_url.map(Arc::from),
            audit_verification,
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
            shutdown,
            server,
            saga,
            audit,
            projections,
            committers,
            _service_lock: service_lock,
        })
    }

    /// Stops accepting connections, lets in-flight requests and the current pages of the saga and
    /// the projections finish, then waits for every queued append to be committed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.server.await;
        let _ = self.saga.await;
        let _ = self.audit.await;
        let _ = self.projections.await;
        drop(self.ledger);
        let mut committers = self.committers;
        while committers.join_next().await.is_some() {}
        served??;
        Ok(())
    }
}
