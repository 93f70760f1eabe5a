//! Rebuild speed of the read side: seeds a fresh database with a synthetic history through
//! `Store::append` (batches of whole signals, many accounts interleaved), then times
//! `readside::rebuild` — the same catch-up runner the service uses, replaying the whole log into
//! the `rebuild_*` tables of all four projections — and reports events per second.
//!
//! Environment (defaults in brackets): `REBUILD_STORE` [postgres] or sqlite or both,
//! `DATABASE_URL` [postgres://postgres@127.0.0.1:5432/postgres], `REBUILD_EVENTS` [200000],
//! `REBUILD_ACCOUNTS` [200], `REBUILD_PAGE` [the runner's page size]. See `benches/README.md`.

// Only `with_database` is used here (`interrupted` serves http_load).
#[allow(dead_code)]
mod support;

use support::with_database;

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use sqlx::Connection;

use aggregates::{
    AccountEvent, ClientOrderId, Market, OrderType, Quantity, RiskLimits, Side, SignalId,
    TradeInstruction, TradingAccount, UsdAmount,
};
use ledgerhook::app::open_store;
use ledgerhook::ledger::{encode, EventContext};
use ledgerhook::readside::{self, Runner};
use ledgerhook::store::TableSet;
use projections::Projection;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Events per `Store::append` while seeding.
const SEED_BATCH: usize = 2_000;

