//! `ledgerhook reconcile [USER_ID]`: compares the ledger's positions with the venue's, now, for one
//! account or every account; records each drift that appeared, changed or cleared (a running
//! service's saga tells the trader). Prints every drift that stands; exits 1 if any account has one or could not be
//! reconciled.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Args;
use tokio::task::JoinSet;

use super::GlobalArgs;
use crate::app::{open_store, start_ledger};
use crate::exchange::PaperExchange;
use crate::markets::MarketList;
use crate::reconcile::{AccountReport, Reconciler};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The account to reconcile; without it, every account.
    pub user_id: Option<String>,
    /// One JSON object per account instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: ReconcileArgs) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store.clone(), &mut committers);
    // Positions need no prices: the paper venue's book says what each account holds.
    let exchange = Arc::new(PaperExchange::new(
        store,
        MarketList::default(),
        HashMap::new(),
    ));
    let reconciler = Reconciler::new(ledger.clone(), exchange);
    let reports = match args.user_id {
        Some(user_id) => vec![reconciler.report(user_id).await],
        None => reconciler.all().await?,
    };
    drop(reconciler);
    drop(ledger);
    while committers.join_next().await.is_some() {}
    for report in &reports {
        print(report, args.json)?;
    }
    let unsettled = reports
        .iter()
        .filter(|report| report.outcome == "drift" || report.outcome == "failed")
        .count();
    anyhow::ensure!(
        unsettled == 0,
        "{unsettled} of {} account(s) drifted or could not be reconciled",
        reports.len()
    );
    Ok(())
}

fn print(report: &AccountReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    let detail = match &report.error {
        Some(error) => error.clone(),
        None if report.drifts.is_empty() => "positions agree with the venue".to_owned(),
        None => report
            .drifts
            .iter()
            .map(|(market, drift)| {
                format!(
                    "{market}: {} holds {}, the ledger {}",
                    drift.venue, drift.venue_size, drift.ledger_size
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    println!("{} {}: {detail}", report.account_id, report.outcome);
    Ok(())
}
