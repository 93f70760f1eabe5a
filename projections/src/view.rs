//! The account state as a replay shows it. Its size does not grow with the history: the
//! idempotency memory (every alert key of the last day, thousands on an active account) is
//! summarised as a count and the key the event touched, and a step's changes are computed on a
//! view that holds only the entries of the keyed collections its event can change.

use std::collections::BTreeMap;

use aggregates::{
    AccountEvent, DailyVolume, Drift, Halt, InFlight, KeyMemory, Market, Position, Profile,
    SeenKey, SignalId, TradingAccount, Venue,
};
use cqrs_es::Aggregate;
use serde::{Serialize, Serializer};

/// What one event can change in the keyed parts of the state: its signal's in-flight entry, its
/// market's position, the idempotency key it carries, and the account notice it records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touches<'e> {
    pub signal: Option<&'e SignalId>,
    pub market: Option<&'e Market>,
    pub key: Option<&'e str>,
    pub notice: Option<&'e u64>,
}

impl<'e> Touches<'e> {
    pub fn of(event: &'e AccountEvent) -> Self {
        use AccountEvent::*;
        let market = match event {
            SignalReceived { market, .. }
            | RiskApproved { market, .. }
            | OrderSubmitted { market, .. }
            | OrderFilled { market, .. }
            | OrderPartiallyFilled { market, .. }
            | CompensationRequired { market, .. }
            | PositionCompensated { market, .. }
            | PositionOpened { market, .. }
            | PositionIncreased { market, .. }
            | PositionReduced { market, .. }
            | PositionClosed { market, .. }
            | PositionDriftDetected { market, .. }
            | PositionDriftCleared { market, .. } => Some(market),
            _ => None,
        };
        let key = match event {
            SignalReceived {
                idempotency_key, ..
            }
            | SignalRejected {
                idempotency_key, ..
            } => Some(idempotency_key.as_str()),
            _ => None,
        };
        let notice = match event {
            NoticeSent { about_sequence, .. } | NoticeFailed { about_sequence, .. } => {
                Some(about_sequence)
            }
            _ => None,
        };
        Self {
            signal: event.signal_id(),
            market,
            key,
            notice,
        }
    }
}

/// How much of the keyed collections a view holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Every in-flight signal and position: the state `--full-state` prints.
    Whole,
    /// Only the entries the event touches: what its changes are computed from.
    Touched,
}

/// What a replay folds an account's events into: the account's state, and the memory of keys the
/// ledger keeps beside it in the store (`aggregates::KeyMemory`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    pub account: TradingAccount,
    pub keys: KeyMemory,
}

impl Folded {
    pub fn apply(&mut self, event: &AccountEvent) {
        self.keys.fold(event);
        self.account.apply(event.clone());
    }
}

/// The account as a replay shows it (serialize it to print it). Field for field the
/// `TradingAccount`, plus `idempotency`, which summarises the memory of keys, less
/// the times of the last signal and of the latest ones the quota counts (`recent_signals`), which
/// their own payloads show.
#[derive(Debug, Serialize)]
pub struct StateView<'s> {
    pub profile: &'s Option<Profile>,
    pub halt: &'s Option<Halt>,
    pub idempotency: Idempotency<'s>,
    pub in_flight: Entries<'s, SignalId, InFlight>,
    pub positions: Entries<'s, Market, Position>,
    pub daily_volume: &'s DailyVolume,
    pub signals_received: u64,
    pub orders_filled: u64,
    pub consecutive_failures: u32,
    pub drift: Entries<'s, Market, Drift>,
    /// Notifications that failed and are to be tried again, with the failed attempts so far.
    pub undelivered: Entries<'s, SignalId, u32>,
    /// The sequence of the last account notice recorded.
    pub notices_through: u64,
    /// Account notices that failed and are to be tried again (by the sequence of the event they
    /// tell), with the failed attempts so far.
    pub undelivered_notices: Entries<'s, u64, u32>,
    /// The emergency stop's last engagement or release this account noted (its sequence).
    pub emergency_noted_through: u64,
    /// The venue the account chose in its ledger (`None`: never chosen there).
    pub venue: Option<Venue>,
}

