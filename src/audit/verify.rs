//! Verification of the whole trail: walks the chain in pages (memory does not grow with it),
//! recomputes every hash, checks the links, the density of positions and every checkpoint, and
//! stops at the first row that does not match.

use std::collections::VecDeque;

use serde::Serialize;

use crate::store::{AuditCheckpoint, AuditRow, Store, StoreError};

use super::chain::{checkpoint_encoding, row_hash, GENESIS_HASH};
use super::key::AuditKey;

const PAGE_SIZE: i64 = 1000;

/// What `verify` found. The trail is intact exactly when `first_mismatch` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows checked (all of them when intact).
    pub rows: u64,
    /// Position of the last row checked (0 for an empty chain).
    pub head_position: i64,
    /// Hash of the last row checked (64 zeros for an empty chain).
    pub head_hash: String,
    /// Checkpoints that matched the chain.
    pub checkpoints: u64,
    /// Of those, how many carried a signature that was checked against the key.
    pub signatures_verified: u64,
    /// Of those, how many were recorded unsigned, or signed but not checked (no key given).
    pub signatures_unchecked: u64,
    pub first_mismatch: Option<Mismatch>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// The first place the trail does not match: the row's position and, when the row is there, the
/// event it records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Verifies the audit trail of `store`. With `key`, every signed checkpoint's signature is checked
/// too (a wrong one is a mismatch); without, checkpoints are checked against the chain only.
/// `Err` only when the store cannot be read; a damaged trail is an `Ok` report naming the first
/// damaged row.
pub async fn verify(store: &Store, key: Option<&AuditKey>) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        rows: 0,
        head_position: 0,
        head_hash: GENESIS_HASH.to_owned(),
        checkpoints: 0,
        signatures_verified: 0,
        signatures_unchecked: 0,
        first_mismatch: None,
    };
    // Only checkpoints recorded before the walk starts: their rows were committed before them, so
    // the walk must reach them, while a running writer may add checkpoints beyond what it reads.
    let mut checkpoints = Checkpoints {
        up_to: store.last_audit_checkpoint().await?,
        ..Checkpoints::default()
    };
    loop {
        let page = store.read_audit(report.head_position, PAGE_SIZE).await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            if let Some(problem) = check_row(row, &report) {
                report.first_mismatch = Some(problem);
                return Ok(report);
            }
            report.rows += 1;
            report.head_position = row.position;
            report.head_hash = row.hash.clone();
            while let Some(checkpoint) = checkpoints.next_at_or_before(store, row.position).await? {
                if let Some(problem) = check_checkpoint(&checkpoint, row, key, &mut report) {
                    report.first_mismatch = Some(problem);
                    return Ok(report);
                }
            }
        }
    }
    // A checkpoint beyond the head: rows were removed from the end of the chain.
    if let Some(checkpoint) = checkpoints.next_at_or_before(store, i64::MAX).await? {
        report.first_mismatch = Some(Mismatch::at_missing(
            report.head_position + 1,
            format!(
                "row is missing: the chain ends at position {} but a checkpoint records position {}",
                report.head_position, checkpoint.position
            ),
        ));
    }
    Ok(report)
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
        _ => report.signatures_unchecked += 1,
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
                .read_audit_checkpoints(self.read_to, PAGE_SIZE)
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
