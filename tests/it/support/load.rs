//! Load for the fault suite: a few concurrent clients sending alerts to several users' webhooks as
//! fast as the service answers, remembering every alert answered 200 (the signals the service
//! promised to keep) and counting every other answer.
//!
//! The service's address can change under the load (a restarted instance binds a new port):
//! `Load::aim` points the clients at the new one. While nothing answers, a client pauses briefly
//! before its next try, so a dead service is not spun against.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::alerts::Alert;
use super::service::User;

/// An alert the service answered 200: what it promised is in the ledger.
#[derive(Debug, Clone)]
pub struct Acked {
    pub user_id: String,
    pub signal_id: String,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: String,
    pub at: Instant,
}

/// Every answer the load got, by kind.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub acked: Vec<Acked>,
    /// Answers other than 200, by status code.
    pub refused: BTreeMap<u16, usize>,
    /// Answers that break the rules under any fault: a 5xx other than 503, a 503 without a JSON
    /// error body, a 200 without a signal id. Each with its body.
    pub wrong: Vec<String>,
    /// Requests that got no answer (the service down or killed mid-request).
    pub unanswered: usize,
}

impl Tally {
    /// When the first alert after `since` was acknowledged.
    pub fn first_ack_after(&self, since: Instant) -> Option<Instant> {
        self.acked
            .iter()
            .map(|acked| acked.at)
            .filter(|at| *at > since)
            .min()
    }
}

pub struct Load {
    target: watch::Sender<String>,
    stop: watch::Sender<bool>,
    tally: Arc<Mutex<Tally>>,
    clients: JoinSet<()>,
}

impl Load {
    /// `clients` concurrent senders, each going round `users`, to the service at `base_url`.
    /// `prefix` keeps alert ids apart between loads on one ledger.
    pub fn start(base_url: &str, users: &[User], clients: usize, prefix: &str) -> Self {
        let (target, _) = watch::channel(base_url.to_owned());
        let (stop, _) = watch::channel(false);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            let sender = Sender {
                http: http.clone(),
                target: target.subscribe(),
                stop: stop.subscribe(),
                tally: tally.clone(),
                users: users.to_vec(),
                prefix: format!("{prefix}-{client}"),
            };
            tasks.spawn(sender.run(client));
        }
        Self {
            target,
            stop,
            tally,
            clients: tasks,
        }
    }

    /// Sends the load to a service that now answers at `base_url`.
    pub fn aim(&self, base_url: &str) {
        self.target.send_replace(base_url.to_owned());
    }

    /// What the load saw so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().expect("the tally's lock").clone()
    }

    /// How many alerts were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.tally.lock().expect("the tally's lock").acked.len()
    }

    /// Stops the clients, lets the requests in flight finish, and returns everything seen.
    pub async fn stop(mut self) -> Tally {
        self.stop.send_replace(true);
        while self.clients.join_next().await.is_some() {}
        self.tally()
    }
}

struct Sender {
    http: reqwest::Client,
    target: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
    tally: Arc<Mutex<Tally>>,
    users: Vec<User>,
    prefix: String,
}

impl Sender {
    async fn run(self, client: usize) {
        let mut n: usize = 0;
        while !*self.stop.borrow() {
            // Clients start on different users; each alert goes to the next one.
            let user = &self.users[(client + n) % self.users.len()];
            // Buys and sells in turn keep every position small, under the risk limits.
            let side = if (n / self.users.len()) % 2 == 0 {
                "buy"
            } else {
                "sell"
            };
            let alert_id = format!("{}-{n}", self.prefix);
            n += 1;
            let body = Alert::new(alert_id).side(side).json();
            let url = format!(
                "{}/api/webhook?token={}",
                self.target.borrow().as_str(),
                user.webhook_token
            );
            let answered = self
                .http
                .post(url)
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await;
            let response = match answered {
                Ok(response) => response,
                Err(_) => {
                    self.tally.lock().expect("the tally's lock").unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let mut tally = self.tally.lock().expect("the tally's lock");
            match status {
                200 => match json["signal_id"].as_str() {
                    Some(signal_id) => tally.acked.push(Acked {
                        user_id: user.user_id.clone(),
                        signal_id: signal_id.to_owned(),
                        status: json["status"].as_str().unwrap_or_default().to_owned(),
                        at: Instant::now(),
                    }),
                    None => tally.wrong.push(format!("200 without a signal id: {text}")),
                },
                503 if json["code"].is_string() && json["error"].is_string() => {
                    *tally.refused.entry(status).or_default() += 1;
                }
                _ if status >= 500 => tally.wrong.push(format!("{status}: {text}")),
                _ => *tally.refused.entry(status).or_default() += 1,
            }
        }
    }
}
