//! The verification `serve` runs in the background, every `--audit-verify-interval-seconds`, and
//! its latest report: `GET /api/compliance/audit/verify` answers from it, so a request costs the
//! same on a trail of millions of rows as on an empty one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::catchup::wait_or_shutdown;
use crate::store::Store;

use super::pace::Pace;
use super::verify::{verify_from, Verified, VerifyOptions, VerifyReport};

/// The background walks are busy at most a quarter of the time: at 400 signals/s a five-minute
/// pass walks 720,000 rows, which at full speed left the SQLite soak's saga 12,000 events behind.
pub const PACE: Pace = Pace::resting(3);

/// One finished verification.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// When the walk began (the report describes the trail as of then).
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub verified_at: DateTime<Utc>,
    #[serde(flatten)]
    pub report: VerifyReport,
}

/// The latest verification, shared between the background task and the HTTP handler.
#[derive(Debug)]
pub struct LatestVerification(watch::Sender<Option<Arc<Verification>>>);

impl Default for LatestVerification {
    fn default() -> Self {
        Self(watch::Sender::new(None))
    }
}

impl LatestVerification {
    /// `None` until the first verification has finished.
    pub fn get(&self) -> Option<Arc<Verification>> {
        self.0.borrow().clone()
    }

    fn set(&self, verification: Verification) {
        self.0.send_replace(Some(Arc::new(verification)));
    }
}

/// Verifies the whole trail at once, then every `interval` the rows added since (each pass goes
/// on from the latest checkpoint the one before verified, `verify_from`), until shutdown,
/// publishing each report in `latest`. A store error keeps the previous report (and is logged).
pub async fn run(
    store: Store,
    options: VerifyOptions,
    interval: Duration,
    latest: Arc<LatestVerification>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut walked: Option<Verified> = None;
    loop {
        let started_at = Utc::now();
        let verified = tokio::select! {
            verified = verify_from(&store, &options, walked.as_ref()) => Some(verified),
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        match verified {
            None => return,
            Some(Ok((report, next))) => {
                walked = next;
                if let Some(mismatch) = &report.first_mismatch {
                    tracing::error!(
                        target: super::writer::ALERT_TARGET,
                        %mismatch,
                        "ALERT: the audit trail does not verify"
                    );
                }
                latest.set(Verification {
                    started_at,
                    verified_at: Utc::now(),
                    report,
                });
            }
            Some(Err(error)) => tracing::error!(%error, "the audit trail could not be verified"),
        }
        if wait_or_shutdown(&mut shutdown, interval).await {
            return;
        }
    }
}
