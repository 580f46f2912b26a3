//! A streaming replica of the PostgreSQL server of `DATABASE_URL`, made for
//! one test: `pg_basebackup -R -X stream` into a temporary folder, started
//! on a free port with `pg_ctl`, stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root, so when the tests do (CI containers)
//! its programs run as the `postgres` user (`runuser`), which owns the
//! folder. Debian keeps a cluster's configuration in /etc/postgresql, so
//! the copy has none: minimal files are written, with the primary's values
//! of the settings a hot standby may not have lower. `pg_ctl` rather than
//! a bare `postgres` child: under `runuser` the child would not be the
//! server, and `pg_ctl -w` waits until it accepts connections.
//!
//! With `DATABASE_URL` set, anything missing (the programs, a replication
//! line in `pg_hba.conf`) fails the test with what to fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stampede_store::{Db, DbOptions};
use stampede_testkit::TestDb;

use super::{unused_addr, within};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Settings a hot standby must have at least as high as its primary.
const AT_LEAST_THE_PRIMARYS: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// The fix to name when the primary refuses to be copied.
const HOW_TO_ALLOW: &str = "the server must accept replication connections from 127.0.0.1: add \
     `host replication all 127.0.0.1/32 trust` to its pg_hba.conf and reload it (.ci/run does), \
     with wal_level = replica (the default)";

/// The prefix of the standbys' replication slots, followed by the test
/// process's id.
const SLOT_PREFIX: &str = "stampede_standby_";

/// A running standby of the test database's server.
#[derive(Debug)]
pub(crate) struct Standby {
    /// The folder: the data directory, the socket and the log.
    base: PathBuf,
    bin: PathBuf,
    primary_url: String,
    /// Its replication slot on the primary.
    slot: String,
    /// The test database on the standby.
    url: String,
    /// A pool on it, to control replay.
    db: Db,
}

impl Standby {
    /// Copies the server of `primary` (whose database must already exist:
    /// the copy is of the whole server) and starts the copy streaming from it.
    pub(crate) async fn start(primary: &TestDb) -> Standby {
        let bin = server_programs(&primary.db).await;
        drop_abandoned_slots(&primary.db).await;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let port = unused_addr().port();
        let url = on_port(&primary.url, port);
        // Made first, so that a failure from here on still cleans up.
        let standby = Standby {
            base: std::env::temp_dir().join(format!("stampede-standby-{pid}-{n}")),
            bin,
            primary_url: primary.url.clone(),
            slot: format!("{SLOT_PREFIX}{pid}_{n}"),
            db: Db::connect_lazy(&url, &DbOptions::default()).expect("a standby URL"),
            url,
        };
        std::fs::create_dir_all(&standby.base).expect("a temporary folder");
        give_to_postgres(&standby.base);
        standby.copy_primary();
        write_config(&standby.base, port, &primary.db).await;
        give_to_postgres(&standby.base);
        standby.restart();
        standby
    }

    /// The base backup, set up to stream from the primary through its slot.
    ///
    /// One at a time in this process: a base backup starts from its
    /// checkpoint but creates its slot a moment later, and a fast checkpoint
    /// asked for by another test's backup in between may recycle the WAL
    /// the first still needs ("requested WAL segment ... has already been
    /// removed").
    fn copy_primary(&self) {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let data = path(&self.base.join("data"));
        let args = [
            ["-d", &self.primary_url, "-D", &data, "-S", &self.slot].as_slice(),
            // Create the slot; write the standby's connection settings; a
            // checkpoint now, not a spread one (minutes away).
            &["-C", "-R", "-X", "stream", "--checkpoint=fast"],
        ]
        .concat();
        let copy = run_as_postgres(&self.bin.join("pg_basebackup"), &args);
        assert!(
            copy.status.success(),
            "DATABASE_URL is set but pg_basebackup could not copy its server ({}): {}\n{HOW_TO_ALLOW}",
            copy.status,
            String::from_utf8_lossy(&copy.stderr).trim()
        );
    }

