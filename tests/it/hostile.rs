//! Hostile input over HTTP against the real binary: every case is answered 4xx with the JSON error
//! shape, nothing is a 5xx, the service stays up, and the ledger gains nothing.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::on_both_stores;
use crate::support::alerts::Alert;
use crate::support::service::{create_user, Options, Service};
use crate::support::stores::{Backend, TestStore};

/// One hostile request: how it is sent and the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    expected_status: u16,
    expected_code: Option<&'static str>,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        body: body.into(),
        content_type: "application/json",
        expected_status: status,
        expected_code: Some(code),
    }
}

fn nested(depth: usize) -> String {
    let mut body = String::from(r#"{"symbol":"BTC-USD","side":"buy","size":"1","x":"#);
    body.push_str(&"[".repeat(depth));
    body.push_str(&"]".repeat(depth));
    body.push('}');
    body
}

fn cases() -> Vec<Case> {
    let payload = 400;
    let market = 422;
    let valid = |extra: &str| {
        format!(r#"{{"symbol":"BTC-USD","side":"buy","size":"0.001","id":"h-1"{extra}}}"#)
    };
    let mut cases = vec![
        case("empty body", "", payload, "INVALID_PAYLOAD"),
        case("not json", "buy BTC now", payload, "INVALID_PAYLOAD"),
        case(
            "truncated json",
            r#"{"symbol":"BTC-USD","side":"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "json array",
            r#"[{"symbol":"BTC-USD"}]"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case("json null", "null", payload, "INVALID_PAYLOAD"),
        case("json string", r#""BTC-USD""#, payload, "INVALID_PAYLOAD"),
        case(
            "trailing garbage",
            format!("{} trailing", valid("")),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "invalid utf-8",
            b"{\"symbol\":\"BTC\xff\xfe\",\"side\":\"buy\",\"size\":1}".to_vec(),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "unquoted NaN",
            r#"{"symbol":"BTC-USD","side":"buy","size":NaN}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "empty placeholder",
            r#"{"symbol":"BTC-USD","side":"buy","size":}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "quoted NaN size",
            r#"{"symbol":"BTC-USD","side":"buy","size":"NaN"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "infinite size",
            r#"{"symbol":"BTC-USD","side":"buy","size":"Infinity"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "1e308 size",
            r#"{"symbol":"BTC-USD","side":"buy","size":1e308}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "negative size",
            r#"{"symbol":"BTC-USD","side":"buy","size":-1}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "zero size",
            r#"{"symbol":"BTC-USD","side":"buy","size":"0"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "size as object",
            r#"{"symbol":"BTC-USD","side":"buy","size":{"v":1}}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "size as bool",
            r#"{"symbol":"BTC-USD","side":"buy","size":true}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "unrendered placeholder",
            r#"{"symbol":"BTC-USD","side":"buy","size":"{{strategy.order.contracts}}"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "missing symbol",
            r#"{"side":"buy","size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "missing side",
            r#"{"symbol":"BTC-USD","size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "side as number",
            r#"{"symbol":"BTC-USD","side":1,"size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "unknown side",
            r#"{"symbol":"BTC-USD","side":"hodl","size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "symbol as array",
            r#"{"symbol":["BTC-USD"],"side":"buy","size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "misspelt field",
            valid(r#","sise":"5""#),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "unknown field",
            valid(r#","leverage":"100""#),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "duplicate key",
            r#"{"symbol":"BTC-USD","side":"buy","side":"sell","size":"1"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "two sizes",
            valid(r#","size_usd":"100""#),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "id too long",
            format!(
                r#"{{"symbol":"BTC-USD","side":"buy","size":"1","id":"{}"}}"#,
                "x".repeat(500)
            ),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "id as object",
            r#"{"symbol":"BTC-USD","side":"buy","size":"1","id":{"a":1}}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "limit without price",
            r#"{"symbol":"BTC-USD","side":"buy","size":"1","order_type":"limit"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "percent above 100",
            r#"{"symbol":"BTC-USD","side":"buy","size_percent":"250"}"#,
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "bad timestamp",
            valid(r#","timestamp":"yesterday""#),
            payload,
            "INVALID_PAYLOAD",
        ),
        case("deep nesting", nested(64), payload, "INVALID_PAYLOAD"),
        case(
            "very deep nesting",
            nested(20_000),
            payload,
            "INVALID_PAYLOAD",
        ),
        case(
            "unknown market",
            r#"{"symbol":"XYZUSDT","side":"buy","size":"1"}"#,
            market,
            "INVALID_MARKET",
        ),
        case(
            "cyrillic look-alike",
            r#"{"symbol":"ВТСUSDT","side":"buy","size":"1"}"#,
            market,
            "INVALID_MARKET",
        ),
        case(
            "fullwidth look-alike",
            r#"{"symbol":"ＢＴＣUSDT","side":"buy","size":"1"}"#,
            market,
            "INVALID_MARKET",
        ),
        case(
            "zero-width joiner",
            "{\"symbol\":\"BTC\u{200d}USDT\",\"side\":\"buy\",\"size\":\"1\"}",
            market,
            "INVALID_MARKET",
        ),
        case(
            "non-usd quote",
            r#"{"symbol":"BTC-EUR","side":"buy","size":"1"}"#,
            market,
            "INVALID_MARKET",
        ),
        case(
            "size below the step",
            r#"{"symbol":"BTC-USD","side":"buy","size":"0.00000001"}"#,
            market,
            "INVALID_SIZE",
        ),
        case(
            "huge body",
            format!(
                r#"{{"symbol":"BTC-USD","side":"buy","size":"1","comment":"{}"}}"#,
                "a".repeat(200_000)
            ),
            413,
            "INVALID_BODY",
        ),
    ];
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        cases.push(Case {
            name: "wrong method",
            method,
            body: valid("").into_bytes(),
            content_type: "application/json",
            expected_status: 405,
            expected_code: Some("METHOD_NOT_ALLOWED"),
        });
    }
    cases.push(Case {
        name: "form-encoded body",
        method: "POST",
        body: b"symbol=BTC-USD&side=buy&size=1".to_vec(),
        content_type: "application/x-www-form-urlencoded",
        expected_status: payload,
        expected_code: Some("INVALID_PAYLOAD"),
    });
    cases
}

/// Sends raw bytes over one connection and returns the status and body of the answer.
async fn raw_request(base_url: &str, request: &[u8]) -> (u16, String) {
    let address = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connects");
    stream.write_all(request).await.expect("request written");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn hostile_input_is_refused_with_4xx_and_records_nothing(backend: Backend) {
    let test = TestStore::new(backend).await;
    let user = create_user(&test.url, "target").await;
    let service = Service::start(&test.url, Options::default()).await;
    let store = test.open().await;
    let events_before = store
        .events()
        .load_account(&user.user_id)
        .await
        .expect("loads")
        .len();
    let path = format!("/api/webhook?token={}", user.webhook_token);
    let mut tried = 0;
    let mut accepted = 0;
    let mut server_errors = 0;
    let mut wrong = Vec::new();
    for case in cases() {
        let mut request = format!(
            "{} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            case.method,
            case.content_type,
            case.body.len()
        )
        .into_bytes();
        request.extend_from_slice(&case.body);
        let (status, body) = raw_request(&service.base_url, &request).await;
        tried += 1;
        accepted += usize::from(status == 200);
        server_errors += usize::from(status >= 500 || status == 0);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let shaped = json["error"].is_string()
            && json["timestamp"].is_string()
            && case.expected_code.is_none_or(|code| json["code"] == code);
        if status != case.expected_status || !shaped {
            wrong.push(format!("{} ({}): {status} {body}", case.name, case.method));
        }
    }
    // Oversized headers: refused by the HTTP server before any handler runs.
    let huge_header = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "j".repeat(200_000)
    );
    let (status, _) = raw_request(&service.base_url, huge_header.as_bytes()).await;
    tried += 1;
    server_errors += usize::from(status >= 500);
    if !(400..500).contains(&status) && status != 0 {
        wrong.push(format!("oversized header: {status}"));
    }
    println!(
        "hostile input ({backend:?}): {tried} requests, accepted {accepted}, 5xx {server_errors}"
    );
    assert!(
        wrong.is_empty(),
        "cases answered wrongly:\n{}",
        wrong.join("\n")
    );
    assert_eq!((accepted, server_errors), (0, 0));

    let (status, _) = service
        .post_signal(
            &user.webhook_token,
            &Alert::btc_usd("after-the-storm").json(),
        )
        .await;
    assert_eq!(status, 200, "the service still takes a good alert");
    let events_after = store
        .events()
        .load_account(&user.user_id)
        .await
        .expect("loads");
    let added: Vec<&str> = events_after[events_before..]
        .iter()
        .map(|event| event.event_type.as_str())
        .take(2)
        .collect();
    assert_eq!(
        added,
        ["SignalReceived", "RiskApproved"],
        "nothing but the good alert reached the ledger"
    );
    service.stop().await;
}
on_both_stores!(hostile_input_is_refused_with_4xx_and_records_nothing);
