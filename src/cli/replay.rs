//! `ledgerhook replay USER_ID`: an account's events, each with what it changed in the account's
//! state (or the whole state), optionally up to a point (`--as-of`) or for one signal (`--signal`).

use std::io::{self, BufWriter, Write};

use clap::Args;
use serde_json::json;

use aggregates::SignalId;
use projections::{AsOf, ChangeKind, Entry, Selection, Step, Timeline};

use super::GlobalArgs;
use crate::app::{open_store, start_ledger};
use crate::ledger::RecordedEvent;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ledgerhook replay USER_ID                          every event and what it changed\n  \
    ledgerhook replay USER_ID --as-of 12               stop after sequence 12\n  \
    ledgerhook replay USER_ID --as-of 2026-01-31T12:00:00Z\n  \
    ledgerhook replay USER_ID --signal SIGNAL_ID --full-state\n  \
    ledgerhook replay USER_ID --json | jq '.changes'")]
pub struct ReplayArgs {
    /// The user (account) id, as printed by `users create`.
    pub user_id: String,
    /// Stop after this point: a bare integer is an event's sequence number; anything else must
    /// be an RFC 3339 time (e.g. 2026-01-31T12:00:00Z) and the replay stops after the last event
    /// recorded at or before it.
    #[arg(long, value_name = "SEQUENCE|TIME")]
    pub as_of: Option<AsOf>,
    /// Print only this signal's events (the `signal_id` the webhook answered). The state is still
    /// folded over every event, so each printed state and change is the whole account's.
    #[arg(long, value_name = "ID")]
    pub signal: Option<String>,
    /// Human format: print the whole state after each event instead of only what changed.
    #[arg(long)]
    pub full_state: bool,
    /// One JSON object a line: sequence, event_type, recorded_at, payload, state (after the
    /// event) and changes (what the event changed: [{path, kind, before, after}]).
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
        "unknown user {}: the ledger has no events for that account",
        args.user_id
    );
    let selection = Selection {
        as_of: args.as_of,
        signal: args.signal.clone().map(SignalId),
    };
    let entries: Vec<Entry<'_>> = history
        .iter()
        .map(|recorded| Entry {
            sequence: recorded.sequence,
            recorded_at: recorded.recorded_at,
            event: &recorded.event,
        })
        .collect();
    let folded = selection
        .events_to_fold(&entries)
        .map_err(|error| anyhow::anyhow!("account {}: {error}", args.user_id))?;
    let folded = history.get(..folded).unwrap_or(&history);
    let steps = Timeline::new(folded.iter().map(|r| (r.sequence, r, &r.event)))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let printed = print_steps(&mut out, steps, &selection, &args).and_then(|()| Ok(out.flush()?));
    match printed {
        // `replay ... | head` closing the pipe early is the reader being done, not a failure.
        Err(error)
            if error
                .downcast_ref::<io::Error>()
                .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn print_steps<'a>(
    out: &mut impl Write,
    steps: impl Iterator<Item = Result<Step<'a, RecordedEvent>, serde_json::Error>>,
    selection: &Selection,
    args: &ReplayArgs,
) -> anyhow::Result<()> {
    for step in steps {
        let step = step?;
        if !selection.shows(step.event) {
            continue;
        }
        if args.json {
            print_json(out, &step)?;
        } else {
            print_human(out, &step, args.full_state)?;
        }
    }
    Ok(())
}

// `serde_json::to_value` rather than `json!(expr)`, which would panic on a value JSON cannot hold.
fn print_json(out: &mut impl Write, step: &Step<'_, RecordedEvent>) -> anyhow::Result<()> {
    let line = json!({
        "sequence": step.sequence,
        "event_type": step.meta.event_type,
        "recorded_at": step.meta.recorded_at.map(|at| at.to_rfc3339()),
        "payload": serde_json::to_value(step.event)?,
        "state": serde_json::to_value(&step.state)?,
        "changes": serde_json::to_value(&step.changes)?,
    });
    writeln!(out, "{line}")?;
    Ok(())
}

fn print_human(
    out: &mut impl Write,
    step: &Step<'_, RecordedEvent>,
    full_state: bool,
) -> anyhow::Result<()> {
    let recorded_at = step.meta.recorded_at.map(|at| at.to_rfc3339());
    writeln!(
        out,
        "#{:<5} {}  {}",
        step.sequence,
        recorded_at.as_deref().unwrap_or("-"),
        step.meta.event_type
    )?;
    writeln!(
        out,
        "       payload: {}",
        serde_json::to_string(step.event)?
    )?;
    if full_state {
        writeln!(
            out,
            "       state:   {}",
            serde_json::to_string(&step.state)?
        )?;
        return Ok(());
    }
    if step.changes.is_empty() {
        writeln!(out, "       (state unchanged)")?;
    }
    for change in &step.changes {
        let mark = match change.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        writeln!(out, "       {mark} {change}")?;
    }
    Ok(())
}
