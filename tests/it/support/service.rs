//! The real `ledgerhook` binary, started as a child process on a loopback port it binds itself
//! (port 0; the test learns the port from the `listening on` line the service prints).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

use super::eventually;

pub const BINARY: &str = env!("CARGO_BIN_EXE_ledgerhook");

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub webhook_token: String,
    pub webhook_uuid: String,
    pub webhook_secret: String,
    pub two_factor_url: String,
    pub api_key: String,
}

/// SIGTERM to a `ledgerhook serve`, then its clean exit within 20 s (what a supervisor sends).
pub async fn stop_gracefully(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the service stops within 20 s of SIGTERM")
        .expect("the service's exit status");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

/// Runs a CLI command against `database_url` and returns its stdout; it must succeed.
pub async fn cli(database_url: &str, args: &[&str]) -> String {
    let output = cli_output(database_url, args).await;
    assert!(
        output.status.success(),
        "ledgerhook {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("CLI output is UTF-8")
}

/// Runs a CLI command against `database_url`, whatever its exit status (logs at `warn`).
pub async fn cli_output(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env(super::vault::KEY_FILE_ENV, super::vault::key_file())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the ledgerhook binary runs")
}

/// A new operator (`staff create --role operator`): (staff_id, staff key).
pub async fn operator(database_url: &str, name: &str) -> (String, String) {
    super::audit::create_staff(database_url, name, "operator").await
}

/// Runs an operator's command (`halt`, `resume`, `users limits`) as a new operator, their key
/// in `LEDGERHOOK_STAFF_KEY`; it must succeed. The ledger records it as `staff:<their id>`.
pub async fn operator_cli(database_url: &str, args: &[&str]) -> String {
    let (_, key) = operator(database_url, "ops").await;
    cli_as(database_url, &key, args).await
}

/// Runs a CLI command with `key` in `LEDGERHOOK_STAFF_KEY`; it must succeed.
pub async fn cli_as(database_url: &str, key: &str, args: &[&str]) -> String {
    let output = cli_output_as(database_url, key, args).await;
    assert!(
        output.status.success(),
        "ledgerhook {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("CLI output is UTF-8")
}

/// Runs a CLI command with `key` in `LEDGERHOOK_STAFF_KEY`, whatever its exit status.
pub async fn cli_output_as(database_url: &str, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env(super::vault::KEY_FILE_ENV, super::vault::key_file())
        .env("LEDGERHOOK_STAFF_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the ledgerhook binary runs")
}

/// `ledgerhook credentials set OWNER FIELD` with `value` on standard input; it must succeed.
pub async fn credentials_set(database_url: &str, owner: &str, field: &str, value: &str) {
    let output = cli_with_input(database_url, &["credentials", "set", owner, field], value).await;
    assert!(
        output.status.success(),
        "credentials set {owner} {field} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a CLI command against `database_url` with `input` on its standard input, whatever its
/// exit status.
pub async fn cli_with_input(
    database_url: &str,
    args: &[&str],
    input: &str,
) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env(super::vault::KEY_FILE_ENV, super::vault::key_file())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ledgerhook binary runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
        .await
        .expect("the input is written");
    drop(stdin);
    child
        .wait_with_output()
        .await
        .expect("the command finishes")
}

pub async fn create_user(database_url: &str, name: &str) -> User {
    let out = cli(database_url, &["users", "create", "--name", name, "--json"]).await;
    let json: Value = serde_json::from_str(out.trim()).expect("users create prints JSON");
    let field = |name: &str| json_field(&json, name);
    User {
        api_key: field("api_key"),
        ..webhook_credentials(&json)
    }
}

/// `users rotate-webhook USER --json`: the user with the new webhook credentials (and no API key).
pub async fn rotate_webhook(database_url: &str, user_id: &str) -> User {
    let out = cli(
        database_url,
        &["users", "rotate-webhook", user_id, "--json"],
    )
    .await;
    let json: Value = serde_json::from_str(out.trim()).expect("rotate-webhook prints JSON");
    webhook_credentials(&json)
}

fn webhook_credentials(json: &Value) -> User {
    let field = |name: &str| json_field(json, name);
    assert!(field("webhook_url").ends_with(&format!("?token={}", field("webhook_token"))));
    assert!(field("two_factor_url").ends_with(&format!("/webhooks/{}", field("webhook_uuid"))));
    User {
        user_id: field("user_id"),
        webhook_token: field("webhook_token"),
        webhook_uuid: field("webhook_uuid"),
        webhook_secret: field("webhook_secret"),
        two_factor_url: field("two_factor_url"),
        api_key: String::new(),
    }
}

fn json_field(json: &Value, name: &str) -> String {
    json[name]
        .as_str()
        .unwrap_or_else(|| panic!("the CLI prints {name}: {json}"))
        .to_owned()
}

/// `ledgerhook replay USER --json --full-state`, one object per event, each with its `state`.
pub async fn replay(database_url: &str, user_id: &str) -> Vec<Value> {
    cli(database_url, &["replay", user_id, "--json", "--full-state"])
        .await
        .lines()
        .map(|line| serde_json::from_str(line).expect("replay --json prints JSON lines"))
        .collect()
}

pub struct Service {
    pub base_url: String,
    child: Child,
    http: reqwest::Client,
    _log: ServiceLog,
}

#[derive(Default, Clone)]
pub struct Options {
    pub no_execution: bool,
    pub crash_after_placement: bool,
    /// Extra `serve` flags (they override the environment set below).
    pub args: Vec<String>,
    /// Write everything the service logs, at `debug`, to this file.
    pub log_file: Option<std::path::PathBuf>,
    /// Run the service's wall clock this far ahead (libfaketime's syntax, e.g. `+2d`).
    pub clock_offset: Option<String>,
    /// Serve without `--allow-privileged-login` (production's PostgreSQL login check).
    pub strict_login: bool,
    /// Extra environment variables (fault injection such as `LEDGERHOOK_PAPER_UNAVAILABLE`).
    pub env: Vec<(String, String)>,
}

impl Options {
    /// Records alerts but does not execute them: for tests that need a signal acknowledged and
    /// not yet executed, or care only about the front door.
    pub fn ingest_only() -> Self {
        Self {
            no_execution: true,
            ..Self::default()
        }
    }
}

impl Service {
    pub async fn start(database_url: &str, options: Options) -> Self {
        let log = ServiceLog::new(options.log_file.as_deref());
        let mut command = serve_command(database_url, &options, &log);
        let mut child = command.spawn().expect("the ledgerhook binary starts");
        let stdout = child.stdout.take().expect("the service's stdout is piped");
        let (announced, address) = oneshot::channel();
        tokio::spawn(forward_stdout(stdout, log.path.clone(), announced));
        let base_url = match tokio::time::timeout(STARTUP_TIMEOUT, address).await {
            Ok(Ok(base_url)) => base_url,
            Ok(Err(_)) => panic!(
                "the service exited before it was listening ({:?}); {}",
                child.wait().await,
                log.describe()
            ),
            Err(_) => panic!(
                "the service printed no `listening on` line within {} s; {}",
                STARTUP_TIMEOUT.as_secs(),
                log.describe()
            ),
        };
        let service = Self {
            base_url,
            child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            _log: log,
        };
        let http = service.http.clone();
        let health = format!("{}/healthz", service.base_url);
        eventually("the service to answer /healthz", || {
            let http = http.clone();
            let health = health.clone();
            async move {
                let response = http.get(&health).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        service
    }

    pub async fn post_signal(&self, token: &str, body: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}/api/webhook?token={token}", self.base_url))
                .header("content-type", "text/plain")
                .body(body.to_owned()),
        )
        .await
    }

    /// `POST /webhooks/{uuid_path}` (seed 000's two-factor scheme; the secret is in `body`).
    pub async fn post_two_factor(&self, uuid_path: &str, body: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}/webhooks/{uuid_path}", self.base_url))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// The service's process id (to read its memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A request of the caller's making to this service, answered as (status, JSON or Null).
    /// `GET /metrics`: Prometheus' text format.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("the service answers /metrics");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("a text body")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    /// SIGKILL: no graceful shutdown, nothing flushed that was not already durable.
    pub async fn kill_9(mut self) {
        self.child.kill().await.expect("the service can be killed");
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(mut self) {
        stop_gracefully(&mut self.child).await;
    }

    /// Waits for the process to die by itself (after an injected crash).
    pub async fn wait_for_crash(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the service crashes as injected")
            .expect("the service's exit status");
        assert!(!status.success());
    }
}

impl Drop for Service {
    /// Under a coverage run (`LLVM_PROFILE_FILE` set) a service the test just drops gets SIGTERM
    /// and a moment to exit, so that it writes its profile: a killed process writes none, and
    /// every line it ran would count as never run. Otherwise `kill_on_drop` kills it at once.
    fn drop(&mut self) {
        if std::env::var_os("LLVM_PROFILE_FILE").is_none() {
            return;
        }
        let Some(pid) = self.child.id() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ledgerhook serve` as the tests run it: on a port of the OS's choosing, stdout piped (for the
/// `listening on` line), stderr to `log`.
fn serve_command(database_url: &str, options: &Options, log: &ServiceLog) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .args(&options.args)
        .env("DATABASE_URL", database_url)
        .env(super::vault::KEY_FILE_ENV, super::vault::key_file())
        // These tests send far more than the default 10 alerts a minute per user; the rate
        // limit itself is tested in abuse.rs with explicit flags.
        .env("LEDGERHOOK_RATE_LIMIT_REQUESTS", "1000000")
        // Many tests send bad credentials on purpose; the per-address failure limit is tested
        // in strangers.rs with an explicit flag.
        .env("LEDGERHOOK_ADDRESS_FAILURE_LIMIT", "1000000")
        // The OS picks a free port and the service says which (`listening on ...`): no port
        // is chosen here and given up, for another test to take before the service binds it.
        .env("LEDGERHOOK_LISTEN", "127.0.0.1:0")
        .env("LEDGERHOOK_NO_DEMO", "true")
        // The test server's login is the superuser `postgres` (see `strict_login`).
        .env(
            "LEDGERHOOK_ALLOW_PRIVILEGED_LOGIN",
            (!options.strict_login).to_string(),
        )
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match &log.path {
        Some(path) => command.stderr(Stdio::from(open_for_appending(path))),
        None => command.stderr(Stdio::inherit()),
    };
    if options.log_file.is_some() {
        command.env("RUST_LOG", "debug");
    }
    if options.no_execution {
        command.env("LEDGERHOOK_NO_EXECUTION", "true");
    }
    if options.crash_after_placement {
        command.env("LEDGERHOOK_CRASH_AFTER_PLACEMENT", "1");
    }
    if let Some(offset) = &options.clock_offset {
        command.envs(super::clock::shifted_by(offset));
    }
    command.envs(options.env.iter().map(|(name, value)| (name, value)));
    command
}

/// How long the service may take to bind its port (migrations run first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The stable line `serve` prints once it has bound its port.
const LISTENING: &str = "listening on ";

/// Where the service's output goes: the caller's log file, a private one (kept for a failure's
/// message), or this process's stderr under `TEST_LOG`.
struct ServiceLog {
    path: Option<PathBuf>,
    _private: Option<tempfile::TempDir>,
}

impl ServiceLog {
    fn new(log_file: Option<&Path>) -> Self {
        if let Some(path) = log_file {
            std::fs::File::create(path).expect("the log file can be created");
            return Self {
                path: Some(path.to_owned()),
                _private: None,
            };
        }
        if std::env::var_os("TEST_LOG").is_some() {
            return Self {
                path: None,
                _private: None,
            };
        }
        let dir = tempfile::tempdir().expect("a directory for the service's log");
        Self {
            path: Some(dir.path().join("service.log")),
            _private: Some(dir),
        }
    }

    /// For a start-up failure: the log itself, else where it went.
    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!(
                "its log ({}):\n{}",
                path.display(),
                std::fs::read_to_string(path).unwrap_or_default()
            ),
            None => "its log is above (TEST_LOG)".to_owned(),
        }
    }
}

fn open_for_appending(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the service's log file opens")
}

/// Reads the service's stdout to its end (so a full pipe never blocks it), passes on the address
/// of its `listening on` line, and keeps every line where the service's log goes.
async fn forward_stdout(
    stdout: ChildStdout,
    log: Option<PathBuf>,
    announced: oneshot::Sender<String>,
) {
    let mut announced = Some(announced);
    let mut file = log.as_deref().map(open_for_appending);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(address) = line.strip_prefix(LISTENING) {
            if let Some(announced) = announced.take() {
                let _ = announced.send(address.trim().to_owned());
            }
        }
        match file.as_mut() {
            Some(file) => {
                let _ = writeln!(file, "{line}");
            }
            None => eprintln!("{line}"),
        }
    }
}