/// The idempotency memory, summarised: how many keys it holds, and the entry of the key the event
/// carried (none for an event without a key, or when the key is not remembered).
#[derive(Debug, Serialize)]
pub struct Idempotency<'s> {
    pub remembered: usize,
    pub touched: Entries<'s, String, SeenKey>,
}

/// A map of the state, whole or only the entry one key names (serialized as a map either way, so
/// the paths of a change are the same as in the state).
#[derive(Debug)]
pub enum Entries<'s, K, V> {
    All(&'s BTreeMap<K, V>),
    One(Option<(&'s K, &'s V)>),
}

impl<'s, K: Ord, V> Entries<'s, K, V> {
    fn of<Q>(map: &'s BTreeMap<K, V>, extent: Extent, key: Option<&Q>) -> Self
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match extent {
            Extent::Whole => Self::All(map),
            Extent::Touched => Self::One(key.and_then(|key| map.get_key_value(key))),
        }
    }
}

impl<K: Serialize, V: Serialize> Serialize for Entries<'_, K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All(map) => serializer.collect_map(map.iter()),
            Self::One(entry) => serializer.collect_map(entry.iter().copied()),
        }
    }
}

impl<'s> StateView<'s> {
    pub fn new(folded: &'s Folded, touches: Touches<'_>, extent: Extent) -> Self {
        let state = &folded.account;
        let seen_keys = folded.keys.entries();
        let TradingAccount {
            profile,
            halt,
            in_flight,
            positions,
            daily_volume,
            signals_received,
            orders_filled,
            consecutive_failures,
            drift,
            undelivered,
            notices_through,
            undelivered_notices,
            emergency_noted_through,
            ..
        } = state;
        Self {
            venue: state.venue(),
            profile,
            halt,
            idempotency: Idempotency {
                remembered: seen_keys.len(),
                // The touched key is shown whatever the extent: one entry, never the whole memory.
                touched: Entries::of(seen_keys, Extent::Touched, touches.key),
            },
            in_flight: Entries::of(in_flight, extent, touches.signal),
            positions: Entries::of(positions, extent, touches.market),
            daily_volume,
            signals_received: *signals_received,
            orders_filled: *orders_filled,
            consecutive_failures: *consecutive_failures,
            drift: Entries::of(drift, extent, touches.market),
            undelivered: Entries::of(undelivered, extent, touches.signal),
            notices_through: *notices_through,
            undelivered_notices: Entries::of(undelivered_notices, extent, touches.notice),
            emergency_noted_through: *emergency_noted_through,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::diff;
    use aggregates::{
        ClientOrderId, OrderType, Quantity, RejectionReason, RiskLimits, Side, TradeInstruction,
        UsdAmount,
    };
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use rust_decimal::Decimal;
    use serde_json::{json, Value};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600, 0)
            .single()
            .unwrap_or_default()
            + Duration::minutes(minute)
    }

    fn market(name: &str) -> Market {
        Market::parse(name).unwrap_or_else(|_| panic!("{name} is a market"))
    }

    fn qty(units: i64) -> Quantity {
        Quantity::new(Decimal::from(units)).unwrap_or_else(|_| panic!("a quantity"))
    }

    fn sid(n: u32) -> SignalId {
        SignalId(format!("s-{n}"))
    }

    fn received(n: u32, key: &str, name: &str, minute: i64) -> AccountEvent {
        AccountEvent::SignalReceived {
            signal_id: sid(n),
            idempotency_key: key.into(),
            key_expires_at: at(minute + 60),
            market: market(name),
            instruction: TradeInstruction::Order {
                side: Side::Buy,
                size: qty(1),
            },
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            alert_price: None,
            reference_price: Decimal::from(100),
            sent_at: None,
            received_at: at(minute),
        }
    }

    fn approved(n: u32, name: &str) -> AccountEvent {
        AccountEvent::RiskApproved {
            signal_id: sid(n),
            client_order_id: ClientOrderId(format!("lh-{n}")),
            market: market(name),
            side: Side::Buy,
            size: qty(1),
            reduce_only: false,
            order_type: OrderType::Market,
            take_profit: None,
            stop_loss: None,
            notional_usd: UsdAmount::new(Decimal::from(100)),
        }
    }