#[tokio::main]
async fn main() -> ExitCode {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("rebuild: a rebuild-speed bench; run it with `cargo bench --bench rebuild`");
        return ExitCode::SUCCESS;
    }
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let events: usize = env("REBUILD_EVENTS", "200000").parse().unwrap_or(200_000);
    let accounts: usize = env("REBUILD_ACCOUNTS", "200").parse().unwrap_or(200);
    let page: Option<i64> = std::env::var("REBUILD_PAGE")
        .ok()
        .and_then(|p| p.parse().ok());
    let stores = match env("REBUILD_STORE", "postgres").as_str() {
        "both" => vec!["postgres", "sqlite"],
        "sqlite" => vec!["sqlite"],
        _ => vec!["postgres"],
    };
    let history = history(accounts, events);
    let total: usize = history.iter().map(Vec::len).sum();
    println!("rebuild: {total} events over {accounts} accounts");
    for kind in stores {
        if let Err(error) = run(
            kind,
            &env("DATABASE_URL", DEFAULT_DATABASE_URL),
            &history,
            page,
        )
        .await
        {
            eprintln!("rebuild ({kind}): {error:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn run(
    kind: &str,
    admin_url: &str,
    history: &[Vec<SerializedEvent>],
    page: Option<i64>,
) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let name = format!("ledgerhook_rebuild_{}", std::process::id());
    let url = if kind == "sqlite" {
        format!("sqlite://{}", scratch.path().join("rebuild.db").display())
    } else {
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        with_database(admin_url, &name)
            .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not a URL"))?
    };
    let result = measure(kind, &url, history, page).await;
    if kind != "sqlite" {
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    result
}

async fn measure(
    kind: &str,
    url: &str,
    history: &[Vec<SerializedEvent>],
    page: Option<i64>,
) -> anyhow::Result<()> {
    let store = open_store(url).await?;
    let seeding = Instant::now();
    let mut batch = Vec::with_capacity(SEED_BATCH);
    for signal in history {
        // Whole signals, several accounts per append: as the group committers write.
        batch.extend(signal.iter().cloned());
        if batch.len() >= SEED_BATCH {
            store.events().append(&batch).await?;
            batch.clear();
        }
    }
    store.events().append(&batch).await?;
    println!("{kind}: seeded in {:.1} s", seeding.elapsed().as_secs_f64());
    if let Some(page) = page {
        // The runner alone, at a chosen page size, into the rebuild copy.
        for projection in Projection::ALL {
            store
                .read_models()
                .reset(TableSet::Rebuild, projection)
                .await?;
        }
        let started = Instant::now();
        let mut read = 0usize;
        Runner::new(store.clone(), TableSet::Rebuild, &Projection::ALL)
            .with_page_size(page)
            .catch_up(None, &mut |n| read += n)
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{kind}: page {page}: {read} events in {seconds:.2} s = {:.0} events/s",
            read as f64 / seconds
        );
        return Ok(());
    }
    let report = readside::rebuild(&store, &Projection::ALL, &mut |_| {}, &mut |_| {}).await?;
    println!(
        "{kind}: rebuilt all four projections from {} events in {:.2} s = {:.0} events/s \
         (equal to live: {})",
        report.events_read,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.all_equal()
    );
    Ok(())
}

/// Signals as the service records them (received, approved, submitted, filled, position,
/// notified: 7 events each), round-robin over the accounts, until `events` are made. Each inner
/// Vec is one append: the account's opening, or one signal's events.
fn history(accounts: usize, events: usize) -> Vec<Vec<SerializedEvent>> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let market = Market::parse("BTC-USD").unwrap_or_else(|_| unreachable!("a valid market"));
    let size = Quantity::new(Decimal::from_str("0.01").unwrap_or_default())
        .unwrap_or_else(|_| unreachable!("a positive size"));
    let context = EventContext::new("bench", start);
    let mut appends = Vec::new();
    let mut states = Vec::new();
    let mut made = 0;
    for account in 0..accounts {
        let opened = AccountEvent::AccountOpened {
            display_name: format!("bench-{account}"),
            limits: RiskLimits::default(),
            opened_at: start,
        };
        let mut state = TradingAccount::default();
        state.apply(opened.clone());
        appends
            .push(encode(&format!("acct-{account}"), 1, &[opened], &context).unwrap_or_default());
        states.push((state, 2usize));
        made += 1;
    }
    let mut n = 0usize;
    while made < events {
        let account = n % accounts;
        let (state, next) = &mut states[account];
        let at = start + Duration::seconds(i64::try_from(n).unwrap_or(0) * 13);
        let signal_id = SignalId(format!("sig-{n}"));
        let client_order_id = ClientOrderId::for_signal(&signal_id);
        let side = if (n / accounts) % 3 == 2 {
            Side::Sell
        } else {
            Side::Buy
        };
        let price = Decimal::from(60_000 + (n % 997) as i64);
        let mut signal = vec![
            AccountEvent::SignalReceived {
                signal_id: signal_id.clone(),
                idempotency_key: format!("key-{n}"),
                key_expires_at: at + Duration::hours(24),
                market: market.clone(),
                instruction: TradeInstruction::Order { side, size },
                order_type: OrderType::Market,
                take_profit: None,
                stop_loss: None,
                alert_price: None,
                reference_price: price,
                sent_at: None,
                received_at: at,
            },
            AccountEvent::RiskApproved {
                signal_id: signal_id.clone(),
                client_order_id: client_order_id.clone(),
                market: market.clone(),
                side,
                size,
                reduce_only: false,
                order_type: OrderType::Market,
                take_profit: None,
                stop_loss: None,
                notional_usd: UsdAmount::new(price * size.value()),
            },
            AccountEvent::OrderSubmitted {
                signal_id: signal_id.clone(),
                client_order_id: client_order_id.clone(),
                market: market.clone(),
                side,
                size,
                submitted_at: at,
            },
            AccountEvent::OrderFilled {
                signal_id: signal_id.clone(),
                client_order_id,
                exchange_order_id: format!("x-{n}"),
                market: market.clone(),
                side,
                price,
                size,
                fee_usd: UsdAmount::new(price * size.value() * Decimal::new(5, 4)),
                filled_at: at,
            },
        ];
        let position = state.positions.get(&market).cloned().unwrap_or_default();
        signal.extend(
            position
                .events_for_fill(&signal_id, &market, side, size, price)
                .expect("an ordinary fill"),
        );
        signal.push(AccountEvent::NotificationSent {
            signal_id,
            channel: "log".into(),
            at,
        });
        for event in &signal {
            state.apply(event.clone());
        }
        let context = EventContext::new("bench", at);
        appends
            .push(encode(&format!("acct-{account}"), *next, &signal, &context).unwrap_or_default());
        *next += signal.len();
        made += signal.len();
        n += 1;
    }
    appends
}
