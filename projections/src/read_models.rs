//! The four trader read models together, and their names.

use std::collections::BTreeMap;

use crate::{
    daily_volume, positions, signals, trades, DailyVolumeKey, DailyVolumeRow, Envelope,
    PositionKey, PositionRow, SignalKey, SignalRow, TradeKey, TradeRow,
};

/// A projection: a named fold with its own checkpoint and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Projection {
    Positions,
    Trades,
    DailyVolume,
    Signals,
}

impl Projection {
    pub const ALL: [Projection; 4] = [
        Projection::Positions,
        Projection::Trades,
        Projection::DailyVolume,
        Projection::Signals,
    ];

    /// Also the name of its table.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Positions => "positions",
            Projection::Trades => "trades",
            Projection::DailyVolume => "daily_volume",
            Projection::Signals => "signals",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Rows of every read model, keyed per account. As a whole it is a from-scratch rebuild; the
/// catch-up runner keeps only the rows a page touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModels {
    pub positions: BTreeMap<PositionKey, PositionRow>,
    pub trades: BTreeMap<TradeKey, TradeRow>,
    pub daily_volume: BTreeMap<DailyVolumeKey, DailyVolumeRow>,
    pub signals: BTreeMap<SignalKey, SignalRow>,
}

/// The keys of the rows a batch of events reads and writes, per projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TouchedKeys {
    pub positions: Vec<PositionKey>,
    pub daily_volume: Vec<DailyVolumeKey>,
    pub signals: Vec<SignalKey>,
}

impl ReadModels {
    /// Folds every event, in order, into every projection.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Envelope>) -> Self {
        let mut models = Self::default();
        for envelope in events {
            for projection in Projection::ALL {
                models.apply(projection, envelope);
            }
        }
        models
    }

    /// Applies one event to one projection's rows.
    pub fn apply(&mut self, projection: Projection, envelope: &Envelope) {
        match projection {
            Projection::Positions => positions::apply(&mut self.positions, envelope),
            Projection::Trades => {
                if let Some(row) = trades::row(envelope) {
                    self.trades.insert(row.key(), row);
                }
            }
            Projection::DailyVolume => daily_volume::apply(&mut self.daily_volume, envelope),
            Projection::Signals => signals::apply(&mut self.signals, envelope),
        }
    }

    /// Whether `projection` would change anything for this event.
    pub fn touches(projection: Projection, envelope: &Envelope) -> bool {
        match projection {
            Projection::Positions => positions::key(envelope).is_some(),
            Projection::Trades => trades::row(envelope).is_some(),
            Projection::DailyVolume => daily_volume::key(envelope).is_some(),
            Projection::Signals => signals::key(envelope).is_some(),
        }
    }

    /// The existing rows that folding these events into `projection` reads (trades only insert).
    pub fn keys_read<'a>(
        projection: Projection,
        events: impl IntoIterator<Item = &'a Envelope>,
    ) -> TouchedKeys {
        let mut keys = TouchedKeys::default();
        for envelope in events {
            match projection {
                Projection::Positions => keys.positions.extend(positions::key(envelope)),
                Projection::Trades => {}
                Projection::DailyVolume => keys.daily_volume.extend(daily_volume::key(envelope)),
                Projection::Signals => keys.signals.extend(signals::key(envelope)),
            }
        }
        keys.positions.sort();
        keys.positions.dedup();
        keys.daily_volume.sort();
        keys.daily_volume.dedup();
        keys.signals.sort();
        keys.signals.dedup();
        keys
    }

    /// Only `projection`'s rows (the others emptied), for comparing one projection.
    pub fn only(&self, projection: Projection) -> Self {
        let mut only = Self::default();
        match projection {
            Projection::Positions => only.positions = self.positions.clone(),
            Projection::Trades => only.trades = self.trades.clone(),
            Projection::DailyVolume => only.daily_volume = self.daily_volume.clone(),
            Projection::Signals => only.signals = self.signals.clone(),
        }
        only
    }
}
