//! Each account trades on the venue its user chose: paper (the default) or dYdX. The router is the
//! saga's one `Exchange` and sends every call to the account's venue.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use rust_decimal::Decimal;

use aggregates::{ClientOrderId, Market};

use super::{Exchange, ExchangeError, OrderOutcome, OrderRequest};

/// The venue is the account's: chosen by a `VenueChanged` in its ledger (`aggregates::Venue`).
pub use aggregates::Venue;

/// Where an account's user chose to trade.
#[async_trait]
pub trait VenueChoice: Send + Sync {
    async fn venue_of(&self, account_id: &str) -> Result<Venue, ExchangeError>;

    /// The venue of each account in `account_ids`, in their order. Asked once per page of
    /// orders, so a choice kept in a database answers in one query.
    async fn venues_of(&self, account_ids: &[&str]) -> Result<Vec<Venue>, ExchangeError> {
        let mut venues = Vec::with_capacity(account_ids.len());
        for account_id in account_ids {
            venues.push(self.venue_of(account_id).await?);
        }
        Ok(venues)
    }
}

pub struct VenueRouter {
    paper: Arc<dyn Exchange>,
    /// `None` when the service runs without dYdX configured.
    dydx: Option<Arc<dyn Exchange>>,
    choice: Arc<dyn VenueChoice>,
}

impl VenueRouter {
    pub fn new(
        paper: Arc<dyn Exchange>,
        dydx: Option<Arc<dyn Exchange>>,
        choice: Arc<dyn VenueChoice>,
    ) -> Self {
        Self {
            paper,
            dydx,
            choice,
        }
    }

    /// A page's orders by venue: the paper ones go to the paper exchange as one batch, the others
    /// one by one; an order whose venue cannot be read is answered with that error.
    async fn split<'o>(&self, orders: &'o [OrderRequest]) -> Split<'o> {
        let accounts: Vec<&str> = orders.iter().map(|o| o.account_id.as_str()).collect();
        let venues: Vec<Result<Venue, ExchangeError>> = match self.choice.venues_of(&accounts).await
        {
            Ok(venues) => venues.into_iter().map(Ok).collect(),
            Err(error) => orders.iter().map(|_| Err(error.clone())).collect(),
        };
        let mut split = Split {
            len: orders.len(),
            paper: Vec::new(),
            elsewhere: Vec::new(),
            refused: Vec::new(),
        };
        for (index, (order, venue)) in orders.iter().zip(venues).enumerate() {
            match venue {
                Ok(Venue::Paper) => split.paper.push((index, order.clone())),
                Ok(Venue::Dydx) => split.elsewhere.push((index, order)),
                Err(error) => split.refused.push((index, error)),
            }
        }
        split
    }

    /// The account's venue, or the outcome to report when it cannot trade there.
    async fn venue_of_account(
        &self,
        account_id: &str,
    ) -> Result<Result<&dyn Exchange, OrderOutcome>, ExchangeError> {
        Ok(match self.choice.venue_of(account_id).await? {
            Venue::Paper => Ok(self.paper.as_ref()),
            Venue::Dydx => match &self.dydx {
                Some(dydx) => Ok(dydx.as_ref()),
                None => Err(OrderOutcome::Rejected {
                    reason: "the account trades on dYdX, which this service is not configured for"
                        .to_owned(),
                }),
            },
        })
    }
}