    fn filled(n: u32, name: &str) -> AccountEvent {
        AccountEvent::OrderFilled {
            signal_id: sid(n),
            client_order_id: ClientOrderId(format!("lh-{n}")),
            exchange_order_id: format!("x-{n}"),
            market: market(name),
            side: Side::Buy,
            price: Decimal::from(100),
            size: qty(1),
            fee_usd: UsdAmount::new(Decimal::ONE),
            filled_at: at(1),
        }
    }

    fn notified(n: u32) -> AccountEvent {
        AccountEvent::NotificationSent {
            signal_id: sid(n),
            channel: "log".into(),
            at: at(1),
        }
    }

    /// Every kind of event, with two markets, several signals in flight at once, a duplicate and
    /// keys expiring.
    fn history() -> Vec<AccountEvent> {
        use AccountEvent::*;
        let co = |n: u32| ClientOrderId(format!("lh-{n}"));
        vec![
            AccountOpened {
                display_name: "a".into(),
                limits: RiskLimits::default(),
                opened_at: at(0),
            },
            received(1, "k1", "BTC-USD", 1),
            approved(1, "BTC-USD"),
            received(2, "k.2 \"q\"", "ETH-USD", 2),
            approved(2, "ETH-USD"),
            OrderSubmitted {
                signal_id: sid(1),
                client_order_id: co(1),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty(1),
                submitted_at: at(2),
            },
            filled(1, "BTC-USD"),
            PositionOpened {
                signal_id: sid(1),
                market: market("BTC-USD"),
                side: Side::Buy,
                size: qty(1),
                entry_price: Decimal::from(100),
            },
            SignalRejected {
                signal_id: sid(3),
                idempotency_key: "k1".into(),
                key_expires_at: at(63),
                reason: RejectionReason::Duplicate {
                    original_signal_id: sid(1),
                },
                received_at: at(3),
            },
            OrderFailed {
                signal_id: sid(2),
                client_order_id: co(2),
                reason: "down".into(),
                at: at(3),
            },
            RiskReservationReleased {
                signal_id: sid(2),
                notional_usd: UsdAmount::new(Decimal::from(100)),
            },
            NotificationFailed {
                signal_id: sid(2),
                channel: "log".into(),
                reason: "no".into(),
                at: at(3),
                retry_at: None,
            },
            notified(1),
            RiskLimitsChanged {
                limits: RiskLimits {
                    max_price_deviation_bps: 7,
                    ..RiskLimits::default()
                },
                by: "ops".into(),
                reason: "r".into(),
                at: at(4),
            },
            TradingHalted {
                by: "ops".into(),
                reason: "r".into(),
                at: at(5),
            },
            SignalRejected {
                signal_id: sid(4),
                idempotency_key: "k4".into(),
                key_expires_at: at(65),
                reason: RejectionReason::Halted { detail: "h".into() },
                received_at: at(5),
            },
            NoticeFailed {
                about_sequence: 15,
                channel: "telegram".into(),
                reason: "503".into(),
                at: at(5),
                retry_at: Some(at(6)),
            },
            TradingResumed {
                by: "ops".into(),
                reason: "r".into(),
                at: at(6),
            },
            NoticeSent {
                about_sequence: 18,
                channel: "telegram".into(),
                at: at(6),
            },
            NoticeSent {
                about_sequence: 15,
                channel: "telegram".into(),
                at: at(6),
            },
            // Past k1's and k2's expiry: they are forgotten as k5 is remembered.
            received(5, "k5", "BTC-USD", 62),
            RiskRejected {
                signal_id: sid(5),
                rule: "max_order_size".into(),
                detail: "d".into(),
            },
            received(6, "k6", "BTC-USD", 63),
            approved(6, "BTC-USD"),
            OrderRejected {
                signal_id: sid(6),
                client_order_id: co(6),
                reason: "no".into(),
                at: at(63),
            },
            notified(6),
            received(7, "k7", "BTC-USD", 64),
            approved(7, "BTC-USD"),
            OrderCancelled {
                signal_id: sid(7),
                client_order_id: co(7),
                reason: "halt".into(),
                at: at(64),
            },
            received(8, "k8", "BTC-USD", 65),
            approved(8, "BTC-USD"),
            filled(8, "BTC-USD"),
            PositionIncreased {
                signal_id: sid(8),
                market: market("BTC-USD"),
                size_delta: qty(1),
                new_size: qty(2),
                average_entry_price: Decimal::from(100),
            },
            PositionReduced {
                signal_id: sid(8),
                market: market("BTC-USD"),
                size_delta: qty(1),
                new_size: qty(1),
                realized_pnl_usd: UsdAmount::new(Decimal::from(3)),
            },
            PositionClosed {
                signal_id: sid(8),
                market: market("BTC-USD"),
                size_delta: qty(1),
                realized_pnl_usd: UsdAmount::new(Decimal::from(3)),
            },
            notified(8),
            received(9, "k9", "ETH-USD", 66),
            approved(9, "ETH-USD"),
            filled(9, "ETH-USD"),
            PositionOpened {
                signal_id: sid(9),
                market: market("ETH-USD"),
                side: Side::Buy,
                size: qty(1),
                entry_price: Decimal::from(100),
            },
        ]
    }

