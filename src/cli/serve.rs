//! `ledgerhook serve`: the service, with a demo user on a fresh embedded store.

use std::path::{Path, PathBuf};

use clap::builder::FalseyValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};

use chrono::Utc;

use super::{paper_prices, GlobalArgs};
use crate::app::{AppConfig, RunningApp};
use crate::guard::{GuardConfig, IpAllowlist, LockoutPolicy, RateLimit};
use crate::users::create_user;

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Paper exchange reference prices as MARKET=PRICE (repeatable or comma-separated).
    #[arg(
        long = "paper-price",
        env = "LEDGERHOOK_PAPER_PRICES",
        value_delimiter = ','
    )]
    pub paper_prices: Vec<String>,
    /// Do not create a demo user on a fresh embedded store.
    #[arg(long, env = "LEDGERHOOK_NO_DEMO", value_parser = FalseyValueParser::new())]
    pub no_demo: bool,
    /// Record signals but do not execute them (an ingest-only instance).
    #[arg(long, env = "LEDGERHOOK_NO_EXECUTION", value_parser = FalseyValueParser::new())]
    pub no_execution: bool,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// The webhook's abuse controls (see `src/guard`).
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Webhook requests per user per window, for users without a limit of their own.
    #[arg(long, env = "LEDGERHOOK_RATE_LIMIT_REQUESTS", default_value_t = RateLimit::DEFAULT_REQUESTS)]
    pub rate_limit_requests: u32,
    /// The rate limit's window in seconds.
    #[arg(long, env = "LEDGERHOOK_RATE_LIMIT_WINDOW_SECONDS", default_value_t = RateLimit::DEFAULT_WINDOW.as_secs())]
    pub rate_limit_window_seconds: u64,
    /// Only these may call the webhook: addresses, CIDR networks, or `tradingview` for
    /// TradingView's four senders (comma-separated). Unset: any address may.
    #[arg(long, env = "LEDGERHOOK_ALLOWED_IPS", value_delimiter = ',')]
    pub allowed_ips: Vec<String>,
    /// Proxies whose X-Forwarded-For is believed (CIDR networks or addresses, comma-separated).
    #[arg(long, env = "LEDGERHOOK_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Failed authentications of one credential (within 15 minutes) before it is locked out.
    #[arg(long, env = "LEDGERHOOK_LOCKOUT_AFTER_FAILURES", default_value_t = LockoutPolicy::default().max_failures)]
    pub lockout_after_failures: u32,
}

impl Default for GuardArgs {
    fn default() -> Self {
        Self {
            rate_limit_requests: RateLimit::DEFAULT_REQUESTS,
            rate_limit_window_seconds: RateLimit::DEFAULT_WINDOW.as_secs(),
            allowed_ips: Vec::new(),
            trusted_proxies: Vec::new(),
            lockout_after_failures: LockoutPolicy::default().max_failures,
        }
    }
}

impl GuardArgs {
    pub fn config(&self) -> anyhow::Result<GuardConfig> {
        let window = std::time::Duration::from_secs(self.rate_limit_window_seconds);
        Ok(GuardConfig {
            default_rate_limit: RateLimit::new(self.rate_limit_requests, window)?,
            lockout: LockoutPolicy {
                max_failures: self.lockout_after_failures.max(1),
                ..LockoutPolicy::default()
            },
            allowlist: IpAllowlist::parse(&self.allowed_ips, &self.trusted_proxies)?,
        })
    }
}

/// What `serve` remembers of the demo user it made, so every start can print a working URL.
#[derive(Serialize, Deserialize)]
struct DemoUser {
    user_id: String,
    webhook_token: String,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let demo_file = demo_file(&global.database_url);
    let config = AppConfig {
        database_url: global.database_url.clone(),
        listen: global.listen,
        paper_prices: paper_prices(&args.paper_prices)?,
        execute_signals: !args.no_execution,
        guard: args.guard.config()?,
        public_url: global
            .public_url
            .as_deref()
            .map(crate::users::urls::base_from_setting),
    };
    let app = RunningApp::start(config).await?;
    tracing::info!(address = %app.address, store = app.store.kind(), "ledgerhook is serving");
    if let (Some(path), false) = (&demo_file, args.no_demo) {
        if app.store.count_users().await? == 0 {
            let credentials = create_user(&app.ledger, "demo", "serve", Utc::now()).await?;
            write_demo_user(
                path,
                &DemoUser {
                    user_id: credentials.user_id,
                    webhook_token: credentials.webhook.webhook_token,
                },
            )?;
        }
        if let Some(demo) = read_demo_user(path) {
            print_demo(global, &demo, app.address);
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight work");
    app.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

fn print_demo(global: &GlobalArgs, demo: &DemoUser, address: std::net::SocketAddr) {
    let shown = GlobalArgs {
        database_url: String::new(),
        listen: address,
        public_url: global.public_url.clone(),
    };
    let url = shown.webhook_url(&demo.webhook_token);
    println!();
    println!("Demo user {} is ready. Its webhook URL:", demo.user_id);
    println!("  {url}");
    println!("Send it a TradingView alert:");
    println!(
        "  curl -s -X POST '{url}' -d '{{\"symbol\":\"BTCUSDT.P\",\"side\":\"buy\",\"size\":\"0.01\",\"id\":\"demo-1\"}}'"
    );
    println!("Then see every step it took:");
    println!("  cargo run --release -- replay {}", demo.user_id);
    println!();
}

/// The demo user lives beside an embedded store only; a PostgreSQL deployment gets none.
fn demo_file(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite://")?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(Path::new(path).with_extension("demo-user.json"))
}

fn write_demo_user(path: &Path, demo: &DemoUser) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(serde_json::to_string_pretty(demo)?.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn read_demo_user(path: &Path) -> Option<DemoUser> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