#[async_trait]
impl Exchange for VenueRouter {
    fn venue(&self) -> &'static str {
        "router"
    }

    async fn venue_for(&self, account_id: &str) -> Result<&'static str, ExchangeError> {
        match self.venue_of_account(account_id).await? {
            Ok(venue) => Ok(venue.venue()),
            Err(_) => Err(ExchangeError::Unavailable(
                "the account's venue is not configured in this service".to_owned(),
            )),
        }
    }

    async fn positions(
        &self,
        account_id: &str,
    ) -> Result<std::collections::BTreeMap<Market, Decimal>, ExchangeError> {
        match self.venue_of_account(account_id).await? {
            Ok(venue) => counted(venue, "positions", venue.positions(account_id).await),
            Err(_) => Err(ExchangeError::Unavailable(
                "the account's venue is not configured in this service".to_owned(),
            )),
        }
    }

    /// The paper book answers a page's lookups in one query; other venues one by one.
    async fn find_orders(&self, orders: &[OrderRequest]) -> Vec<super::Found> {
        let split = self.split(orders).await;
        let paper = match split.paper_orders() {
            batch if batch.is_empty() => Vec::new(),
            batch => {
                let found = self.paper.find_orders(&batch).await;
                found
                    .into_iter()
                    .map(|answer| counted(self.paper.as_ref(), "find_order", answer))
                    .collect()
            }
        };
        let others = join_all(split.elsewhere.iter().map(|(_, o)| self.find_placed(o))).await;
        split.assemble(paper, others)
    }

    /// dYdX's oracle price where the service has it (the real market), else the paper price.
    fn reference_price(&self, market: &Market) -> Option<Decimal> {
        self.dydx
            .as_ref()
            .and_then(|dydx| dydx.reference_price(market))
            .or_else(|| self.paper.reference_price(market))
    }

    async fn place_order(&self, order: &OrderRequest) -> Result<OrderOutcome, ExchangeError> {
        match self.venue_of_account(&order.account_id).await? {
            Ok(venue) => counted(venue, "place_order", venue.place_order(order).await),
            Err(refused) => Ok(refused),
        }
    }

    /// Paper orders go as one batch (one transaction); dYdX orders one by one.
    async fn place_orders(
        &self,
        orders: &[OrderRequest],
    ) -> Vec<Result<OrderOutcome, ExchangeError>> {
        let split = self.split(orders).await;
        let paper = match split.paper_orders() {
            batch if batch.is_empty() => Vec::new(),
            batch => {
                let placed = self.paper.place_orders(&batch).await;
                placed
                    .into_iter()
                    .map(|answer| counted(self.paper.as_ref(), "place_order", answer))
                    .collect()
            }
        };
        let others = join_all(split.elsewhere.iter().map(|(_, o)| self.place_order(o))).await;
        split.assemble(paper, others)
    }

    async fn account_equity(&self, account_id: &str) -> Result<Decimal, ExchangeError> {
        match self.venue_of_account(account_id).await? {
            Ok(venue) => counted(
                venue,
                "account_equity",
                venue.account_equity(account_id).await,
            ),
            Err(OrderOutcome::Rejected { reason }) => Err(ExchangeError::Unavailable(reason)),
            Err(_) => Err(ExchangeError::Unavailable("no venue".to_owned())),
        }
    }

    /// Without the account, the paper book is asked first, then dYdX.
    async fn find_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        if let Some(found) = self.paper.find_order(client_order_id).await? {
            return Ok(Some(found));
        }
        match &self.dydx {
            Some(dydx) => dydx.find_order(client_order_id).await,
            None => Ok(None),
        }
    }

    async fn find_placed(
        &self,
        order: &OrderRequest,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        match self.venue_of_account(&order.account_id).await? {
            Ok(venue) => counted(venue, "find_order", venue.find_placed(order).await),
            Err(_) => Ok(None),
        }
    }

    async fn order_status(
        &self,
        order: &OrderRequest,
        exchange_order_id: &str,
    ) -> Result<Option<OrderOutcome>, ExchangeError> {
        match self.venue_of_account(&order.account_id).await? {
            Ok(venue) => counted(
                venue,
                "order_status",
                venue.order_status(order, exchange_order_id).await,
            ),
            Err(_) => Ok(None),
        }
    }

    async fn cancel_resting(&self, order: &OrderRequest) -> Result<(), ExchangeError> {
        match self.venue_of_account(&order.account_id).await? {
            Ok(venue) => counted(venue, "cancel_order", venue.cancel_resting(order).await),
            Err(_) => Ok(()),
        }
    }
}

/// Counts a venue's failure (`/metrics`), passing the answer on.
fn counted<T>(
    venue: &dyn Exchange,
    operation: &'static str,
    answer: Result<T, ExchangeError>,
) -> Result<T, ExchangeError> {
    if let Err(error) = &answer {
        crate::telemetry::exchange_error(venue.venue(), operation, error.kind());
    }
    answer
}

