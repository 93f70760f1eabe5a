//! A fresh PostgreSQL database per test, so tests that need PostgreSQL can
//! run in parallel without seeing each other's data.
//!
//! ```ignore
//! let db = TestDatabase::create().await;
//! let pool = sqlx::PgPool::connect(&db.url).await?;
//! // ... the database is dropped (WITH (FORCE)) when `db` goes out of scope.
//! ```
//!
//! Which server is used is decided once per test process, in this order:
//!
//! 1. `DATABASE_URL`, when it is set to a `postgres://` or `postgresql://`
//!    URL. Test databases are created next to the database it names (or, when
//!    that database does not exist, next to `postgres` on the same server).
//!    If it is set but cannot be reached, the tests fail: it is never
//!    silently replaced by another server.
//! 2. `postgres://postgres@127.0.0.1:5432/postgres`, when a server there lets
//!    the `postgres` role in without a password.
//! 3. A private throwaway cluster: `initdb` and `pg_ctl` are looked up on
//!    `PATH`, then in `/usr/lib/postgresql/*/bin` (newest first) and a few
//!    other usual places. It lives in a temporary directory, listens on a
//!    free port of 127.0.0.1 and trusts every local connection. `initdb`
//!    refuses to run as root, so as root the cluster is run as `nobody`
//!    (through `setpriv`, or `runuser`). A small watchdog process (`sh`)
//!    stops it (`pg_ctl stop -m immediate`) and removes its directory as
//!    soon as the test process exits, however it exits.
//!
//! Setting `LEDGERHOOK_TEST_PG=private` skips steps 1 and 2.
//!
//! When none of these works, [`TestDatabase::create`] panics with a message
//! that says how to get PostgreSQL; tests are never skipped silently.
//!
//! All the work is done on short-lived helper threads with their own
//! current-thread tokio runtimes, so it does not depend on the caller's
//! runtime (flavor, paused time, or whether it is still alive in `Drop`).

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Env var that forces the private cluster (value `private`).
const MODE_VAR: &str = "LEDGERHOOK_TEST_PG";
/// The local server tried when `DATABASE_URL` is not a postgres URL.
const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The role `initdb` creates as superuser in the private cluster.
pub(crate) const PRIVATE_SUPERUSER: &str = "postgres";
/// The unprivileged user that runs the private cluster when we are root.
pub(crate) const UNPRIVILEGED_USER: &str = "nobody";

const HOW_TO_GET_POSTGRES: &str = "PostgreSQL is needed for these tests. Do one of:\n  \
     - set DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DB, for a role that may CREATE DATABASE;\n  \
     - run a server on 127.0.0.1:5432 that lets the role `postgres` in without a password (trust);\n  \
     - install PostgreSQL so that `initdb` and `pg_ctl` are on PATH or in /usr/lib/postgresql/*/bin \
     (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; \
     macOS: brew install postgresql).";

/// A database of its own for one test, dropped when this value is dropped.
pub struct TestDatabase {
    /// URL of the new database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/ledgerhook_test_<uuid>`.
    pub url: String,
    /// URL of the database the server was reached through; used to drop.
    admin_url: String,
    /// Name of the new database.
    name: String,
}

impl TestDatabase {
    /// Creates `ledgerhook_test_<uuid>` on the test server (found on first
    /// use, see the module docs) and returns it.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL server can be found or started, or the database
    /// cannot be created; the message says why and what to do.
    pub async fn create() -> TestDatabase {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("test-db-create".to_owned())
            .spawn(move || {
                // If the caller went away, the database is dropped right here.
                let _ = tx.send(create_blocking());
            });
        if let Err(err) = spawned {
            panic!("could not start a thread to create a test database: {err}");
        }
        match rx.await {
            Ok(Ok(db)) => db,
            Ok(Err(message)) => panic!("{message}"),
            Err(_) => panic!(
                "the thread creating the test database stopped without an answer \
                 (see its panic message above)"
            ),
        }
    }
}

