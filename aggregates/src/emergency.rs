//! The operator's global emergency stop: one stream for the whole service, so engaging and
//! releasing it are events in the ledger with who and why, like a per-account halt.
//!
//! The stop itself is enforced where signals and orders are decided: ingest hands the engaged
//! stop to `TradingAccount` (which records the refused signal), and the execution saga cancels
//! approved orders it has not placed yet.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Halt;

/// The one emergency-stop stream's aggregate id.
pub const EMERGENCY_STOP_ID: &str = "global";
pub const EMERGENCY_EVENT_VERSION: &str = "1.0";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmergencyStop {
    /// Who engaged the stop, why and when; `None` while released.
    pub engaged: Option<Halt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmergencyCommand {
    Engage {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    Release {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmergencyEvent {
    EmergencyStopEngaged {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    EmergencyStopReleased {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error("who and why are required")]
    Unattributed,
}

impl EmergencyStop {
    /// Engaging an engaged stop, or releasing a released one, records nothing: the ledger holds
    /// only real changes of state.
    pub fn decide(&self, command: EmergencyCommand) -> Result<Vec<EmergencyEvent>, EmergencyError> {
        let (by, reason) = match &command {
            EmergencyCommand::Engage { by, reason, .. }
            | EmergencyCommand::Release { by, reason, .. } => (by, reason),
        };
        if by.trim().is_empty() || reason.trim().is_empty() {
            return Err(EmergencyError::Unattributed);
        }
        Ok(match command {
            EmergencyCommand::Engage { by, reason, at } if self.engaged.is_none() => {
                vec![EmergencyEvent::EmergencyStopEngaged { by, reason, at }]
            }
            EmergencyCommand::Release { by, reason, at } if self.engaged.is_some() => {
                vec![EmergencyEvent::EmergencyStopReleased { by, reason, at }]
            }
            _ => vec![],
        })
    }

    pub fn evolve(&mut self, event: &EmergencyEvent) {
        self.engaged = match event {
            EmergencyEvent::EmergencyStopEngaged { by, reason, at } => Some(Halt {
                by: by.clone(),
                reason: reason.clone(),
                at: *at,
            }),
            EmergencyEvent::EmergencyStopReleased { .. } => None,
        };
    }
}

impl Aggregate for EmergencyStop {
    const TYPE: &'static str = "EmergencyStop";
    type Command = EmergencyCommand;
    type Event = EmergencyEvent;
    type Error = EmergencyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.evolve(&event);
    }
}

impl DomainEvent for EmergencyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EmergencyStopEngaged { .. } => "EmergencyStopEngaged",
            Self::EmergencyStopReleased { .. } => "EmergencyStopReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EMERGENCY_EVENT_VERSION.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn engage() -> EmergencyCommand {
        EmergencyCommand::Engage {
            by: "ops-alice".into(),
            reason: "exchange outage".into(),
            at: at(),
        }
    }

    fn release() -> EmergencyCommand {
        EmergencyCommand::Release {
            by: "ops-bob".into(),
            reason: "exchange back".into(),
            at: at(),
        }
    }

    fn run(stop: &mut EmergencyStop, command: EmergencyCommand) -> Vec<EmergencyEvent> {
        let events = stop.decide(command).expect("attributed command");
        for event in &events {
            stop.evolve(event);
        }
        events
    }

    #[test]
    fn engaging_records_who_and_why_once() {
        let mut stop = EmergencyStop::default();
        assert_eq!(run(&mut stop, engage()).len(), 1);
        assert_eq!(
            stop.engaged
                .as_ref()
                .map(|n| (n.by.as_str(), n.reason.as_str())),
            Some(("ops-alice", "exchange outage"))
        );
        assert!(run(&mut stop, engage()).is_empty(), "already engaged");
    }

    #[test]
    fn releasing_clears_the_stop_and_only_when_engaged() {
        let mut stop = EmergencyStop::default();
        assert!(run(&mut stop, release()).is_empty(), "nothing to release");
        run(&mut stop, engage());
        assert_eq!(run(&mut stop, release()).len(), 1);
        assert_eq!(stop.engaged, None);
    }

    #[test]
    fn a_stop_without_who_or_why_is_refused() {
        let stop = EmergencyStop::default();
        let command = EmergencyCommand::Engage {
            by: " ".into(),
            reason: "x".into(),
            at: at(),
        };
        assert_eq!(stop.decide(command), Err(EmergencyError::Unattributed));
    }

    #[test]
    fn engaging_or_releasing_without_a_reason_is_refused_whatever_the_state() {
        let blank_reason = |engage: bool| {
            let (by, reason, at) = ("ops-alice".to_owned(), "\t ".to_owned(), at());
            if engage {
                EmergencyCommand::Engage { by, reason, at }
            } else {
                EmergencyCommand::Release { by, reason, at }
            }
        };
        let mut stop = EmergencyStop::default();
        assert_eq!(
            stop.decide(blank_reason(true)),
            Err(EmergencyError::Unattributed)
        );
        run(&mut stop, engage());
        assert_eq!(
            stop.decide(blank_reason(false)),
            Err(EmergencyError::Unattributed)
        );
        assert!(
            stop.engaged.is_some(),
            "a refused release leaves it engaged"
        );
    }

    #[test]
    fn the_engaged_stop_says_who_why_and_since_when_and_a_new_engagement_replaces_it() {
        let mut stop = EmergencyStop::default();
        run(&mut stop, engage());
        assert_eq!(
            stop.engaged,
            Some(Halt {
                by: "ops-alice".into(),
                reason: "exchange outage".into(),
                at: at(),
            })
        );
        run(&mut stop, release());
        let later = at() + chrono::Duration::hours(1);
        let again = EmergencyCommand::Engage {
            by: "ops-carol".into(),
            reason: "venue halted BTC".into(),
            at: later,
        };
        assert_eq!(
            run(&mut stop, again),
            vec![EmergencyEvent::EmergencyStopEngaged {
                by: "ops-carol".into(),
                reason: "venue halted BTC".into(),
                at: later,
            }]
        );
        assert_eq!(
            stop.engaged.map(|halt| (halt.by, halt.at)),
            Some(("ops-carol".into(), later))
        );
    }

    /// The ledger stores the stop's events under these names and this version: renaming either
    /// would make the stop's history read differently from what earlier releases wrote.
    #[test]
    fn the_stop_events_keep_their_stored_names_and_version() {
        let engaged = EmergencyEvent::EmergencyStopEngaged {
            by: "ops-alice".into(),
            reason: "exchange outage".into(),
            at: at(),
        };
        let released = EmergencyEvent::EmergencyStopReleased {
            by: "ops-bob".into(),
            reason: "exchange back".into(),
            at: at(),
        };
        assert_eq!(engaged.event_type(), "EmergencyStopEngaged");
        assert_eq!(released.event_type(), "EmergencyStopReleased");
        assert_eq!(engaged.event_version(), "1.0");
        assert_eq!(released.event_version(), "1.0");
        assert_eq!(EmergencyStop::TYPE, "EmergencyStop");
    }

    // Through cqrs-es's own test framework: the `Aggregate` implementation handles and applies
    // the commands exactly as `decide` and `evolve` do.
    fn given(events: Vec<EmergencyEvent>) -> cqrs_es::test::AggregateTestExecutor<EmergencyStop> {
        cqrs_es::test::TestFramework::<EmergencyStop>::with(()).given(events)
    }

    fn engaged_event() -> EmergencyEvent {
        EmergencyEvent::EmergencyStopEngaged {
            by: "ops-alice".into(),
            reason: "exchange outage".into(),
            at: at(),
        }
    }

    #[tokio::test]
    async fn the_aggregate_engages_a_released_stop_and_ignores_an_engaged_one() {
        given(vec![])
            .when_async(engage())
            .await
            .then_expect_events(vec![engaged_event()]);
        given(vec![engaged_event()])
            .when_async(engage())
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_aggregate_releases_only_what_its_history_engaged() {
        given(vec![engaged_event()])
            .when_async(release())
            .await
            .then_expect_events(vec![EmergencyEvent::EmergencyStopReleased {
                by: "ops-bob".into(),
                reason: "exchange back".into(),
                at: at(),
            }]);
        let released = EmergencyEvent::EmergencyStopReleased {
            by: "ops-bob".into(),
            reason: "exchange back".into(),
            at: at(),
        };
        given(vec![engaged_event(), released])
            .when_async(release())
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_aggregate_refuses_an_unattributed_command() {
        let command = EmergencyCommand::Release {
            by: "".into(),
            reason: "exchange back".into(),
            at: at(),
        };
        given(vec![engaged_event()])
            .when_async(command)
            .await
            .then_expect_error(EmergencyError::Unattributed);
    }
}
