//! A private primary with a synchronous streaming standby, for the failover test: two `initdb`
//! clusters on loopback ports (run as `nobody` when we are root, like `postgres.rs`'s private
//! cluster, whose helpers these use), the standby made with `pg_basebackup -R` and named in the
//! primary's `synchronous_standby_names`, so a commit is acknowledged only once the standby has
//! it. `fsync` is off on both: the test kills processes, not the machine, so what a killed
//! server wrote is still in the page cache.
//!
//! Each cluster lives in a temporary directory with a watchdog that stops it and removes the
//! directory when the test process exits, however it exits; dropping a `Cluster` stops it at once.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::postgres::{
    chown, command, effective_uid, find_postgres_bin_dir, free_port, log_tail, pg_ctl_start, run,
    spawn_watchdog, unprivileged_wrapper, user_ids, wait_until_accepting, PRIVATE_SUPERUSER,
    UNPRIVILEGED_USER,
};

/// The name the standby reports (`cluster_name` becomes its walreceiver's `application_name`).
const STANDBY_NAME: &str = "standby1";

/// One running cluster.
pub struct Cluster {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    pg_ctl: PathBuf,
    wrapper: Vec<String>,
    /// End-of-file on it makes the watchdog stop the cluster and remove its directory.
    _watchdog: ChildStdin,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PRIVATE_SUPERUSER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server's log, for a failure's message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// The postmaster's process id, from `postmaster.pid`.
    fn postmaster_pid(&self) -> Result<String, String> {
        let path = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        text.lines()
            .next()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
            .ok_or_else(|| format!("{} names no process", path.display()))
    }

    /// SIGKILL to the postmaster: no shutdown checkpoint, no goodbye to the standby. Its backends
    /// notice their parent's death and exit, closing every client connection.
    pub fn kill_9(&self) -> Result<(), String> {
        let pid = self.postmaster_pid()?;
        let mut kill = Command::new("kill");
        kill.args(["-9", &pid]);
        run(kill, "kill -9 of the postmaster")
    }

    /// `pg_ctl promote`, waiting until the server accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        let mut promote = command(&self.wrapper, &self.pg_ctl);
        promote
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"]);
        run(promote, "pg_ctl promote")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = command(&self.wrapper, &self.pg_ctl);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]);
        // Best effort (a killed cluster is already down); the watchdog removes the directory.
        let _ = stop.output();
    }
}

/// A primary and its synchronous standby, both running and in sync.
pub struct ReplicatedPair {
    pub primary: Cluster,
    pub standby: Cluster,
}

impl ReplicatedPair {
    /// Starts both clusters with `database` created on the primary (and so on the standby), and
    /// returns once the standby is the primary's synchronous one.
    pub async fn start(database: &str) -> ReplicatedPair {
        let database = database.to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // `postgres.rs`'s helpers run their own runtimes: keep them off this one.
        let spawned = std::thread::Builder::new()
            .name("replicated-pair".to_owned())
            .spawn(move || {
                let _ = tx.send(start_blocking(&database));
            });
        if let Err(err) = spawned {
            panic!("could not start a thread to set up the clusters: {err}");
        }
        match rx.await {
            Ok(Ok(pair)) => pair,
            Ok(Err(message)) => panic!("the replicated pair could not be set up: {message}"),
            Err(_) => panic!("the thread setting up the clusters stopped without an answer"),
        }
    }

    /// libpq's multi-host URL over both, primary first.
    pub fn multi_host_url(&self, database: &str) -> String {
        format!(
            "postgres://{PRIVATE_SUPERUSER}@127.0.0.1:{},127.0.0.1:{}/{database}\
             ?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }
}

/// Programs and the user they run as.
struct Tools {
    bin: PathBuf,
    wrapper: Vec<String>,
    owner: Option<(u32, u32)>,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let found = find_postgres_bin_dir()
            .ok_or_else(|| "`initdb` and `pg_ctl` were not found".to_owned())?;
        // PATH may hold links to a few of the programs only: use the directory they link to.
        let bin = found
            .join("initdb")
            .canonicalize()
            .ok()
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
            .unwrap_or(found);
        if !bin.join("pg_basebackup").is_file() {
            return Err(format!("no pg_basebackup beside {}", bin.display()));
        }
        let (wrapper, owner) = if effective_uid() == Some(0) {
            let (uid, gid) = user_ids(UNPRIVILEGED_USER)?;
            (unprivileged_wrapper(uid, gid)?, Some((uid, gid)))
        } else {
            (Vec::new(), None)
        };
        Ok(Tools {
            bin,
            wrapper,
            owner,
        })
    }

    fn command(&self, program: &str) -> Command {
        command(&self.wrapper, &self.bin.join(program))
    }

    /// A directory the cluster's user owns, with its watchdog already running.
    fn directory(&self, prefix: &str) -> Result<(tempfile::TempDir, ChildStdin), String> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        let dir = if self.owner.is_some() && Path::new("/tmp").is_dir() {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .map_err(|err| format!("could not create a temporary directory: {err}"))?;
        if let Some((uid, gid)) = self.owner {
            chown(dir.path(), uid, gid).map_err(|err| {
                format!(
                    "could not give {} to {UNPRIVILEGED_USER}: {err}",
                    dir.path().display()
                )
            })?;
        }
        let watchdog = spawn_watchdog(
            dir.path(),
            &self.wrapper,
            &self.bin.join("pg_ctl"),
            &dir.path().join("data"),
        )?;
        Ok((dir, watchdog))
    }

    /// Starts the cluster in `dir/data` with `settings` on a free port (another one if that
    /// port is taken meanwhile).
    fn start(
        &self,
        dir: tempfile::TempDir,
        watchdog: ChildStdin,
        settings: &str,
    ) -> Result<Cluster, String> {
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let start = pg_ctl_start(
                self.command("pg_ctl"),
                (&data, &log, dir.path()),
                port,
                settings,
            );
            match run(start, "pg_ctl start") {
                Ok(()) => {
                    return Ok(Cluster {
                        port,
                        data,
                        log,
                        pg_ctl: self.bin.join("pg_ctl"),
                        wrapper: self.wrapper.clone(),
                        _watchdog: watchdog,
                        _dir: dir,
                    })
                }
                Err(err) => last_err = format!("{err}\n{}", log_tail(&log)),
            }
        }
        Err(last_err)
    }
}