impl Drop for TestDatabase {
    /// Drops the database `WITH (FORCE)`, best effort: failures are only
    /// reported on stderr, and this never panics.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("test-db-drop".to_owned())
            .spawn(move || {
                let result = block_on_own_runtime(drop_database(&admin_url, &name))
                    .and_then(|result| result);
                let _ = tx.send(result);
            });
        let problem = match spawned {
            Err(err) => Some(format!("could not start a thread: {err}")),
            Ok(_) => match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err),
                Err(mpsc::RecvTimeoutError::Timeout) => Some("timed out after 30 s".to_owned()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Some("its thread stopped without an answer".to_owned())
                }
            },
        };
        if let Some(problem) = problem {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}: {problem}",
                self.name
            );
        }
    }
}

/// The server chosen for this test process.
struct Server {
    /// URL of an existing database on it, to run `CREATE DATABASE` from.
    admin_url: String,
    /// Keeps the private cluster (if any) alive for the process lifetime.
    _private: Option<PrivateCluster>,
}

/// A throwaway cluster. Never dropped once stored in [`SERVER`]: its watchdog
/// stops it and removes its directory when this process exits.
struct PrivateCluster {
    _dir: tempfile::TempDir,
    /// The watchdog waits for end-of-file on its stdin, which comes when
    /// this is dropped or the process exits.
    _watchdog: ChildStdin,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn create_blocking() -> Result<TestDatabase, String> {
    let server = SERVER
        .get_or_init(discover)
        .as_ref()
        .map_err(Clone::clone)?;
    let name = format!("ledgerhook_test_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&server.admin_url, &name)
        .ok_or_else(|| format!("not a URL: {}", redact(&server.admin_url)))?;
    block_on_own_runtime(create_database(&server.admin_url, &name))??;
    Ok(TestDatabase {
        url,
        admin_url: server.admin_url.clone(),
        name,
    })
}

/// Runs `future` to completion on a new current-thread runtime. Must be
/// called outside any runtime (we only call it on our own threads).
fn block_on_own_runtime<F: Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("could not build a tokio runtime: {err}"))?;
    Ok(runtime.block_on(future))
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

fn discover() -> Result<Server, String> {
    let server = match std::env::var(MODE_VAR).unwrap_or_default().as_str() {
        "" => discover_auto(),
        "private" => start_private_cluster().map_err(|err| {
            format!(
                "{MODE_VAR}=private, but a private PostgreSQL cluster could not be started: \
                 {err}\n{HOW_TO_GET_POSTGRES}"
            )
        }),
        other => Err(format!(
            "{MODE_VAR} is set to {other:?}; the only value it takes is `private` \
             (or leave it unset)"
        )),
    }?;
    let how = if server._private.is_some() {
        "a private cluster at"
    } else {
        "the server at"
    };
    let _ = writeln!(
        std::io::stderr(),
        "test databases: using {how} {}",
        redact(&server.admin_url)
    );
    Ok(server)
}

fn discover_auto() -> Result<Server, String> {
    // 1. DATABASE_URL, when it names a postgres server.
    let database_url = std::env::var("DATABASE_URL").unwrap_or_default();
    if is_postgres_url(&database_url) {
        let admin_url = block_on_own_runtime(admin_url_for(&database_url))?.map_err(|err| {
            format!(
                "DATABASE_URL is set to {}, but that server could not be used: {err}\n\
                 Fix DATABASE_URL, or unset it to let the tests find or start a server.",
                redact(&database_url)
            )
        })?;
        return Ok(Server {
            admin_url,
            _private: None,
        });
    }
    let database_url_note = if database_url.is_empty() {
        "not set"
    } else {
        "set, but not to a postgres:// URL"
    };

    // 2. A local server with trust authentication.
    let local = block_on_own_runtime(async {
        match tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(LOCAL_URL)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        }
    })?;
    let local_note = match local {
        Ok(()) => {
            return Ok(Server {
                admin_url: LOCAL_URL.to_owned(),
                _private: None,
            })
        }
        Err(err) => err,
    };

