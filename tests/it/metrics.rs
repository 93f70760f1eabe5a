//! Black-box: `/metrics` on the real binary counts what a trader and an attacker did — signals by
//! outcome, refusals by code (the guard's 429s among them), one ack sample per webhook request, a
//! signal-to-fill sample per fill — and shows the readers caught up; an unreachable venue and a
//! refused Telegram message are counted by venue, channel and kind. Parsed as Prometheus' text
//! format, sample by sample.

use std::collections::BTreeMap;

use aggregates::SERVICE_OWNER_ID;
use ledgerhook::exchange::PAPER_UNAVAILABLE_VARIABLE;
use serde_json::json;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::eventually;
use crate::support::fake_venues::FakeVenues;
use crate::support::service::{create_user, credentials_set, operator_cli, Options, Service};
use crate::support::stores::{Backend, TestStore};

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a scrape; comments (`# HELP`, `# TYPE`) and blank lines skipped.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("unreadable sample: {line}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"quoted\""` into its pairs (escapes `\\`, `\"`, `\n`).
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (at, '"') => break at,
                (_, other) => value.push(other),
            }
        };
        labels.insert(name.to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

struct Scrape(Vec<Sample>);

impl Scrape {
    async fn of(service: &Service) -> Self {
        Self(parse(&service.metrics().await))
    }

    /// The sum of `name`'s samples whose labels include every pair of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }

    fn matching<'s>(
        &'s self,
        name: &'s str,
        labels: &'s [(&'s str, &'s str)],
    ) -> impl Iterator<Item = &'s Sample> + 's {
        self.0.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
    }
}

const SIGNALS: &str = "ledgerhook_signals_total";
const REFUSED: &str = "ledgerhook_webhook_refused_total";
const ACK_COUNT: &str = "ledgerhook_webhook_ack_seconds_count";

