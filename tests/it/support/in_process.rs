//! The write side and the execution saga in this process, for tests that hand them an exchange or a
//! notifier that fails in ways the real binary cannot be made to.

use std::sync::Arc;

use aggregates::upcasters;
use tokio::sync::watch;
use tokio::task::JoinSet;

use ledgerhook::emergency::EmergencySwitch;
use ledgerhook::exchange::Exchange;
use ledgerhook::execution::retry::RetryPolicy;
use ledgerhook::execution::ExecutionSaga;
use ledgerhook::ingest::Ingest;
use ledgerhook::ledger::{Ledger, LedgerOptions};
use ledgerhook::markets::MarketList;
use ledgerhook::notify::Notifier;
use ledgerhook::store::Store;

use super::stores::TestStore;

/// Ledger, ingest (default markets) and a running saga over one test store.
pub struct InProcess {
    pub store: Store,
    pub ledger: Ledger,
    pub ingest: Ingest,
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
        Self::start_with_retries(test, store, exchange, notifier, RetryPolicy::default()).await
    }

    /// As `start`, with failed notifications retried after `retry`'s delays.
    pub async fn start_with_retries(
        test: TestStore,
        store: Store,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        retry: RetryPolicy,
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
        let (stop, stopped) = watch::channel(false);
        let saga = ExecutionSaga::new(ledger.clone(), exchange, notifier, emergency)
            .with_retry_policy(retry);
        let saga = tokio::spawn(saga.run(stopped));
        Self {
            store,
            ledger,
            ingest,
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
        retry: RetryPolicy,
    ) -> Self {
        let Self {
            store,
            ledger,
            ingest,
            stop,
            saga,
            _tasks,
            _test,
        } = self;
        let _ = stop.send(true);
        saga.await.expect("the saga stops cleanly, without a panic");
        drop((ledger, ingest, _tasks));
        Self::start_with_retries(_test, store, exchange, notifier, retry).await
    }

    /// Stops the saga after its current page; it must end cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.saga
            .await
            .expect("the saga stops cleanly, without a panic");
    }
}
