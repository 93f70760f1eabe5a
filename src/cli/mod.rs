//! The command line: `serve` (the default), `migrate`, `users ...`, `staff ...`, `replay`,
//! `halt`/`resume`, `audit verify`, `projections ...`, `reconcile`.

pub mod audit;
mod credentials;
mod halt;
mod keys;
mod limits;
mod projections;
mod reconcile;
pub mod replay;
mod serve;
mod staff;
mod staff_key;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::task::JoinSet;

use aggregates::Market;

use crate::app::{open_store, start_ledger};
use crate::exchange::PaperExchange;
use crate::store::{RateLimit, Store};
use crate::users::{self, create_user, urls, Credentials, WebhookCredentials};
use crate::vault::{load_keyring, Vault};

#[derive(Debug, Parser)]
#[command(
    name = "ledgerhook",
    version,
    about = "TradingView alerts to dYdX v4 trades, every step in an event-sourced ledger"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The ledger's store: sqlite://PATH (embedded, created if missing) or postgres://...
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/ledgerhook.db",
        global = true
    )]
    pub database_url: String,
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "LEDGERHOOK_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// Public base URL of the service, used in printed webhook URLs (default: http://LISTEN).
    #[arg(long, env = "APP_HOST", global = true)]
    pub public_url: Option<String>,
    /// The vault's master keys: lines VERSION:BASE64 of 32-byte keys, the highest version
    /// encrypts (`keys generate` makes one). Keep it away from the database and its backups.
    /// Without it only the embedded demo on the default store runs (it makes ./data/vault.keys).
    #[arg(long, env = "LEDGERHOOK_VAULT_KEY_FILE", global = true)]
    pub vault_key_file: Option<PathBuf>,
}

