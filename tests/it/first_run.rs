//! The README's first command on a fresh machine: `ledgerhook` with no settings at all makes the
//! embedded store and a demo user, prints a webhook URL that takes the alert it suggests, stops
//! cleanly on SIGTERM, and prints the same URL again after a restart (the demo user is made once).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::service::BINARY;

/// What the service printed before it was ready: its address, then the demo's webhook URL.
struct FirstRun {
    child: Child,
    /// Kept open so the service never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
    webhook_url: String,
    printed: Vec<String>,
}

/// `ledgerhook` in `dir` as a newcomer runs it: no environment but `PATH` (and the coverage
/// profile's path when one is being written), so nothing of the test's own settings leaks in.
/// Only the listening address is set: another test may hold the default port.
async fn first_run(dir: &Path) -> FirstRun {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LEDGERHOOK_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
        command.env("LLVM_PROFILE_FILE", profile);
    }
    let mut child = command.spawn().expect("the ledgerhook binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    let webhook_url = tokio::time::timeout(Duration::from_secs(60), async {
        let mut url_follows = false;
        while let Some(line) = stdout.next_line().await.expect("stdout readable") {
            printed.push(line.clone());
            if url_follows {
                return line.trim().to_owned();
            }
            url_follows = line.ends_with("Its webhook URL:");
        }
        panic!("ledgerhook ended without printing a webhook URL: {printed:?}")
    })
    .await
    .expect("the webhook URL is printed within 60 s");
    FirstRun {
        child,
        _stdout: stdout,
        webhook_url,
        printed,
    }
}

impl FirstRun {
    async fn stop(mut self) {
        assert!(self.child.id().is_some(), "still running until stopped");
        crate::support::service::stop_gracefully(&mut self.child).await;
    }
}

/// The URL without its scheme and address.
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").expect("an http URL");
    &rest[rest.find('/').expect("a path")..]
}

#[tokio::test]
async fn the_first_command_prints_a_webhook_url_that_takes_the_suggested_alert() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let run = first_run(dir.path()).await;
    assert!(
        run.printed[0].starts_with("listening on http://127.0.0.1:"),
        "{:?}",
        run.printed
    );
    // The alert the service suggests, sent where it says.
    let response = reqwest::Client::new()
        .post(&run.webhook_url)
        .body(r#"{"symbol":"BTCUSDT.P","side":"buy","size":"0.01","id":"demo-1"}"#)
        .send()
        .await
        .expect("the webhook answers");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("a JSON answer");
    assert_eq!(answer["status"], "accepted", "{answer}");
    let first_url = run.webhook_url.clone();
    run.stop().await;

    // Made once: the same URL after a restart (on the port the OS gave this time), and the store
    // and the vault's key stay put.
    let again = first_run(dir.path()).await;
    assert_eq!(path_of(&again.webhook_url), path_of(&first_url));
    assert!(dir.path().join("data/ledgerhook.db").exists());
    assert!(dir.path().join("data/vault.keys").exists());
    again.stop().await;
}