    // 3. A private throwaway cluster.
    let private_note = match start_private_cluster() {
        Ok(server) => return Ok(server),
        Err(err) => err,
    };

    Err(format!(
        "no PostgreSQL server could be found or started for the tests:\n  \
         - DATABASE_URL: {database_url_note}\n  \
         - {LOCAL_URL}: {local_note}\n  \
         - private cluster: {private_note}\n\
         {HOW_TO_GET_POSTGRES}"
    ))
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Checks that `url` can be connected to and returns it; when the database it
/// names does not exist, falls back to `postgres` on the same server.
async fn admin_url_for(url: &str) -> Result<String, String> {
    match connect(url, Duration::from_secs(10)).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(url.to_owned())
        }
        Err(ConnectError::Sqlx(err)) if database_error_code(&err).as_deref() == Some("3D000") => {
            let fallback = with_database(url, "postgres")
                .ok_or_else(|| format!("not a URL: {}", redact(url)))?;
            let conn =
                connect(&fallback, Duration::from_secs(10))
                    .await
                    .map_err(|fallback_err| {
                        format!("{err}; and through database `postgres`: {fallback_err}")
                    })?;
            let _ = conn.close().await;
            Ok(fallback)
        }
        Err(err) => Err(err.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Creating and dropping databases
// ---------------------------------------------------------------------------

enum ConnectError {
    Sqlx(sqlx::Error),
    Timeout(Duration),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Sqlx(err) => write!(f, "{err}"),
            ConnectError::Timeout(after) => write!(f, "no answer within {} s", after.as_secs()),
        }
    }
}

async fn connect(url: &str, timeout: Duration) -> Result<PgConnection, ConnectError> {
    match tokio::time::timeout(timeout, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(ConnectError::Sqlx(err)),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

fn database_error_code(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db_err| db_err.code())
        .map(|code| code.into_owned())
}

async fn create_database(admin_url: &str, name: &str) -> Result<(), String> {
    let fail = |err: &dyn std::fmt::Display| {
        format!(
            "could not create test database {name} on {}: {err}",
            redact(admin_url)
        )
    };
    let mut conn = connect(admin_url, Duration::from_secs(10))
        .await
        .map_err(|err| fail(&err))?;
    // Simple-query protocol: CREATE DATABASE may not run in a transaction.
    let sql = format!("CREATE DATABASE {}", quote_ident(name));
    let mut attempt = 1;
    let result = loop {
        match sqlx::raw_sql(&sql).execute(&mut conn).await {
            Ok(_) => break Ok(()),
            // 55006 object_in_use: someone is connected to template1 just now.
            Err(err) if database_error_code(&err).as_deref() == Some("55006") && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => break Err(fail(&err)),
        }
    };
    let _ = conn.close().await;
    result
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut conn = connect(admin_url, Duration::from_secs(10))
        .await
        .map_err(|err| err.to_string())?;
    let ident = quote_ident(name);
    let forced = format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)");
    let result = match sqlx::raw_sql(&forced).execute(&mut conn).await {
        Ok(_) => Ok(()),
        // 42601 syntax_error: a server older than 13, without WITH (FORCE).
        Err(err) if database_error_code(&err).as_deref() == Some("42601") => {
            let terminate = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(name)
            .execute(&mut conn)
            .await;
            match terminate {
                Ok(_) => sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {ident}"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            }
        }
        Err(err) => Err(err.to_string()),
    };
    let _ = conn.close().await;
    result
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------

/// Splits `scheme://authority/path?query` into (`scheme://`, authority,
/// `?query` or "").
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let query = after.find('?').map_or("", |at| &after[at..]);
    Some((&url[..scheme_end], &rest[..authority_end], query))
}

/// `url` with its database (path) replaced by `database`.
fn with_database(url: &str, database: &str) -> Option<String> {
    let (scheme, authority, query) = split_url(url)?;
    Some(format!("{scheme}{authority}/{database}{query}"))
}

/// `url` with its password, if any, replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, authority, _)) = split_url(url) else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    let rest = &url[scheme.len() + authority.len()..];
    format!("{scheme}{user}:***@{host}{rest}")
}

