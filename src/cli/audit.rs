//! `ledgerhook audit verify`, and the audit settings `serve` takes.

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::app::open_store;
use crate::audit::{verify, AuditConfig, AuditKey};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit chain, recompute every hash and check every checkpoint; name the first row
    /// that does not match (and exit non-zero).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: AuditKeyArg,
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
}

impl Default for AuditArgs {
    fn default() -> Self {
        Self {
            key: AuditKeyArg::default(),
            audit_checkpoint_every: 1000,
        }
    }
}

impl AuditArgs {
    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            key: self.key.audit_key.clone(),
            checkpoint_every: i64::from(self.audit_checkpoint_every),
        }
    }
}

fn parse_key(text: &str) -> Result<AuditKey, String> {
    AuditKey::new(text).map_err(|error| error.to_string())
}

pub async fn run(global: &GlobalArgs, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify(args) = command;
    let store = open_store(&global.database_url).await?;
    let report = verify(&store, args.key.audit_key.as_ref()).await?;
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
            "audit trail OK: {} rows, head hash {} (position {}); {} checkpoints match, {} \
             signatures verified, {} unchecked",
            report.rows,
            report.head_hash,
            report.head_position,
            report.checkpoints,
            report.signatures_verified,
            report.signatures_unchecked
        );
    }
    Ok(())
}
