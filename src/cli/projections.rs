//! `ledgerhook projections rebuild [NAME]`, `status` (every catch-up reader), and the parked events:
//! `parked`, `release READER POSITION`, `skip READER POSITION --reason --by`.

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use projections::Projection;

use super::GlobalArgs;
use crate::app::open_store;
use crate::catchup::report::stored_statuses;
use crate::readside;
use crate::store::{ParkedDecision, Store};

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Replay the whole log into a fresh copy of one projection (or all), then check that it
    /// equals the live one. Exits non-zero when they differ.
    Rebuild {
        /// positions, trades, daily_volume or signals (default: all).
        name: Option<String>,
    },
    /// Every catch-up reader (execution, audit, each read model): checkpoint, lag, parked events,
    /// and state and restarts as last reported by the instance running it.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The parked events awaiting a decision (events a reader could not apply and went past).
    Parked {
        /// Every parked event, decided ones too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Have the reader try a parked event again (e.g. after a deploy that can read it); it is
    /// parked again if it still cannot be applied.
    Release {
        /// execution or projections.
        reader: String,
        /// As `parked` prints it.
        position: String,
    },
    /// Give up on a parked event: recorded with who and why, and gone from the open list.
    Skip {
        reader: String,
        position: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
}

pub async fn run(global: &GlobalArgs, command: ProjectionsCommand) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    match command {
        ProjectionsCommand::Status { json } => {
            let statuses = stored_statuses(&store).await?;
            if json {
                println!("{}", serde_json::to_string(&statuses)?);
                return Ok(());
            }
            for status in statuses {
                let run = status.run.as_ref();
                println!(
                    "{:<13} checkpoint {}  {} events / {} s behind  {} parked  {} ({} restarts){}",
                    status.name,
                    status.checkpoint,
                    status.lag_events,
                    status.lag_seconds,
                    status.parked,
                    run.map_or("never run", |run| run.state.as_str()),
                    run.map_or(0, |run| run.restarts),
                    run.and_then(|run| run.last_error.as_deref())
                        .map(|error| format!("  last error: {error}"))
                        .unwrap_or_default(),
                );
            }
            Ok(())
        }
        ProjectionsCommand::Parked { all, json } => {
            let parked = store.parked().parked_events(!all).await?;
            if json {
                println!("{}", serde_json::to_string(&parked)?);
                return Ok(());
            }
            if parked.is_empty() {
                println!("no parked events");
            }
            for event in parked {
                println!(
                    "{:<11} {:<12} {}#{} {} v{} parked {} [{}]: {}",
                    event.reader,
                    event.position,
                    event.account_id,
                    event.sequence,
                    event.event_type,
                    event.event_version,
                    event.parked_at,
                    event.decision,
                    event.reason
                );
            }
            Ok(())
        }
        ProjectionsCommand::Release { reader, position } => {
            decide(&store, &reader, &position, &ParkedDecision::Release).await?;
            println!("released: the {reader} reader will try the event at {position} again");
            Ok(())
        }
        ProjectionsCommand::Skip {
            reader,
            position,
            reason,
            by,
        } => {
            decide(
                &store,
                &reader,
                &position,
                &ParkedDecision::Skip { by, reason },
            )
            .await?;
            println!("skipped: the {reader} reader will not apply the event at {position}");
            Ok(())
        }
        ProjectionsCommand::Rebuild { name } => {
            let selected = match name.as_deref() {
                None => Projection::ALL.to_vec(),
                Some(name) => vec![Projection::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
                    anyhow::anyhow!("no projection named `{name}` (known: {})", known.join(", "))
                })?],
            };
            // On stderr, and drawn only on a terminal: piped output stays clean.
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} rebuilding [{bar:30}] {pos}/{len} events ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let report = readside::rebuild(
                &store,
                &selected,
                &mut |total| bar.set_length(total),
                &mut |read| bar.inc(read as u64),
            )
            .await;
            bar.finish_and_clear();
            let report = report?;
            println!(
                "replayed {} events in {:.2} s ({:.0} events/s)",
                report.events_read,
                report.elapsed.as_secs_f64(),
                report.events_per_second()
            );
            for verdict in &report.verdicts {
                let outcome = if verdict.differing_rows == 0 {
                    "equals the live rows".to_owned()
                } else {
                    format!(
                        "DIFFERS from the live rows in {} rows",
                        verdict.differing_rows
                    )
                };
                println!(
                    "{:<13} {} rows at {}: {outcome}",
                    verdict.projection.name(),
                    verdict.rows,
                    verdict.position.global_seq,
                );
            }
            anyhow::ensure!(
                report.all_equal(),
                "the rebuilt projections differ from the live ones"
            );
            Ok(())
        }
    }
}

async fn decide(
    store: &Store,
    reader: &str,
    position: &str,
    decision: &ParkedDecision,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        store
            .parked()
            .decide_parked(reader, position, decision)
            .await?,
        "no parked event of the {reader} reader at {position} awaits a decision \
         (see `ledgerhook projections parked`)"
    );
    Ok(())
}
