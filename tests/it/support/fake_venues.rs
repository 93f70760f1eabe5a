//! The `fake-venues` binary on loopback, port 0: the test learns its address from the
//! `telegram http://ADDR` line it prints, and drives its faults over HTTP.

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

impl FakeVenues {
    pub async fn start() -> Self {
        let mut child = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("fake-venues starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let telegram_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("stdout readable") {
                if let Some(url) = line.strip_prefix("telegram ") {
                    return url.to_owned();
                }
            }
            panic!("fake-venues ended without printing its telegram address")
        })
        .await
        .expect("fake-venues prints its address within 30 s");
        Self {
            telegram_url,
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
