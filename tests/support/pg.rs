//! Postgres as production runs it, on loopback: a primary with a streaming
//! standby ([`StandbyPair`]) and PgBouncer in transaction mode
//! ([`Bouncer`]), each on free ports, made by the test and stopped (their
//! files removed) when it ends, pass or fail.
//!
//! The servers refuse to run as root, so when the tests are root (CI) they
//! run as the `postgres` OS user, as `scripts/services.sh` does. The
//! binaries are the newest under `/usr/lib/postgresql/*/bin` (Debian's
//! layout), else those on `PATH`; `pgbouncer` is Debian's (1.18), which
//! `scripts/test.sh` installs.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{database_url, unique};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory of the newest Postgres binaries.
fn pg_bin(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .max();
    match newest {
        Some((_, dir)) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// The `postgres` OS user's ids, when the tests run as root.
fn postgres_ids() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        assert!(
            out.status.success(),
            "running as root needs a `postgres` OS user (the postgresql package makes it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// A command run as the `postgres` user when the tests are root.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = postgres_ids() {
        c.gid(gid).uid(uid);
    }
    c
}

/// Run to completion; panic with its output when it fails.
fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory the `postgres` user owns, removed on drop.
struct OwnedDir(PathBuf);

impl OwnedDir {
    fn new(prefix: &str) -> OwnedDir {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        if postgres_ids().is_some() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(&dir);
                    c
                },
                "chown",
            );
        }
        OwnedDir(dir)
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One Postgres server: a data directory and a port.
pub struct PgServer {
    pub port: u16,
    data: PathBuf,
    socket_dir: PathBuf,
}

impl PgServer {
    fn start(&self) {
        let mut c = as_postgres(pg_bin("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.with_extension("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
                self.port,
                self.socket_dir.display()
            ))
            .arg("start");
        run(c, "pg_ctl start");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Crash it: `pg_ctl stop -m immediate` (no checkpoint, connections cut).
    pub fn kill(&self) {
        let mut c = as_postgres(pg_bin("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w"]);
        run(c, "pg_ctl stop");
    }

    /// Promote a standby and wait until it accepts writes (asked over
    /// SQL: `pg_ctl promote -w` has been seen to stop waiting early).
    pub async fn promote(&self) {
        let mut c = as_postgres(pg_bin("pg_ctl"));
        c.arg("-D").arg(&self.data).args(["promote", "-W"]);
        tokio::task::block_in_place(|| run(c, "pg_ctl promote"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((c, conn)) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                if let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if !row.get::<_, bool>(0) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not promote: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stop_quietly(&self) {
        let _ = as_postgres(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The server's log so far (for a failing assertion).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }
}

/// A primary and a standby streaming from it (`pg_basebackup -R`), on
/// loopback, stopped and removed on drop.
pub struct StandbyPair {
    pub primary: PgServer,
    pub standby: PgServer,
    _dir: OwnedDir,
}

impl StandbyPair {
    pub async fn start() -> StandbyPair {
        let dir = OwnedDir::new("authgate-pair");
        let primary = PgServer {
            port: free_port(),
            data: dir.0.join("primary"),
            socket_dir: dir.0.clone(),
        };
        let mut c = as_postgres(pg_bin("initdb"));
        c.arg("-D")
            .arg(&primary.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(c, "initdb");
        primary.start();
        let standby = PgServer {
            port: free_port(),
            data: dir.0.join("standby"),
            socket_dir: dir.0.clone(),
        };
        let mut c = as_postgres(pg_bin("pg_basebackup"));
        c.args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&standby.data);
        run(c, "pg_basebackup");
        standby.start();
        let pair = StandbyPair {
            primary,
            standby,
            _dir: dir,
        };
        pair.wait_streaming().await;
        pair
    }

    /// Until the primary sees its standby streaming.
    async fn wait_streaming(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((c, conn)) =
                tokio_postgres::connect(&self.primary.url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not stream: {}",
                self.standby.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until the standby has replayed everything the primary committed.
    pub async fn wait_replayed(&self) {
        let (p, conn) = tokio_postgres::connect(&self.primary.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let lsn: String = p
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let (s, conn) = tokio_postgres::connect(&self.standby.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done: bool = s
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .await
                .unwrap()
                .get(0);
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "the standby did not catch up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for StandbyPair {
    fn drop(&mut self) {
        self.standby.stop_quietly();
        self.primary.stop_quietly();
    }
}

/// PgBouncer in transaction mode on a free port, in front of the test
/// database (`AUTHGATE_TEST_DATABASE_URL`'s host and port), trusting the
/// user `postgres`; killed and removed on drop. It is started with nothing
/// that would help authgate: no `ignore_startup_parameters`, no
/// `server_reset_query`.
pub struct Bouncer {
    pub port: u16,
    child: Child,
    dir: OwnedDir,
}

impl Bouncer {
    pub fn start() -> Bouncer {
        let target: tokio_postgres::Config = database_url().parse().unwrap();
        let host = match target.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let target_port = target.get_ports().first().copied().unwrap_or(5432);
        let dir = OwnedDir::new("authgate-pgbouncer");
        let port = free_port();
        let ini = dir.0.join("pgbouncer.ini");
        let users = dir.0.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={target_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 max_client_conn = 500\ndefault_pool_size = 10\n\
                 logfile = {log}\n",
                users = users.display(),
                log = dir.0.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let child = as_postgres("pgbouncer")
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bouncer { port, child, dir }
    }

    /// The test database's URL with PgBouncer's address instead.
    pub fn url(&self) -> String {
        let db = database_url();
        let target: tokio_postgres::Config = db.parse().unwrap();
        let name = target.get_dbname().unwrap_or("postgres");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
