//! Account notices: events that are the account's, not a signal's, and that the trader is told of
//! on their own (an operator's halt or resume, a position drift found or cleared). Each is told
//! once, keyed by its sequence in the account's stream; the account records the outcome and
//! refuses to record a notice twice.

use chrono::{DateTime, Utc};

use crate::{AccountError, AccountEvent, NotificationOutcome, TradingAccount, AUTOMATIC_HALT_BY};

/// Whether the trader is told of `event` as a notice of its own. An automatic halt is not: it is
/// told inside the message of the failure that caused it.
pub fn is_notice(event: &AccountEvent) -> bool {
    match event {
        AccountEvent::TradingHalted { by, .. } => by != AUTOMATIC_HALT_BY,
        AccountEvent::TradingResumed { .. }
        | AccountEvent::PositionDriftDetected { .. }
        | AccountEvent::PositionDriftCleared { .. }
        | AccountEvent::EmergencyStopNoted { .. } => true,
        _ => false,
    }
}

impl TradingAccount {
    /// Records how telling the notice about the event at `about_sequence` went: a retry of a
    /// failed one, else a first attempt, which must come after every notice recorded so far.
    pub(crate) fn record_notice(
        &self,
        about_sequence: u64,
        channel: String,
        outcome: NotificationOutcome,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.profile()?;
        let failed_attempts = match self.undelivered_notices.get(&about_sequence) {
            Some(failed) => *failed,
            None if about_sequence > self.notices_through => 0,
            None => return Err(AccountError::NoticeAlreadyRecorded(about_sequence)),
        };
        Ok(vec![match outcome.failure(failed_attempts) {
            None => AccountEvent::NoticeSent {
                about_sequence,
                channel,
                at,
            },
            Some((reason, retry_at)) => AccountEvent::NoticeFailed {
                about_sequence,
                channel,
                reason,
                at,
                retry_at,
            },
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountCommand, RiskLimits, NOTIFICATION_ATTEMPTS};
    use chrono::TimeZone;
    use cqrs_es::Aggregate;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, minute, 0)
            .single()
            .unwrap()
    }

    fn opened() -> TradingAccount {
        let mut account = TradingAccount::default();
        account.apply(AccountEvent::AccountOpened {
            display_name: "a".into(),
            limits: RiskLimits::default(),
            opened_at: at(0),
        });
        account
    }

    fn record(
        account: &mut TradingAccount,
        about_sequence: u64,
        outcome: NotificationOutcome,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let events = account.decide(AccountCommand::RecordNotice {
            about_sequence,
            channel: "telegram".into(),
            outcome,
            at: at(1),
        })?;
        for event in &events {
            account.apply(event.clone());
        }
        Ok(events)
    }

    fn deferred() -> NotificationOutcome {
        NotificationOutcome::Deferred {
            reason: "503".into(),
            retry_at: at(2),
        }
    }

    #[test]
    fn an_operator_halt_a_resume_and_drifts_are_notices_an_automatic_halt_is_not() {
        let halt = |by: &str| AccountEvent::TradingHalted {
            by: by.into(),
            reason: "r".into(),
            at: at(0),
        };
        assert!(is_notice(&halt("ops")));
        assert!(!is_notice(&halt(AUTOMATIC_HALT_BY)));
        assert!(is_notice(&AccountEvent::TradingResumed {
            by: "ops".into(),
            reason: "r".into(),
            at: at(0),
        }));
    }

    #[test]
    fn a_notice_is_recorded_once_and_never_one_before_it() {
        let mut account = opened();
        assert!(matches!(
            record(&mut account, 5, NotificationOutcome::Sent)
                .unwrap()
                .as_slice(),
            [AccountEvent::NoticeSent {
                about_sequence: 5,
                ..
            }]
        ));
        assert_eq!(
            record(&mut account, 5, NotificationOutcome::Sent),
            Err(AccountError::NoticeAlreadyRecorded(5))
        );
        assert_eq!(
            record(&mut account, 3, NotificationOutcome::Sent),
            Err(AccountError::NoticeAlreadyRecorded(3))
        );
        assert_eq!(account.notices_through, 5);
    }

    #[test]
    fn a_deferred_notice_is_retried_until_sent_or_out_of_attempts() {
        let mut account = opened();
        record(&mut account, 4, deferred()).unwrap();
        // A later notice goes on meanwhile; the earlier one may still be retried.
        record(&mut account, 9, NotificationOutcome::Sent).unwrap();
        assert_eq!(account.undelivered_notices.get(&4), Some(&1));
        record(&mut account, 4, NotificationOutcome::Sent).unwrap();
        assert!(account.undelivered_notices.is_empty());
        assert!(record(&mut account, 4, NotificationOutcome::Sent).is_err());

        record(&mut account, 10, deferred()).unwrap();
        for _ in 1..NOTIFICATION_ATTEMPTS - 1 {
            let events = record(&mut account, 10, deferred()).unwrap();
            assert!(matches!(
                events.as_slice(),
                [AccountEvent::NoticeFailed {
                    retry_at: Some(_),
                    ..
                }]
            ));
        }
        let last = record(&mut account, 10, deferred()).unwrap();
        assert!(matches!(
            last.as_slice(),
            [AccountEvent::NoticeFailed { retry_at: None, .. }]
        ));
        assert!(account.undelivered_notices.is_empty());
        assert!(record(&mut account, 10, NotificationOutcome::Sent).is_err());
    }

    #[test]
    fn an_emergency_stop_change_is_noted_once_and_is_a_notice() {
        let mut account = opened();
        let note = |stop_sequence: u64, engaged: bool| AccountCommand::NoteEmergencyStop {
            stop_sequence,
            engaged,
            by: "ops".into(),
            reason: "incident".into(),
            at: at(3),
        };
        let noted = account.decide(note(1, true)).unwrap();
        assert_eq!(noted.len(), 1);
        assert!(is_notice(&noted[0]));
        for event in noted {
            account.apply(event);
        }
        // Handed over again (a page read twice, another instance): nothing more.
        assert!(account.decide(note(1, true)).unwrap().is_empty());
        assert_eq!(account.decide(note(2, false)).unwrap().len(), 1);
        // An account not yet opened is refused, not noted.
        assert!(TradingAccount::default().decide(note(1, true)).is_err());
    }
}
