//! Shop nodes through PgBouncer in transaction pooling mode: more client
//! connections than server connections, so every transaction may land on
//! another server connection, and a crowd still buys exactly the stock.
//!
//! sqlx names its prepared statements, which only PgBouncer 1.21 and later
//! can pool (`max_prepared_statements`); Debian 12 ships 1.18. So this test
//! runs the PgBouncer that `PGBOUNCER` names (a path to the program) and
//! says it was skipped, and why, without it or without `DATABASE_URL`.
//! `docs/scaling.md` records the runs made with it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use stampede_testkit::TestDb;
use support::shop::{Api, PASSWORD, ShopNode};
use support::standby::{give_to_postgres, on_port, run_as_postgres};
use support::{unused_addr, within};

/// A PgBouncer in transaction mode in front of the test database, stopped
/// (and its folder removed) when dropped.
struct PgBouncer {
    dir: PathBuf,
    url: String,
}

impl PgBouncer {
    /// Two server connections for the whole test database.
    fn start(program: &Path, db: &TestDb) -> PgBouncer {
        let dir = std::env::temp_dir().join(format!(
            "stampede-pgbouncer-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("a folder for PgBouncer");
        let port = unused_addr().port();
        let name = db.url.rsplit('/').next().unwrap_or_default();
        let server_port = port_of(&db.url);
        let ini = format!(
            "[databases]\n\
             {name} = host=127.0.0.1 port={server_port} dbname={name} user=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = transaction\n\
             default_pool_size = 2\n\
             max_client_conn = 100\n\
             max_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits\n\
             query_wait_timeout = 5\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("write users.txt");
        give_to_postgres(&dir);
        let ini = dir.join("pgbouncer.ini").display().to_string();
        let started = run_as_postgres(program, &["-d", &ini]);
        assert!(
            started.status.success(),
            "PGBOUNCER did not start ({}): {}",
            started.status,
            String::from_utf8_lossy(&started.stderr)
        );
        PgBouncer {
            url: on_port(&db.url, port),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("pgbouncer.pid")).unwrap_or_default();
        let _ = Command::new("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The port of a `postgres://USER@HOST:PORT/DB` URL (5432 by default).
fn port_of(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432)
}

/// The PgBouncer program to test with, or `None`, saying why.
fn pgbouncer() -> Option<PathBuf> {
    let found = std::env::var_os("PGBOUNCER").map(PathBuf::from);
    if found.as_deref().is_none_or(|p| !Path::new(p).exists()) {
        eprintln!(
            "SKIPPED: this test needs PGBOUNCER=/path/to/pgbouncer, version 1.21 or later \
             (sqlx's named prepared statements need max_prepared_statements; Debian 12 ships 1.18)"
        );
        return None;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_buys_exactly_the_stock_through_transaction_pooling() {
    let Some(program) = pgbouncer() else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let bouncer = PgBouncer::start(&program, &db);
    // Eight client connections over PgBouncer's two server connections.
    let pool = "[database]\nmax_connections = 4\n";
    let nodes = [
        ShopNode::start(&bouncer.url, "shop-1", pool).await,
        ShopNode::start(&bouncer.url, "shop-2", pool).await,
    ];
    let mut admin = Api::admin(&nodes[0].url(""));
    assert_eq!(admin.create_users("bounced", 40).await.status, 201);
    assert_eq!(admin.create_product("BOUNCE-1", 15, 1).await.status, 201);

    let buyers: Vec<_> = (0..40)
        .map(|i| {
            let mut api = Api::new(&nodes[i % 2].url(""));
            tokio::spawn(async move {
                let login = api.login(&format!("bounced{i}"), PASSWORD).await;
                assert_eq!(login.status, 200, "{}", login.text());
                let order = api.order("BOUNCE-1", 1, None).await;
                let mine = api.get("/api/v1/orders").await;
                assert_eq!(mine.status, 200, "{}", mine.text());
                let listed = mine.json()["orders"].as_array().map_or(0, Vec::len);
                (order.status, listed)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for buyer in buyers {
        let (status, listed) = within(support::TIMEOUT, "a buyer", buyer)
            .await
            .expect("buyer task");
        assert_eq!(listed, usize::from(status == 201), "status {status}");
        statuses.push(status);
    }
    let sold = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((sold, refused), (15, 25), "{statuses:?}\n{}", bouncer.log());
    let stats = admin.stats("BOUNCE-1").await;
    assert_eq!(
        (stats["stock_left"].clone(), stats["reserved"].clone()),
        (json!(0), json!(15)),
        "{stats}"
    );
}
