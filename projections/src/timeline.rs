//! An account's history as a developer reads it: every event with what it changed and, when asked,
//! the state it left behind, optionally only up to a point in time (`--as-of`) or only the events
//! of one signal (`--signal`).

use std::fmt;
use std::str::FromStr;

use aggregates::{AccountEvent, SignalId};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::diff::{diff, Change};
use crate::view::{Extent, Folded, StateView, Touches};

/// One event, what it changed in the account's state and, when asked for, that whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a, M> {
    pub sequence: usize,
    pub meta: &'a M,
    pub event: &'a AccountEvent,
    /// The account after the event as a `StateView` of every entry, with
    /// [`Timeline::with_full_state`]; `None` otherwise.
    pub state: Option<Value>,
    /// What the event changed: the view of the entries it touches, before and after it.
    pub changes: Vec<Change>,
}

/// Folds `(sequence, meta, event)` triples into steps; `M` is whatever the caller keeps beside an
/// event (its recorded time, type name...). Each step costs what its event touches, not what the
/// account holds, so a replay is linear in the history.
pub struct Timeline<'a, M, I> {
    events: I,
    state: Folded,
    full_state: bool,
    /// Only the events it shows become steps; the others are folded silently.
    selection: Selection,
    _meta: std::marker::PhantomData<&'a M>,
}

impl<'a, M: 'a, I> Timeline<'a, M, I>
where
    I: Iterator<Item = (usize, &'a M, &'a AccountEvent)>,
{
    pub fn new(events: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            events: events.into_iter(),
            state: Folded::default(),
            full_state: false,
            selection: Selection::default(),
            _meta: std::marker::PhantomData,
        }
    }

    /// Each step also carries the whole state after its event.
    pub fn with_full_state(mut self, full_state: bool) -> Self {
        self.full_state = full_state;
        self
    }

    /// Goes on from `state`, the account after the events before these (a history read in pages).
    pub fn from_state(mut self, state: Folded) -> Self {
        self.state = state;
        self
    }

    /// The account after every event folded so far.
    pub fn into_state(self) -> Folded {
        self.state
    }

    /// Steps only for the events the selection shows (every event is still folded).
    pub fn showing(mut self, selection: &Selection) -> Self {
        self.selection = selection.clone();
        self
    }

    fn step(
        &mut self,
        sequence: usize,
        meta: &'a M,
        event: &'a AccountEvent,
    ) -> Result<Step<'a, M>, serde_json::Error> {
        let touches = Touches::of(event);
        let before = serde_json::to_value(StateView::new(&self.state, touches, Extent::Touched))?;
        self.state.apply(event);
        let after = serde_json::to_value(StateView::new(&self.state, touches, Extent::Touched))?;
        let state = if self.full_state {
            Some(serde_json::to_value(StateView::new(
                &self.state,
                touches,
                Extent::Whole,
            ))?)
        } else {
            None
        };
        Ok(Step {
            sequence,
            meta,
            event,
            state,
            changes: diff(&before, &after),
        })
    }
}

impl<'a, M: 'a, I> Iterator for Timeline<'a, M, I>
where
    I: Iterator<Item = (usize, &'a M, &'a AccountEvent)>,
{
    /// A state that cannot be written as JSON ends the replay with its error rather than a panic.
    type Item = Result<Step<'a, M>, serde_json::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (sequence, meta, event) = self.events.next()?;
            if !self.selection.shows(event) {
                self.state.apply(event);
                continue;
            }
            return Some(self.step(sequence, meta, event));
        }
    }
}

/// Where a replay stops: after an event's sequence number, or after the last event recorded at or
/// before a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Sequence(usize),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsOfError {
    #[error("sequences start at 1")]
    SequenceZero,
    #[error(
        "`{0}` is neither a sequence number nor an RFC 3339 time such as 2026-01-31T12:00:00Z"
    )]
    Unreadable(String),
}

/// A bare integer is a sequence; anything else must be an RFC 3339 time (with its offset).
impl FromStr for AsOf {
    type Err = AsOfError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<usize>() {
                Ok(0) => Err(AsOfError::SequenceZero),
                Ok(sequence) => Ok(Self::Sequence(sequence)),
                Err(_) => Err(AsOfError::Unreadable(text.to_owned())),
            };
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self::Time(at.with_timezone(&Utc)))
            .map_err(|_| AsOfError::Unreadable(text.to_owned()))
    }
}

