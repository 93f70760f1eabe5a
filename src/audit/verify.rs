//! Verification of the whole trail: walks the chain in pages (memory does not grow with it),
//! recomputes every hash, checks the links, the density of positions and every checkpoint, checks
//! each row against the event it records (the ledger's global order, walked alongside), and stops
//! at the first row that does not match.
//!
//! A walk may go on from where an earlier one stood (`verify_from`, the background monitor's
//! way): the cost of a pass is then the rows added since, not the whole history, which at 400
//! signals/s grows by 720,000 rows (and their events) every five minutes; the soak's saga
//! stalled at such a walk (benches/README, twelfth session). It goes on from the latest
//! checkpoint the earlier walk verified, with the hash it verified there: a forgery consistent
//! enough to keep the chain linked must rewrite every row after it up to the head, so it
//! changes the rows the pass walks or the hash it expects, and is found. An edit of an older row
//! that leaves the chain broken is found only by a whole walk (`ledgerhook audit verify`, and
//! every start of `serve`).
//!
//! A walk ends at the head the trail had when it began (rows added meanwhile are the next walk's):
//! a paced walk (`VerifyOptions::pace`, the monitor's) that chased a busy head would never end.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{AuditCheckpoint, AuditRow, LogPosition, LoggedEvent, Store, StoreError};

use super::chain::{checkpoint_encoding, row_hash, GENESIS_HASH};
use super::key::AuditKey;
use super::pace::Pace;
use super::writer::CHECKPOINT_NAME;

const PAGE_SIZE: i64 = 1000;

/// How long, by default, a row may wait for a signed checkpoint (the writer takes one every
/// `--audit-checkpoint-interval-seconds`, 60 by default, once rows were added).
pub const DEFAULT_MAX_UNPROTECTED: chrono::Duration = chrono::Duration::seconds(300);

/// What to verify the trail against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// With a key every checkpoint must carry its signature, and every row older than
    /// `max_unprotected` must be covered by a checkpoint. Without, checkpoints are checked against
    /// the chain only (an unsigned checkpoint proves nothing to someone who can rewrite the table).
    pub key: Option<AuditKey>,
    /// Copies of checkpoints published outside the database: the chain must hold each.
    pub published: Vec<PublishedCheckpoint>,
    pub max_unprotected: chrono::Duration,
    /// How hard the walk may press (full speed by default).
    pub pace: Pace,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            key: None,
            published: Vec::new(),
            max_unprotected: DEFAULT_MAX_UNPROTECTED,
            pace: Pace::FULL_SPEED,
        }
    }
}

/// `POSITION:HASH`, as the writer's `audit checkpoint` log line publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCheckpoint {
    pub position: i64,
    pub hash: String,
}

impl std::str::FromStr for PublishedCheckpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!("expected POSITION:HASH (a position from 1 and 64 hex digits), got {text:?}")
        };
        let (position, hash) = text.split_once(':').ok_or_else(wrong)?;
        let position: i64 = position.trim().parse().map_err(|_| wrong())?;
        let hash = hash.trim().to_ascii_lowercase();
        if position < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(wrong());
        }
        Ok(Self { position, hash })
    }
}

/// What `verify` found. The trail is intact exactly when `first_mismatch` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Rows checked (all of them when intact), each against its event in the ledger.
    pub rows: u64,
    /// Position of the last row checked (0 for an empty chain).
    pub head_position: i64,
    /// Hash of the last row checked (64 zeros for an empty chain).
    pub head_hash: String,
    /// Checkpoints that matched the chain.
    pub checkpoints: u64,
    /// Of those, how many carried a signature that was checked against the key.
    pub signatures_verified: u64,
    /// Of those, how many were not checked (verified without a key).
    pub signatures_unchecked: u64,
    /// Published checkpoints (`--expect-checkpoint`) the chain holds.
    pub published_verified: u64,
    /// Rows after the latest checkpoint when the walk began: not yet covered by one.
    pub unprotected_rows: u64,
    /// The walk went on after this position, verified by an earlier walk of the same process
    /// (its counts above include that walk's); 0 when it walked the whole trail.
    pub walked_from: i64,
    pub first_mismatch: Option<Mismatch>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// The first place the trail does not match: the row's position and, when the row is there, the
