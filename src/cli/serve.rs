//! `ledgerhook serve`: the service, with a demo user on a fresh embedded store.

use std::path::{Path, PathBuf};

use clap::builder::FalseyValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};

use chrono::Utc;
use rust_decimal::Decimal;

use super::{paper_prices, GlobalArgs};
use crate::app::{AppConfig, NotificationConfig, RunningApp};
use crate::catchup::{ReadinessLimits, SupervisorConfig};
use crate::exchange::DEFAULT_PAPER_EQUITY_USD;
use crate::execution::{NotificationRetryPolicy, RetryPolicy};
use crate::guard::{
    GuardConfig, IpAllowlist, LockoutPolicy, RateLimit, TrustedProxies, DEFAULT_ADDRESS_FAILURES,
};
use crate::ingest::{IngestConfig, KeyWindows};
use crate::users::create_user;

#[derive(Debug, Args)]
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
    /// How long after approval an order may still be placed; past it the signal is abandoned
    /// (recorded, its reservation released, the trader told) unless the exchange already took it.
    #[arg(
        long,
        env = "LEDGERHOOK_ORDER_DEADLINE_SECONDS",
        default_value_t = RetryPolicy::DEFAULT_DEADLINE_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub order_deadline_seconds: u64,
    /// Leave the audit trail and the read models to another instance sharing the store.
    #[arg(long, env = "LEDGERHOOK_NO_READ_SIDE", value_parser = FalseyValueParser::new())]
    pub no_read_side: bool,
    /// Compare every account's positions with its venue's this often (0: never). Runs only in
    /// instances that execute signals.
    #[arg(
        long,
        env = "LEDGERHOOK_RECONCILE_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    pub reconcile_interval_seconds: u64,
    /// The chain id a wallet's Sign-In with Ethereum message must name (1: Ethereum mainnet,
    /// what wallets sign with by default).
    #[arg(long, env = "LEDGERHOOK_SIGN_IN_CHAIN_ID", default_value_t = 1)]
    pub sign_in_chain_id: u64,
    /// Ask the venues how each resting limit order stands this often. Runs only in instances
    /// that execute signals.
    #[arg(
        long,
        env = "LEDGERHOOK_RESTING_CHECK_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub resting_check_seconds: u64,
    /// Serve even when the PostgreSQL login is a superuser, has CREATEROLE or owns the audit
    /// tables: such a login could undo the audit trail's append-only guarantees (development).
    #[arg(long, env = "LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN", value_parser = FalseyValueParser::new())]
    pub allow_privileged_login: bool,
    #[command(flatten)]
    pub guard: GuardArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub audit: super::audit::AuditArgs,
    #[command(flatten)]
    pub readers: ReaderArgs,
    #[command(flatten)]
    pub dydx: DydxArgs,
    #[command(flatten)]
    pub notifications: NotificationArgs,
}

/// Where notifications go. The bot token and chat ids never come from flags or the environment:
/// they come from the vault (`ledgerhook credentials set service telegram_bot_token`, and each
/// user's `telegram_chat_id`); with no bot token stored, notifications go to the log.
#[derive(Debug, Args)]
pub struct NotificationArgs {
    /// The Telegram Bot API's base URL (a fake one for tests and demos).
    #[arg(long, env = "LEDGERHOOK_TELEGRAM_API_URL", default_value = crate::notify::DEFAULT_TELEGRAM_API_URL)]
    pub telegram_api_url: String,
    /// Seconds before a failed notification's first retry; doubles with each failure, to 15 min.
    #[arg(
        long,
        env = "LEDGERHOOK_NOTIFICATION_RETRY_SECONDS",
        default_value_t = 30
    )]
    pub notification_retry_seconds: u64,
}

impl Default for NotificationArgs {
    fn default() -> Self {
        Self {
            telegram_api_url: crate::notify::DEFAULT_TELEGRAM_API_URL.to_owned(),
            notification_retry_seconds: 30,
        }
    }
}

impl NotificationArgs {
    /// The notification settings (the credentials are the vault's, found at start).
    pub fn config(&self) -> NotificationConfig {
        let first = std::time::Duration::from_secs(self.notification_retry_seconds.max(1));
        NotificationConfig {
            telegram: crate::notify::TelegramOptions {
                api_url: self.telegram_api_url.clone(),
                ..Default::default()
            },
            retry: NotificationRetryPolicy {
                first,
                max: NotificationRetryPolicy::default().max.max(first),
            },
        }
    }
}

