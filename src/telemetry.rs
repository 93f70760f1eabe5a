//! The service's Prometheus metrics: one recorder per process (the `metrics` facade's global),
//! rendered by our own `/metrics` handler. Every label value is a `&'static str` from a closed
//! set (a scheme, an HTTP status class, an error or outcome code, a reader, a venue, a channel):
//! never a user, an address, a credential, a signal id or free text.
//!
//! The facade is global, so several in-process apps (tests) share one recorder: `install` is
//! idempotent, and each app renders the same counters.

use std::sync::OnceLock;
use std::time::Duration;

use aggregates::AccountEvent;
use metrics::{describe_counter, describe_gauge, describe_histogram, Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SIGNALS: &str = "ledgerhook_signals_total";
pub const WEBHOOK_REFUSED: &str = "ledgerhook_webhook_refused_total";
pub const WEBHOOK_ACK_SECONDS: &str = "ledgerhook_webhook_ack_seconds";
pub const EXECUTIONS: &str = "ledgerhook_executions_total";
pub const SIGNAL_TO_FILL_SECONDS: &str = "ledgerhook_signal_to_fill_seconds";
pub const READER_RUNNING: &str = "ledgerhook_reader_running";
pub const READER_LAG_EVENTS: &str = "ledgerhook_reader_lag_events";
pub const READER_LAG_SECONDS: &str = "ledgerhook_reader_lag_seconds";
pub const EXCHANGE_ERRORS: &str = "ledgerhook_exchange_errors_total";
pub const NOTIFICATION_ERRORS: &str = "ledgerhook_notification_errors_total";
pub const POOL_CONNECTIONS: &str = "ledgerhook_db_pool_connections";
pub const POOL_MAX_CONNECTIONS: &str = "ledgerhook_db_pool_max_connections";
pub const CREDENTIAL_QUERIES: &str = "ledgerhook_credential_queries_total";
pub const SIGN_INS: &str = "ledgerhook_sign_ins_total";
pub const PEER_FAILURES: &str = "ledgerhook_peer_auth_failures_total";
pub const SQLITE_WAL_RESTART_SECONDS: &str = "ledgerhook_sqlite_wal_restart_seconds";

/// Acknowledgements are expected in milliseconds (TradingView gives up after 3 s).
const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A fill takes one exchange round trip at best, the order's deadline (minutes) at worst, and a
/// resting limit order up to a day.
const FILL_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 600.0, 3600.0, 86400.0,
];
/// How often histogram samples are folded in when nobody scrapes (bounds their memory).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder the first time, and returns the handle that renders it. If
/// another recorder was installed first (an embedding program's), this one renders nothing new.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Buckets, not the crate's default summaries: histograms aggregate across instances.
            let builder = builder
                .set_buckets_for_metric(Matcher::Full(WEBHOOK_ACK_SECONDS.into()), ACK_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(SIGNAL_TO_FILL_SECONDS.into()),
                        FILL_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(SQLITE_WAL_RESTART_SECONDS.into()),
                        ACK_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                // Only an empty bucket list fails, and ours are constants.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only its own"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        SIGNALS,
        "Signals recorded by the webhook, by outcome (accepted, duplicate, rejected with its reason code)."
    );
    describe_counter!(
        WEBHOOK_REFUSED,
        "Webhook requests answered with an error, by scheme and error code (LOCKED_OUT and RATE_LIMITED are the guard's 429s)."
    );
    describe_histogram!(
        WEBHOOK_ACK_SECONDS,
        Unit::Seconds,
        "Time from a webhook request's routing to its answer, by scheme and HTTP status class."
    );
    describe_counter!(
        EXECUTIONS,
        "Execution outcomes recorded by the saga and the resting-order watcher, by outcome."
    );
    describe_histogram!(
        SIGNAL_TO_FILL_SECONDS,
        Unit::Seconds,
        "Time from a signal's receipt being recorded to its fill being recorded."
    );
    describe_histogram!(
        SQLITE_WAL_RESTART_SECONDS,
        Unit::Seconds,
        "How long each restart of an embedded store's WAL held its writers' turn (every write waits meanwhile)."
    );
    describe_gauge!(
        READER_RUNNING,
        "1 while the catch-up reader runs in this instance; 0 while it starts, stands by, is down or stopped."
    );
    describe_gauge!(
        READER_LAG_EVENTS,
        "Events in the log after each running catch-up reader's checkpoint."
    );
    describe_gauge!(
        READER_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event each running catch-up reader has not applied."
    );
    describe_counter!(
        EXCHANGE_ERRORS,
        "Exchange calls that failed, by venue, operation and error kind."
    );
    describe_counter!(
        NOTIFICATION_ERRORS,
        "Notification attempts that failed, by channel and error kind."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        "Connections of the store's pool, by state (idle, in_use)."
    );
    describe_gauge!(
        POOL_MAX_CONNECTIONS,
        "The most connections the store's pool opens."
    );
    describe_counter!(
        SIGN_INS,
        "Sign-in attempts, by method (wallet, staff) and outcome (signed_in, or the error code: LOCKED_OUT and RATE_LIMITED are the guard's refusals)."
    );
    describe_counter!(
        PEER_FAILURES,
        "Authentication failures shared between instances, by direction (announced, heard): each instance counts the others' as its own."
    );
    describe_counter!(
        CREDENTIAL_QUERIES,
        "Store queries made to authenticate: credential lookups, and loads and change-counter reads of the index of known credentials."
    );
}

