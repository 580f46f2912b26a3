//! `run` against a stand-in for the `stampede` binary: a shell script that
//! prints what the real roles print, or fails as they can. This covers the
//! start sequence and its failures without the real roles; the whole
//! cluster, seeding included, is tested in `crates/stampede/tests/up.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stampede_up::{Options, UpError, run};
use tokio::sync::mpsc;

/// A temporary folder holding the fake binary, its notes and the data
/// directory; removed on drop.
struct Sandbox(PathBuf);

impl Sandbox {
    /// A sandbox whose fake `stampede` runs `roles`: the body of a shell
    /// `case "$1" in ... esac` over the role name. `$NOTES` in it is a
    /// folder where the fake can leave files for the test.
    fn new(roles: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stampede-up-fake-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("notes")).expect("create the sandbox");
        let script = format!(
            "#!/bin/sh\nNOTES='{}'\ncase \"$1\" in\n{roles}\nesac\n",
            dir.join("notes").display()
        );
        let binary = dir.join("stampede");
        std::fs::write(&binary, script).expect("write the fake binary");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        Self(dir)
    }

    fn options(&self) -> Options {
        let mut options = Options::new(self.0.join("stampede"));
        options.nodes = 2;
        options.port = 0;
        options.data_dir = self.0.join("data");
        options.startup_timeout = Duration::from_secs(5);
        options.drain_timeout = Duration::from_secs(5);
        options
    }

    fn note(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.0.join("notes").join(name)).ok()
    }

    /// Runs `up` to its end; `stop_after`, if given, sends a stop request
    /// after that long.
    async fn run(&self, stop_after: Option<Duration>) -> Result<(), UpError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(delay) = stop_after {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(());
            });
        } else {
            // Keep the channel open: no stop request ever.
            std::mem::forget(tx);
        }
        let options = self.options();
        tokio::time::timeout(Duration::from_secs(30), run(&options, &mut rx))
            .await
            .expect("up ends by itself")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MIGRATE_OK: &str = "migrate) echo 'schema up to date'; exit 0 ;;";

/// Every shop says it listens on port 1000N (N from `--node-name shop-N`)
/// and stops on SIGTERM; the gateway notes its arguments and fails.
const SHOPS_THEN_FAILING_GATEWAY: &str = r#"
shop) trap 'exit 0' TERM
      echo "stampede shop listening on 127.0.0.1:1000${7#shop-}" >&2
      while :; do sleep 0.05; done ;;
gateway) echo "$*" > "$NOTES/gateway-args"
         echo "stampede gateway: binding 127.0.0.1:8080: Address already in use" >&2
         exit 1 ;;"#;

fn is_running(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_starts_nothing_else() {
    let sandbox = Sandbox::new(
        "migrate) echo 'stampede migrate: bad database URL `mysql://x`' >&2; exit 1 ;;
         *) touch \"$NOTES/started-$1\" ;;",
    );
    let error = sandbox.run(None).await.expect_err("migrate failed");
    let message = error.to_string();
    assert!(
        message.starts_with("migrate failed while starting (exit status: 1)"),
        "{message}"
    );
    assert!(message.contains("bad database URL"), "{message}");
    assert_eq!(sandbox.note("started-shop"), None);
    assert_eq!(sandbox.note("started-gateway"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_fronts_every_shop_and_its_failure_is_named() {
    let sandbox = Sandbox::new(&format!("{MIGRATE_OK}{SHOPS_THEN_FAILING_GATEWAY}"));
    let error = sandbox.run(None).await.expect_err("the gateway failed");
    let message = error.to_string();
    assert!(
        message.starts_with("gateway failed while starting"),
        "{message}"
    );
    assert!(message.contains("Address already in use"), "{message}");
    let file = sandbox.0.join("data").join("gateway.toml");
    assert_eq!(
        sandbox.note("gateway-args").as_deref().map(str::trim),
        Some(format!("gateway --config {}", file.display()).as_str())
    );
    let config = std::fs::read_to_string(&file).expect("the gateway's file");
    assert!(
        config.contains(r#"backends = ["127.0.0.1:10001", "127.0.0.1:10002"]"#),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_dies_while_starting_is_named_with_its_reason() {
    let sandbox = Sandbox::new(&format!(
        "{MIGRATE_OK}
         shop) echo 'the store is unavailable: connection refused' >&2; exit 2 ;;"
    ));
    let error = sandbox.run(None).await.expect_err("the shops failed");
    let message = error.to_string();
    assert!(
        message.starts_with("shop-1 failed while starting (exit status: 2)"),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_while_starting_stops_everything_cleanly() {
    // The shops never say they listen; each notes its pid.
    let sandbox = Sandbox::new(&format!(
        "{MIGRATE_OK}
         shop) echo $$ > \"$NOTES/$7.pid\"; trap 'exit 0' TERM
               while :; do sleep 0.05; done ;;"
    ));
    sandbox
        .run(Some(Duration::from_millis(500)))
        .await
        .expect("a clean stop");
    for shop in ["shop-1", "shop-2"] {
        let pid = sandbox.note(&format!("{shop}.pid")).expect("the shop ran");
        assert!(!is_running(&pid), "{shop} (pid {pid}) still runs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_never_listens_times_out_and_is_stopped() {
    let sandbox = Sandbox::new(&format!(
        "{MIGRATE_OK}
         shop) echo $$ > \"$NOTES/$7.pid\"; trap 'exit 0' TERM
               while :; do sleep 0.05; done ;;"
    ));
    let mut options = sandbox.options();
    options.startup_timeout = Duration::from_millis(500);
    let (_tx, mut rx) = mpsc::unbounded_channel();
    let error = run(&options, &mut rx).await.expect_err("not ready");
    assert!(
        matches!(error, UpError::NotReady { ref name, .. } if name == "shop-1"),
        "{error}"
    );
    let pid = sandbox.note("shop-2.pid").expect("shop-2 ran");
    assert!(!is_running(&pid), "shop-2 (pid {pid}) still runs");
}
