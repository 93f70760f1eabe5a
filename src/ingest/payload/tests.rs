use std::str::FromStr;

use chrono::TimeZone;

use super::*;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

fn order(side: Side, size: SizeSpec) -> AlertAction {
    AlertAction::Order { side, size }
}

fn alert(symbol: &str, action: AlertAction) -> Alert {
    Alert {
        symbol: symbol.to_owned(),
        action,
        order_type: AlertOrderType::Market,
        price: None,
        take_profit: None,
        stop_loss: None,
        id: None,
        timestamp: None,
        max_lag_seconds: None,
    }
}

#[test]
fn every_format_parses_to_its_alert() {
    let noon = Utc
        .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("valid time");
    let cases: Vec<(&str, Alert)> = vec![
        // seed 003
        (
            r#"{"symbol":"ETH-PERP","side":"buy","size":"0.5"}"#,
            alert("ETH-PERP", order(Side::Buy, SizeSpec::Base(dec("0.5")))),
        ),
        (
            r#"{"symbol":"ETH-PERP","side":"SELL","size":0.1,"id":"a-1"}"#,
            Alert {
                id: Some("a-1".to_owned()),
                ..alert("ETH-PERP", order(Side::Sell, SizeSpec::Base(dec("0.1"))))
            },
        ),
        (
            r#"{"symbol":"BTCUSDT","side":"buy","size":1,"id":42}"#,
            Alert {
                id: Some("42".to_owned()),
                ..alert("BTCUSDT", order(Side::Buy, SizeSpec::Base(dec("1"))))
            },
        ),
        // seed 000 simple: price and size optional
        (
            r#"{"symbol":"BTCUSDT","side":"long"}"#,
            alert("BTCUSDT", order(Side::Buy, SizeSpec::Default)),
        ),
        (
            r#"{"symbol":"BTCUSDT","side":"short","price":"65000.5"}"#,
            Alert {
                price: Some(dec("65000.5")),
                ..alert("BTCUSDT", order(Side::Sell, SizeSpec::Default))
            },
        ),
        // seed 000 advanced
        (
            r#"{"symbol":"BTCUSDT","side":"buy","order_type":"limit","price":65000,"size":"0.01","take_profit":"68000","stop_loss":63000.5}"#,
            Alert {
                order_type: AlertOrderType::Limit {
                    price: dec("65000"),
                },
                price: Some(dec("65000")),
                take_profit: Some(dec("68000")),
                stop_loss: Some(dec("63000.5")),
                ..alert("BTCUSDT", order(Side::Buy, SizeSpec::Base(dec("0.01"))))
            },
        ),
        (
            r#"{"symbol":"BTCUSDT","side":"buy","order_type":"MARKET","price":65000,"size":1}"#,
            Alert {
                price: Some(dec("65000")),
                ..alert("BTCUSDT", order(Side::Buy, SizeSpec::Base(dec("1"))))
            },
        ),
        // other sizes
        (
            r#"{"symbol":"ETH-USD","side":"sell","size_usd":"250"}"#,
            alert("ETH-USD", order(Side::Sell, SizeSpec::Usd(dec("250")))),
        ),
        (
            r#"{"symbol":"ETH-USD","side":"buy","size_percent":100}"#,
            alert(
                "ETH-USD",
                order(Side::Buy, SizeSpec::PercentOfEquity(dec("100"))),
            ),
        ),
        // target forms
        (
            r#"{"symbol":"BTC-USD","target_position":"-0.02"}"#,
            alert(
                "BTC-USD",
                AlertAction::Target {
                    position: TargetSpec::Signed(dec("-0.02")),
                },
            ),
        ),
        (
            r#"{"symbol":"BTC-USD","target_position":0}"#,
            alert(
                "BTC-USD",
                AlertAction::Target {
                    position: TargetSpec::Signed(Decimal::ZERO),
                },
            ),
        ),
        (
            r#"{"symbol":"BTC-USD","position":"long","size":"0.3"}"#,
            alert(
                "BTC-USD",
                AlertAction::Target {
                    position: TargetSpec::Long(SizeSpec::Base(dec("0.3"))),
                },
            ),
        ),
        (
            r#"{"symbol":"BTC-USD","position":"Short"}"#,
            alert(
                "BTC-USD",
                AlertAction::Target {
                    position: TargetSpec::Short(SizeSpec::Default),
                },
            ),
        ),
        // closes
        (
            r#"{"symbol":"BTC-USD","side":"close"}"#,
            alert("BTC-USD", AlertAction::Close),
        ),
        (
            r#"{"symbol":"BTC-USD","position":"flat"}"#,
            alert("BTC-USD", AlertAction::Close),
        ),
        // aliases, ignored fields, secret, replay fields, whitespace
        (
            r#" {"ticker":"BINANCE:BTCUSDT.P","action":"buy","contracts":"2","tp":"70000","sl":"60000",
                "exchange":"BINANCE","interval":"15","comment":"entry","secret":"s3cr3t",
                "timestamp":"2024-05-01T12:00:00Z","max_lag":30} "#,
            Alert {
                take_profit: Some(dec("70000")),
                stop_loss: Some(dec("60000")),
                timestamp: Some(noon),
                max_lag_seconds: Some(30),
                ..alert(
                    "BINANCE:BTCUSDT.P",
                    order(Side::Buy, SizeSpec::Base(dec("2"))),
                )
            },
        ),
        (
            r#"{"symbol":"BTC-USD","side":"buy","size":"1e-3","timestamp":1714564800}"#,
            Alert {
                timestamp: Some(noon),
                ..alert("BTC-USD", order(Side::Buy, SizeSpec::Base(dec("0.001"))))
            },
        ),
        (
            r#"{"symbol":"BTC-USD","side":"buy","size":"1","timestamp":"1714564800000","max_lag":"60"}"#,
            Alert {
                timestamp: Some(noon),
                max_lag_seconds: Some(60),
                ..alert("BTC-USD", order(Side::Buy, SizeSpec::Base(dec("1"))))
            },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(parse(body.as_bytes()), Ok(expected), "{body}");
    }
}

