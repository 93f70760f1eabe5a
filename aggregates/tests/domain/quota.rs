//! The user's signal quota as the account holds it: at most the quota's signals recorded in any
//! window, whatever instance decided them, refusals recording nothing, resends still answered.

use crate::common::*;
use aggregates::{AccountError, AccountEvent, SignalIntent, SignalQuota};
use chrono::Duration;

const TWO_A_MINUTE: SignalQuota = SignalQuota {
    signals: 2,
    window_seconds: 60,
};

fn within_quota(id: &str, when: &str) -> SignalIntent {
    let mut intent = intent(id, "BTC-USD", aggregates::Side::Buy, "0.01", "60000", when);
    intent.quota = Some(TWO_A_MINUTE);
    intent
}

fn generous_account(commands: Vec<aggregates::AccountCommand>) -> Vec<AccountEvent> {
    history(
        std::iter::once(open_command(limits(
            "10000000",
            "10000000",
            "100000000",
            &[],
        )))
        .chain(commands),
    )
}

#[test]
fn a_spent_quota_refuses_and_records_nothing_until_the_window_moves_on() {
    let past = generous_account(vec![
        receive(&within_quota("a", "2024-03-01T08:30:00Z")),
        receive(&within_quota("b", "2024-03-01T08:30:10Z")),
    ]);
    let account = replay(&past);
    let third = within_quota("c", "2024-03-01T08:30:20Z");
    assert_eq!(
        account.decide(receive(&third)),
        Err(AccountError::QuotaSpent {
            retry_after_ms: 40_000
        })
    );
    // One window after the first signal, there is room for one more.
    let later = within_quota("c", "2024-03-01T08:31:00Z");
    let events = account.decide(receive(&later)).expect("decided");
    assert_eq!(names(&events), ["SignalReceived", "RiskApproved"]);
}

#[test]
fn a_resend_is_answered_as_a_duplicate_even_with_the_quota_spent() {
    let first = within_quota("a", "2024-03-01T08:30:00Z");
    let past = generous_account(vec![
        receive(&first),
        receive(&within_quota("b", "2024-03-01T08:30:01Z")),
    ]);
    let mut resend = first.clone();
    resend.received_at += Duration::seconds(5);
    let events = replay(&past)
        .decide(receive(&recalling(&past, resend.clone())))
        .expect("decided");
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::SignalRejected {
            reason: aggregates::RejectionReason::Duplicate { .. },
            ..
        }]
    ));
}

#[test]
fn rejected_signals_count_toward_the_quota_and_resends_do_not() {
    let first = within_quota("a", "2024-03-01T08:30:00Z");
    let mut resend = first.clone();
    resend.received_at += Duration::seconds(1);
    let past = generous_account(vec![
        receive(&first),
        receive(&resend),
        halt("2024-03-01T08:30:02Z"),
    ]);
    // The resend did not count: one more fits, and is recorded (as halted).
    let account = replay(&past);
    let halted = account
        .decide(receive(&within_quota("b", "2024-03-01T08:30:03Z")))
        .expect("decided");
    assert_eq!(names(&halted), ["SignalRejected"]);
    let past: Vec<AccountEvent> = past.into_iter().chain(halted).collect();
    assert!(matches!(
        replay(&past).decide(receive(&within_quota("c", "2024-03-01T08:30:04Z"))),
        Err(AccountError::QuotaSpent { .. })
    ));
}

#[test]
fn no_quota_no_limit() {
    let mut commands = Vec::new();
    for n in 0..5 {
        let mut intent = within_quota(&format!("s{n}"), "2024-03-01T08:30:00Z");
        intent.quota = None;
        commands.push(receive(&intent));
    }
    let past = generous_account(commands);
    assert_eq!(replay(&past).signals_received, 5);
}

#[test]
fn a_burst_within_a_large_quota_is_recorded_whole_and_the_quota_still_holds() {
    const THOUSAND_A_MINUTE: SignalQuota = SignalQuota {
        signals: 1_000,
        window_seconds: 60,
    };
    let burst = |n: usize| {
        let mut intent = within_quota(&format!("s{n}"), "2024-03-01T08:30:00Z");
        intent.quota = Some(THOUSAND_A_MINUTE);
        intent.received_at += Duration::milliseconds(i64::try_from(n).expect("small"));
        intent
    };
    // A strategy firing on many markets at once: 1,000 signals in a second, all within the quota
    // (the account once held quotas above 100 to 100 in a tenth of their window).
    let past = generous_account((0..1_000).map(|n| receive(&burst(n))).collect());
    let account = replay(&past);
    assert_eq!(account.signals_received, 1_000);
    assert!(matches!(
        account.decide(receive(&burst(1_000))),
        Err(AccountError::QuotaSpent { retry_after_ms }) if retry_after_ms > 58_000
    ));
}