    fn view(state: &Folded, event: &AccountEvent, extent: Extent) -> Value {
        serde_json::to_value(StateView::new(state, Touches::of(event), extent))
            .unwrap_or_else(|error| panic!("a view is JSON: {error}"))
    }

    /// The changes computed on the entries an event touches are exactly the changes of the whole
    /// view: no event changes an entry it does not name.
    #[test]
    fn an_event_changes_only_the_entries_it_touches() {
        let mut state = Folded::default();
        for event in history() {
            let whole_before = view(&state, &event, Extent::Whole);
            let touched_before = view(&state, &event, Extent::Touched);
            state.apply(&event);
            let whole = diff(&whole_before, &view(&state, &event, Extent::Whole));
            let touched = diff(&touched_before, &view(&state, &event, Extent::Touched));
            assert_eq!(touched, whole, "{event:?}");
        }
        // The history ends with two positions and two signals in flight.
        assert_eq!(state.account.positions.len(), 2);
        assert_eq!(state.account.in_flight.len(), 2);
    }

    #[test]
    fn the_idempotency_memory_is_a_count_and_the_touched_key() {
        let mut state = Folded::default();
        let events = history();
        for event in &events[..4] {
            state.apply(event);
        }
        let whole = view(&state, &events[3], Extent::Whole);
        assert_eq!(
            whole["idempotency"],
            json!({
                "remembered": 2,
                "touched": {"k.2 \"q\"": {"signal_id": "s-2", "expires_at": at(62)}},
            })
        );
        assert!(whole.get("seen_keys").is_none() && whole.get("key_expiry").is_none());
        // An event without a key touches none; the count stays.
        let halted = view(&state, &events[14], Extent::Whole);
        assert_eq!(
            halted["idempotency"],
            json!({"remembered": 2, "touched": {}})
        );
    }

    #[test]
    fn remembering_a_key_is_one_added_entry_and_the_count() {
        let events = history();
        let mut state = Folded::default();
        for event in &events[..3] {
            state.apply(event);
        }
        let before = view(&state, &events[3], Extent::Touched);
        state.apply(&events[3]);
        let changes: Vec<String> = diff(&before, &view(&state, &events[3], Extent::Touched))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            [
                "idempotency.remembered: 1 → 2".to_owned(),
                format!(
                    r#"idempotency.touched["k.2 \"q\""]: added {{"expires_at":"{}","signal_id":"s-2"}}"#,
                    at(62).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
                "signals_received: 1 → 2".to_owned(),
            ]
        );
    }

    /// Every field of the account is in the view, but the idempotency memory (summarised) and the
    /// signals' times (in their payloads). A field added to `TradingAccount` fails this test
    /// until the replay shows it.
    #[test]
    fn the_view_shows_every_field_of_the_account() {
        let keys = |value: Value| -> Vec<String> {
            let mut keys: Vec<String> = value
                .as_object()
                .map(|fields| fields.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        let mut expected =
            keys(serde_json::to_value(TradingAccount::default()).unwrap_or_default());
        expected.retain(|field| !["last_signal_at", "recent_signals"].contains(&field.as_str()));
        expected.push("idempotency".to_owned());
        expected.sort();
        let event = history().remove(0);
        assert_eq!(
            keys(view(&Folded::default(), &event, Extent::Whole)),
            expected
        );
    }
}
