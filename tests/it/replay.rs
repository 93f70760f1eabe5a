//! Black-box: a developer replays an account with the real binary, on both stores. Given an
//! account that traded twice and had one alert refused, `replay` stops where `--as-of` says (a
//! sequence or a time), tells one signal's story with `--signal`, and shows what each event changed.

use std::process::Output;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{cli_output, create_user, replay, Options, Service};
use crate::support::stores::{Backend, TestStore};
use crate::support::{event_types, eventually};

/// `ledgerhook replay USER ARGS...`, whatever its exit status.
async fn run_replay(database_url: &str, user_id: &str, args: &[&str]) -> Output {
    cli_output(database_url, &[&["replay", user_id], args].concat()).await
}

/// The JSON lines of a replay that must succeed.
async fn replay_json(database_url: &str, user_id: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = run_replay(database_url, user_id, &all).await;
    assert!(output.status.success(), "replay {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("replay --json prints JSON lines"))
        .collect()
}

/// A replay that must fail: its stderr.
async fn replay_error(database_url: &str, user_id: &str, args: &[&str]) -> String {
    let output = run_replay(database_url, user_id, args).await;
    assert!(!output.status.success(), "replay {args:?} should fail");
    assert!(output.stdout.is_empty(), "nothing printed on failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sequences(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|line| line["sequence"].as_u64().unwrap_or_default())
        .collect()
}

fn recorded_at(line: &Value) -> DateTime<Utc> {
    line["recorded_at"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("an RFC 3339 recorded_at: {line}"))
}

/// Two filled buys with a refused alert between them; returns (user id, the refused signal's id,
/// the second buy's signal id) once both buys are notified.
async fn an_account_with_history(test: &TestStore) -> (String, String, String) {
    let user = create_user(&test.url, "developer").await;
    let service = Service::start(&test.url, Options::default()).await;
    let mut signal_ids = Vec::new();
    for (alert, expected) in [
        (Alert::btc_usd("r-1").size("0.01").json(), "accepted"),
        // Take profit below entry on a buy: refused by the bracket rule, no limits needed.
        (
            Alert::btc_usd("r-2")
                .size("0.01")
                .field("take_profit", "60000")
                .field("stop_loss", "63000")
                .json(),
            "rejected",
        ),
        (Alert::btc_usd("r-3").size("0.01").json(), "accepted"),
    ] {
        let (status, body) = service.post_signal(&user.webhook_token, &alert).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(expected)),
            "{body}"
        );
        signal_ids.push(body["signal_id"].as_str().unwrap_or_default().to_owned());
    }
    let store = test.open().await;
    eventually("both buys notified", || async {
        let events = event_types(&store, &user.user_id).await;
        (events.iter().filter(|e| *e == "NotificationSent").count() >= 2).then_some(())
    })
    .await;
    service.stop().await;
    (user.user_id, signal_ids[1].clone(), signal_ids[2].clone())
}

async fn replay_stops_as_of_a_sequence_or_a_time(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (user_id, refused, _) = an_account_with_history(&test).await;
    let full = replay(&test.url, &user_id).await;
    let refusal = full
        .iter()
        .position(|line| line["event_type"] == "RiskRejected")
        .expect("the refused alert is in the history");

    let sequence = full[refusal]["sequence"].to_string();
    let as_of = replay_json(&test.url, &user_id, &["--as-of", &sequence, "--full-state"]).await;
    assert_eq!(sequences(&as_of), sequences(&full[..=refusal]));
    assert_eq!(
        as_of.last().map(|l| &l["state"]),
        Some(&full[refusal]["state"])
    );

    // By time: everything up to the last event recorded at or before it.
    let at = recorded_at(&full[refusal]);
    let expected = full
        .iter()
        .rposition(|line| recorded_at(line) <= at)
        .map_or(0, |index| index + 1);
    let as_of = replay_json(&test.url, &user_id, &["--as-of", &at.to_rfc3339()]).await;
    assert_eq!(sequences(&as_of), sequences(&full[..expected]));

    // The signal's story as of its refusal still has its refusal; before the account existed,
    // there is nothing to replay.
    let story = replay_json(
        &test.url,
        &user_id,
        &["--as-of", &sequence, "--signal", &refused],
    )
    .await;
    assert!(story
        .iter()
        .any(|line| line["event_type"] == "RiskRejected"));
    let error = replay_error(&test.url, &user_id, &["--as-of", "2000-01-01T00:00:00Z"]).await;
    assert!(error.contains("no event at or before"), "{error}");
    let error = replay_error(&test.url, &user_id, &["--as-of", "yesterday"]).await;
    assert!(error.contains("--as-of"), "{error}");
}
on_both_stores!(replay_stops_as_of_a_sequence_or_a_time);