struct Split<'o> {
    len: usize,
    paper: Vec<(usize, OrderRequest)>,
    elsewhere: Vec<(usize, &'o OrderRequest)>,
    refused: Vec<(usize, ExchangeError)>,
}

impl Split<'_> {
    fn paper_orders(&self) -> Vec<OrderRequest> {
        self.paper.iter().map(|(_, order)| order.clone()).collect()
    }

    /// One answer per order, in the orders' order: `paper` answers the paper orders, `others` the
    /// rest, each in the order `split` listed them.
    fn assemble<T>(
        self,
        paper: Vec<Result<T, ExchangeError>>,
        others: Vec<Result<T, ExchangeError>>,
    ) -> Vec<Result<T, ExchangeError>> {
        let mut answers: Vec<Option<Result<T, ExchangeError>>> =
            (0..self.len).map(|_| None).collect();
        let placed = self.paper.iter().map(|(index, _)| *index).zip(paper);
        let elsewhere = self.elsewhere.iter().map(|(index, _)| *index).zip(others);
        let refused = self
            .refused
            .into_iter()
            .map(|(index, error)| (index, Err(error)));
        for (index, answer) in placed.chain(elsewhere).chain(refused) {
            if let Some(slot) = answers.get_mut(index) {
                *slot = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(ExchangeError::Unavailable(
                        "the venue gave no answer".to_owned(),
                    ))
                })
            })
            .collect()
    }
}

/// The venue each account chose in its ledger (`VenueChanged`, the source of truth), read from
/// the ledger's state of the account; an account that never chose there trades where its user
/// row says (the column, written by releases before the event existed; paper by default).
///
/// The state is the one this process's ledger holds, the same the saga decides on: an approval
/// this process committed was decided on a state that had every earlier event of the account
/// (a stale cache makes the append conflict and reload), so an order never goes to a venue the
/// account left before its signal was approved.
pub struct LedgerVenues {
    pub ledger: crate::ledger::Ledger,
    pub fallback: StoredVenues,
}

#[async_trait]
impl VenueChoice for LedgerVenues {
    async fn venues_of(&self, account_ids: &[&str]) -> Result<Vec<Venue>, ExchangeError> {
        let mut chosen = Vec::with_capacity(account_ids.len());
        for account_id in account_ids {
            chosen.push(self.chosen(account_id).await?);
        }
        let unchosen: Vec<&str> = account_ids
            .iter()
            .zip(&chosen)
            .filter(|(_, chosen)| chosen.is_none())
            .map(|(account_id, _)| *account_id)
            .collect();
        // One query for every account without a choice in its ledger, as before.
        let mut stored = self.fallback.venues_of(&unchosen).await?.into_iter();
        chosen
            .into_iter()
            .map(|chosen| match chosen {
                Some(venue) => Ok(venue),
                None => stored.next().ok_or_else(|| {
                    ExchangeError::Unavailable("venue setting: missing answer".to_owned())
                }),
            })
            .collect()
    }

    async fn venue_of(&self, account_id: &str) -> Result<Venue, ExchangeError> {
        match self.chosen(account_id).await? {
            Some(venue) => Ok(venue),
            None => self.fallback.venue_of(account_id).await,
        }
    }
}

impl LedgerVenues {
    async fn chosen(&self, account_id: &str) -> Result<Option<Venue>, ExchangeError> {
        self.ledger
            .venue(account_id)
            .await
            .map_err(|error| ExchangeError::Unavailable(format!("venue setting: {error}")))
    }
}

/// The venue each user row records (`users.venue`): what an account that never chose a venue
/// in its ledger trades on.
pub struct StoredVenues(pub crate::store::Store);

#[async_trait]
impl VenueChoice for StoredVenues {
    async fn venues_of(&self, account_ids: &[&str]) -> Result<Vec<Venue>, ExchangeError> {
        let mut distinct = account_ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let stored: std::collections::HashMap<String, String> = self
            .0
            .credentials()
            .venues_of(&distinct)
            .await
            .map_err(|error| ExchangeError::Unavailable(format!("venue setting: {error}")))?
            .into_iter()
            .collect();
        account_ids
            .iter()
            .map(|account_id| stored_venue(stored.get(*account_id).map(String::as_str)))
            .collect()
    }

