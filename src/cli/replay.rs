//! `ledgerhook replay USER_ID`: an account's events, each with the state it left the account in.

use clap::Args;
use serde_json::json;

use projections::Timeline;

use super::GlobalArgs;
use crate::app::{open_store, start_ledger};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The user (account) id.
    pub user_id: String,
    /// One JSON object a line: sequence, event_type, recorded_at, payload, state.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: ReplayArgs) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    let mut committers = tokio::task::JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let history = ledger.history(&args.user_id).await?;
    anyhow::ensure!(
        !history.is_empty(),
        "no events for account {}",
        args.user_id
    );
    let steps = Timeline::new(history.iter().map(|r| (r.sequence, r, &r.event)));
    for step in steps {
        let recorded_at = step.meta.recorded_at.map(|at| at.to_rfc3339());
        if args.json {
            let line = json!({
                "sequence": step.sequence,
                "event_type": step.meta.event_type,
                "recorded_at": recorded_at,
                "payload": step.event,
                "state": step.state,
            });
            println!("{line}");
        } else {
            println!(
                "#{:<5} {}  {}",
                step.sequence,
                recorded_at.as_deref().unwrap_or("-"),
                step.meta.event_type
            );
            println!("       payload: {}", serde_json::to_string(step.event)?);
            println!("       state:   {}", serde_json::to_string(&step.state)?);
        }
    }
    Ok(())
}
