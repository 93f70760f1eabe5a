//! The `fake-venues` binary on loopback, port 0: the test learns its addresses from the lines it
//! prints (`indexer`, `node`, `telegram`), and drives its faults over HTTP.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BINARY: &str = env!("CARGO_BIN_EXE_fake-venues");

pub struct FakeVenues {
    pub telegram_url: String,
    http: reqwest::Client,
    _child: Child,
}

/// Where a started `fake-venues` serves, as it printed.
pub struct Addresses {
    pub indexer: String,
    pub node: String,
    pub telegram: String,
}

/// Starts `fake-venues` on free loopback ports with `extra_args` (e.g. `--block-ms 100`) and reads
/// the addresses it prints. The process dies with the returned `Child`.
pub async fn spawn(extra_args: &[&str]) -> (Child, Addresses) {
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("fake-venues starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addresses = tokio::time::timeout(Duration::from_secs(30), async {
        let (mut indexer, mut node) = (None, None);
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            if let Some(url) = line.strip_prefix("indexer ") {
                indexer = Some(url.to_owned());
            } else if let Some(url) = line.strip_prefix("node ") {
                node = Some(url.to_owned());
            } else if let Some(url) = line.strip_prefix("telegram ") {
                return Addresses {
                    indexer: indexer.expect("the indexer line comes before telegram's"),
                    node: node.expect("the node line comes before telegram's"),
                    telegram: url.to_owned(),
                };
            }
        }
        panic!("fake-venues ended without printing its addresses")
    })
    .await
    .expect("fake-venues prints its addresses within 30 s");
    (child, addresses)
}

/// What the fake node received (`GET /_fake/orders`): every order, and the sends per client id.
pub async fn received_orders(http: &reqwest::Client, indexer: &str) -> Value {
    http.get(format!("{indexer}/_fake/orders"))
        .send()
        .await
        .expect("orders read")
        .json()
        .await
        .expect("orders are JSON")
}

/// Sets the fake dYdX's faults (`POST /_fake/faults`); `{}` lifts them all.
pub async fn set_faults(http: &reqwest::Client, indexer: &str, faults: &Value) {
    let response = http
        .post(format!("{indexer}/_fake/faults"))
        .json(faults)
        .send()
        .await
        .expect("faults set");
    assert!(response.status().is_success(), "faults refused: {faults}");
}

impl FakeVenues {
    pub async fn start() -> Self {
        let (child, addresses) = spawn(&[]).await;
        Self {
            telegram_url: addresses.telegram,
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// Replaces the Telegram fake's faults (`{}` clears them).
    pub async fn telegram_faults(&self, faults: Value) {
        let response = self
            .http
            .post(format!("{}/_fake/faults", self.telegram_url))
            .json(&serde_json::json!({ "telegram": faults }))
            .send()
            .await
            .expect("faults set");
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Every message the Telegram fake accepted, and how many requests it got in all.
    pub async fn telegram_messages(&self) -> (Vec<Value>, u64) {
        let body: Value = self
            .http
            .get(format!("{}/_fake/messages", self.telegram_url))
            .send()
            .await
            .expect("messages read")
            .json()
            .await
            .expect("messages are JSON");
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        (messages, body["requests"].as_u64().unwrap_or_default())
    }

    /// The fake's messages as raw text, to check what it shows of a token.
    pub async fn telegram_messages_text(&self) -> String {
        self.http
            .get(format!("{}/_fake/messages", self.telegram_url))
            .send()
            .await
            .expect("messages read")
            .text()
            .await
            .expect("text")
    }
}