impl GlobalArgs {
    /// The base of printed URLs: `--public-url`, else the listen address.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(setting) => urls::base_from_setting(setting),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn webhook_url(&self, token: &str) -> String {
        urls::webhook_url(&self.base_url(), token)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default when no command is given).
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage staff (compliance and operators).
    #[command(subcommand)]
    Staff(staff::StaffCommand),
    /// Print an account's events, each with what it changed in the account's state.
    Replay(replay::ReplayArgs),
    /// Halt trading for one account, or for everyone (emergency stop) without USER_ID.
    Halt(halt::HaltArgs),
    /// Resume trading for one account, or release the emergency stop without USER_ID.
    Resume(halt::HaltArgs),
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The read models: rebuild and check them, or show how far behind they are.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Compare the ledger's positions with the venue's now (one account, or every account);
    /// record and tell each drift.
    Reconcile(reconcile::ReconcileArgs),
    /// Encrypted credentials (dYdX, Telegram): set them from standard input.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// The vault's master keys: generate one, or re-encrypt everything under the newest.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The store itself: recreate an embedded store's lost derived file.
    #[command(subcommand)]
    Store(store::StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user with fresh credentials (shown once: only their SHA-256 is kept).
    Create {
        /// The user's display name.
        #[arg(long)]
        name: String,
        /// Print one JSON object: user_id, webhook_token, webhook_url, webhook_uuid,
        /// webhook_secret, two_factor_url, api_key.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new webhook token, uuid and secret; the old ones stop working at once.
    RotateWebhook {
        /// The user's id, as printed by `users create`.
        user_id: String,
        /// Print one JSON object: user_id, webhook_token, webhook_url, webhook_uuid,
        /// webhook_secret, two_factor_url.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new API key (for the trader's own endpoints); the old one stops working at once.
    RotateApiKey {
        /// The user's id, as printed by `users create`.
        user_id: String,
        /// Print {"user_id","api_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every credential of the user from working; the account and its ledger stay.
    Disable {
        /// The user's id, as printed by `users create`.
        user_id: String,
    },
    /// Show the account's risk limits, or change some of them (recorded with who and why).
    Limits(limits::LimitsArgs),
    /// Choose where the user's signals trade: `paper` (the default) or `dydx` (needs the
    /// service's --dydx-* settings and the user's dYdX credentials).
    Venue {
        /// The user's id, as printed by `users create`.
        user_id: String,
        /// `paper` or `dydx`.
        #[arg(value_parser = ["paper", "dydx"])]
        venue: String,
        /// An operator's staff key: the choice is recorded as theirs (`staff:<STAFF_ID>`),
        /// else as `cli`.
        #[arg(
            long = "staff-key",
            env = "LEDGERHOOK_STAFF_KEY",
            hide_env_values = true
        )]
        staff_key: Option<staff_key::StaffKey>,
    },
    /// Set the user's webhook rate limit (the service default is 10 requests per 60 s).
    RateLimit {
        /// The user's id, as printed by `users create`.
        user_id: String,
        /// Requests allowed per window.
        #[arg(long, required_unless_present = "default", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        requests: Option<u32>,
        /// Length of the window in seconds.
        #[arg(long, required_unless_present = "default", value_parser = clap::value_parser!(u32).range(1..=86_400))]
        window_seconds: Option<u32>,
        /// Go back to the service default.
        #[arg(long, conflicts_with_all = ["requests", "window_seconds"])]
        default: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(&cli.global, serve::ServeArgs::without_flags()).await,
        Some(Command::Serve(args)) => serve::run(&cli.global, args).await,
        Some(Command::Migrate) => {
            let store = crate::store::Store::connect(&cli.global.database_url).await?;
            store.migrate().await?;
            println!("migrations applied to the {} store", store.kind());
            Ok(())
        }
        Some(Command::Users(command)) => run_users(&cli.global, command).await,
        Some(Command::Staff(command)) => staff::run(&cli.global, command).await,
        Some(Command::Replay(args)) => replay::run(&cli.global, args).await,
        Some(Command::Halt(args)) => halt::run(&cli.global, halt::Switch::Halt, args).await,
        Some(Command::Resume(args)) => halt::run(&cli.global, halt::Switch::Resume, args).await,
        Some(Command::Audit(command)) => audit::run(&cli.global, command).await,
        Some(Command::Projections(command)) => projections::run(&cli.global, command).await,
        Some(Command::Reconcile(args)) => reconcile::run(&cli.global, args).await,
        Some(Command::Credentials(command)) => credentials::run(&cli.global, command).await,
        Some(Command::Keys(command)) => keys::run(&cli.global, command).await,
        Some(Command::Store(command)) => store::run(&cli.global, command).await,
    }
}

/// The venue is the account's ledger's (`VenueChanged`, what the router reads); the user row's
/// column follows it for what reads the row.
async fn choose_venue(store: Store, user_id: &str, venue: &str, by: &str) -> anyhow::Result<()> {
    let chosen = aggregates::Venue::parse(venue)
        .ok_or_else(|| anyhow::anyhow!("venue must be paper or dydx"))?;
    anyhow::ensure!(
        store.credentials().venue_of(user_id).await?.is_some(),
        "no user {user_id}"
    );
    let now = Utc::now();
    let command = aggregates::AccountCommand::ChooseVenue {
        venue: chosen,
        by: by.to_owned(),
        at: now,
    };
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store.clone(), &mut committers);
    let recorded = ledger
        .execute(user_id, command, &crate::ledger::EventContext::new(by, now))
        .await;
    drop(ledger);
    while committers.join_next().await.is_some() {}
    recorded?;
    store.credentials().set_venue(user_id, venue).await?;
    Ok(())
}