/// Where dYdX v4 is. Without both URLs the service trades on paper only and dials nothing.
#[derive(Debug, Args)]
pub struct DydxArgs {
    /// The dYdX Indexer's REST base URL (e.g. https://indexer.v4testnet.dydx.exchange, or the
    /// fake venues' `indexer` line).
    #[arg(long, env = "LEDGERHOOK_DYDX_INDEXER_URL", requires = "dydx_node_url")]
    pub dydx_indexer_url: Option<String>,
    /// A dYdX validator node's gRPC URL (or the fake venues' `node` line).
    #[arg(long, env = "LEDGERHOOK_DYDX_NODE_URL", requires = "dydx_indexer_url")]
    pub dydx_node_url: Option<String>,
    /// Which chain the node serves: testnet or mainnet.
    #[arg(long, env = "LEDGERHOOK_DYDX_CHAIN_ID", default_value = "testnet", value_parser = ["testnet", "mainnet"])]
    pub dydx_chain_id: String,
    /// A market order's price cap, as a fraction beyond the oracle price (0.01 = 1%).
    #[arg(long, env = "LEDGERHOOK_DYDX_SLIPPAGE", default_value = "0.01")]
    pub dydx_slippage: Decimal,
    /// How long a limit order that does not fill at once rests on the book (dYdX's or the paper
    /// exchange's) before it expires (dYdX allows at most 95 days).
    #[arg(
        long,
        env = "LEDGERHOOK_LIMIT_ORDER_TTL_SECONDS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..=crate::exchange::dydx::MAX_LONG_TERM_SECONDS)
    )]
    pub limit_order_ttl_seconds: u64,
}

impl DydxArgs {
    pub fn config(&self) -> anyhow::Result<Option<crate::exchange::dydx::DydxConfig>> {
        let (Some(indexer), Some(node)) = (&self.dydx_indexer_url, &self.dydx_node_url) else {
            return Ok(None);
        };
        let chain = self
            .dydx_chain_id
            .parse()
            .map_err(|error: String| anyhow::anyhow!(error))?;
        anyhow::ensure!(
            self.dydx_slippage > Decimal::ZERO && self.dydx_slippage < Decimal::ONE,
            "--dydx-slippage must be between 0 and 1"
        );
        let mut config = crate::exchange::dydx::DydxConfig::new(indexer, node, chain);
        config.slippage = self.dydx_slippage;
        config.limit_order_lifetime = chrono::Duration::seconds(
            i64::try_from(self.limit_order_ttl_seconds).unwrap_or(i64::MAX),
        );
        Ok(Some(config))
    }
}

/// The catch-up readers' readiness limits, and test-only faults.
#[derive(Debug, Args)]
pub struct ReaderArgs {
    /// `/readyz` answers 503 while a catch-up reader is more than this many events behind the log.
    #[arg(
        long,
        env = "LEDGERHOOK_MAX_READER_LAG_EVENTS",
        default_value_t = 10_000
    )]
    pub max_reader_lag_events: i64,
    /// `/readyz` answers 503 while a catch-up reader's oldest unapplied event is older than this.
    #[arg(long, env = "LEDGERHOOK_MAX_READER_LAG_SECONDS", default_value_t = 30)]
    pub max_reader_lag_seconds: i64,
    /// Test only: the named reader (execution, audit, projections) panics once, on its first page.
    #[arg(long, hide = true)]
    pub fault_panic_reader: Option<String>,
    /// Test only: the first delay before a failed reader is restarted.
    #[arg(long, hide = true, default_value_t = 1000)]
    pub reader_restart_backoff_ms: u64,
}

impl Default for ReaderArgs {
    fn default() -> Self {
        let limits = ReadinessLimits::default();
        Self {
            max_reader_lag_events: limits.max_lag_events,
            max_reader_lag_seconds: limits.max_lag_seconds,
            fault_panic_reader: None,
            reader_restart_backoff_ms: 1000,
        }
    }
}

impl ReaderArgs {
    fn readiness(&self) -> ReadinessLimits {
        ReadinessLimits {
            max_lag_events: self.max_reader_lag_events,
            max_lag_seconds: self.max_reader_lag_seconds,
        }
    }

    fn supervisor(&self) -> SupervisorConfig {
        let first_backoff = std::time::Duration::from_millis(self.reader_restart_backoff_ms);
        SupervisorConfig {
            first_backoff,
            fault_panic_reader: self.fault_panic_reader.clone(),
            ..SupervisorConfig::default()
        }
    }
}

