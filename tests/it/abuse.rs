//! Black-box: the webhook's abuse controls on the real binary — the rate limit per user, the
//! lockout after repeated bad credentials, the IP allowlist behind trusted proxies, and the
//! server's header and body limits.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ledgerhook::http::server::HEADER_READ_TIMEOUT;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::answer::Answer;
use crate::support::service::{create_user, Options, Service};
use crate::support::stores::{Backend, TestStore};

async fn post(service: &Service, token: &str, forwarded_for: Option<&str>, body: &str) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/webhook?token={token}", service.base_url))
        .timeout(Duration::from_secs(10))
        .body(body.to_owned());
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    Answer::of(request).await
}

fn assert_error_shape(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["code"], code, "{}", answer.json);
    assert!(
        answer.json["error"].is_string() && answer.json["timestamp"].is_string(),
        "{}",
        answer.json
    );
}

fn flags(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|flag| flag.to_string()).collect()
}

/// Ten alerts a window pass, the eleventh is refused with Retry-After and never reaches the
/// ledger, and another user's quota is untouched.
async fn the_eleventh_request_in_a_window_is_refused_for_that_user_only(backend: Backend) {
    let test = TestStore::new(backend).await;
    let alice = create_user(&test.url, "alice").await;
    let bob = create_user(&test.url, "bob").await;
    // An hour's window: the quota does not refill while the test runs, however slow the machine.
    let service = Service::start(
        &test.url,
        Options {
            no_execution: true,
            args: flags(&[
                "--rate-limit-requests",
                "10",
                "--rate-limit-window-seconds",
                "3600",
            ]),
            ..Options::default()
        },
    )
    .await;
    for n in 0..10 {
        let answer = post(
            &service,
            &alice.webhook_token,
            None,
            &Alert::new(format!("a-{n}")).json(),
        )
        .await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.json);
        assert_eq!(answer.retry_after_seconds(), None);
    }
    let refused = post(
        &service,
        &alice.webhook_token,
        None,
        &Alert::new("a-10").json(),
    )
    .await;
    assert_error_shape(&refused, 429, "RATE_LIMITED");
    let retry_after = refused.retry_after_seconds().expect("a Retry-After header");
    assert!(
        (1..=360).contains(&retry_after),
        "one request every 3600/10 s: {retry_after}"
    );
    let answer = post(
        &service,
        &bob.webhook_token,
        None,
        &Alert::new("b-0").json(),
    )
    .await;
    assert_eq!(answer.status, 200, "bob has his own quota: {}", answer.json);
    service.stop().await;

    let store = test.open().await;
    let received = store
        .events()
        .load_account(&alice.user_id)
        .await
        .expect("the account loads")
        .into_iter()
        .filter(|event| event.event_type == "SignalReceived")
        .count();
    assert_eq!(received, 10, "the refused alert is not in the ledger");
}
on_both_stores!(the_eleventh_request_in_a_window_is_refused_for_that_user_only);

/// Five failures with one token lock it out (429 with Retry-After), without locking anyone else.
async fn repeated_bad_tokens_lock_out(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "carol").await;
    let service = Service::start(&test.url, Options::default()).await;
    // Well-formed but unknown: it costs a store lookup each time until locked.
    let guessed = "ab".repeat(32);
    for n in 0..5 {
        let answer = post(&service, &guessed, None, &Alert::new("x").json()).await;
        assert_error_shape(&answer, 401, "INVALID_TOKEN");
        assert_eq!(answer.retry_after_seconds(), None, "attempt {n}");
    }
    let locked = post(&service, &guessed, None, &Alert::new("x").json()).await;
    assert_error_shape(&locked, 429, "LOCKED_OUT");
    let retry_after = locked.retry_after_seconds().expect("a Retry-After header");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        !locked.json.to_string().contains(&guessed),
        "no secret echoed"
    );

    let answer = post(
        &service,
        &user.webhook_token,
        None,
        &Alert::new("c-1").json(),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "another credential is unaffected: {}",
        answer.json
    );
    service.stop().await;
}
on_both_stores!(repeated_bad_tokens_lock_out);

