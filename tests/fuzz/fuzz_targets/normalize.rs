//! Any symbol: normalization never panics, never maps non-ASCII input, and maps its own result
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ledgerhook::markets::MarketList;

fuzz_target!(|symbol: &str| {
    let markets = MarketList::default();
    let Ok(spec) = markets.normalize(symbol) else {
        return;
    };
    assert!(
        symbol.is_ascii(),
        "non-ASCII {symbol:?} mapped to {}",
        spec.market
    );
    let again = markets
        .normalize(spec.market.as_str())
        .map(|again| &again.market);
    assert_eq!(again, Ok(&spec.market));
});
