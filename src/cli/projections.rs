//! `ledgerhook projections rebuild [NAME]` and `ledgerhook projections status`.

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use projections::Projection;

use super::GlobalArgs;
use crate::app::open_store;
use crate::readside;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Replay the whole log into a fresh copy of one projection (or all), then check that it
    /// equals the live one. Exits non-zero when they differ.
    Rebuild {
        /// positions, trades, daily_volume or signals (default: all).
        name: Option<String>,
    },
    /// Each projection's checkpoint and how many events of the log it has still to apply.
    Status,
}

pub async fn run(global: &GlobalArgs, command: ProjectionsCommand) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    match command {
        ProjectionsCommand::Status => {
            for status in readside::status(&store).await? {
                println!(
                    "{:<13} checkpoint {}  {} events behind",
                    status.projection.name(),
                    status.checkpoint.global_seq,
                    status.behind
                );
            }
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