/// Alice sends three alerts (one by the two-factor scheme) and one again, then one past her rate
/// limit; halted Bob sends one; a stranger guesses a token until locked out. Every answer is
/// counted as it was given, the three fills each leave a signal-to-fill sample, and the readers
/// end caught up.
async fn metrics_count_what_was_sent_and_what_filled(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    operator_cli(&test.url, &["halt", &bob.user_id, "--reason", "test"]).await;
    // Four requests an hour: the window does not refill while the test runs.
    let service = Service::start(
        &test.url,
        Options {
            args: [
                "--rate-limit-requests",
                "4",
                "--rate-limit-window-seconds",
                "3600",
            ]
            .map(str::to_owned)
            .to_vec(),
            ..Options::default()
        },
    )
    .await;

    let mut sent = 0;
    for (id, expected) in [
        ("a-1", "accepted"),
        ("a-2", "accepted"),
        ("a-1", "duplicate"),
    ] {
        let (status, body) = service
            .post_signal(&alice.webhook_token, &Alert::btc_usd(id).json())
            .await;
        sent += 1;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(expected)),
            "{body}"
        );
    }
    let two_factor = Alert::btc_usd("a-3").secret(&alice.webhook_secret).json();
    let (status, body) = service
        .post_two_factor(&alice.webhook_uuid, &two_factor)
        .await;
    sent += 1;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    let (status, body) = service
        .post_signal(&alice.webhook_token, &Alert::btc_usd("a-4").json())
        .await;
    sent += 1;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    let (status, body) = service
        .post_signal(&bob.webhook_token, &Alert::btc_usd("b-1").json())
        .await;
    sent += 1;
    assert_eq!(
        (status, body["reason"].as_str()),
        (200, Some("halted")),
        "{body}"
    );
    let guessed = "ab".repeat(32);
    for _ in 0..5 {
        let (status, body) = service
            .post_signal(&guessed, &Alert::btc_usd("x").json())
            .await;
        sent += 1;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("INVALID_TOKEN")),
            "{body}"
        );
    }
    let (status, body) = service
        .post_signal(&guessed, &Alert::btc_usd("x").json())
        .await;
    sent += 1;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("LOCKED_OUT")),
        "{body}"
    );

    // The saga records the fills after the answers: wait for them as a scraper would.
    let scrape = eventually("three fills counted", || async {
        let scrape = Scrape::of(&service).await;
        let filled = scrape.sum("ledgerhook_executions_total", &[("outcome", "filled")]);
        (filled == 3.0).then_some(scrape)
    })
    .await;

    assert_eq!(scrape.sum(SIGNALS, &[("outcome", "accepted")]), 3.0);
    assert_eq!(scrape.sum(SIGNALS, &[("outcome", "duplicate")]), 1.0);
    assert_eq!(
        scrape.sum(SIGNALS, &[("outcome", "rejected"), ("reason", "halted")]),
        1.0
    );
    assert_eq!(scrape.sum(SIGNALS, &[("outcome", "rejected")]), 1.0);
    let refused = |code| scrape.sum(REFUSED, &[("scheme", "token"), ("code", code)]);
    assert_eq!(refused("INVALID_TOKEN"), 5.0);
    assert_eq!(refused("LOCKED_OUT"), 1.0);
    assert_eq!(refused("RATE_LIMITED"), 1.0);
    assert_eq!(scrape.sum(REFUSED, &[]), 7.0, "nothing else was refused");

    assert_eq!(
        scrape.sum(ACK_COUNT, &[]),
        f64::from(sent),
        "one sample per request"
    );
    assert_eq!(
        scrape.sum(ACK_COUNT, &[("scheme", "token"), ("status_class", "2xx")]),
        4.0
    );
    assert_eq!(
        scrape.sum(
            ACK_COUNT,
            &[("scheme", "two_factor"), ("status_class", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum(ACK_COUNT, &[("scheme", "token"), ("status_class", "4xx")]),
        7.0
    );
    let inf_bucket = scrape.sum("ledgerhook_webhook_ack_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(inf_bucket, f64::from(sent), "a histogram, with buckets");

    assert_eq!(
        scrape.sum("ledgerhook_signal_to_fill_seconds_count", &[]),
        3.0,
        "one sample per fill"
    );
    assert!(scrape.sum("ledgerhook_signal_to_fill_seconds_sum", &[]) > 0.0);
    assert_eq!(scrape.sum("ledgerhook_executions_total", &[]), 3.0);

    assert!(scrape.sum("ledgerhook_db_pool_max_connections", &[]) >= 1.0);
    assert!(
        scrape
            .matching("ledgerhook_credential_queries_total", &[])
            .count()
            == 1,
        "the credential query counter is kept"
    );
    // No label carries a credential or a user.
    for sample in &scrape.0 {
        for value in sample.labels.values() {
            for secret in [
                &alice.webhook_token,
                &alice.webhook_uuid,
                &alice.user_id,
                &bob.user_id,
                &guessed,
            ] {
                assert!(!value.contains(secret.as_str()), "{sample:?}");
            }
        }
    }

    // Every reader of this instance catches up with the log.
    eventually("every reader caught up", || async {
        let scrape = Scrape::of(&service).await;
        let lag: BTreeMap<String, f64> = scrape
            .matching("ledgerhook_reader_lag_events", &[])
            .filter_map(|sample| Some((sample.labels.get("reader")?.clone(), sample.value)))
            .collect();
        let readers: Vec<&str> = lag.keys().map(String::as_str).collect();
        let running = scrape.sum("ledgerhook_reader_running", &[]);
        (readers == ["audit", "execution", "projections"]
            && running == 3.0
            && lag.values().all(|lag| *lag == 0.0))
        .then_some(())
    })
    .await;
    service.stop().await;
}
on_both_stores!(metrics_count_what_was_sent_and_what_filled);

/// With its venue unreachable, every order fails: each failed call is counted by venue,
/// operation and kind, and each signal's outcome as `failed`, with no fill sample.
async fn an_unreachable_venue_is_counted_by_venue_and_kind(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "olga").await;
    let service = Service::start(
        &test.url,
        Options {
            env: vec![(PAPER_UNAVAILABLE_VARIABLE.to_owned(), "1".to_owned())],
            ..Options::default()
        },
    )
    .await;
    for n in 0..3 {
        let (status, body) = service
            .post_signal(
                &user.webhook_token,
                &Alert::btc_usd(format!("down-{n}")).json(),
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{body}"
        );
    }
    let scrape = eventually("three failed executions counted", || async {
        let scrape = Scrape::of(&service).await;
        let failed = scrape.sum("ledgerhook_executions_total", &[("outcome", "failed")]);
        (failed == 3.0).then_some(scrape)
    })
    .await;
    // Before each try the venue is asked whether it has the order: that lookup is what fails.
    let lookups = scrape.sum(
        "ledgerhook_exchange_errors_total",
        &[
            ("venue", "paper"),
            ("operation", "find_order"),
            ("kind", "unavailable"),
        ],
    );
    assert!(lookups >= 3.0, "{lookups}");
    assert_eq!(
        scrape.sum("ledgerhook_exchange_errors_total", &[("venue", "dydx")]),
        0.0
    );
    assert_eq!(
        scrape.sum("ledgerhook_executions_total", &[("outcome", "filled")]),
        0.0
    );
    assert_eq!(
        scrape.sum("ledgerhook_signal_to_fill_seconds_count", &[]),
        0.0
    );
    service.stop().await;
}
on_both_stores!(an_unreachable_venue_is_counted_by_venue_and_kind);

/// A chat Telegram does not know: the fill's message fails for good, counted once by channel and
/// kind; the chat id and the bot token appear nowhere in the scrape.
async fn a_refused_notification_is_counted_by_channel_and_kind(backend: Backend) {
    const TOKEN: &str = "7000000003:AAH-metrics-bot-token-do-not-leak-Zx9c";
    const CHAT: &str = "-100777";
    let fake = FakeVenues::start().await;
    fake.telegram_faults(json!({ "reject_chat_ids": [CHAT] }))
        .await;
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "tina").await;
    credentials_set(&test.url, SERVICE_OWNER_ID, "telegram_bot_token", TOKEN).await;
    credentials_set(&test.url, &user.user_id, "telegram_chat_id", CHAT).await;
    let service = Service::start(
        &test.url,
        Options {
            args: vec!["--telegram-api-url".to_owned(), fake.telegram_url.clone()],
            ..Options::default()
        },
    )
    .await;
    let (status, body) = service
        .post_signal(&user.webhook_token, &Alert::btc_usd("tg-1").json())
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    let text = eventually("the refused notification counted", || async {
        let text = service
            .client()
            .get(format!("{}/metrics", service.base_url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let errors = Scrape(parse(&text)).sum(
            "ledgerhook_notification_errors_total",
            &[("channel", "telegram"), ("kind", "undeliverable")],
        );
        (errors == 1.0).then_some(text)
    })
    .await;
    assert!(!text.contains(CHAT) && !text.contains(TOKEN), "{text}");
    assert_eq!(
        Scrape(parse(&text)).sum("ledgerhook_executions_total", &[("outcome", "filled")]),
        1.0,
        "the trade is untouched"
    );
    service.stop().await;
}
on_both_stores!(a_refused_notification_is_counted_by_channel_and_kind);

#[test]
fn a_sample_line_is_read_with_its_labels() {
    let sample = parse_line(r#"m_bucket{a="x",le="+Inf",q="say \"hi\""} 3"#).expect("parses");
    assert_eq!(sample.name, "m_bucket");
    assert_eq!(sample.value, 3.0);
    assert_eq!(sample.labels["a"], "x");
    assert_eq!(sample.labels["le"], "+Inf");
    assert_eq!(sample.labels["q"], "say \"hi\"");
    assert_eq!(
        parse_line("plain 1.5").map(|sample| sample.value),
        Some(1.5)
    );
}
