//! The paper exchange's book (`paper_orders`): every order it booked, by client order id, so that
//! a crashed and resumed saga finds what it placed instead of placing it again. A client id trades
//! once; each send of it again is counted (`placements`), so tests see what a venue that does not
//! deduplicate would have done. A limit order rests (`status` resting) until `settle` fills or
//! expires it. The only SQL outside `src/store`, written once for both stores through the store's
//! pool and, on SQLite, its one writer queue.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::store::bulk::{bind_columns, BulkConnection, BulkInsert, Cell};
use crate::store::{reading, writing, Result, Store, StoreError};

/// Ids per SQLite statement, far under its 32,766 parameters.
const SQLITE_IDS_PER_STATEMENT: usize = 1000;

const BOOK: BulkInsert<'static> = BulkInsert {
    head: "INSERT INTO paper_orders (client_order_id, account_id, market, side, size, price, fee, \
           exchange_order_id, placed_at, status, good_til)",
    pg_arrays: &[
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "timestamptz[]",
        "text[]",
        "text[]::timestamptz[]",
    ],
    // Every send is counted: the tests prove each approval reaches the venue once.
    tail: "ON CONFLICT (client_order_id) DO UPDATE SET placements = paper_orders.placements + 1",
};

fn cells(order: &PaperOrder) -> Vec<Cell> {
    vec![
        Cell::Text(order.client_order_id.clone()),
        Cell::Text(order.account_id.clone()),
        Cell::Text(order.market.clone()),
        Cell::Text(order.side.clone()),
        Cell::Text(order.size.clone()),
        Cell::Text(order.price.clone()),
        Cell::Text(order.fee.clone()),
        Cell::Text(order.exchange_order_id.clone()),
        Cell::Time(order.placed_at),
        Cell::Text(order.status.clone()),
        Cell::MaybeText(order.good_til.map(|until| until.to_rfc3339())),
    ]
}

/// An order as the paper exchange booked it. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaperOrder {
    pub client_order_id: String,
    pub account_id: String,
    pub market: String,
    pub side: String,
    pub size: String,
    pub price: String,
    pub fee: String,
    pub exchange_order_id: String,
    pub placed_at: DateTime<Utc>,
    /// `filled`; or `resting` (a limit at `price` the reference price has not reached, fee 0
    /// until it fills), then `filled` or `expired`.
    pub status: String,
    /// Until when a resting order rests.
    pub good_til: Option<DateTime<Utc>>,
}

/// A paper order's `status`.
pub const FILLED: &str = "filled";
pub const RESTING: &str = "resting";
pub const EXPIRED: &str = "expired";

pub struct PaperBook<'a> {
    store: &'a Store,
}

impl<'a> PaperBook<'a> {
    pub fn of(store: &'a Store) -> Self {
        Self { store }
    }