async fn replay_tells_one_signals_story_with_the_whole_state(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (user_id, refused, second) = an_account_with_history(&test).await;
    let full = replay(&test.url, &user_id).await;

    for signal in [&refused, &second] {
        let story = replay_json(&test.url, &user_id, &["--signal", signal, "--full-state"]).await;
        let expected: Vec<&Value> = full
            .iter()
            .filter(|line| {
                line["payload"]
                    .as_object()
                    .and_then(|event| event.values().next())
                    .is_some_and(|fields| fields["signal_id"] == signal.as_str())
            })
            .collect();
        assert!(!story.is_empty());
        assert_eq!(story.iter().collect::<Vec<_>>(), expected, "{signal}");
    }
    // The second buy's story shows the whole account: the first buy's position is in its state.
    let story = replay_json(&test.url, &user_id, &["--signal", &second, "--full-state"]).await;
    let last = story.last().expect("the second buy has events");
    assert_eq!(last["state"]["positions"]["BTC-USD"]["size"], "0.02");

    let error = replay_error(&test.url, &user_id, &["--signal", "no-such-signal"]).await;
    assert!(error.contains("no signal no-such-signal"), "{error}");
    let error = replay_error(&test.url, "no-such-user", &[]).await;
    assert!(error.contains("unknown user no-such-user"), "{error}");
}
on_both_stores!(replay_tells_one_signals_story_with_the_whole_state);

async fn replay_shows_what_each_event_changed(backend: Backend) {
    let test = TestStore::new(backend).await;
    let (user_id, _, second) = an_account_with_history(&test).await;
    let full = replay(&test.url, &user_id).await;

    // JSON: every line has its changes; the second fill grows the position.
    assert!(
        full.iter().all(|line| line["changes"].is_array()),
        "{full:?}"
    );
    let grown = serde_json::json!({
        "path": "positions.BTC-USD.size",
        "kind": "changed",
        "before": "0.01",
        "after": "0.02",
    });
    let growth: Vec<&Value> = full
        .iter()
        .filter(|line| {
            line["changes"]
                .as_array()
                .is_some_and(|changes| changes.contains(&grown))
        })
        .collect();
    assert_eq!(growth.len(), 1, "one event grew the position: {full:?}");
    let fields = growth[0]["payload"]
        .as_object()
        .and_then(|event| event.values().next())
        .cloned()
        .unwrap_or_default();
    assert_eq!(fields["signal_id"], second.as_str());
    // The signal leaves the in-flight map once notified.
    let finished = format!("in_flight.{second}");
    assert!(full.iter().any(|line| {
        line["changes"].as_array().is_some_and(|changes| {
            changes
                .iter()
                .any(|c| c["path"] == finished.as_str() && c["kind"] == "removed")
        })
    }));

    // Human: only what changed, unless --full-state.
    let human = run_replay(&test.url, &user_id, &[]).await;
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains("positions.BTC-USD.size: 0.01 → 0.02"),
        "{human}"
    );
    assert!(human.contains(&format!("{finished}: removed")), "{human}");
    assert!(!human.contains("state:"), "{human}");
    let whole = run_replay(&test.url, &user_id, &["--full-state"]).await;
    let whole = String::from_utf8_lossy(&whole.stdout).into_owned();
    assert_eq!(whole.matches("state:").count(), full.len(), "{whole}");
}
on_both_stores!(replay_shows_what_each_event_changed);