/// event it records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Mismatch {
    pub position: i64,
    pub aggregate_type: Option<String>,
    pub account_id: Option<String>,
    pub sequence: Option<i64>,
    pub problem: String,
}

impl Mismatch {
    fn at_row(row: &AuditRow, problem: String) -> Self {
        Self {
            position: row.position,
            aggregate_type: Some(row.aggregate_type.clone()),
            account_id: Some(row.account_id.clone()),
            sequence: Some(row.sequence),
            problem,
        }
    }

    fn at_missing(position: i64, problem: String) -> Self {
        Self {
            position,
            aggregate_type: None,
            account_id: None,
            sequence: None,
            problem,
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "position {}", self.position)?;
        if let (Some(kind), Some(account), Some(sequence)) =
            (&self.aggregate_type, &self.account_id, self.sequence)
        {
            write!(f, " ({kind} {account} #{sequence})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Verifies the whole audit trail of `store` (see `VerifyOptions`). `Err` only when the store
/// cannot be read; a damaged trail is an `Ok` report naming the first damaged row.
pub async fn verify(store: &Store, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    Ok(verify_from(store, options, None).await?.0)
}

/// Verifies the trail after what an earlier walk verified (`None`: the whole trail), with the
/// same options; also where the next walk may go on from.
pub async fn verify_from(
    store: &Store,
    options: &VerifyOptions,
    earlier: Option<&Verified>,
) -> Result<(VerifyReport, Option<Verified>), StoreError> {
    Walk::new(store, options, earlier).await?.run().await
}

/// Where a walk stood, every check passed, at the latest checkpoint it reached.
#[derive(Debug, Clone)]
pub struct Verified {
    report: VerifyReport,
    /// The ledger's position of the event the row there records.
    log_cursor: LogPosition,
}

/// One verification in progress: the chain, the ledger's log and the checkpoints, walked together.
struct Walk<'a> {
    store: &'a Store,
    options: &'a VerifyOptions,
    report: VerifyReport,
    checkpoints: Checkpoints,
    published: VecDeque<PublishedCheckpoint>,
    /// The ledger's log, read alongside the chain: row k records the k-th event.
    log_cursor: LogPosition,
    /// How far the audit writer had read when the walk began: every event up to it is chained.
    chained_to: LogPosition,
    /// The latest checkpoint when the walk began; rows after it are unprotected.
    protected_to: i64,
    /// The chain's head when the walk began: where it ends.
    walk_to: i64,
    now: DateTime<Utc>,
    /// Where the next walk may go on from.
    verified: Option<Verified>,
}

impl<'a> Walk<'a> {
    async fn new(
        store: &'a Store,
        options: &'a VerifyOptions,
        earlier: Option<&Verified>,
    ) -> Result<Walk<'a>, StoreError> {
        // Read before the walk: the writer commits rows with its reader checkpoint and before
        // their checkpoints, so the walk must reach everything these name. A running writer may
        // add more meanwhile; that is checked next time.
        let chained_to = store.events().checkpoint(CHECKPOINT_NAME).await?;
        let protected_to = store.audit().last_checkpoint().await?;
        // Read after both: every row they name is at or before it.
        let walk_to = store.audit().head().await?.map_or(0, |head| head.position);
        let (report, log_cursor) = match earlier {
            Some(earlier) => (
                VerifyReport {
                    walked_from: earlier.report.head_position,
                    ..earlier.report.clone()
                },
                earlier.log_cursor,
            ),
            None => (
                VerifyReport {
                    rows: 0,
                    head_position: 0,
                    head_hash: GENESIS_HASH.to_owned(),
                    checkpoints: 0,
                    signatures_verified: 0,
                    signatures_unchecked: 0,
                    published_verified: 0,
                    unprotected_rows: 0,
                    walked_from: 0,
                    first_mismatch: None,
                },
                LogPosition::default(),
            ),
        };
        // What the earlier walk checked is not checked again: the checkpoints and published
        // copies at or before where it stood.
        let mut published: Vec<_> = options
            .published
            .iter()
            .filter(|p| p.position > report.head_position)
            .cloned()
            .collect();
        published.sort_by_key(|p| p.position);
        Ok(Walk {
            store,
            options,
            checkpoints: Checkpoints {
                up_to: protected_to,
                read_to: report.head_position,
                ..Checkpoints::default()
            },
            report,
            published: published.into(),
            log_cursor,
            chained_to,
            protected_to,
            walk_to,
            now: Utc::now(),
            verified: earlier.cloned(),
        })
    }

    async fn run(mut self) -> Result<(VerifyReport, Option<Verified>), StoreError> {
        let mut problem = self.check_where_it_goes_on().await?;
        if problem.is_none() {
            problem = self.walk_rows().await?;
        }
        if problem.is_none() {
            problem = self.check_end().await?;
        }
        self.report.first_mismatch = problem;
        Ok((self.report, self.verified))
    }

    /// The row an earlier walk stood at must still carry the hash it verified there: a forgery
    /// that keeps the chain linked from there or before up to the head changes it.
    async fn check_where_it_goes_on(&self) -> Result<Option<Mismatch>, StoreError> {
        let at = self.report.walked_from;
        if at == 0 {
            return Ok(None);
        }
        let row = self.store.audit().read(at - 1, 1).await?.into_iter().next();
        Ok(match row {
            Some(row) if row.position == at && row.hash == self.report.head_hash => None,
            Some(row) if row.position == at => Some(Mismatch::at_row(
                &row,
                format!(
                    "hash {} is not the {} an earlier verification found here: the chain was \
                     rewritten from this row or before it",
                    row.hash, self.report.head_hash
                ),
            )),
            _ => Some(Mismatch::at_missing(
                at,
                "row is missing: an earlier verification found it here".to_owned(),
            )),
        })
    }

    /// The first problem among the rows, in chain order.
    async fn walk_rows(&mut self) -> Result<Option<Mismatch>, StoreError> {
        loop {
            let left = self.walk_to - self.report.head_position;
            if left <= 0 {
                return Ok(None);
            }
            let page_started = Instant::now();
            let page = self
                .store
                .audit()
                .read(self.report.head_position, left.min(PAGE_SIZE))
                .await?;
            if page.is_empty() {
                return Ok(None);
            }
            let limit = i64::try_from(page.len()).unwrap_or(PAGE_SIZE);
            let events = self.store.events().read_log(self.log_cursor, limit).await?;
            let mut events = events.into_iter();
            for row in &page {
                if let Some(problem) = check_row(row, &self.report) {
                    return Ok(Some(problem));
                }
                let event = match events.next() {
                    Some(event) => Some(event),
                    // A page of the log stops short at a hole (a rolled-back append's, or the
                    // positions a PostgreSQL sequence skips when the server crashes): read on
                    // from there before concluding that the log has ended.
                    None => {
                        events = self
                            .store
                            .events()
                            .read_log(self.log_cursor, limit)
                            .await?
                            .into_iter();
                        events.next()
                    }
                };
                let Some(event) = event else {
                    return Ok(Some(Mismatch::at_row(
                        row,
                        "the row records no event: the ledger's log has no more events".to_owned(),
                    )));
                };
                if let Some(problem) = check_event(row, &event) {
                    return Ok(Some(problem));
                }
                self.log_cursor = event.position;
                self.report.rows += 1;
                self.report.head_position = row.position;
                self.report.head_hash = row.hash.clone();
                if let Some(problem) = self.check_protection(row) {
                    return Ok(Some(problem));
                }
                if let Some(problem) = self.check_published(row) {
                    return Ok(Some(problem));
                }
                while let Some(checkpoint) = self
                    .checkpoints
                    .next_at_or_before(self.store, row.position)
                    .await?
                {
                    let key = self.options.key.as_ref();
                    if let Some(problem) = check_checkpoint(&checkpoint, row, key, &mut self.report)
                    {
                        return Ok(Some(problem));
                    }
                }
                // A later walk goes on from the latest checkpoint, not from the head: every walk
                // counts the rows after it and checks how long the oldest has waited for one.
                if row.position == self.protected_to {
                    self.verified = Some(Verified {
                        report: self.report.clone(),
                        log_cursor: self.log_cursor,
                    });
                }
            }
            self.options.pace.rest_since(page_started).await;
        }
    }

    /// With a key, a row older than `max_unprotected` must be covered by a checkpoint.
    fn check_protection(&mut self, row: &AuditRow) -> Option<Mismatch> {
        if row.position <= self.protected_to {
            return None;
        }
        self.report.unprotected_rows += 1;
        if self.options.key.is_none() || self.report.unprotected_rows > 1 {
            return None;
        }
        // The oldest unprotected row: an unparseable time counts as old.
        let recorded = DateTime::parse_from_rfc3339(&row.recorded_at)
            .map(|at| at.with_timezone(&Utc))
            .ok();
        let fresh = recorded.is_some_and(|at| self.now - at <= self.options.max_unprotected);
        (!fresh).then(|| {
            Mismatch::at_row(
                row,
                format!(
                    "no signed checkpoint covers this row (recorded {}, more than {} s ago); the \
                     latest checkpoint is at position {}",
                    row.recorded_at,
                    self.options.max_unprotected.num_seconds(),
                    self.protected_to
                ),
            )
        })
    }

    /// A published checkpoint at this row must name its hash.
    fn check_published(&mut self, row: &AuditRow) -> Option<Mismatch> {
        while let Some(published) = self.published.front() {
            if published.position > row.position {
                return None;
            }
            if published.hash != row.hash {
                return Some(Mismatch::at_row(
                    row,
                    format!(
                        "the published checkpoint records hash {} at this position, the chain has {}",
                        published.hash, row.hash
                    ),
                ));
            }
            self.report.published_verified += 1;
            self.published.pop_front();
        }
        None
    }

    /// What the end of the chain must agree with: the checkpoints, the published copies and the
    /// events the writer has read.
    async fn check_end(&mut self) -> Result<Option<Mismatch>, StoreError> {
        let head = self.report.head_position;
        let missing = |what: String| Some(Mismatch::at_missing(head + 1, what));
        // A checkpoint beyond the head: rows were removed from the end of the chain.
        if let Some(checkpoint) = self
            .checkpoints
            .next_at_or_before(self.store, i64::MAX)
            .await?
        {
            return Ok(missing(format!(
                "row is missing: the chain ends at position {head} but a checkpoint records \
                 position {}",
                checkpoint.position
            )));
        }
        if let Some(published) = self.published.front() {
            return Ok(missing(format!(
                "row is missing: the chain ends at position {head} but the published checkpoint \
                 records position {}",
                published.position
            )));
        }
        // An event the writer had read, without its row: removed, or never chained.
        let next = self.store.events().read_log(self.log_cursor, 1).await?;
        if let Some(event) = next.first().filter(|e| e.position <= self.chained_to) {
            let e = &event.event;
            return Ok(missing(format!(
                "row is missing: the event {} {} #{} was chained (the audit writer read past it) \
                 but has no row",
                e.aggregate_type, e.aggregate_id, e.sequence
            )));
        }
        Ok(None)
    }
}

/// Whether `row` records `logged`, the event at the same place in the ledger's global order.
fn check_event(row: &AuditRow, logged: &LoggedEvent) -> Option<Mismatch> {
    let event = &logged.event;
    let sequence = i64::try_from(event.sequence).unwrap_or(i64::MAX);
    if row.aggregate_type != event.aggregate_type
        || row.account_id != event.aggregate_id
        || row.sequence != sequence
    {
        return Some(Mismatch::at_row(
            row,
            format!(
                "the row does not record the event at this place in the ledger ({} {} #{}): a \
                 row without its event, or an event without its row",
                event.aggregate_type, event.aggregate_id, event.sequence
            ),
        ));
    }
    // Compared as JSON values: the same content whatever spelling a serializer gives it.
    let same = |text: &str, value: &serde_json::Value| {
        serde_json::from_str::<serde_json::Value>(text).is_ok_and(|parsed| parsed == *value)
    };
    let differs = if row.event_type != event.event_type {
        Some("event_type")
    } else if row.event_version != event.event_version {
        Some("event_version")
    } else if !same(&row.payload, &event.payload) {
        Some("payload")
    } else if !same(&row.metadata, &event.metadata) {
        Some("metadata")
    } else {
        None
    };
    differs.map(|field| {
        Mismatch::at_row(
            row,
            format!("the row's {field} differs from the event's in the ledger"),
        )
    })
}

/// What is wrong with `row`, following the rows `so_far` verified.
fn check_row(row: &AuditRow, so_far: &VerifyReport) -> Option<Mismatch> {
    let expected = so_far.head_position + 1;
    if row.position != expected {
        return Some(Mismatch::at_missing(
            expected,
            format!(
                "row is missing: the next row is at position {}",
                row.position
            ),
        ));
    }
    if row.prev_hash != so_far.head_hash {
        return Some(Mismatch::at_row(
            row,
            format!(
                "prev_hash {} is not the hash of the previous row ({})",
                row.prev_hash, so_far.head_hash
            ),
        ));
    }
    if row.signal_id.as_deref() == Some("") {
        return Some(Mismatch::at_row(
            row,
            "signal_id is empty, not NULL".to_owned(),
        ));
    }
    let recomputed = row_hash(row);
    if recomputed != row.hash {
        return Some(Mismatch::at_row(
            row,
            format!(
                "hash {} does not match the row's content (recomputed {recomputed})",
                row.hash
            ),
        ));
    }
    None
}

/// Checks a checkpoint against the row at or before its position (density makes it the same row
/// unless the checkpoint names a position the chain skipped, which `check_row` reports first).
fn check_checkpoint(
    checkpoint: &AuditCheckpoint,
    row: &AuditRow,
    key: Option<&AuditKey>,
    report: &mut VerifyReport,
) -> Option<Mismatch> {
    if checkpoint.position != row.position || checkpoint.hash != row.hash {
        return Some(Mismatch::at_row(
            row,
            format!(
                "the checkpoint of {} records hash {} at position {}, the chain has {}",
                checkpoint.at, checkpoint.hash, checkpoint.position, row.hash
            ),
        ));
    }
    match (&checkpoint.signature, key) {
        (Some(signature), Some(key)) => {
            let message =
                checkpoint_encoding(checkpoint.position, &checkpoint.hash, &checkpoint.at);
            if !key.verifies(&message, signature) {
                return Some(Mismatch::at_row(
                    row,
                    format!(
                        "the checkpoint of {} at this position has a signature the audit key did \
                         not make",
                        checkpoint.at
                    ),
                ));
            }
            report.signatures_verified += 1;
        }
        (None, Some(_)) => {
            return Some(Mismatch::at_row(
                row,
                format!(
                    "the checkpoint of {} at this position is unsigned, but the trail is verified \
                     with the audit key: anyone could have written it",
                    checkpoint.at
                ),
            ))
        }
        (_, None) => report.signatures_unchecked += 1,
    }
    report.checkpoints += 1;
    None
}

/// The checkpoints in position order, read a page at a time.
#[derive(Default)]
struct Checkpoints {
    buffered: VecDeque<AuditCheckpoint>,
    read_to: i64,
    exhausted: bool,
    /// Checkpoints beyond this position are not considered.
    up_to: i64,
}

impl Checkpoints {
    /// The next checkpoint if its position is at most `position`.
    async fn next_at_or_before(
        &mut self,
        store: &Store,
        position: i64,
    ) -> Result<Option<AuditCheckpoint>, StoreError> {
        if self.buffered.is_empty() && !self.exhausted {
            let page = store
                .audit()
                .read_checkpoints(self.read_to, PAGE_SIZE)
                .await?;
            self.exhausted = page.len() < usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
            if let Some(last) = page.last() {
                self.read_to = last.position;
            }
            self.buffered.extend(page);
        }
        match self.buffered.front() {
            Some(next) if next.position <= position.min(self.up_to) => {
                Ok(self.buffered.pop_front())
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_checkpoint_is_position_colon_hash() {
        let hash = "AB".repeat(32);
        let parsed: PublishedCheckpoint = format!("12:{hash}").parse().expect("parses");
        assert_eq!(parsed.position, 12);
        assert_eq!(parsed.hash, hash.to_ascii_lowercase());
        for wrong in [
            "12",
            "x:ab",
            &format!("0:{hash}"),
            "12:abc",
            &format!("12:{}", "g".repeat(64)),
        ] {
            let error = wrong.parse::<PublishedCheckpoint>().expect_err(wrong);
            assert!(error.contains("POSITION:HASH"), "{error}");
        }
    }
}