#[test]
fn each_rejection_names_its_field_and_problem() {
    let long_id = "x".repeat(129);
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let deep_field = r#"{"symbol":"BTC-USD","side":"buy","size":[[[[1]]]]}"#;
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        // body
        (b"not json".to_vec(), "body", "must be a JSON object"),
        (b"".to_vec(), "body", "it is empty"),
        (b"\xff\xfe".to_vec(), "body", "UTF-8"),
        (b"[1,2]".to_vec(), "body", "it is an array"),
        (b"\"hi\"".to_vec(), "body", "it is a string"),
        (b"42".to_vec(), "body", "it is a number"),
        (b"null".to_vec(), "body", "it is null"),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1} x"#.to_vec(),
            "body",
            "trailing characters",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":NaN}"#.to_vec(),
            "body",
            "not valid JSON",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":}"#.to_vec(),
            "body",
            "not valid JSON",
        ),
        (br#"{"symbol":"BTCUSDT""#.to_vec(), "body", "not valid JSON"),
        (deep.into_bytes(), "body", "it is an array"),
        (
            format!("{{\"a\":{}1{}}}", "[".repeat(10), "]".repeat(10)).into_bytes(),
            "body",
            "nested more than",
        ),
        (deep_field.as_bytes().to_vec(), "body", "nested more than"),
        // unknown, duplicate
        (
            br#"{"symbol":"BTCUSDT","side":"buy","sise":1}"#.to_vec(),
            "sise",
            "did you mean `side` or `size`?",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","Size":1}"#.to_vec(),
            "Size",
            "did you mean `size`?",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"position_size":1}"#.to_vec(),
            "position_size",
            "did you mean `target_position`",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"foo":1}"#.to_vec(),
            "foo",
            "is not a known field",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"size":2}"#.to_vec(),
            "size",
            "given twice",
        ),
        (
            br#"{"symbol":"BTCUSDT","ticker":"ETHUSDT","side":"buy","size":1}"#.to_vec(),
            "symbol",
            "as `symbol` and `ticker`",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"secret":"a","secret":"b"}"#.to_vec(),
            "secret",
            "given twice",
        ),
        // symbol
        (
            br#"{"side":"buy","size":1}"#.to_vec(),
            "symbol",
            "is required",
        ),
        (
            br#"{"symbol":"","side":"buy","size":1}"#.to_vec(),
            "symbol",
            "is empty",
        ),
        (
            br#"{"symbol":7,"side":"buy","size":1}"#.to_vec(),
            "symbol",
            "must be a string",
        ),
        (
            br#"{"symbol":"{{ticker}}","side":"buy","size":1}"#.to_vec(),
            "symbol",
            "unrendered TradingView placeholder",
        ),
        (
            format!(r#"{{"symbol":"{}","side":"buy"}}"#, "B".repeat(65)).into_bytes(),
            "symbol",
            "longer than 64",
        ),
        // side / position / target
        (
            br#"{"symbol":"BTCUSDT","size":1}"#.to_vec(),
            "side",
            "is required",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"hold","size":1}"#.to_vec(),
            "side",
            "not one of",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":null}"#.to_vec(),
            "side",
            "it is null",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","position":"long"}"#.to_vec(),
            "side",
            "cannot be combined",
        ),
        (
            br#"{"symbol":"BTCUSDT","position":"long","target_position":1}"#.to_vec(),
            "target_position",
            "cannot be combined",
        ),
        (
            br#"{"symbol":"BTCUSDT","position":"up"}"#.to_vec(),
            "position",
            "not one of",
        ),
        (
            br#"{"symbol":"BTCUSDT","position":"flat","size":1}"#.to_vec(),
            "size",
            "must not be given",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"close","size_usd":1}"#.to_vec(),
            "size_usd",
            "must not be given",
        ),
        (
            br#"{"symbol":"BTCUSDT","target_position":"1","size":1}"#.to_vec(),
            "size",
            "must not be given",
        ),
        (
            br#"{"symbol":"BTCUSDT","target_position":"abc"}"#.to_vec(),
            "target_position",
            "not a decimal number",
        ),
        // sizes
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"size_usd":5}"#.to_vec(),
            "size_usd",
            "exactly one of",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"NaN"}"#.to_vec(),
            "size",
            "NaN",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"-Infinity"}"#.to_vec(),
            "size",
            "infinite",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":""}"#.to_vec(),
            "size",
            "is empty",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"{{strategy.order.contracts}}"}"#.to_vec(),
            "size",
            "unrendered TradingView placeholder",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":-1}"#.to_vec(),
            "size",
            "negative",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":0}"#.to_vec(),
            "size",
            "zero",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"-0.0"}"#.to_vec(),
            "size",
            "zero",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1e308}"#.to_vec(),
            "size",
            "decimal range",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1e999999999999999999}"#.to_vec(),
            "size",
            "decimal range",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"1.2345678901234567890123456789"}"#
                .to_vec(),
            "size",
            "28 significant digits",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1e-29}"#.to_vec(),
            "size",
            "28 decimal places",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"1,5"}"#.to_vec(),
            "size",
            "not a decimal",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"0x10"}"#.to_vec(),
            "size",
            "not a decimal",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":"1_000"}"#.to_vec(),
            "size",
            "not a decimal",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":true}"#.to_vec(),
            "size",
            "it is a boolean",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":{"a":1}}"#.to_vec(),
            "size",
            "an object",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":null}"#.to_vec(),
            "size",
            "it is null",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size_percent":"100.01"}"#.to_vec(),
            "size_percent",
            "at most 100",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size_usd":"0"}"#.to_vec(),
            "size_usd",
            "zero",
        ),
        // order type and prices
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"order_type":"limit"}"#.to_vec(),
            "price",
            "required for a limit order",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","size":1,"order_type":"stop"}"#.to_vec(),
            "order_type",
            "not one of market, limit",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","price":"{{close}}"}"#.to_vec(),
            "price",
            "placeholder",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","take_profit":-5}"#.to_vec(),
            "take_profit",
            "negative",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","stop_loss":"x"}"#.to_vec(),
            "stop_loss",
            "not a decimal",
        ),
        // id
        (
            br#"{"symbol":"BTCUSDT","side":"buy","id":{"a":1}}"#.to_vec(),
            "id",
            "string or an integer",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","id":1.5}"#.to_vec(),
            "id",
            "string or an integer",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","id":""}"#.to_vec(),
            "id",
            "is empty",
        ),
        (
            format!(r#"{{"symbol":"BTCUSDT","side":"buy","id":"{long_id}"}}"#).into_bytes(),
            "id",
            "1 to 128",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","id":"a\u0007b"}"#.to_vec(),
            "id",
            "printable",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","id":"a\u200bb"}"#.to_vec(),
            "id",
            "printable",
        ),
        // timestamp and max_lag
        (
            br#"{"symbol":"BTCUSDT","side":"buy","timestamp":"yesterday"}"#.to_vec(),
            "timestamp",
            "RFC 3339",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","timestamp":"{{timenow}}"}"#.to_vec(),
            "timestamp",
            "placeholder",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","timestamp":5}"#.to_vec(),
            "timestamp",
            "between 2000",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","timestamp":99999999999999999999}"#.to_vec(),
            "timestamp",
            "between 2000",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","timestamp":true}"#.to_vec(),
            "timestamp",
            "RFC 3339",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","max_lag":0}"#.to_vec(),
            "max_lag",
            "from 1 to",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","max_lag":"1.5"}"#.to_vec(),
            "max_lag",
            "whole number",
        ),
        (
            br#"{"symbol":"BTCUSDT","side":"buy","max_lag":86401}"#.to_vec(),
            "max_lag",
            "from 1 to",
        ),
    ];
    let count = cases.len();
    for (body, field, problem) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let error = parse(&body).expect_err(&shown);
        assert_eq!(error.field, field, "{shown}: {error}");
        assert!(
            error.problem.contains(problem),
            "{shown}: `{error}` should say `{problem}`"
        );
    }
    assert!(count > 70, "the table covers every rejection");
}

