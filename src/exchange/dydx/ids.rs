//! dYdX identifies an order by a 32-bit client id chosen by the client, and lists orders by
//! subaccount only: there is no lookup by a client's own order id. The saga's client order id is
//! mapped deterministically onto the client id and the 32-bit client metadata the Indexer returns
//! with every order, so the same approval always yields the same order id (a retry is recognised
//! by the chain and by our lookup), and a lookup matches on 64 bits, not 32.

use sha2::{Digest, Sha256};

use aggregates::ClientOrderId;

/// The client id and client metadata an order carries on dYdX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VenueIds {
    pub client_id: u32,
    pub client_metadata: u32,
}

/// Which of the orders a signal may place on dYdX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The order the signal asked for.
    Entry,
    /// The take-profit attached after the entry filled.
    TakeProfit,
    /// The stop-loss attached after the entry filled.
    StopLoss,
}

impl Leg {
    fn tag(self) -> &'static str {
        match self {
            Self::Entry => "",
            Self::TakeProfit => "/take-profit",
            Self::StopLoss => "/stop-loss",
        }
    }
}

pub fn venue_ids(client_order_id: &ClientOrderId, leg: Leg) -> VenueIds {
    let digest = Sha256::digest(format!("{}{}", client_order_id.0, leg.tag()).as_bytes());
    let word = |at: usize| {
        u32::from_be_bytes([digest[at], digest[at + 1], digest[at + 2], digest[at + 3]])
    };
    VenueIds {
        client_id: word(0),
        client_metadata: word(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_differ_by_order_and_leg() {
        let first = ClientOrderId("lh-00000000-0000-0000-0000-000000000001".to_owned());
        let second = ClientOrderId("lh-00000000-0000-0000-0000-000000000002".to_owned());
        assert_eq!(venue_ids(&first, Leg::Entry), venue_ids(&first, Leg::Entry));
        assert_ne!(
            venue_ids(&first, Leg::Entry),
            venue_ids(&second, Leg::Entry)
        );
        assert_ne!(
            venue_ids(&first, Leg::Entry),
            venue_ids(&first, Leg::StopLoss)
        );
        assert_ne!(
            venue_ids(&first, Leg::TakeProfit),
            venue_ids(&first, Leg::StopLoss)
        );
    }
}
