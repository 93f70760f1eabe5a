use std::str::FromStr;

use proptest::prelude::*;

use super::*;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

fn spec(ticker: &str) -> MarketSpec {
    let markets = MarketList::default();
    let market = Market::parse(ticker).expect("listed ticker");
    markets.get(&market).cloned().expect("listed market")
}

#[test]
fn tradingview_symbols_map_to_dydx_markets() {
    let markets = MarketList::default();
    let cases = [
        ("BTCUSDT", "BTC-USD"),
        ("BTCUSDT.P", "BTC-USD"),
        ("BINANCE:BTCUSDT.P", "BTC-USD"),
        ("BTCUSD", "BTC-USD"),
        ("BTCUSDC", "BTC-USD"),
        ("BTC-PERP", "BTC-USD"),
        ("BTCPERP", "BTC-USD"),
        ("BTC_USD", "BTC-USD"),
        ("BTC/USD", "BTC-USD"),
        ("BTC/USDT", "BTC-USD"),
        ("btc-usd", "BTC-USD"),
        ("  BTC-USD ", "BTC-USD"),
        ("BTC-USD", "BTC-USD"),
        ("KRAKEN:XBTUSD", "BTC-USD"),
        ("bybit:ethusdt.p", "ETH-USD"),
        ("DOGEUSDT", "DOGE-USD"),
        ("SOL_PERP", "SOL-USD"),
        ("BTCUSD_PERP", "BTC-USD"),
        ("ETH-USDT-PERP", "ETH-USD"),
    ];
    for (symbol, ticker) in cases {
        let spec = markets.normalize(symbol).map_err(|e| e.to_string());
        assert_eq!(
            spec.map(|s| s.market.to_string()),
            Ok(ticker.to_owned()),
            "{symbol}"
        );
    }
}

#[test]
fn unknown_and_look_alike_symbols_are_refused_precisely() {
    let markets = MarketList::default();
    let cases = [
        (
            "XYZUSDT",
            "(read as XYZ-USD) is not a listed dYdX market; listed: BTC-USD",
        ),
        ("BTC-EUR", "is not quoted in USD"),
        ("BTCEUR", "is not quoted in USD"),
        ("", "is not quoted in USD"),
        ("USDT", "does not name a base asset"),
        ("BTC:", "is not quoted in USD"),
        (":BTCUSDT", "invalid exchange prefix"),
        ("A:B:BTCUSDT", "more than one exchange prefix"),
        ("BTC--USD", "does not name a base asset (read `BTC-`)"),
        ("BTC-USD-EUR", "is not quoted in USD"),
        ("B TC-USD", "does not name a base asset"),
        ("XYZ-PERP", "(read as XYZ-USD) is not a listed"),
        ("\u{412}TCUSDT", "non-ASCII character U+0412 at position 1"),
        (
            "BTC\u{200B}USDT",
            "non-ASCII character U+200B at position 4",
        ),
        ("\u{FF22}\u{FF34}\u{FF23}USDT", "non-ASCII character U+FF22"),
        ("BTCUSDT\u{FEFF}", "non-ASCII character U+FEFF"),
    ];
    for (symbol, message) in cases {
        let error = markets.normalize(symbol).map(|s| s.market.to_string());
        let error = error.expect_err(symbol).to_string();
        assert!(
            error.contains(message),
            "{symbol:?}: `{error}` should say `{message}`"
        );
        assert!(error.is_ascii(), "{error}");
    }
}

#[test]
fn sizes_round_down_and_prices_to_the_nearest_tick() {
    let btc = spec("BTC-USD");
    assert_eq!(
        btc.quantize_size(dec("0.123456")).map(Quantity::value),
        Ok(dec("0.1234"))
    );
    assert!(matches!(
        btc.quantize_size(dec("0.00001")),
        Err(MarketError::BelowStep { .. })
    ));
    assert!(btc.quantize_size(Decimal::ZERO).is_err());
    assert!(btc.quantize_size(dec("-1")).is_err());
    let doge = spec("DOGE-USD");
    assert_eq!(
        doge.quantize_size(dec("129.9")).map(Quantity::value),
        Ok(dec("120"))
    );
    assert_eq!(btc.quantize_price(dec("65000.5")), Ok(dec("65001")));
    assert_eq!(btc.quantize_price(dec("65000.49")), Ok(dec("65000")));
    assert!(btc.quantize_price(Decimal::ZERO).is_err());
    let eth = spec("ETH-USD");
    assert_eq!(eth.quantize_price(dec("3000.04")), Ok(dec("3000")));
}

#[test]
fn other_size_forms_convert_to_base_units() {
    let btc = spec("BTC-USD");
    let price = dec("60000");
    let equity = dec("10000");
    let base = |size| {
        btc.base_size(size, price, equity)
            .map(|q| q.map(Quantity::value))
    };
    assert_eq!(base(SizeSpec::Default), Ok(None));
    assert_eq!(
        base(SizeSpec::Base(dec("0.12345"))),
        Ok(Some(dec("0.1234")))
    );
    // 1000 / 60000 = 0.01666.. → 0.0166
    assert_eq!(base(SizeSpec::Usd(dec("1000"))), Ok(Some(dec("0.0166"))));
    // 10% of 10000 = 1000 USD → 0.0166
    assert_eq!(
        base(SizeSpec::PercentOfEquity(dec("10"))),
        Ok(Some(dec("0.0166")))
    );
    assert_eq!(base(SizeSpec::Usd(dec("6"))), Ok(Some(dec("0.0001"))));
    assert!(matches!(
        base(SizeSpec::Usd(dec("5"))),
        Err(MarketError::BelowStep { .. })
    ));
    assert!(btc
        .base_size(SizeSpec::PercentOfEquity(dec("10")), price, Decimal::ZERO)
        .is_err());
    assert!(btc
        .base_size(SizeSpec::Usd(dec("10")), Decimal::ZERO, equity)
        .is_err());
}

