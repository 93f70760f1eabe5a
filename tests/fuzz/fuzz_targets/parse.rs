//! Any body: `parse` answers without panicking, errors stay short, and whatever it accepts holds
//! the invariants ingest relies on (positive sizes and prices, a limit order's price, a symbol
//! that normalizes or is refused, sizes that quantize down).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

use ledgerhook::ingest::payload::{
    parse, AlertAction, AlertOrderType, SizeSpec, TargetSpec,
};
use ledgerhook::markets::MarketList;

fuzz_target!(|body: &[u8]| {
    let alert = match parse(body) {
        Ok(alert) => alert,
        Err(error) => {
            assert!(error.to_string().chars().count() < 400, "{error}");
            return;
        }
    };
    assert!(!alert.symbol.is_empty() && alert.symbol.chars().count() <= 64);
    for price in [alert.price, alert.take_profit, alert.stop_loss]
        .into_iter()
        .flatten()
    {
        assert!(price > Decimal::ZERO);
    }
    if let AlertOrderType::Limit { price } = alert.order_type {
        assert_eq!(alert.price, Some(price));
    }
    let size = match alert.action {
        AlertAction::Order { size, .. } => Some(size),
        AlertAction::Target {
            position: TargetSpec::Long(size) | TargetSpec::Short(size),
        } => Some(size),
        AlertAction::Target { .. } | AlertAction::Close => None,
    };
    let markets = MarketList::default();
    if let (Some(size), Ok(spec)) = (size, markets.normalize(&alert.symbol)) {
        let reference_price = Decimal::new(65_000, 0);
        let equity = Decimal::new(10_000, 0);
        if let Ok(Some(quantity)) = spec.base_size(size, reference_price, equity) {
            match size {
                SizeSpec::Base(asked) => assert!(quantity.value() <= asked),
                SizeSpec::Usd(asked) => assert!(quantity.value() * reference_price <= asked),
                SizeSpec::PercentOfEquity(percent) => assert!(
                    quantity.value() * reference_price * Decimal::ONE_HUNDRED <= equity * percent
                ),
                SizeSpec::Default => unreachable!("Default converts to None"),
            }
        }
    }
});