fn start_blocking(database: &str) -> Result<ReplicatedPair, String> {
    let tools = Tools::find()?;

    let (dir, watchdog) = tools.directory("ledgerhook-primary-")?;
    let mut initdb = tools.command("initdb");
    initdb
        .arg("-D")
        .arg(dir.path().join("data"))
        .args(["-U", PRIVATE_SUPERUSER, "--auth=trust", "--encoding=UTF8"])
        .args(["--no-locale", "--no-sync"])
        .current_dir(dir.path());
    run(initdb, "initdb")?;
    // initdb's pg_hba.conf trusts replication connections from 127.0.0.1 too.
    let primary = tools.start(
        dir,
        watchdog,
        &format!(
            "-c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on \
             -c synchronous_standby_names={STANDBY_NAME}"
        ),
    )?;
    wait_until_accepting(&primary.url("postgres"))?;

    let (dir, watchdog) = tools.directory("ledgerhook-standby-")?;
    let mut basebackup = tools.command("pg_basebackup");
    basebackup
        .arg("-D")
        .arg(dir.path().join("data"))
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
        .args(["-U", PRIVATE_SUPERUSER, "-R", "-X", "stream", "-c", "fast"])
        .current_dir(dir.path());
    run(basebackup, "pg_basebackup")?;
    let standby = tools.start(
        dir,
        watchdog,
        &format!("-c cluster_name={STANDBY_NAME} -c hot_standby=on"),
    )?;
    wait_until_accepting(&standby.url("postgres"))?;

    let pair = ReplicatedPair { primary, standby };
    let admin = pair.primary.url("postgres");
    block_on(wait_until_synchronous(&admin))??;
    block_on(create_database(&admin, database))??;
    block_on(wait_until_replayed(&pair.standby.url("postgres"), database))??;
    Ok(pair)
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("could not build a tokio runtime: {err}"))?;
    Ok(runtime.block_on(future))
}

/// Until the primary reports the standby as its synchronous one (bounded).
async fn wait_until_synchronous(admin_url: &str) -> Result<(), String> {
    let mut connection = PgConnection::connect(admin_url)
        .await
        .map_err(|err| format!("cannot reach the primary: {err}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
        )
        .bind(STANDBY_NAME)
        .fetch_optional(&mut connection)
        .await
        .map_err(|err| format!("cannot read pg_stat_replication: {err}"))?;
        if state.as_deref() == Some("sync") {
            let _ = connection.close().await;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the standby is not the primary's synchronous standby after 30 s (state {state:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_database(admin_url: &str, database: &str) -> Result<(), String> {
    let mut connection = PgConnection::connect(admin_url)
        .await
        .map_err(|err| format!("cannot reach the primary: {err}"))?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{database}\""))
        .execute(&mut connection)
        .await
        .map_err(|err| format!("cannot create {database}: {err}"))?;
    let _ = connection.close().await;
    Ok(())
}

/// Until the standby has replayed the creation of `database` (a synchronous commit waits for the
/// standby to flush it, not to replay it).
async fn wait_until_replayed(standby_url: &str, database: &str) -> Result<(), String> {
    let mut connection = PgConnection::connect(standby_url)
        .await
        .map_err(|err| format!("cannot reach the standby: {err}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut connection)
                .await
                .map_err(|err| format!("cannot read pg_database on the standby: {err}"))?;
        if exists {
            let _ = connection.close().await;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the standby has not replayed {database} after 30 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