/// With `--allowed-ips tradingview`, loopback is refused and X-Forwarded-For is believed only
/// from a trusted proxy; health checks are never refused.
async fn the_allowlist_refuses_others_and_believes_only_trusted_proxies(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "erin").await;
    let token = user.webhook_token.as_str();

    // No trusted proxy: the TCP peer (127.0.0.1) is the client, whatever the header claims.
    let service = Service::start(
        &test.url,
        Options {
            no_execution: true,
            args: flags(&["--allowed-ips", "tradingview"]),
            ..Options::default()
        },
    )
    .await;
    let answer = post(&service, token, None, &Alert::new("e-1").json()).await;
    assert_error_shape(&answer, 403, "IP_NOT_ALLOWED");
    let spoofed = post(
        &service,
        token,
        Some("52.89.214.238"),
        &Alert::new("e-2").json(),
    )
    .await;
    assert_error_shape(&spoofed, 403, "IP_NOT_ALLOWED");
    let health = reqwest::get(format!("{}/readyz", service.base_url))
        .await
        .expect("readyz answers");
    assert_eq!(
        health.status().as_u16(),
        200,
        "health checks are not allowlisted"
    );
    service.stop().await;

    // Loopback is a trusted proxy: the rightmost untrusted hop is the client.
    let service = Service::start(
        &test.url,
        Options {
            no_execution: true,
            args: flags(&[
                "--allowed-ips",
                "tradingview",
                "--trusted-proxies",
                "127.0.0.1/32",
            ]),
            ..Options::default()
        },
    )
    .await;
    let cases = [
        (Some("52.89.214.238"), 200),
        (Some("34.212.75.30, 127.0.0.1"), 200),
        // The caller wrote a TradingView address; the proxy appended the caller's real one.
        (Some("52.89.214.238, 198.51.100.7"), 403),
        (Some("2001:db8::1"), 403),
        (Some("not an address"), 403),
        (None, 403),
    ];
    for (n, (forwarded_for, status)) in cases.into_iter().enumerate() {
        let answer = post(
            &service,
            token,
            forwarded_for,
            &Alert::new(format!("f-{n}")).json(),
        )
        .await;
        assert_eq!(answer.status, status, "{forwarded_for:?}: {}", answer.json);
        if status == 403 {
            assert_error_shape(&answer, 403, "IP_NOT_ALLOWED");
        }
    }
    service.stop().await;
}
on_both_stores!(the_allowlist_refuses_others_and_believes_only_trusted_proxies);

/// Headers trickled a line a second are cut off at the header read timeout; oversized headers
/// get 431; a body that stops arriving is answered instead of holding the request open.
async fn slow_and_oversized_requests_are_cut_off(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "frank").await;
    let service = Service::start(&test.url, Options::ingest_only()).await;
    let address = service.base_url.trim_start_matches("http://").to_owned();

    let started = Instant::now();
    let mut slowloris = TcpStream::connect(&address).await.expect("connects");
    slowloris
        .write_all(b"POST /api/webhook HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("the request line is sent");
    let mut line = 0_u32;
    let closed_after = loop {
        let mut buffer = [0_u8; 1024];
        // A read that ends (EOF or reset) means the server hung up; else send one more header.
        match tokio::time::timeout(Duration::from_secs(1), slowloris.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => panic!("no answer is expected to a request whose headers never end"),
            Err(_still_open) => {}
        }
        assert!(
            started.elapsed() < HEADER_READ_TIMEOUT * 3,
            "the slow connection is still open after {:?}",
            started.elapsed()
        );
        line += 1;
        if slowloris
            .write_all(format!("X-Slow-{line}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            break started.elapsed();
        }
    };
    assert!(
        closed_after + Duration::from_secs(1) >= HEADER_READ_TIMEOUT,
        "cut off by the header timeout, not by something else: {closed_after:?}"
    );

    let oversized = reqwest::Client::new()
        .post(format!(
            "{}/api/webhook?token={}",
            service.base_url, user.webhook_token
        ))
        .header("x-padding", "p".repeat(20 * 1024))
        .body(Alert::new("g-1").json())
        .send()
        .await
        .expect("an answer");
    assert_eq!(oversized.status().as_u16(), 431);

    // Content-Length promises 200 bytes; 10 arrive, then nothing.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(&address).await.expect("connects");
    let head = format!(
        "POST /api/webhook?token={} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200\r\n\r\n{{\"symbol\":",
        user.webhook_token
    );
    stalled.write_all(head.as_bytes()).await.expect("sent");
    let answer = read_answer(&mut stalled, Duration::from_secs(20)).await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("INVALID_BODY"),
        "a stalled body is answered: {answer}"
    );
    assert!(
        started.elapsed() < ledgerhook::http::REQUEST_TIMEOUT,
        "by the body read timeout: {:?}",
        started.elapsed()
    );

    let answer = post(
        &service,
        &user.webhook_token,
        None,
        &Alert::new("g-2").json(),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "the service still serves: {}",
        answer.json
    );
    service.stop().await;
}
on_both_stores!(slow_and_oversized_requests_are_cut_off);

/// What the server sent until it hung up, sent an error body, or `limit` passed.
async fn read_answer(stream: &mut TcpStream, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => answer.extend_from_slice(&buffer[..read]),
            _ => break,
        }
        if answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