// ---------------------------------------------------------------------------
// Private cluster
// ---------------------------------------------------------------------------

fn start_private_cluster() -> Result<Server, String> {
    let bin = find_postgres_bin_dir().ok_or_else(|| {
        "`initdb` and `pg_ctl` were not found on PATH nor in /usr/lib/postgresql/*/bin, \
         /usr/pgsql-*/bin, /usr/local/pgsql/bin, /opt/homebrew/bin"
            .to_owned()
    })?;
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");

    // initdb refuses to run as root: then run the cluster as `nobody`.
    let as_root = effective_uid() == Some(0);
    let (wrapper, owner) = if as_root {
        let (uid, gid) = user_ids(UNPRIVILEGED_USER)?;
        (unprivileged_wrapper(uid, gid)?, Some((uid, gid)))
    } else {
        (Vec::new(), None)
    };

    // As root, use /tmp (world-traversable) rather than a TMPDIR that
    // `nobody` might not be able to reach.
    let mut builder = tempfile::Builder::new();
    builder.prefix("ledgerhook-pg-");
    let dir = if as_root && Path::new("/tmp").is_dir() {
        builder.tempdir_in("/tmp")
    } else {
        builder.tempdir()
    }
    .map_err(|err| format!("could not create a temporary directory: {err}"))?;
    if let Some((uid, gid)) = owner {
        chown(dir.path(), uid, gid).map_err(|err| {
            format!(
                "could not give {} to user {UNPRIVILEGED_USER}: {err}",
                dir.path().display()
            )
        })?;
    }
    let data = dir.path().join("data");
    let log = dir.path().join("postgres.log");

    // Started before anything else, so that whatever happens next the
    // cluster is stopped and its directory removed once we are gone.
    let watchdog = spawn_watchdog(dir.path(), &wrapper, &pg_ctl, &data)?;
    let cluster = PrivateCluster {
        _dir: dir,
        _watchdog: watchdog,
    };
    let dir = cluster._dir.path();

    let mut initdb_cmd = command(&wrapper, &initdb);
    initdb_cmd
        .arg("-D")
        .arg(&data)
        .args(["-U", PRIVATE_SUPERUSER, "--auth=trust", "--encoding=UTF8"])
        .args(["--no-locale", "--no-sync"])
        .current_dir(dir);
    run(initdb_cmd, "initdb")?;

    let mut last_err = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let start = pg_ctl_start(
            command(&wrapper, &pg_ctl),
            (&data, &log, dir),
            port,
            "-c synchronous_commit=off",
        );
        match run(start, "pg_ctl start") {
            Ok(()) => {
                let admin_url = format!("postgres://{PRIVATE_SUPERUSER}@127.0.0.1:{port}/postgres");
                wait_until_accepting(&admin_url)?;
                return Ok(Server {
                    admin_url,
                    _private: Some(cluster),
                });
            }
            // Most likely someone took the port in the meantime: try another.
            Err(err) => {
                last_err = format!("{err}\n{}", log_tail(&log));
            }
        }
    }
    Err(last_err)
}

/// The first directory (PATH first) that holds both `initdb` and `pg_ctl`.
pub(crate) fn find_postgres_bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    candidates.extend(versioned_dirs("/usr/lib/postgresql", "", "bin"));
    candidates.extend(versioned_dirs("/usr", "pgsql-", "bin"));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.push(PathBuf::from("/opt/homebrew/bin"));
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// `parent/<prefix><version>/<sub>` for each version found, newest first.
fn versioned_dirs(parent: &str, prefix: &str, sub: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?;
            let key = version
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, entry.path().join(sub)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

pub(crate) fn effective_uid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // Uid:	real	effective	saved	filesystem
        if let Some(line) = status.lines().find(|line| line.starts_with("Uid:")) {
            return line.split_whitespace().nth(2)?.parse().ok();
        }
    }
    let output = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