impl fmt::Display for AsOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sequence(sequence) => write!(f, "sequence {sequence}"),
            Self::Time(at) => write!(f, "{}", at.to_rfc3339()),
        }
    }
}

/// One event as the selection sees it: small enough to keep for a whole history that is itself
/// read a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sequence: usize,
    pub recorded_at: Option<DateTime<Utc>>,
    pub signal: Option<SignalId>,
}

impl Entry {
    pub fn of(sequence: usize, recorded_at: Option<DateTime<Utc>>, event: &AccountEvent) -> Self {
        Self {
            sequence,
            recorded_at,
            signal: event.signal_id().cloned(),
        }
    }
}

/// Which part of an account's history a replay prints. The fold always starts at the first event,
/// so every printed state is the account's whole state; the selection only decides where the fold
/// stops (`as_of`) and which of the folded events are printed (`signal`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub as_of: Option<AsOf>,
    pub signal: Option<SignalId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("no event at or before --as-of {0}")]
    NothingAsOf(AsOf),
    #[error("no signal {0}")]
    UnknownSignal(SignalId),
    #[error("signal {signal} has no event at or before --as-of {as_of}")]
    SignalLater { signal: SignalId, as_of: AsOf },
}

impl Selection {
    /// How many of the account's events, in sequence order, the replay folds. Checks the
    /// selection against the whole history, so an unknown signal or an as-of before the first
    /// event is an error rather than an empty replay.
    pub fn events_to_fold(&self, events: &[Entry]) -> Result<usize, SelectionError> {
        let folded = match self.as_of {
            None => events.len(),
            Some(AsOf::Sequence(last)) => events.iter().take_while(|e| e.sequence <= last).count(),
            // The last event recorded at or before the time, even if a clock stepped back
            // between instances and an earlier sequence carries a later time.
            Some(AsOf::Time(at)) => events
                .iter()
                .rposition(|e| e.recorded_at.is_some_and(|recorded| recorded <= at))
                .map_or(0, |index| index + 1),
        };
        if let Some(as_of) = self.as_of.filter(|_| folded == 0) {
            return Err(SelectionError::NothingAsOf(as_of));
        }
        if let Some(signal) = &self.signal {
            let of_signal = |e: &&Entry| e.signal.as_ref() == Some(signal);
            if !events.iter().any(|e| of_signal(&e)) {
                return Err(SelectionError::UnknownSignal(signal.clone()));
            }
            if let Some(as_of) = self.as_of {
                if !events[..folded].iter().any(|e| of_signal(&e)) {
                    return Err(SelectionError::SignalLater {
                        signal: signal.clone(),
                        as_of,
                    });
                }
            }
        }
        Ok(folded)
    }

