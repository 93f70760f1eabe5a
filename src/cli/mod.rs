//! The command line: `serve` (the default), `migrate`, `users create`, `replay`.

mod halt;
mod replay;
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::task::JoinSet;

use aggregates::Market;

use crate::app::{open_store, start_ledger};
use crate::exchange::PaperExchange;
use crate::users::{create_user, Credentials};

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
}

impl GlobalArgs {
    pub fn webhook_url(&self, token: &str) -> String {
        let base = match &self.public_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(host) => format!("https://{}", host.trim_end_matches('/')),
            None => format!("http://{}", self.listen),
        };
        format!("{base}/api/webhook?token={token}")
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
    /// Print an account's events, each with the account state after it.
    Replay(replay::ReplayArgs),
    /// Halt trading for one account, or for everyone (emergency stop) without USER_ID.
    Halt(halt::HaltArgs),
    /// Resume trading for one account, or release the emergency stop without USER_ID.
    Resume(halt::HaltArgs),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user with fresh webhook credentials.
    Create {
        #[arg(long)]
        name: String,
        /// Print {"user_id","webhook_token","webhook_url"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(&cli.global, serve::ServeArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(&cli.global, args).await,
        Some(Command::Migrate) => {
            let store = open_store(&cli.global.database_url).await?;
            println!("migrations applied to the {} store", store.kind());
            Ok(())
        }
        Some(Command::Users(UsersCommand::Create { name, json })) => {
            let credentials = create_user_now(&cli.global, &name).await?;
            let url = cli.global.webhook_url(&credentials.webhook_token);
            if json {
                let line = json!({
                    "user_id": credentials.user_id,
                    "webhook_token": credentials.webhook_token,
                    "webhook_url": url,
                });
                println!("{line}");
            } else {
                println!("user_id:     {}", credentials.user_id);
                println!("webhook_url: {url}");
            }
            Ok(())
        }
        Some(Command::Replay(args)) => replay::run(&cli.global, args).await,
        Some(Command::Halt(args)) => halt::run(&cli.global, halt::Switch::Halt, args).await,
        Some(Command::Resume(args)) => halt::run(&cli.global, halt::Switch::Resume, args).await,
    }
}

/// Creates a user through a short-lived ledger, waiting for its events to be committed.
async fn create_user_now(global: &GlobalArgs, name: &str) -> anyhow::Result<Credentials> {
    let store = open_store(&global.database_url).await?;
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let credentials = create_user(&ledger, name, "cli", Utc::now()).await?;
    drop(ledger);
    while committers.join_next().await.is_some() {}
    Ok(credentials)
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