/// What ingest applies where an alert says nothing, and how long it remembers alerts.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// How long an alert's explicit `id` is remembered to recognise resends and replays.
    #[arg(
        long,
        env = "LEDGERHOOK_IDEMPOTENCY_WINDOW_HOURS",
        default_value_t = 24
    )]
    pub idempotency_window_hours: u32,
    /// How long an alert without an id is remembered by its content (only TradingView's resends
    /// of one request: identical alerts later are new trades).
    #[arg(
        long,
        env = "LEDGERHOOK_FINGERPRINT_WINDOW_SECONDS",
        default_value_t = 120
    )]
    pub fingerprint_window_seconds: u32,
    /// How late after its own `timestamp` an alert may arrive, unless it names its `max_lag`.
    #[arg(long, env = "LEDGERHOOK_MAX_LAG_SECONDS", default_value_t = 60)]
    pub max_lag_seconds: u32,
    /// The order size, in USD, of an alert that gives none.
    #[arg(long, env = "LEDGERHOOK_DEFAULT_ORDER_USD", default_value = "100")]
    pub default_order_usd: Decimal,
    /// Each paper account's equity in USD (for sizes given as a percent of equity).
    #[arg(long, env = "LEDGERHOOK_PAPER_EQUITY_USD", default_value = "10000")]
    pub paper_equity_usd: Decimal,
}

impl Default for IngestArgs {
    fn default() -> Self {
        Self {
            idempotency_window_hours: 24,
            fingerprint_window_seconds: 120,
            max_lag_seconds: 60,
            default_order_usd: Decimal::ONE_HUNDRED,
            paper_equity_usd: DEFAULT_PAPER_EQUITY_USD,
        }
    }
}

/// TradingView resends a failed request up to 3 times, 5 s apart, after a 3 s timeout.
const TRADINGVIEW_RESEND_SPAN_SECONDS: u32 = 30;

impl IngestArgs {
    pub fn config(&self) -> anyhow::Result<IngestConfig> {
        anyhow::ensure!(
            self.fingerprint_window_seconds >= TRADINGVIEW_RESEND_SPAN_SECONDS,
            "--fingerprint-window-seconds must cover TradingView's resends ({TRADINGVIEW_RESEND_SPAN_SECONDS} s)"
        );
        anyhow::ensure!(
            u64::from(self.idempotency_window_hours) * 3600 >= u64::from(self.max_lag_seconds),
            "--idempotency-window-hours must cover --max-lag-seconds, or a late replay would pass"
        );
        anyhow::ensure!(
            self.default_order_usd > Decimal::ZERO && self.paper_equity_usd > Decimal::ZERO,
            "--default-order-usd and --paper-equity-usd must be greater than zero"
        );
        Ok(IngestConfig {
            key_windows: KeyWindows {
                explicit_id: chrono::Duration::hours(i64::from(self.idempotency_window_hours)),
                fingerprint: chrono::Duration::seconds(i64::from(self.fingerprint_window_seconds)),
            },
            default_max_lag_seconds: self.max_lag_seconds,
            default_order_usd: self.default_order_usd,
        })
    }
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
    /// Failed authentications with one credential from one client address (within 15 minutes)
    /// before that address's further failures with it are answered 429 (locked out).
    #[arg(long, env = "LEDGERHOOK_LOCKOUT_AFTER_FAILURES", default_value_t = LockoutPolicy::default().max_failures)]
    pub lockout_after_failures: u32,
    /// Failed authentications one client address may make per minute (all at once, or one every
    /// 60/N s), whatever it presents; past it further failures are answered 429. A right
    /// credential is checked first, so it is never refused by this.
    #[arg(long, env = "LEDGERHOOK_ADDRESS_FAILURE_LIMIT", default_value_t = DEFAULT_ADDRESS_FAILURES)]
    pub address_failure_limit: u32,
}

impl Default for GuardArgs {
    fn default() -> Self {
        Self {
            rate_limit_requests: RateLimit::DEFAULT_REQUESTS,
            rate_limit_window_seconds: RateLimit::DEFAULT_WINDOW.as_secs(),
            allowed_ips: Vec::new(),
            trusted_proxies: Vec::new(),
            lockout_after_failures: LockoutPolicy::default().max_failures,
            address_failure_limit: DEFAULT_ADDRESS_FAILURES,
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
            address_failures: RateLimit::new(
                self.address_failure_limit,
                std::time::Duration::from_secs(60),
            )?,
            allowlist: IpAllowlist::parse(&self.allowed_ips, &self.trusted_proxies)?,
            trusted_proxies: TrustedProxies::parse(&self.trusted_proxies)?,
        })
    }
}