    /// Books `order` unless its client order id is already booked; returns what is booked.
    pub async fn book(&self, order: &PaperOrder) -> Result<PaperOrder> {
        self.book_all(std::slice::from_ref(order))
            .await?
            .pop()
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Books many orders in one transaction, each as `book` would: each comes back as booked,
    /// which for a client order id seen before is the first booking.
    pub async fn book_all(&self, orders: &[PaperOrder]) -> Result<Vec<PaperOrder>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let cells: Vec<Vec<Cell>> = orders.iter().map(cells).collect();
        let booked: Vec<PaperOrder> = match self.store {
            // One statement, the same text for any number of orders (see `crate::store::bulk`).
            // An order booked before comes back from its conflict's update: the first booking's
            // row, its placement counted. (A second half that looked the orders up by
            // `= ANY($ids)` kept, once planned on a young table, a sequential scan of the whole
            // book: a quarter of PostgreSQL's statement time at 500 signals a second.)
            Store::Postgres(store) => {
                let sql = format!("{} RETURNING *", BOOK.postgres_sql());
                bind_columns(sqlx::query_as(&sql), &cells, BOOK.pg_arrays.len())?
                    .fetch_all(store.pool())
                    .await?
            }
            Store::Sqlite(_) => writing!(self.store, pool, Db => {
                let mut transaction = pool.begin().await?;
                BulkConnection::insert_rows(&mut *transaction, &BOOK, &cells).await?;
                let mut booked = Vec::with_capacity(orders.len());
                for chunk in orders.chunks(SQLITE_IDS_PER_STATEMENT) {
                    let mut select = sqlx::QueryBuilder::<Db>::new(
                        "SELECT * FROM paper_orders WHERE client_order_id IN (",
                    );
                    let mut ids = select.separated(", ");
                    for order in chunk {
                        ids.push_bind(&order.client_order_id);
                    }
                    select.push(")");
                    booked.extend(select.build_query_as().fetch_all(&mut *transaction).await?);
                }
                transaction.commit().await?;
                booked
            }),
        };
        let by_id: HashMap<&str, &PaperOrder> = booked
            .iter()
            .map(|order| (order.client_order_id.as_str(), order))
            .collect();
        orders
            .iter()
            .map(|order| {
                by_id
                    .get(order.client_order_id.as_str())
                    .map(|booked| (*booked).clone())
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
            })
            .collect()
    }

    pub async fn find(&self, client_order_id: &str) -> Result<Option<PaperOrder>> {
        let sql = "SELECT * FROM paper_orders WHERE client_order_id = $1";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(client_order_id)
            .fetch_optional(pool)
            .await?))
    }

    /// Every order booked for `account_id`, oldest first.
    pub async fn of_account(&self, account_id: &str) -> Result<Vec<PaperOrder>> {
        let sql =
            "SELECT * FROM paper_orders WHERE account_id = $1 ORDER BY placed_at, client_order_id";
        Ok(reading!(self.store, pool => sqlx::query_as(sql)
            .bind(account_id)
            .fetch_all(pool)
            .await?))
    }

    /// The booked orders among `client_order_ids`, in one query (one statement text on
    /// PostgreSQL whatever their number; see `crate::store::bulk`).
    pub async fn find_all(&self, client_order_ids: &[&str]) -> Result<Vec<PaperOrder>> {
        if let Store::Postgres(store) = self.store {
            let sql = "SELECT * FROM paper_orders WHERE client_order_id = ANY($1)";
            return Ok(sqlx::query_as(sql)
                .bind(client_order_ids)
                .fetch_all(store.pool())
                .await?);
        }
        let mut found = Vec::with_capacity(client_order_ids.len());
        for chunk in client_order_ids.chunks(SQLITE_IDS_PER_STATEMENT) {
            let rows: Vec<PaperOrder> = reading!(self.store, pool, Db => {
                let mut select = sqlx::QueryBuilder::<Db>::new(
                    "SELECT * FROM paper_orders WHERE client_order_id IN (",
                );
                let mut ids = select.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                select.push(")");
                select.build_query_as().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// Ends a resting order: `filled` at `price` with `fee`, or `expired`; an order no longer
    /// resting (another instance ended it first) is left as it is. Returns the order as it stands.
    pub async fn settle(
        &self,
        client_order_id: &str,
        status: &str,
        price: &str,
        fee: &str,
    ) -> Result<Option<PaperOrder>> {
        let sql = "UPDATE paper_orders SET status = $2, price = $3, fee = $4
                   WHERE client_order_id = $1 AND status = 'resting'";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(client_order_id)
            .bind(status)
            .bind(price)
            .bind(fee)
            .execute(pool)
            .await
            .map(drop)?);
        self.find(client_order_id).await
    }

    /// How many times each booked client order id was sent, by client order id.
    pub async fn placements(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT client_order_id, placements FROM paper_orders ORDER BY client_order_id";
        Ok(reading!(self.store, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    pub async fn count(&self) -> Result<i64> {
        let sql = "SELECT count(*) FROM paper_orders";
        Ok(reading!(self.store, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }
}