pub(crate) fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|err| format!("could not run `id {flag} {user}`: {err}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                format!(
                    "running as root, the cluster must run as user `{user}`, but `id {flag} {user}` \
                     failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
}

/// The command prefix that runs a program as `uid:gid`.
pub(crate) fn unprivileged_wrapper(uid: u32, gid: u32) -> Result<Vec<String>, String> {
    if let Some(setpriv) = find_program("setpriv") {
        return Ok(vec![
            setpriv.to_string_lossy().into_owned(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ]);
    }
    if let Some(runuser) = find_program("runuser") {
        return Ok(vec![
            runuser.to_string_lossy().into_owned(),
            "-u".to_owned(),
            UNPRIVILEGED_USER.to_owned(),
            "--".to_owned(),
        ]);
    }
    Err(format!(
        "running as root, initdb must run as an unprivileged user, but neither `setpriv` \
         nor `runuser` (util-linux) was found to run it as `{UNPRIVILEGED_USER}`"
    ))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(unix)]
pub(crate) fn chown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

#[cfg(not(unix))]
pub(crate) fn chown(_path: &Path, _uid: u32, _gid: u32) -> std::io::Result<()> {
    Err(std::io::Error::other("not supported on this platform"))
}

pub(crate) fn command(wrapper: &[String], program: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// `pg_ctl start` of the cluster in `data` on 127.0.0.1:`port`, its socket in `dir`, logging to
/// `log`, with `settings` (`-c name=value …`) beyond the throwaway defaults: nothing is fsynced,
/// since a test cluster's faults are its processes dying, never the machine.
pub(crate) fn pg_ctl_start(
    pg_ctl: Command,
    (data, log, dir): (&Path, &Path, &Path),
    port: u16,
    settings: &str,
) -> Command {
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
         {settings}",
        sh_quote(&dir.to_string_lossy())
    );
    let mut start = pg_ctl;
    start
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(log)
        .arg("-o")
        .arg(options)
        .args(["-w", "-t", "60", "start"])
        .current_dir(dir);
    start
}

pub(crate) fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let output: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("could not run {what}: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut message = format!("{what} failed ({})", output.status);
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        if !text.trim().is_empty() {
            let _ = write!(message, "\n{}", text.trim_end());
        }
    }
    Err(message)
}

/// A process that waits for this one to exit (end-of-file on its stdin, the
/// write end of which only we hold), then stops the cluster and removes its
/// directory. It ignores INT/HUP/TERM, and runs in a process group of its
/// own, so that it is not stopped before it has cleaned up.
pub(crate) fn spawn_watchdog(
    dir: &Path,
    wrapper: &[String],
    pg_ctl: &Path,
    data: &Path,
) -> Result<ChildStdin, String> {
    let mut cmd = Command::new("sh");
    // Its own process group, so signals sent to ours (Ctrl-C, a test
    // runner's timeout) do not reach it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .arg("-c")
        .arg(r#"trap '' INT HUP TERM; cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$0""#)
        .arg(dir)
        .args(wrapper)
        .arg(pg_ctl)
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "stop"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("could not start `sh` for the cluster's watchdog: {err}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the cluster's watchdog has no stdin".to_owned())
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("could not find a free port on 127.0.0.1: {err}"))
}

pub(crate) fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub(crate) fn wait_until_accepting(url: &str) -> Result<(), String> {
    block_on_own_runtime(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match connect(url, Duration::from_secs(2)).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(err) if Instant::now() >= deadline => {
                    return Err(format!(
                        "the private cluster started but {url} cannot be connected to: {err}"
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })?
}

pub(crate) fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("last lines of {}:\n{tail}", log.display())
        }
        Err(err) => format!("(no server log at {}: {err})", log.display()),
    }
}
