//! `ledgerhook users limits USER_ID`: show an account's risk limits, or change some of them — a
//! `RiskLimitsChanged` event in the ledger with who and why.

use std::str::FromStr;

use anyhow::{bail, Context};
use chrono::Utc;
use clap::Args;
use rust_decimal::Decimal;
use tokio::task::JoinSet;

use aggregates::{AccountCommand, AccountSettings, Market, SettingsChange};

use super::staff_key::StaffKey;
use super::GlobalArgs;
use crate::app::{open_store, start_ledger};
use crate::ledger::EventContext;

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// The user's id, as printed by `users create`.
    pub user_id: String,
    /// Largest single order, in USD at the reference price.
    #[arg(long)]
    pub max_order_notional_usd: Option<Decimal>,
    /// Largest position in one market, in USD at the reference price.
    #[arg(long)]
    pub max_position_notional_usd: Option<Decimal>,
    /// Most USD traded in one UTC day.
    #[arg(long)]
    pub max_daily_volume_usd: Option<Decimal>,
    /// Largest single order in one market, in base units: MARKET=SIZE, or MARKET=none to lift it
    /// (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub max_order_size: Vec<String>,
    /// Largest position in one market, in base units: MARKET=SIZE or MARKET=none.
    #[arg(long, value_delimiter = ',')]
    pub max_position_size: Vec<String>,
    /// The only markets the account may trade (comma-separated), or `all`.
    #[arg(long, value_delimiter = ',')]
    pub allowed_markets: Option<Vec<String>>,
    /// Most an alert's or limit order's price may differ from the reference price, in basis
    /// points; 0 turns the circuit breaker off.
    #[arg(long)]
    pub max_price_deviation_bps: Option<u32>,
    /// Halt the account after this many orders in a row could not be placed; 0 never halts.
    #[arg(long)]
    pub halt_after_failures: Option<u32>,
    /// The size of an alert that gives none, in USD, or `default` for the service's
    /// (`serve --default-order-usd`).
    #[arg(long, value_name = "USD|default")]
    pub default_order_usd: Option<String>,
    /// Why (recorded in the ledger); required when changing limits.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who changes them (required when changing limits): an operator's staff key.
    #[arg(
        long = "staff-key",
        env = "LEDGERHOOK_STAFF_KEY",
        hide_env_values = true
    )]
    pub staff_key: Option<StaffKey>,
}

impl LimitsArgs {
    fn changes_anything(&self) -> bool {
        self.max_order_notional_usd.is_some()
            || self.max_position_notional_usd.is_some()
            || self.max_daily_volume_usd.is_some()
            || !self.max_order_size.is_empty()
            || !self.max_position_size.is_empty()
            || self.allowed_markets.is_some()
            || self.max_price_deviation_bps.is_some()
            || self.halt_after_failures.is_some()
            || self.default_order_usd.is_some()
    }

    /// The change this command asks of the account, which checks the amounts and applies it to
    /// its limits as they stand when it decides (`SettingsChange`), under its lock.
    fn change(&self) -> anyhow::Result<SettingsChange> {
        let mut change = SettingsChange {
            max_order_notional_usd: self.max_order_notional_usd,
            max_position_notional_usd: self.max_position_notional_usd,
            max_daily_volume_usd: self.max_daily_volume_usd,
            max_price_deviation_bps: self.max_price_deviation_bps,
            halt_after_consecutive_failures: self.halt_after_failures,
            ..SettingsChange::default()
        };
        for (pairs, map) in [
            (&self.max_order_size, &mut change.max_order_size),
            (&self.max_position_size, &mut change.max_position_size),
        ] {
            for pair in pairs {
                let (market, size) = per_market(pair)?;
                map.insert(market, size);
            }
        }
        if let Some(markets) = &self.allowed_markets {
            change.allowed_markets =
                Some(if markets.iter().any(|m| m.eq_ignore_ascii_case("all")) {
                    Default::default()
                } else {
                    markets
                        .iter()
                        .map(|market| Market::parse(market.trim()))
                        .collect::<Result<_, _>>()?
                });
        }
        if let Some(size) = &self.default_order_usd {
            change.default_order_usd = Some(if size.trim().eq_ignore_ascii_case("default") {
                None
            } else {
                Some(
                    Decimal::from_str(size.trim())
                        .with_context(|| format!("`{size}` is not a decimal amount of USD"))?,
                )
            });
        }
        Ok(change)
    }
}

/// `BTC-USD=0.5` or `BTC-USD=none`.
fn per_market(pair: &str) -> anyhow::Result<(Market, Option<Decimal>)> {
    let (market, size) = pair
        .split_once('=')
        .with_context(|| format!("`{pair}` is not MARKET=SIZE"))?;
    let market = Market::parse(market.trim())?;
    if size.trim().eq_ignore_ascii_case("none") {
        return Ok((market, None));
    }
    let size = Decimal::from_str(size.trim())
        .with_context(|| format!("`{size}` is not a decimal size"))?;
    if size <= Decimal::ZERO {
        bail!("the size for {market} must be greater than zero");
    }
    Ok((market, Some(size)))
}

pub async fn run(global: &GlobalArgs, args: LimitsArgs) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let outcome = change(&ledger, &args).await;
    drop(ledger);
    while committers.join_next().await.is_some() {}
    let settings = outcome?;
    let mut shown = serde_json::to_value(&settings.limits)?;
    shown["default_order_usd"] = settings
        .default_order_usd
        .map_or(serde_json::Value::Null, |usd| usd.to_string().into());
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}

/// The account's settings after the change (as they were, when the command asks none).
async fn change(
    ledger: &crate::ledger::Ledger,
    args: &LimitsArgs,
) -> anyhow::Result<AccountSettings> {
    let current = ledger.settings(&args.user_id).await?;
    let Some(current) = current else {
        bail!("no account {}", args.user_id);
    };
    if !args.changes_anything() {
        return Ok(current);
    }
    let Some(reason) = args.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
        bail!("--reason is required to change limits (it is recorded in the ledger)");
    };
    let Some(staff) = &args.staff_key else {
        bail!("--staff-key (or LEDGERHOOK_STAFF_KEY) is required to change limits: an operator's");
    };
    let by = staff.operator(ledger.store()).await?;
    let now = Utc::now();
    let command = AccountCommand::ChangeSettings {
        change: args.change()?,
        by: by.clone(),
        reason: reason.to_owned(),
        at: now,
    };
    let context = EventContext::new(&format!("cli:{by}"), now);
    ledger.execute(&args.user_id, command, &context).await?;
    ledger
        .settings(&args.user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account {}", args.user_id))
}
