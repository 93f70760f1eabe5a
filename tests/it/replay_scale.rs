//! Black-box: replaying a long account with the real binary, on both stores. An account with
//! 10,000 events (about 1,700 signals inside one idempotency window, so the account remembers
//! every key) replays with output ten times that of a 1,000-event account, give or take: each line
//! carries what its event changed, the whole state only with `--full-state`, and the idempotency
//! memory is a count and the key the event touched, never the keys themselves.
//!
//! The history is appended straight to the store (as the service would have written it) rather
//! than sent as 1,700 alerts. A replay whose output outgrows the linear bound is stopped at that
//! bound, so the quadratic replay this replaced fails in seconds instead of writing gigabytes.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::on_both_stores;
use crate::support::busy_account::seed;
use crate::support::service::BINARY;
use crate::support::stores::{Backend, TestStore};

const SMALL: usize = 1_000;
const LARGE: usize = 10_000;
/// Ten times the events may write at most this many times the bytes: linear, with room for the
/// longer numbers of a longer history. A quadratic replay writes ~100 times.
const LINEAR_FACTOR: usize = 15;
/// Plenty for the small account, whatever the replay does.
const UNBOUNDED: usize = 256 << 20;

/// The stdout of `ledgerhook replay USER ARGS...`, which must succeed. Fails as soon as the
/// output passes `limit` bytes, stopping the replay there.
async fn replay_output(database_url: &str, user_id: &str, args: &[&str], limit: usize) -> String {
    let mut child = Command::new(BINARY)
        .arg("replay")
        .arg(user_id)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ledgerhook binary runs");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut output = Vec::new();
    let mut chunk = vec![0; 1 << 16];
    loop {
        let read = stdout.read(&mut chunk).await.expect("stdout reads");
        if read == 0 {
            break;
        }
        output.extend_from_slice(&chunk[..read]);
        if output.len() > limit {
            let _ = child.kill().await;
            panic!(
                "replay {args:?} of {user_id} wrote more than {limit} bytes: its output grows \
                 faster than its history"
            );
        }
    }
    let finished = child.wait_with_output().await.expect("replay ends");
    assert!(
        finished.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    String::from_utf8(output).expect("UTF-8 output")
}

fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .map(|line| serde_json::from_str(line).expect("replay --json prints JSON lines"))
        .collect()
}

fn changes(line: &Value) -> &Vec<Value> {
    line["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("every line has its changes: {line}"))
}

async fn replay_output_grows_linearly_with_the_history(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.open().await;
    let small_signals = seed(&store, "small-account", SMALL).await;
    let large_signals = seed(&store, "large-account", LARGE).await;
    let url = test.url.as_str();

    for args in [
        &["--json"][..],
        &[][..],
        &["--json", "--full-state"][..],
        &["--full-state"][..],
    ] {
        let small = replay_output(url, "small-account", args, UNBOUNDED).await;
        let bound = LINEAR_FACTOR * small.len();
        let large = replay_output(url, "large-account", args, bound).await;
        for (output, events) in [(&small, SMALL), (&large, LARGE)] {
            // The human form prints two or more lines an event.
            let lines = output.lines().count();
            assert!(
                lines >= events,
                "{args:?}: {lines} lines for {events} events"
            );
            assert!(
                !output.contains("seen_keys") && !output.contains("key_expiry"),
                "{args:?}: the idempotency memory is summarised, never dumped"
            );
        }
        if args.is_empty() {
            assert!(
                large.contains(&format!(
                    "idempotency.remembered: {} → {large_signals}",
                    large_signals - 1
                )),
                "the human form names the count of keys the last signal left"
            );
        }
    }

    // --json: `changes` on every line, `state` only with --full-state.
    let lines = json_lines(&replay_output(url, "large-account", &["--json"], UNBOUNDED).await);
    assert_eq!(lines.len(), LARGE);
    assert!(lines.iter().all(|line| line.get("state").is_none()));
    let received: Vec<&Value> = lines
        .iter()
        .filter(|line| line["event_type"] == "SignalReceived")
        .collect();
    assert_eq!(received.len(), large_signals);
    // Each signal adds its one key to the memory: the count and that key, nothing else of it.
    for (n, line) in received.iter().enumerate() {
        let idempotency: Vec<&Value> = changes(line)
            .iter()
            .filter(|change| {
                change["path"]
                    .as_str()
                    .is_some_and(|path| path.starts_with("idempotency"))
            })
            .collect();
        let key = format!("id:alert-{n}");
        assert_eq!(
            idempotency,
            [
                &json!({"path": "idempotency.remembered", "kind": "changed", "before": n, "after": n + 1}),
                &json!({
                    "path": format!("idempotency.touched.{key}"),
                    "kind": "added",
                    "before": null,
                    "after": {
                        "signal_id": format!("sig-{n}"),
                        "expires_at": line["payload"]["SignalReceived"]["key_expires_at"],
                    },
                }),
            ],
            "{line}"
        );
    }
    // The other events touch no key.
    assert!(lines
        .iter()
        .filter(|line| line["event_type"] != "SignalReceived")
        .flat_map(changes)
        .all(|change| !change["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("idempotency")));

    // --full-state: the state after each event, with the memory as a count and the touched key.
    let states = json_lines(
        &replay_output(url, "large-account", &["--json", "--full-state"], UNBOUNDED).await,
    );
    assert_eq!(states.len(), LARGE);
    let last_received = states
        .iter()
        .rposition(|line| line["event_type"] == "SignalReceived")
        .expect("a signal");
    let n = large_signals - 1;
    assert_eq!(
        states[last_received]["state"]["idempotency"],
        json!({
            "remembered": large_signals,
            "touched": {
                format!("id:alert-{n}"): {
                    "signal_id": format!("sig-{n}"),
                    "expires_at": states[last_received]["payload"]["SignalReceived"]["key_expires_at"],
                },
            },
        })
    );
    let last = states.last().expect("events");
    assert_eq!(
        last["state"]["idempotency"],
        json!({"remembered": large_signals, "touched": {}}),
        "{last}"
    );
    assert_eq!(last["state"]["signals_received"], large_signals);
    assert!(
        small_signals * 9 < large_signals,
        "{small_signals} {large_signals}"
    );
}
on_both_stores!(replay_output_grows_linearly_with_the_history);