/// What `serve` remembers of the demo user it made, so every start can print a working URL.
#[derive(Serialize, Deserialize)]
struct DemoUser {
    user_id: String,
    webhook_token: String,
}

impl ServeArgs {
    /// What `ledgerhook serve` gets with no flags: clap's defaults and the environment. A derived
    /// `Default` would give zeros instead (an order deadline of 0 s abandons every order).
    pub fn without_flags() -> Self {
        let command = <Self as Args>::augment_args(clap::Command::new("serve"));
        let matches = command.get_matches_from(["serve"]);
        <Self as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap_or_else(|error| error.exit())
    }
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let demo_file = demo_file(&global.database_url);
    let config = AppConfig {
        database_url: global.database_url.clone(),
        listen: global.listen,
        paper_prices: paper_prices(&args.paper_prices)?,
        execute_signals: !args.no_execution,
        execution_retry: RetryPolicy {
            deadline: std::time::Duration::from_secs(args.order_deadline_seconds),
            ..RetryPolicy::default()
        },
        run_read_side: !args.no_read_side,
        reconcile_every: (args.reconcile_interval_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.reconcile_interval_seconds)),
        resting_check_every: std::time::Duration::from_secs(args.resting_check_seconds),
        limit_order_lifetime: chrono::Duration::seconds(
            i64::try_from(args.dydx.limit_order_ttl_seconds).unwrap_or(i64::MAX),
        ),
        guard: args.guard.config()?,
        ingest: args.ingest.config()?,
        paper_equity_usd: args.ingest.paper_equity_usd,
        audit: args.audit.config(),
        allow_privileged_login: args.allow_privileged_login,
        readiness: args.readers.readiness(),
        supervisor: args.readers.supervisor(),
        notifications: args.notifications.config(),
        sign_in_chain_id: args.sign_in_chain_id,
        public_url: global
            .public_url
            .as_deref()
            .map(crate::users::urls::base_from_setting),
        vault_key_file: global.vault_key_file.clone(),
        dydx: args.dydx.config()?,
    };
    let shutdown = listen_for_shutdown()?;
    let app = RunningApp::start(config).await?;
    tracing::info!(address = %app.address, store = app.store.kind(), "ledgerhook is serving");
    announce_address(app.address);
    if let (Some(path), false) = (&demo_file, args.no_demo) {
        if app.store.credentials().count_users().await? == 0 {
            let credentials =
                create_user(&app.ledger, &app.vault, "demo", "serve", Utc::now()).await?;
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
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight work");
    app.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The line on stdout that names the address actually bound (with `--listen 127.0.0.1:0`, the port
/// the OS chose), whatever the log level: what scripts and the tests read to find the service.
/// Format, stable: `listening on http://ADDRESS`.
fn announce_address(address: std::net::SocketAddr) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // No reader (a closed pipe) must not stop the service: the address is also in the log.
    let _ = writeln!(stdout, "listening on http://{address}").and_then(|()| stdout.flush());
}

fn print_demo(global: &GlobalArgs, demo: &DemoUser, address: std::net::SocketAddr) {
    let shown = GlobalArgs {
        database_url: String::new(),
        listen: address,
        public_url: global.public_url.clone(),
        vault_key_file: None,
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
    println!(
        "The dashboard (sign in with an Ethereum wallet): {}/",
        shown.base_url()
    );
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

/// SIGTERM or SIGINT, listened for from before the service starts: a supervisor that stops it
/// the moment it announces itself gets a graceful shutdown, not the signal's default (death). A
/// first-run test found that window, when the handlers were installed after the announcement.
#[cfg(unix)]
fn listen_for_shutdown() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn listen_for_shutdown() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod without_flags_tests {
    use super::*;

    /// `ledgerhook` with no subcommand serves with the same settings as `ledgerhook serve`.
    #[test]
    fn serving_without_a_subcommand_takes_serves_own_defaults() {
        let args = ServeArgs::without_flags();
        assert_eq!(
            args.order_deadline_seconds,
            RetryPolicy::DEFAULT_DEADLINE_SECONDS
        );
        assert!(args.resting_check_seconds > 0);
        assert!(args.dydx.limit_order_ttl_seconds > 0);
    }
}