/// Folds recorded histogram samples in every `UPKEEP_INTERVAL` until `shutdown`, so a service
/// nobody scrapes keeps bounded memory.
pub async fn keep_up(handle: PrometheusHandle, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(UPKEEP_INTERVAL) => handle.run_upkeep(),
        }
    }
}

/// A webhook route, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `POST /api/webhook?token=...`
    Token,
    /// `POST /webhooks/{webhook_uuid}` with the secret in the body.
    TwoFactor,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::TwoFactor => "two_factor",
        }
    }
}

const STATUS_CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

/// The webhook's per-request instruments, registered once so the ack path looks nothing up.
pub struct WebhookMeters {
    /// `[scheme][status class]`.
    ack: [[Histogram; 4]; 2],
    accepted: Counter,
    duplicate: Counter,
}

impl WebhookMeters {
    /// Registers with the process's recorder (installed by `install`; without one, inert).
    pub fn register() -> Self {
        let ack_of = |scheme: Scheme| {
            STATUS_CLASSES.map(|class| {
                metrics::histogram!(
                    WEBHOOK_ACK_SECONDS,
                    "scheme" => scheme.as_str(),
                    "status_class" => class
                )
            })
        };
        Self {
            ack: [ack_of(Scheme::Token), ack_of(Scheme::TwoFactor)],
            accepted: metrics::counter!(SIGNALS, "outcome" => "accepted"),
            duplicate: metrics::counter!(SIGNALS, "outcome" => "duplicate"),
        }
    }

    pub fn answered(&self, scheme: Scheme, status: u16, elapsed: Duration) {
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 3,
        };
        self.ack[scheme as usize][class].record(elapsed.as_secs_f64());
    }

    /// An error answer's code (rare: allocating its label is fine here).
    pub fn refused(&self, scheme: Scheme, code: &'static str) {
        metrics::counter!(WEBHOOK_REFUSED, "scheme" => scheme.as_str(), "code" => code)
            .increment(1);
    }

    pub fn accepted(&self) {
        self.accepted.increment(1);
    }

    pub fn duplicate(&self) {
        self.duplicate.increment(1);
    }

    pub fn rejected(&self, reason: &'static str) {
        metrics::counter!(SIGNALS, "outcome" => "rejected", "reason" => reason).increment(1);
    }
}

/// An execution outcome event, as a label; `None` for every other event.
pub fn execution_outcome(event: &AccountEvent) -> Option<&'static str> {
    Some(match event {
        AccountEvent::OrderFilled { .. } => "filled",
        AccountEvent::OrderPartiallyFilled { .. } => "partially_filled",
        AccountEvent::OrderResting { .. } => "resting",
        AccountEvent::OrderExpired { .. } => "expired",
        AccountEvent::OrderRejected { .. } => "rejected",
        AccountEvent::OrderFailed { .. } => "failed",
        AccountEvent::FillMismatch { .. } => "mismatch",
        AccountEvent::OrderCancelled { .. } => "cancelled",
        AccountEvent::ExecutionAbandoned { .. } => "abandoned",
        AccountEvent::CompensationRequired { .. } => "compensation_required",
        AccountEvent::PositionCompensated { .. } => "compensated",
        AccountEvent::CompensationFailed { .. } => "compensation_failed",
        _ => return None,
    })
}

/// Counts an execution outcome the ledger just committed; a fill's time since its signal's
/// receipt was recorded (`received_at`) goes into the signal-to-fill histogram.
pub fn execution_recorded(
    outcome: &'static str,
    received_at: Option<chrono::DateTime<chrono::Utc>>,
) {
    metrics::counter!(EXECUTIONS, "outcome" => outcome).increment(1);
    if let Some(received_at) = received_at {
        let elapsed = (chrono::Utc::now() - received_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        metrics::histogram!(SIGNAL_TO_FILL_SECONDS).record(elapsed.as_secs_f64());
    }
}

pub fn exchange_error(venue: &'static str, operation: &'static str, kind: &'static str) {
    metrics::counter!(EXCHANGE_ERRORS, "venue" => venue, "operation" => operation, "kind" => kind)
        .increment(1);
}

/// A sign-in attempt's outcome: `signed_in` or the error code answered (a closed set: the codes
/// of `http::sign_in`).
pub fn sign_in(method: &'static str, outcome: &'static str) {
    metrics::counter!(SIGN_INS, "method" => method, "outcome" => outcome).increment(1);
}

/// Failures announced to (`announced`) or heard from (`heard`) the other instances.
pub fn peer_failures(direction: &'static str, failures: usize) {
    metrics::counter!(PEER_FAILURES, "direction" => direction).increment(failures as u64);
}

pub fn notification_error(channel: &'static str, kind: &'static str) {
    metrics::counter!(NOTIFICATION_ERRORS, "channel" => channel, "kind" => kind).increment(1);
}
