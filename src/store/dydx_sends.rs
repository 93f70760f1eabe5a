//! `dydx_sends`: each order the dYdX adapter sends, recorded before it leaves, with the last block
//! it can execute in (a long-term order's: the time it is good until) and the wallet it left
//! from. Read back after a restart so an order whose fate is still open is waited for on that
//! wallet, never sent a second time.

use chrono::{DateTime, Utc};

use super::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DydxSend {
    pub client_order_id: String,
    pub account_id: String,
    pub market: String,
    pub side: String,
    pub good_til_block: i64,
    /// A long-term order's good-til time: it may execute until then (`good_til_block` is 0).
    pub good_til_time: Option<DateTime<Utc>>,
    pub sent_at: DateTime<Utc>,
    /// The wallet it was sent from: the address owning the subaccount, and its number. `None` in
    /// a record written before the wallet was recorded.
    pub address: Option<String>,
    pub subaccount_number: Option<i64>,
}

pub struct DydxSends<'a> {
    pub(super) store: &'a Store,
}

impl DydxSends<'_> {
    /// Records a send; a later send of the same order (the first one expired unexecuted)
    /// replaces it.
    pub async fn record(&self, send: &DydxSend) -> Result<()> {
        let sql = "INSERT INTO dydx_sends (client_order_id, account_id, market, side, \
                   good_til_block, good_til_time, sent_at, address, subaccount_number)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (client_order_id) DO UPDATE
                   SET good_til_block = excluded.good_til_block,
                       good_til_time = excluded.good_til_time, sent_at = excluded.sent_at,
                       address = excluded.address,
                       subaccount_number = excluded.subaccount_number";
        writing!(self.store, pool => sqlx::query(sql)
            .bind(&send.client_order_id)
            .bind(&send.account_id)
            .bind(&send.market)
            .bind(&send.side)
            .bind(send.good_til_block)
            .bind(send.good_til_time)
            .bind(send.sent_at)
            .bind(&send.address)
            .bind(send.subaccount_number)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    pub async fn find(&self, client_order_id: &str) -> Result<Option<DydxSend>> {
        let sql = "SELECT client_order_id, account_id, market, side, good_til_block, good_til_time,
                          sent_at, address, subaccount_number
                   FROM dydx_sends WHERE client_order_id = $1";
        Ok(
            reading!(self.store, pool => sqlx::query_as::<_, DydxSend>(sql)
            .bind(client_order_id)
            .fetch_optional(pool)
            .await?),
        )
    }
}