    async fn venue_of(&self, account_id: &str) -> Result<Venue, ExchangeError> {
        let stored = self
            .0
            .credentials()
            .venue_of(account_id)
            .await
            .map_err(|error| ExchangeError::Unavailable(format!("venue setting: {error}")))?;
        stored_venue(stored.as_deref())
    }
}

/// An account without a user row (tests, replays) trades on paper, the default.
fn stored_venue(stored: Option<&str>) -> Result<Venue, ExchangeError> {
    match stored {
        None => Ok(Venue::default()),
        Some(text) => Venue::parse(text).ok_or_else(|| {
            ExchangeError::Unavailable(format!("unknown venue {text:?} stored for the user"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{order, Minimal};
    use super::*;

    /// Accounts named `p…` trade on paper, `d…` on dYdX; any other's venue cannot be read.
    struct ByName;

    #[async_trait]
    impl VenueChoice for ByName {
        async fn venue_of(&self, account_id: &str) -> Result<Venue, ExchangeError> {
            match account_id.chars().next() {
                Some('p') => Ok(Venue::Paper),
                Some('d') => Ok(Venue::Dydx),
                _ => Err(ExchangeError::Unavailable("venue setting: down".to_owned())),
            }
        }
    }

    fn of(account_id: &str, id: &str) -> OrderRequest {
        OrderRequest {
            account_id: account_id.to_owned(),
            ..order(id)
        }
    }

    /// A service without dYdX configured: a dYdX trader's order is refused with the reason,
    /// never sent to paper instead, and nothing of theirs is looked up or cancelled anywhere.
    #[tokio::test]
    async fn a_dydx_trader_on_a_service_without_dydx_is_refused_not_traded_on_paper() {
        let paper = Arc::new(Minimal::default());
        let router = VenueRouter::new(paper.clone(), None, Arc::new(ByName));

        let answers = router
            .place_orders(&[of("p1", "paper-1"), of("d1", "dydx-1")])
            .await;
        assert!(matches!(answers[0], Ok(OrderOutcome::Filled { .. })));
        assert!(
            matches!(&answers[1], Ok(OrderOutcome::Rejected { reason }) if reason.contains("not configured")),
            "{answers:?}"
        );
        assert_eq!(
            paper.find_order(&ClientOrderId("dydx-1".into())).await,
            Ok(None)
        );

        let refused = |answer: Result<_, ExchangeError>| matches!(answer, Err(ExchangeError::Unavailable(m)) if m.contains("not configured"));
        assert!(refused(router.venue_for("d1").await.map(drop)));
        assert!(refused(router.positions("d1").await.map(drop)));
        assert!(refused(router.account_equity("d1").await.map(drop)));
        let dydx_order = of("d1", "dydx-1");
        assert_eq!(router.find_placed(&dydx_order).await, Ok(None));
        assert_eq!(router.order_status(&dydx_order, "x").await, Ok(None));
        assert_eq!(router.cancel_resting(&dydx_order).await, Ok(()));
        assert_eq!(router.venue_for("p1").await, Ok("minimal"));
    }

    /// A page whose venues cannot be read is answered unavailable order by order, and none of
    /// it is placed (the saga asks again later).
    #[tokio::test]
    async fn a_page_whose_venues_cannot_be_read_places_nothing() {
        let paper = Arc::new(Minimal::default());
        let router = VenueRouter::new(paper.clone(), None, Arc::new(ByName));
        let answers = router
            .place_orders(&[of("p1", "paper-2"), of("x1", "unknown-1")])
            .await;
        assert!(
            answers
                .iter()
                .all(|answer| matches!(answer, Err(ExchangeError::Unavailable(_)))),
            "{answers:?}"
        );
        assert_eq!(
            router.find_order(&ClientOrderId("paper-2".into())).await,
            Ok(None)
        );
        let found = router.find_orders(&[of("x1", "unknown-1")]).await;
        assert!(matches!(found[0], Err(ExchangeError::Unavailable(_))));
    }
}