    /// Whether a folded event is printed.
    pub fn shows(&self, event: &AccountEvent) -> bool {
        match &self.signal {
            None => true,
            Some(signal) => event.signal_id() == Some(signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::RiskLimits;
    use chrono::{Duration, TimeZone};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600, 0)
            .single()
            .unwrap_or_default()
            + Duration::minutes(minute)
    }

    fn opened() -> AccountEvent {
        AccountEvent::AccountOpened {
            display_name: "a".into(),
            limits: RiskLimits::default(),
            opened_at: at(0),
        }
    }

    fn halted() -> AccountEvent {
        AccountEvent::TradingHalted {
            by: "op".into(),
            reason: "r".into(),
            at: at(1),
        }
    }

    fn resumed() -> AccountEvent {
        AccountEvent::TradingResumed {
            by: "op".into(),
            reason: "r".into(),
            at: at(2),
        }
    }

    fn refused(signal: &str) -> AccountEvent {
        AccountEvent::RiskRejected {
            signal_id: SignalId(signal.into()),
            rule: "max_order_size".into(),
            detail: "too big".into(),
        }
    }

    /// Entries numbered from 1, recorded at the given minutes.
    fn entries(events: &[AccountEvent], minutes: &[i64]) -> Vec<Entry> {
        events
            .iter()
            .zip(minutes)
            .enumerate()
            .map(|(index, (event, minute))| Entry::of(index + 1, Some(at(*minute)), event))
            .collect()
    }

    fn steps(events: &[AccountEvent], full_state: bool) -> Vec<Step<'_, ()>> {
        Timeline::new(events.iter().enumerate().map(|(i, e)| (i + 1, &(), e)))
            .with_full_state(full_state)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|error| panic!("the state is JSON: {error}"))
    }

    #[test]
    fn each_step_carries_the_state_after_its_event_when_asked() {
        let events = [opened(), halted(), resumed()];
        let steps = steps(&events, true);
        assert_eq!(steps.len(), 3);
        let state = |i: usize| steps[i].state.clone().unwrap_or_default();
        assert_eq!(state(0)["halt"], Value::Null);
        assert_eq!(state(1)["halt"]["by"], "op");
        assert_eq!(state(2)["halt"], Value::Null);
        assert_eq!(steps[2].sequence, 3);
        assert!(self::steps(&events, false)
            .iter()
            .all(|s| s.state.is_none()));
    }

    #[test]
    fn each_step_carries_what_its_event_changed() {
        let events = [opened(), halted(), resumed(), resumed()];
        let steps = steps(&events, false);
        assert!(steps[0].changes.iter().any(|c| c.path == "profile"));
        let halt: Vec<String> = steps[1].changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(halt.len(), 1, "{halt:?}");
        assert!(halt[0].starts_with(r#"halt: null → {"#), "{halt:?}");
        assert_eq!(steps[2].changes.len(), 1);
        assert_eq!(steps[2].changes[0].after, Some(Value::Null));
        // A second resume changes nothing.
        assert!(steps[3].changes.is_empty());
    }

    #[test]
    fn a_signal_selection_makes_steps_of_its_events_only() {
        let events = [opened(), refused("s-1"), halted(), refused("s-2")];
        let selection = Selection {
            as_of: None,
            signal: Some(SignalId("s-2".into())),
        };
        let steps: Vec<Step<'_, ()>> =
            Timeline::new(events.iter().enumerate().map(|(i, e)| (i + 1, &(), e)))
                .with_full_state(true)
                .showing(&selection)
                .collect::<Result<_, _>>()
                .unwrap_or_default();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].sequence, 4);
        // The events before it were folded: the halt is in its state.
        let state = steps[0].state.clone().unwrap_or_default();
        assert_eq!(state["halt"]["by"], "op");
    }

    #[test]
    fn as_of_reads_a_bare_integer_as_a_sequence_and_anything_else_as_a_time() {
        assert_eq!("12".parse(), Ok(AsOf::Sequence(12)));
        assert_eq!("2026-01-01T00:05:00Z".parse(), Ok(AsOf::Time(at(5))));
        assert_eq!("2026-01-01T01:05:00+01:00".parse(), Ok(AsOf::Time(at(5))));
        assert_eq!("0".parse::<AsOf>(), Err(AsOfError::SequenceZero));
        for bad in [
            "",
            "-3",
            "1.5",
            "yesterday",
            "2026-01-01",
            "2026-01-01T00:05:00",
        ] {
            assert!(
                matches!(bad.parse::<AsOf>(), Err(AsOfError::Unreadable(_))),
                "{bad}"
            );
        }
    }

    /// `replay` reads a long history a page at a time: each page goes on from the state the
    /// previous one ended in, and the last ends in the state of one fold over everything.
    #[test]
    fn a_history_read_in_pages_ends_in_the_state_of_one_fold() {
        let events = [
            opened(),
            refused("s-1"),
            halted(),
            refused("s-2"),
            resumed(),
        ];
        let mut first = Timeline::new(events[..2].iter().enumerate().map(|(i, e)| (i + 1, &(), e)));
        assert_eq!(first.by_ref().count(), 2);
        let mut second =
            Timeline::new(events[2..].iter().enumerate().map(|(i, e)| (i + 3, &(), e)))
                .from_state(first.into_state());
        assert_eq!(second.by_ref().count(), 3);
        let paged = second.into_state();
        let mut whole = Folded::default();
        for event in &events {
            whole.apply(event);
        }
        assert_eq!(paged, whole);
        assert!(paged.account.halt.is_none() && paged.account.profile.is_some());
    }

    #[test]
    fn an_empty_selection_names_the_as_of_the_operator_gave() {
        assert_eq!(
            SelectionError::NothingAsOf(AsOf::Sequence(3)).to_string(),
            "no event at or before --as-of sequence 3"
        );
        assert_eq!(
            SelectionError::SignalLater {
                signal: SignalId("s-2".into()),
                as_of: AsOf::Time(at(5)),
            }
            .to_string(),
            "signal s-2 has no event at or before --as-of 2026-01-01T00:05:00+00:00"
        );
    }

    #[test]
    fn without_a_selection_every_event_is_folded_and_shown() {
        let events = [opened(), refused("s-1")];
        let entries = entries(&events, &[0, 1]);
        let selection = Selection::default();
        assert_eq!(selection.events_to_fold(&entries), Ok(2));
        assert!(events.iter().all(|e| selection.shows(e)));
    }

    #[test]
    fn as_of_a_sequence_stops_after_it() {
        let events = [opened(), halted(), resumed()];
        let entries = entries(&events, &[0, 1, 2]);
        let as_of = |n| Selection {
            as_of: Some(AsOf::Sequence(n)),
            signal: None,
        };
        assert_eq!(as_of(2).events_to_fold(&entries), Ok(2));
        assert_eq!(as_of(3).events_to_fold(&entries), Ok(3));
        // Past the end: the whole history, nothing to stop.
        assert_eq!(as_of(9).events_to_fold(&entries), Ok(3));
    }

    #[test]
    fn as_of_a_time_stops_after_the_last_event_recorded_by_then() {
        let events = [opened(), halted(), resumed()];
        let entries = entries(&events, &[0, 10, 20]);
        let as_of = |minute| Selection {
            as_of: Some(AsOf::Time(at(minute))),
            signal: None,
        };
        assert_eq!(
            as_of(10).events_to_fold(&entries),
            Ok(2),
            "at the time itself"
        );
        assert_eq!(
            as_of(15).events_to_fold(&entries),
            Ok(2),
            "between two events"
        );
        assert_eq!(as_of(99).events_to_fold(&entries), Ok(3));
        assert_eq!(
            as_of(-1).events_to_fold(&entries),
            Err(SelectionError::NothingAsOf(AsOf::Time(at(-1))))
        );
        // A clock that stepped back: the last event recorded by then still counts.
        let skewed = self::entries(&events, &[0, 10, 5]);
        assert_eq!(as_of(6).events_to_fold(&skewed), Ok(3));
    }

    #[test]
    fn a_signal_selection_shows_only_that_signals_events() {
        let events = [opened(), refused("s-1"), halted(), refused("s-2")];
        let entries = entries(&events, &[0, 1, 2, 3]);
        let selection = Selection {
            as_of: None,
            signal: Some(SignalId("s-1".into())),
        };
        // The fold still covers everything, so the printed state is the whole account's.
        assert_eq!(selection.events_to_fold(&entries), Ok(4));
        let shown: Vec<bool> = events.iter().map(|e| selection.shows(e)).collect();
        assert_eq!(shown, [false, true, false, false]);
    }

    #[test]
    fn an_unknown_or_later_signal_is_an_error() {
        let events = [opened(), refused("s-1"), refused("s-2")];
        let entries = entries(&events, &[0, 1, 2]);
        let unknown = Selection {
            as_of: None,
            signal: Some(SignalId("nope".into())),
        };
        assert_eq!(
            unknown.events_to_fold(&entries),
            Err(SelectionError::UnknownSignal(SignalId("nope".into())))
        );
        let later = Selection {
            as_of: Some(AsOf::Sequence(2)),
            signal: Some(SignalId("s-2".into())),
        };
        assert_eq!(
            later.events_to_fold(&entries),
            Err(SelectionError::SignalLater {
                signal: SignalId("s-2".into()),
                as_of: AsOf::Sequence(2),
            })
        );
    }
}
