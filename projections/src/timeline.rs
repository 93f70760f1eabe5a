//! An account's history as a developer reads it: every event with the state it left behind.

use aggregates::{AccountEvent, TradingAccount};
use cqrs_es::Aggregate;

/// One event and the account state right after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a, M> {
    pub sequence: usize,
    pub meta: &'a M,
    pub event: &'a AccountEvent,
    pub state: TradingAccount,
}

/// Folds `(sequence, meta, event)` triples into steps; `M` is whatever the caller keeps beside an
/// event (its recorded time, type name...).
pub struct Timeline<'a, M, I> {
    events: I,
    state: TradingAccount,
    _meta: std::marker::PhantomData<&'a M>,
}

impl<'a, M: 'a, I> Timeline<'a, M, I>
where
    I: Iterator<Item = (usize, &'a M, &'a AccountEvent)>,
{
    pub fn new(events: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            events: events.into_iter(),
            state: TradingAccount::default(),
            _meta: std::marker::PhantomData,
        }
    }
}

impl<'a, M: 'a, I> Iterator for Timeline<'a, M, I>
where
    I: Iterator<Item = (usize, &'a M, &'a AccountEvent)>,
{
    type Item = Step<'a, M>;

    fn next(&mut self) -> Option<Self::Item> {
        let (sequence, meta, event) = self.events.next()?;
        self.state.apply(event.clone());
        Some(Step {
            sequence,
            meta,
            event,
            state: self.state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::RiskLimits;
    use chrono::{TimeZone, Utc};

    #[test]
    fn each_step_carries_the_state_after_its_event() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single();
        let Some(at) = at else { return };
        let events = [
            AccountEvent::AccountOpened {
                display_name: "a".into(),
                limits: RiskLimits::default(),
                opened_at: at,
            },
            AccountEvent::TradingHalted {
                by: "op".into(),
                reason: "r".into(),
                at,
            },
            AccountEvent::TradingResumed {
                by: "op".into(),
                reason: "r".into(),
                at,
            },
        ];
        let meta = ();
        let steps: Vec<_> =
            Timeline::new(events.iter().enumerate().map(|(i, e)| (i + 1, &meta, e))).collect();
        assert_eq!(steps.len(), 3);
        assert!(steps[0].state.halt.is_none());
        assert_eq!(
            steps[1].state.halt.as_ref().map(|h| h.by.as_str()),
            Some("op")
        );
        assert!(steps[2].state.halt.is_none());
        assert_eq!(steps[2].sequence, 3);
    }
}
