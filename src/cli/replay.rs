//! `ledgerhook replay USER_ID`: an account's events, each with what it changed in the account's
//! state (and, with `--full-state`, that whole state), optionally up to a point (`--as-of`) or for
//! one signal (`--signal`). Each line costs what its event touched, not what the account holds: the
//! idempotency memory is shown as a count and the key the event touched. The history is read a
//! page at a time, so memory stays flat however long it is.

use std::io::{self, BufWriter, Write};

use clap::Args;
use serde::Serialize;

use aggregates::{AccountEvent, SignalId};
use projections::{AsOf, Change, ChangeKind, Entry, Selection, Step, Timeline};

use super::GlobalArgs;
use crate::app::{open_store, start_ledger};
use crate::ledger::{Ledger, RecordedEvent};

/// Events read, folded and printed at a time.
const PAGE_SIZE: i64 = 1_000;

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
    let mut out = BufWriter::new(io::stdout().lock());
    let printed = write_paged(&mut out, &args, &ledger)
        .await
        .and_then(|()| Ok(out.flush()?));
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

/// The replay read from the ledger in pages of `PAGE_SIZE`: once for a small entry per event, to
/// check the selection against the whole history, then again to fold and print.
async fn write_paged(
    out: &mut impl Write,
    args: &ReplayArgs,
    ledger: &Ledger,
) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = ledger.history_page(&args.user_id, after, PAGE_SIZE).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        entries.extend(page.iter().map(entry));
    }
    let mut replay = Replay::new(args, &entries)?;
    let mut after = 0;
    while replay.wants_more() {
        let page = ledger.history_page(&args.user_id, after, PAGE_SIZE).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        replay.write_page(out, &page)?;
    }
    Ok(())
}

/// Writes the replay `args` ask for of `history` (the account's events in sequence order, as
/// `Ledger::history` reads them) to `out`.
pub fn write(
    out: &mut impl Write,
    args: &ReplayArgs,
    history: &[RecordedEvent],
) -> anyhow::Result<()> {
    let entries: Vec<Entry> = history.iter().map(entry).collect();
    Replay::new(args, &entries)?.write_page(out, history)
}

fn entry(recorded: &RecordedEvent) -> Entry {
    Entry::of(recorded.sequence, recorded.recorded_at, &recorded.event)
}

/// A replay under way: the account folded so far, and how many events are still to fold.
struct Replay<'a> {
    args: &'a ReplayArgs,
    selection: Selection,
    to_fold: usize,
    state: projections::Folded,
    line: Vec<u8>,
}

impl<'a> Replay<'a> {
    /// Checks the selection against the whole history's entries.
    fn new(args: &'a ReplayArgs, entries: &[Entry]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !entries.is_empty(),
            "unknown user {}: the ledger has no events for that account",
            args.user_id
        );
        let selection = Selection {
            as_of: args.as_of,
            signal: args.signal.clone().map(SignalId),
        };
        let to_fold = selection
            .events_to_fold(entries)
            .map_err(|error| anyhow::anyhow!("account {}: {error}", args.user_id))?;
        Ok(Self {
            args,
            selection,
            to_fold,
            state: projections::Folded::default(),
            line: Vec::new(),
        })
    }

    fn wants_more(&self) -> bool {
        self.to_fold > 0
    }

    /// Folds and prints the next events of the history, up to where the selection stops.
    fn write_page(&mut self, out: &mut impl Write, page: &[RecordedEvent]) -> anyhow::Result<()> {
        let page = page.get(..self.to_fold).unwrap_or(page);
        self.to_fold -= page.len();
        let mut steps = Timeline::new(page.iter().map(|r| (r.sequence, r, &r.event)))
            .from_state(std::mem::take(&mut self.state))
            .with_full_state(self.args.full_state)
            .showing(&self.selection);
        for step in steps.by_ref() {
            let step = step?;
            if self.args.json {
                write_json(out, &mut self.line, &step)?;
            } else {
                write_human(out, &step)?;
            }
        }
        self.state = steps.into_state();
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::RiskLimits;
    use chrono::{Duration, TimeZone, Utc};
    use cqrs_es::DomainEvent;

    fn history() -> Vec<RecordedEvent> {
        let start = Utc
            .timestamp_opt(1_767_225_600, 0)
            .single()
            .unwrap_or_default();
        let at = |minute: i64| start + Duration::minutes(minute);
        let halted = |minute| AccountEvent::TradingHalted {
            by: "op".into(),
            reason: "r".into(),
            at: at(minute),
        };
        let resumed = |minute| AccountEvent::TradingResumed {
            by: "op".into(),
            reason: "r".into(),
            at: at(minute),
        };
        let rejected = |signal: &str| AccountEvent::RiskRejected {
            signal_id: SignalId(signal.into()),
            rule: "max_order_size".into(),
            detail: "too big".into(),
        };
        let mut events = vec![AccountEvent::AccountOpened {
            display_name: "a".into(),
            limits: RiskLimits::default(),
            opened_at: at(0),
        }];
        for round in 0..4 {
            events.push(halted(round * 3 + 1));
            events.push(rejected(&format!("s{round}")));
            events.push(resumed(round * 3 + 2));
        }
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| RecordedEvent {
                account_id: "a".into(),
                sequence: index + 1,
                event_type: event.event_type(),
                stored_version: "2.0".into(),
                recorded_at: Some(at(i64::try_from(index).unwrap_or_default())),
                metadata: std::collections::HashMap::new(),
                event,
            })
            .collect()
    }

    /// What `write_paged` does with the ledger's pages, over pages of `size` of `history`.
    fn write_in_pages(args: &ReplayArgs, history: &[RecordedEvent], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let entries: Vec<Entry> = history.iter().map(entry).collect();
        let mut replay = Replay::new(args, &entries).unwrap_or_else(|e| panic!("{e}"));
        for page in history.chunks(size) {
            if !replay.wants_more() {
                break;
            }
            replay
                .write_page(&mut out, page)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        out
    }

    #[test]
    fn a_replay_read_in_pages_prints_what_one_page_would() {
        let history = history();
        let choices = [
            (None, None),
            (Some(AsOf::Sequence(8)), None),
            (None, Some("s2")),
            (Some(AsOf::Sequence(9)), Some("s1")),
        ];
        for (json, full_state) in [(false, false), (true, false), (false, true), (true, true)] {
            for (as_of, signal) in choices {
                let args = ReplayArgs {
                    user_id: "a".into(),
                    as_of,
                    signal: signal.map(str::to_owned),
                    full_state,
                    json,
                };
                let mut whole = Vec::new();
                write(&mut whole, &args, &history).unwrap_or_else(|e| panic!("{e}"));
                assert!(!whole.is_empty());
                for size in [1, 2, 3, 5, history.len()] {
                    assert_eq!(
                        String::from_utf8_lossy(&write_in_pages(&args, &history, size)),
                        String::from_utf8_lossy(&whole),
                        "pages of {size}, {args:?}"
                    );
                }
            }
        }
    }
}
