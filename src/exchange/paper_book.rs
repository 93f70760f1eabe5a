//! The paper exchange's book (`paper_orders`): every order it booked, by client order id, so that
//! a crashed and resumed saga finds what it placed instead of placing it again. A client id trades
//! once; each send of it again is counted (`placements`), so tests see what a venue that does not
//! deduplicate would have done. The only SQL
//! outside `src/store`, written once for both stores through the store's pool and, on SQLite, its
//! one writer queue.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::store::{reading, writing, Result, Store, StoreError};

/// Rows per statement: 9 parameters each stays under SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 1000;

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
}

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
        let booked: Vec<PaperOrder> = writing!(self.store, pool, Db => {
            let mut transaction = pool.begin().await?;
            let mut booked = Vec::with_capacity(orders.len());
            for chunk in orders.chunks(ROWS_PER_STATEMENT) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO paper_orders (client_order_id, account_id, market, side, size, \
                     price, fee, exchange_order_id, placed_at) ",
                );
                insert.push_values(chunk, |mut row, order| {
                    row.push_bind(&order.client_order_id)
                        .push_bind(&order.account_id)
                        .push_bind(&order.market)
                        .push_bind(&order.side)
                        .push_bind(&order.size)
                        .push_bind(&order.price)
                        .push_bind(&order.fee)
                        .push_bind(&order.exchange_order_id)
                        .push_bind(order.placed_at);
                });
                insert.push(
                    " ON CONFLICT (client_order_id) DO UPDATE \
                     SET placements = paper_orders.placements + 1",
                );
                insert.build().execute(&mut *transaction).await?;
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
        });
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

    /// The booked orders among `client_order_ids`, in one query.
    pub async fn find_all(&self, client_order_ids: &[&str]) -> Result<Vec<PaperOrder>> {
        let mut found = Vec::with_capacity(client_order_ids.len());
        for chunk in client_order_ids.chunks(ROWS_PER_STATEMENT) {
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