#[test]
fn errors_never_echo_the_secret_or_more_than_a_clip() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let long = "Q".repeat(5_000);
    let bodies = [
        format!(r#"{{"symbol":"BTCUSDT","side":"buy","size":"{long}","secret":"{secret}"}}"#),
        format!(r#"{{"symbol":"BTCUSDT","side":"{long}","secret":"{secret}"}}"#),
        format!(r#"{{"{long}":1,"secret":"{secret}"}}"#),
        format!(r#"{{"secret":"{secret}","symbol":"BTCUSDT","side":"buy","size":"1" x"#),
        format!(r#"{{"secret":"{secret}","secret":"{secret}"}}"#),
        format!(r#"{{"secret":"{secret}"#),
        format!(r#"{{"secret":{secret}}}"#),
    ];
    for body in bodies {
        let error = parse(body.as_bytes()).expect_err(&body).to_string();
        assert!(!error.contains(secret), "{error}");
        assert!(error.chars().count() < 300, "{error}");
    }
}

#[test]
fn numbers_are_exact_decimals() {
    let cases = [
        ("0.1", "0.1"),
        ("1.50000000000000000000000000000000", "1.5"),
        ("000123.4500", "123.45"),
        ("1E2", "100"),
        ("12.5e-1", "1.25"),
        ("-2.5", "-2.5"),
        ("0e99999999", "0"),
        (
            "9999999999999999999999999999",
            "9999999999999999999999999999",
        ),
        (
            "0.0000000000000000000000000001",
            "0.0000000000000000000000000001",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(numbers::parse(text), Ok(dec(expected)), "{text}");
    }
    for text in [
        "", "-", ".5", "5.", "1e", "1e+", "--1", "+1", "1.2.3", " 1", "１",
    ] {
        assert!(numbers::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn the_published_format_parses() {
    let format = payload_format();
    let mut examples = vec![format["example"].clone()];
    let forms = format["forms"].as_object().expect("forms is an object");
    examples.extend(forms.values().cloned());
    assert!(examples.len() >= 6);
    for example in examples {
        let body = example.to_string();
        assert!(parse(body.as_bytes()).is_ok(), "{body}");
    }
    let fields = format["fields"].as_object().expect("fields is an object");
    for name in format["required_fields"]
        .as_array()
        .into_iter()
        .chain(format["optional_fields"].as_array())
        .flatten()
    {
        let name = name.as_str().expect("field names are strings");
        assert!(fields.contains_key(name), "{name} is described");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any decimal written out, as a number or a string, reads back as itself.
        #[test]
        fn decimals_round_trip(mantissa in any::<i64>(), scale in 0u32..=18, quoted: bool) {
            let value = Decimal::new(mantissa, scale);
            let text = if quoted { format!("\"{value}\"") } else { value.to_string() };
            let body = format!(r#"{{"symbol":"BTC-USD","target_position":{text}}}"#);
            let parsed = parse(body.as_bytes()).map(|alert| alert.action);
            prop_assert_eq!(parsed, Ok(AlertAction::Target { position: TargetSpec::Signed(value) }));
        }

        /// Arbitrary bytes never panic and never yield an error longer than a clip allows.
        #[test]
        fn arbitrary_bodies_are_answered(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(error) = parse(&body) {
                prop_assert!(error.to_string().chars().count() < 300);
            }
        }
    }
}