    /// The test database on the standby.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Stops the standby at once, as a crash would (`-m immediate`).
    pub(crate) fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Starts the standby (again) and waits until it accepts connections.
    pub(crate) fn restart(&self) {
        let log = path(&self.base.join("log"));
        let started = self.pg_ctl(&["-l", &log, "-t", "60", "start"]);
        assert!(
            started.status.success(),
            "the standby did not start ({}): {}\nits log:\n{}",
            started.status,
            String::from_utf8_lossy(&started.stderr).trim(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Waits until the standby has replayed everything the primary had
    /// written when this was called, then pauses its replay: from here on
    /// the standby misses every new commit.
    pub(crate) async fn pause_caught_up(&self, primary: &Db) {
        let target = lsn(primary, "pg_current_wal_lsn()").await;
        let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
            while lsn(&self.db, "pg_last_wal_replay_lsn()").await < target {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if caught_up.is_err() {
            let replayed = lsn(&self.db, "pg_last_wal_replay_lsn()").await;
            let received = lsn(&self.db, "pg_last_wal_receive_lsn()").await;
            let now = lsn(primary, "pg_current_wal_lsn()").await;
            panic!(
                "the standby did not catch up in 10 s: target {target}, replayed {replayed}, received {received}, primary now {now}; its log:\n{}",
                std::fs::read_to_string(self.base.join("log")).unwrap_or_default()
            );
        }
        self.execute("SELECT pg_wal_replay_pause()").await;
        within(Duration::from_secs(10), "replay to pause", async {
            let state = "SELECT pg_get_wal_replay_pause_state()";
            while sqlx::query_scalar::<_, String>(state)
                .fetch_one(self.db.pool())
                .await
                .expect("the pause state")
                != "paused"
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Lets the standby replay again.
    pub(crate) async fn resume(&self) {
        self.execute("SELECT pg_wal_replay_resume()").await;
    }

    async fn execute(&self, sql: &'static str) {
        sqlx::query(sql)
            .execute(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql} on the standby: {e}"));
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = path(&self.base.join("data"));
        let mut all = vec!["-D", data.as_str(), "-w"];
        all.extend_from_slice(args);
        run_as_postgres(&self.bin.join("pg_ctl"), &all)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = run_as_postgres(
            &self.bin.join("pg_receivewal"),
            &["-d", &self.primary_url, "--drop-slot", "-S", &self.slot],
        );
    }
}

/// Drops the slots of standbys whose test process is gone (killed before
/// it could drop them): they would keep WAL on the primary forever.
async fn drop_abandoned_slots(primary: &Db) {
    let sql = format!(
        "SELECT CAST(slot_name AS TEXT) FROM pg_replication_slots WHERE NOT active AND slot_name LIKE '{SLOT_PREFIX}%'"
    );
    let slots: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(primary.pool())
        .await
        .expect("list replication slots");
    let pid = |slot: &str| {
        let rest = slot.strip_prefix(SLOT_PREFIX).unwrap_or_default();
        rest.split('_').next().unwrap_or_default().to_owned()
    };
    for slot in slots {
        if !Path::new("/proc").join(pid(&slot)).exists() {
            let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(&slot)
                .execute(primary.pool())
                .await;
        }
    }
}

/// A WAL position (`expression` is a `pg_lsn`) as a number.
async fn lsn(db: &Db, expression: &str) -> i64 {
    let sql = format!("SELECT CAST({expression} - '0/0'::pg_lsn AS BIGINT)");
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The folder of the server programs matching the primary's major version
/// (Debian installs them side by side), else `pg_config`'s.
async fn server_programs(primary: &Db) -> PathBuf {
    let version: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(primary.pool())
        .await
        .expect("the server's version");
    let major = version.parse::<u32>().map_or(0, |n| n / 10_000);
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    let bin = if debian.is_dir() {
        debian
    } else {
        Command::new("pg_config")
            .arg("--bindir")
            .output()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default()
    };
    assert!(
        bin.join("pg_basebackup").is_file() && bin.join("pg_ctl").is_file(),
        "DATABASE_URL is set but PostgreSQL {major}'s server programs (pg_basebackup, pg_ctl) \
         are not in `{}`: install the server package of DATABASE_URL's version \
         (Debian: postgresql-{major})",
        bin.display()
    );
    bin
}

/// `postgresql.conf`, `pg_hba.conf` and `pg_ident.conf` for the copy.
async fn write_config(base: &Path, port: u16, primary: &Db) {
    let mut conf = format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         hot_standby = on\nshared_buffers = '32MB'\n\
         # A throwaway copy: durability buys nothing.\nfsync = off\n",
        path(base)
    );
    for name in AT_LEAST_THE_PRIMARYS {
        let sql = "SELECT setting FROM pg_settings WHERE name = $1";
        let value: String = sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(primary.pool())
            .await
            .unwrap_or_else(|e| panic!("the primary's {name}: {e}"));
        conf.push_str(&format!("{name} = {value}\n"));
    }
    let data = base.join("data");
    let files = [
        ("postgresql.conf", conf.as_str()),
        (
            "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        ),
        ("pg_ident.conf", ""),
    ];
    for (name, text) in files {
        std::fs::write(data.join(name), text).expect("write the standby's configuration");
    }
}

/// `url` with its host and port replaced by 127.0.0.1:`port`.
pub(crate) fn on_port(url: &str, port: u16) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!("{}{user}127.0.0.1:{port}{}", &url[..start], &url[end..])
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args`, as the `postgres` user when the tests run as root.
pub(crate) fn run_as_postgres(program: &Path, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Makes `dir` the `postgres` user's, when the tests run as root.
pub(crate) fn give_to_postgres(dir: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .expect("run chown");
        assert!(
            status.success(),
            "chown postgres {}: {status}",
            dir.display()
        );
    }
}