async fn run_users(global: &GlobalArgs, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, json } => {
            let credentials = create_user_now(global, &name).await?;
            let mut shown = webhook_fields(global, &credentials.user_id, &credentials.webhook);
            shown.push(("api_key", credentials.api_key.clone()));
            print_fields(&shown, json);
        }
        UsersCommand::RotateWebhook { user_id, json } => {
            let (_, vault) = open_vault(global).await?;
            let webhook = users::rotate_webhook(&vault, &user_id).await?;
            print_fields(&webhook_fields(global, &user_id, &webhook), json);
        }
        UsersCommand::RotateApiKey { user_id, json } => {
            let store = open_store(&global.database_url).await?;
            let api_key = users::rotate_api_key(&store, &user_id).await?;
            print_fields(&[("user_id", user_id), ("api_key", api_key)], json);
        }
        UsersCommand::Limits(args) => limits::run(global, args).await?,
        UsersCommand::Disable { user_id } => {
            let store = open_store(&global.database_url).await?;
            users::disable_user(&store, &user_id, Utc::now()).await?;
            println!("user {user_id} is disabled: its credentials no longer work");
        }
        UsersCommand::Venue {
            user_id,
            venue,
            staff_key,
        } => {
            let store = open_store(&global.database_url).await?;
            let by = match &staff_key {
                Some(key) => key.operator(&store).await?,
                None => "cli".to_owned(),
            };
            choose_venue(store, &user_id, &venue, &by).await?;
            println!("user {user_id} trades on {venue}");
        }
        UsersCommand::RateLimit {
            user_id,
            requests,
            window_seconds,
            default,
        } => {
            let limit = match (default, requests, window_seconds) {
                (false, Some(requests), Some(window_seconds)) => Some(RateLimit {
                    requests,
                    window_seconds,
                }),
                _ => None,
            };
            let store = open_store(&global.database_url).await?;
            users::set_rate_limit(&store, &user_id, limit).await?;
            let limit = limit.unwrap_or(RateLimit::SERVICE_DEFAULT);
            println!(
                "user {user_id}: {} requests per {} s",
                limit.requests, limit.window_seconds
            );
        }
    }
    Ok(())
}

fn webhook_fields(
    global: &GlobalArgs,
    user_id: &str,
    webhook: &WebhookCredentials,
) -> Vec<(&'static str, String)> {
    let base = global.base_url();
    vec![
        ("user_id", user_id.to_owned()),
        ("webhook_token", webhook.webhook_token.clone()),
        (
            "webhook_url",
            urls::webhook_url(&base, &webhook.webhook_token),
        ),
        ("webhook_uuid", webhook.webhook_uuid.to_string()),
        ("webhook_secret", webhook.webhook_secret.clone()),
        (
            "two_factor_url",
            urls::two_factor_url(&base, &webhook.webhook_uuid),
        ),
    ]
}

/// Secrets are printed to stdout for the operator only: they are shown once and never logged.
fn print_fields(fields: &[(&'static str, String)], as_json: bool) {
    if as_json {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .collect();
        println!("{}", serde_json::Value::Object(object));
        return;
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        println!(
            "{name:width$}  {value}",
            name = format!("{name}:"),
            width = width + 1
        );
    }
    println!(
        "(the webhook URLs are kept encrypted and shown again to their owner by GET \
         /api/config/webhook; an API key is shown only now)"
    );
}

/// Creates a user through a short-lived ledger, waiting for its events to be committed.
async fn create_user_now(global: &GlobalArgs, name: &str) -> anyhow::Result<Credentials> {
    let (store, vault) = open_vault(global).await?;
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let credentials = create_user(&ledger, &vault, name, "cli", Utc::now()).await?;
    drop(vault);
    drop(ledger);
    while committers.join_next().await.is_some() {}
    Ok(credentials)
}

/// The store, and a vault over it with the keys of `--vault-key-file` (or the demo's): it seals
/// and rotates; revealing needs a ledger (the service's).
async fn open_vault(global: &GlobalArgs) -> anyhow::Result<(Store, Vault)> {
    let store = open_store(&global.database_url).await?;
    let keys = load_keyring(&global.database_url, global.vault_key_file.as_deref())?;
    let vault = Vault::new(store.clone(), Arc::new(keys));
    Ok((store, vault))
}

/// `MARKET=PRICE` pairs, e.g. `BTC-USD=65000,ETH-USD=3200`, over the defaults.
pub fn paper_prices(overrides: &[String]) -> anyhow::Result<HashMap<Market, Decimal>> {
    let mut prices = PaperExchange::default_prices();
    for pair in overrides.iter().flat_map(|text| text.split(',')) {
        let (market, price) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("paper price `{pair}` is not MARKET=PRICE"))?;
        let market = Market::parse(market.trim())?;
        let price = Decimal::from_str(price.trim())?;
        anyhow::ensure!(
            price > Decimal::ZERO,
            "paper price for {market} must be positive"
        );
        prices.insert(market, price);
    }
    Ok(prices)
}
