//! `ledgerhook replay USER_ID`: an account's events, each with what it changed in the account's
//! state (and, with `--full-state`, that whole state), optionally up to a point (`--as-of`) or for
//! one signal (`--signal`). Each line costs what its event touched, not what the account holds: the
//! idempotency memory is shown as a count and the key the event touched.

use std::io::{self, BufWriter, Write};

use clap::Args;
use serde::Serialize;

use aggregates::{AccountEvent, SignalId};
use projections::{AsOf, Change, ChangeKind, Entry, Selection, Step, Timeline};

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
    /// Also print the whole state after each event (human format: instead of what changed). The
    /// idempotency memory is shown as the count of keys remembered and the key the event touched.
    #[arg(long)]
    pub full_state: bool,
    /// One JSON object a line: sequence, event_type, recorded_at, payload, changes (what the
    /// event changed: [{path, kind, before, after}]) and, with --full-state, state (after it).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: ReplayArgs) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    let mut committers = tokio::task::JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let history = ledger.history(&args.user_id).await?;
    let mut out = BufWriter::new(io::stdout().lock());
    let printed = write(&mut out, &args, &history).and_then(|()| Ok(out.flush()?));
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

/// Writes the replay `args` ask for of `history` (the account's events in sequence order, as
/// `Ledger::history` reads them) to `out`.
pub fn write(
    out: &mut impl Write,
    args: &ReplayArgs,
    history: &[RecordedEvent],
) -> anyhow::Result<()> {
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
    let folded = history.get(..folded).unwrap_or(history);
    let steps = Timeline::new(folded.iter().map(|r| (r.sequence, r, &r.event)))
        .with_full_state(args.full_state)
        .showing(&selection);
    let mut line = Vec::new();
    for step in steps {
        let step = step?;
        if args.json {
            write_json(out, &mut line, &step)?;
        } else {
            write_human(out, &step)?;
        }
    }
    Ok(())
}

/// One `--json` line.
#[derive(Serialize)]
struct JsonLine<'a> {
    sequence: usize,
    event_type: &'a str,
    recorded_at: Option<String>,
    payload: &'a AccountEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a serde_json::Value>,
    changes: &'a [Change],
}

/// Serialized whole before it is written, so a value JSON cannot hold ends the replay with an
/// error rather than half a line.
fn write_json(
    out: &mut impl Write,
    line: &mut Vec<u8>,
    step: &Step<'_, RecordedEvent>,
) -> anyhow::Result<()> {
    line.clear();
    serde_json::to_writer(
        &mut *line,
        &JsonLine {
            sequence: step.sequence,
            event_type: &step.meta.event_type,
            recorded_at: step.meta.recorded_at.map(|at| at.to_rfc3339()),
            payload: step.event,
            state: step.state.as_ref(),
            changes: &step.changes,
        },
    )?;
    line.push(b'\n');
    out.write_all(line)?;
    Ok(())
}

fn write_human(out: &mut impl Write, step: &Step<'_, RecordedEvent>) -> anyhow::Result<()> {
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
    if let Some(state) = &step.state {
        writeln!(out, "       state:   {state}")?;
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
