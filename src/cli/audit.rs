//! `ledgerhook audit verify`, and the audit settings `serve` takes.

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::app::open_store;
use std::time::Duration;

use crate::audit::verify::DEFAULT_MAX_UNPROTECTED;
use crate::audit::{verify, AuditConfig, AuditKey, Pace, PublishedCheckpoint, VerifyOptions};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit chain, recompute every hash, check every checkpoint and every row against
    /// its event in the ledger; name the first row that does not match (and exit non-zero).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: AuditKeyArg,
    /// A checkpoint published outside the database (the `audit checkpoint` log line), as
    /// POSITION:HASH: the chain must have HASH at POSITION. Repeatable.
    #[arg(long = "expect-checkpoint", value_name = "POSITION:HASH")]
    pub expect_checkpoint: Vec<PublishedCheckpoint>,
    /// With --audit-key: how long a row may go without a signed checkpoint covering it.
    #[arg(long, default_value_t = DEFAULT_MAX_UNPROTECTED.num_seconds().unsigned_abs())]
    pub max_unprotected_seconds: u64,
}

/// The key checkpoints are signed with. Its value is never shown (`--help` hides the variable's
/// value; `Debug` redacts it).
#[derive(Debug, Default, Args)]
pub struct AuditKeyArg {
    /// Key (at least 32 bytes) that signs the audit trail's checkpoints with HMAC-SHA256. Without
    /// one, checkpoints are recorded unsigned and `audit verify` checks them against the chain only.
    #[arg(long = "audit-key", env = "LEDGERHOOK_AUDIT_KEY", hide_env_values = true, value_parser = parse_key)]
    pub audit_key: Option<AuditKey>,
}

/// `serve`'s audit settings.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub key: AuditKeyArg,
    /// Record a checkpoint of the audit chain's head every this many rows (and at shutdown).
    #[arg(long, env = "LEDGERHOOK_AUDIT_CHECKPOINT_EVERY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_checkpoint_every: u32,
    /// Also record one this many seconds after the previous one when rows were added since.
    #[arg(long, env = "LEDGERHOOK_AUDIT_CHECKPOINT_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_checkpoint_interval_seconds: u32,
    /// Verify the trail in the background this often (the whole trail at start, then the rows
    /// added since); `GET /api/compliance/audit/verify` serves the latest report.
    #[arg(long, env = "LEDGERHOOK_AUDIT_VERIFY_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_verify_interval_seconds: u32,
}

impl Default for AuditArgs {
    fn default() -> Self {
        Self {
            key: AuditKeyArg::default(),
            audit_checkpoint_every: 1000,
            audit_checkpoint_interval_seconds: 60,
            audit_verify_interval_seconds: 300,
        }
    }
}

impl AuditArgs {
    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            key: self.key.audit_key.clone(),
            checkpoint_every: i64::from(self.audit_checkpoint_every),
            checkpoint_interval: Duration::from_secs(u64::from(
                self.audit_checkpoint_interval_seconds,
            )),
            verify_interval: Duration::from_secs(u64::from(self.audit_verify_interval_seconds)),
        }
    }
}

fn parse_key(text: &str) -> Result<AuditKey, String> {
    AuditKey::new(text).map_err(|error| error.to_string())
}

pub async fn run(global: &GlobalArgs, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify(args) = command;
    let store = open_store(&global.database_url).await?;
    let options = VerifyOptions {
        key: args.key.audit_key,
        published: args.expect_checkpoint,
        max_unprotected: chrono::Duration::seconds(
            i64::try_from(args.max_unprotected_seconds).unwrap_or(i64::MAX),
        ),
        pace: Pace::FULL_SPEED,
    };
    let report = verify(&store, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if let Some(mismatch) = &report.first_mismatch {
        anyhow::bail!(
            "the audit trail does not verify at {mismatch} ({} rows before it verified)",
            report.rows
        );
    }
    if !args.json {
        println!(
            "audit trail OK: {} rows, each matching its event, head hash {} (position {}); {} \
             checkpoints match, {} signatures verified, {} unchecked, {} published checkpoints \
             match; {} rows after the latest checkpoint",
            report.rows,
            report.head_hash,
            report.head_position,
            report.checkpoints,
            report.signatures_verified,
            report.signatures_unchecked,
            report.published_verified,
            report.unprotected_rows
        );
    }
    Ok(())
}
