//! A PostgreSQL cluster of one test's own (`initdb`, its own port on 127.0.0.1), which the test
//! may restart, stop and start under a running service. The shared server is never touched. The
//! process helpers (finding the binaries, running them as `nobody` when we are root, the
//! watchdog that stops the cluster however the test process ends) are `support::postgres`'s.

use std::path::PathBuf;
use std::process::ChildStdin;
use std::time::Duration;

use sqlx::Connection;

use super::postgres::{
    chown, command, effective_uid, find_postgres_bin_dir, free_port, log_tail, run, sh_quote,
    spawn_watchdog, unprivileged_wrapper, user_ids, wait_until_accepting, PRIVATE_SUPERUSER,
    UNPRIVILEGED_USER,
};

pub struct RestartableCluster {
    /// A database made for the test, `postgres://postgres@127.0.0.1:PORT/ledgerhook`.
    pub url: String,
    wrapper: Vec<String>,
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The server options of the first start, given again by `start_again`.
    options: String,
    /// Dropping it lets the watchdog stop the cluster (if `Drop` did not) and remove its
    /// directory: the directory is the watchdog's to remove, after the stop, never before it
    /// (a removed data directory leaves `pg_ctl stop` nothing to find, and the server running).
    _watchdog: ChildStdin,
}

impl Drop for RestartableCluster {
    /// Stops the server here and now, so no test leaves one running.
    fn drop(&mut self) {
        let mut stop = command(&self.wrapper, &self.pg_ctl);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        let _ = run(stop, "pg_ctl stop");
    }
}

impl RestartableCluster {
    /// `initdb`, start on a free port, create the test's database. Panics saying why it could not.
    pub async fn start() -> Self {
        let cluster = off_runtime(Self::start_blocking)
            .await
            .unwrap_or_else(|error| panic!("a private PostgreSQL cluster: {error}"));
        let admin = cluster.url.replace("/ledgerhook", "/postgres");
        let mut connection = sqlx::PgConnection::connect(&admin)
            .await
            .expect("the private cluster takes connections");
        sqlx::raw_sql("CREATE DATABASE ledgerhook")
            .execute(&mut connection)
            .await
            .expect("the test database is created");
        let _ = connection.close().await;
        cluster
    }

    fn start_blocking() -> Result<Self, String> {
        let bin = find_postgres_bin_dir()
            .ok_or("`initdb` and `pg_ctl` were not found on PATH nor in the usual places")?;
        // initdb refuses to run as root: then the cluster runs as `nobody`.
        let (wrapper, owner) = if effective_uid() == Some(0) {
            let (uid, gid) = user_ids(UNPRIVILEGED_USER)?;
            (unprivileged_wrapper(uid, gid)?, Some((uid, gid)))
        } else {
            (Vec::new(), None)
        };
        let dir = tempfile::Builder::new()
            .prefix("ledgerhook-faults-pg-")
            .tempdir_in("/tmp")
            .map_err(|error| format!("a temporary directory: {error}"))?;
        if let Some((uid, gid)) = owner {
            chown(dir.path(), uid, gid).map_err(|error| format!("chown: {error}"))?;
        }
        // From here on the directory is the watchdog's to remove (see `_watchdog`).
        let dir = dir.keep();
        let data = dir.join("data");
        let log = dir.as_path().join("postgres.log");
        let pg_ctl = bin.join("pg_ctl");
        let watchdog = spawn_watchdog(dir.as_path(), &wrapper, &pg_ctl, &data)?;
        let mut initdb = command(&wrapper, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", PRIVATE_SUPERUSER, "--auth=trust", "--encoding=UTF8"])
            .args(["--no-locale", "--no-sync"])
            .current_dir(dir.as_path());
        run(initdb, "initdb")?;
        let port = free_port()?;
        // synchronous_commit stays on (the server's default): an acknowledged commit must survive
        // the server being killed. fsync is off because the fault is the server's processes
        // dying, never the machine: what was written to the OS survives that.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            sh_quote(&dir.as_path().to_string_lossy())
        );
        let mut start = command(&wrapper, &pg_ctl);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(&options)
            .args(["-w", "-t", "60", "start"])
            .current_dir(dir.as_path());
        run(start, "pg_ctl start").map_err(|error| format!("{error}\n{}", log_tail(&log)))?;
        let url = format!("postgres://{PRIVATE_SUPERUSER}@127.0.0.1:{port}/ledgerhook");
        wait_until_accepting(&url.replace("/ledgerhook", "/postgres"))?;
        Ok(Self {
            url,
            wrapper,
            pg_ctl,
            data,
            log,
            options,
            _watchdog: watchdog,
        })
    }

    /// `pg_ctl restart -m immediate`: every server process killed at once (no checkpoint, crash
    /// recovery at start), then started again with the same options and port.
    pub async fn restart_immediate(&self) {
        // With its log file: without one the server would write to pg_ctl's piped output.
        let log = self.log.to_string_lossy().into_owned();
        self.pg_ctl(&["-l", &log, "-m", "immediate", "-w", "-t", "60", "restart"])
            .await;
    }

    /// `pg_ctl stop -m immediate`: the server is gone until `start_again`.
    pub async fn stop_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "-t", "60", "stop"])
            .await;
    }

    /// `pg_ctl start` after `stop_immediate`, with the options and port of the first start.
    pub async fn start_again(&self) {
        let log = self.log.to_string_lossy().into_owned();
        self.pg_ctl(&["-l", &log, "-o", &self.options, "-w", "-t", "60", "start"])
            .await;
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let mut pg_ctl = command(&self.wrapper, &self.pg_ctl);
        pg_ctl.arg("-D").arg(&self.data).args(args);
        let log = self.log.clone();
        let what = format!("pg_ctl {}", args.join(" "));
        off_runtime(move || {
            run(pg_ctl, &what).map_err(|error| format!("{error}\n{}", log_tail(&log)))
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    }
}

/// Runs blocking process work on a thread of its own, so the test's two runtime workers (and the
/// load they drive) keep running meanwhile.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("the cluster's command finishes within 120 s")
        .expect("the cluster's command thread answers")
}
