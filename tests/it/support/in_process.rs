//! The write side and the execution saga in this process, for tests that hand them an exchange or a
//! notifier that fails in ways the real binary cannot be made to.

use std::sync::Arc;

use aggregates::upcasters;
use tokio::sync::watch;
use tokio::task::JoinSet;

use ledgerhook::emergency::EmergencySwitch;
use ledgerhook::exchange::Exchange;
use ledgerhook::execution::{ExecutionSaga, NotificationRetryPolicy, RetryPolicy};
use ledgerhook::ingest::Ingest;
use ledgerhook::ledger::{Ledger, LedgerOptions};
use ledgerhook::markets::MarketList;
use ledgerhook::notify::Notifier;
use ledgerhook::store::Store;

use super::stores::TestStore;

/// How the saga retries: placements (with their deadline) and failed notifications.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policies {
    pub placement: RetryPolicy,
    pub notification: NotificationRetryPolicy,
}

impl Policies {
    pub fn placement(placement: RetryPolicy) -> Self {
        Self {
            placement,
            ..Self::default()
        }
    }

    pub fn notification(notification: NotificationRetryPolicy) -> Self {
        Self {
            notification,
            ..Self::default()
        }
    }
}

/// Ledger, ingest (default markets) and a running saga over one test store.
pub struct InProcess {
    pub store: Store,
    pub ledger: Ledger,
    pub ingest: Ingest,
    pub vault: ledgerhook::vault::Vault,
    stop: watch::Sender<bool>,
    saga: tokio::task::JoinHandle<()>,
    _tasks: JoinSet<()>,
    _test: TestStore,
}

impl InProcess {
    /// `store` is `test`'s, opened (the exchange may need it before this starts).
    pub async fn start(
        test: TestStore,
        store: Store,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self::start_with(test, store, exchange, notifier, Policies::default()).await
    }

    /// As `start`, with the saga's placement retries and deadline, and its notification retries,
    /// of the test's choosing.
    pub async fn start_with(
        test: TestStore,
        store: Store,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        policies: Policies,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let ledger = Ledger::start(
            store.clone(),
            LedgerOptions::for_store(&store),
            upcasters(),
            &mut tasks,
        );
        let emergency = Arc::new(EmergencySwitch::load(store.clone()).await.expect("loads"));
        let ingest = Ingest::new(
            ledger.clone(),
            MarketList::default(),
            exchange.clone(),
            emergency.clone(),
        );
        let vault = super::vault::vault(&ledger);
        let (stop, stopped) = watch::channel(false);
        let saga = ExecutionSaga::new(ledger.clone(), exchange, notifier, emergency)
            .with_retry_policy(policies.placement)
            .with_notification_retry_policy(policies.notification);
        let saga = tokio::spawn(saga.run(stopped));
        Self {
            store,
            ledger,
            ingest,
            vault,
            stop,
            saga,
            _tasks: tasks,
            _test: test,
        }
    }

    /// Stops the saga and the ledger as a crash would leave them, and starts new ones on the same
    /// store: a restart of the process.
    pub async fn restart(
        self,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        policies: Policies,
    ) -> Self {
        let Self {
            store,
            ledger,
            ingest,
            vault,
            stop,
            saga,
            _tasks,
            _test,
        } = self;
        let _ = stop.send(true);
        saga.await.expect("the saga stops cleanly, without a panic");
        drop((ledger, ingest, vault, _tasks));
        Self::start_with(_test, store, exchange, notifier, policies).await
    }

    /// Stops the saga after its current page; it must end cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.saga
            .await
            .expect("the saga stops cleanly, without a panic");
    }
}