/// Every listed base, spelled as TradingView or another exchange might.
fn spelling() -> impl Strategy<Value = (String, String)> {
    let bases: Vec<String> = DEFAULT_MARKETS
        .iter()
        .filter_map(|(ticker, ..)| ticker.strip_suffix("-USD").map(str::to_owned))
        .collect();
    (
        proptest::sample::select(bases),
        proptest::option::of("[A-Za-z0-9]{1,10}"),
        proptest::sample::select(vec!["", "-", "_", "/"]),
        proptest::sample::select(vec!["USD", "USDT", "USDC", "PERP", "USD_PERP", "USDT-PERP"]),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 16),
        "[ \t]{0,2}",
    )
        .prop_map(
            |(base, exchange, separator, quote, perpetual, upper, pad)| {
                let mut symbol = String::new();
                if let Some(exchange) = exchange {
                    symbol.push_str(&exchange);
                    symbol.push(':');
                }
                symbol.push_str(&base);
                symbol.push_str(separator);
                symbol.push_str(quote);
                if perpetual {
                    symbol.push_str(".P");
                }
                let mixed: String = symbol
                    .chars()
                    .zip(upper.iter().cycle())
                    .map(|(c, up)| {
                        if *up {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect();
                (format!("{pad}{mixed}{pad}"), format!("{base}-USD"))
            },
        )
}

/// A size or price: up to 28 digits, up to 12 decimal places.
fn amount() -> impl Strategy<Value = Decimal> {
    (1u64..=u64::MAX, 0u32..=12)
        .prop_map(|(mantissa, scale)| Decimal::from_i128_with_scale(i128::from(mantissa), scale))
}

fn step() -> impl Strategy<Value = Decimal> {
    (1i64..=25, 0u32..=8).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn custom_spec(step_size: Decimal, tick_size: Decimal) -> MarketSpec {
    MarketSpec {
        market: Market::parse("BTC-USD").expect("valid ticker"),
        step_size,
        tick_size,
    }
}

proptest! {
    #[test]
    fn every_spelling_of_a_listed_market_maps_to_it((symbol, ticker) in spelling()) {
        let markets = MarketList::default();
        let got = markets.normalize(&symbol).map(|s| s.market.to_string());
        prop_assert_eq!(got, Ok(ticker));
    }

    #[test]
    fn canonical_tickers_are_fixed_points(index in 0usize..DEFAULT_MARKETS.len()) {
        let markets = MarketList::default();
        let listed = &markets.specs()[index];
        let once = markets.normalize(listed.market.as_str()).map(|s| s.market.clone());
        prop_assert_eq!(once.as_ref(), Ok(&listed.market));
        let twice = markets.normalize(listed.market.as_str()).map(|s| s.market.clone());
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn non_ascii_never_maps(
        (symbol, _) in spelling(),
        at in any::<proptest::sample::Index>(),
        intruder in any::<char>().prop_filter("non-ASCII", |c| !c.is_ascii()),
    ) {
        let mut chars: Vec<char> = symbol.chars().collect();
        let at = at.index(chars.len() + 1);
        chars.insert(at, intruder);
        let symbol: String = chars.into_iter().collect();
        prop_assert!(MarketList::default().normalize(&symbol).is_err());
    }

    #[test]
    fn quantized_sizes_are_whole_steps_at_most_one_step_below(size in amount(), step in step()) {
        let spec = custom_spec(step, Decimal::ONE);
        match spec.quantize_size(size) {
            Ok(quantity) => {
                let quantized = quantity.value();
                prop_assert!(quantized <= size);
                prop_assert!(size - quantized < step);
                prop_assert_eq!(quantized % step, Decimal::ZERO);
            }
            Err(MarketError::BelowStep { .. }) => prop_assert!(size < step),
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }

    #[test]
    fn quantized_prices_are_ticks_within_half_a_tick(price in amount(), tick in step()) {
        let spec = custom_spec(Decimal::ONE, tick);
        let quantized = spec.quantize_price(price);
        prop_assert!(quantized.is_ok(), "{:?}", quantized);
        let quantized = quantized.unwrap_or_default();
        prop_assert_eq!(quantized % tick, Decimal::ZERO);
        prop_assert!((quantized - price).abs() * Decimal::TWO <= tick);
    }

    #[test]
    fn usd_sizing_never_exceeds_the_notional_asked(
        usd in amount(),
        price in amount(),
        step in step(),
        percent in 1u32..=100,
    ) {
        let spec = custom_spec(step, Decimal::ONE);
        if let Ok(Some(quantity)) = spec.base_size(SizeSpec::Usd(usd), price, Decimal::ONE) {
            let notional = quantity.value().checked_mul(price);
            prop_assert!(notional.is_some_and(|n| n <= usd), "{} * {} > {}", quantity, price, usd);
            prop_assert_eq!(quantity.value() % step, Decimal::ZERO);
            // Nothing bigger would have fitted: one more step exceeds the notional.
            let bigger = (quantity.value() + step).checked_mul(price);
            prop_assert!(bigger.is_none_or(|n| n > usd));
        }
        let percent = Decimal::from(percent);
        if let Ok(Some(quantity)) = spec.base_size(SizeSpec::PercentOfEquity(percent), price, usd) {
            let asked = usd.checked_mul(percent);
            let spent = quantity.value().checked_mul(price * Decimal::ONE_HUNDRED);
            prop_assert!(matches!((spent, asked), (Some(s), Some(a)) if s <= a));
        }
    }
}
