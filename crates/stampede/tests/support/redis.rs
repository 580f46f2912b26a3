//! A `redis-server` of a test's own, on a free loopback port, for the tests
//! that stop and restart Redis or count who listens on it (the Redis at
//! `REDIS_URL` is shared by the whole run, so it is left alone).
//!
//! Where `REDIS_URL` is set (CI) the program must be installed; elsewhere a
//! missing `redis-server` skips the test, saying so.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Process, TIMEOUT, within};

/// A running `redis-server`, killed when dropped.
#[derive(Debug)]
pub(crate) struct OwnRedis {
    process: Option<Process>,
    port: u16,
    /// With persistence: the folder of its append-only file.
    dir: Option<PathBuf>,
}

impl OwnRedis {
    /// One that keeps nothing on disk, as the machine's own Redis.
    pub(crate) async fn start() -> Option<OwnRedis> {
        Self::launch(None).await
    }

    /// One that writes every change to an append-only file before
    /// answering, as a session store should: what it acknowledged survives
    /// a restart.
    pub(crate) async fn durable() -> Option<OwnRedis> {
        let dir = std::env::temp_dir().join(format!(
            "stampede-redis-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("a folder for Redis");
        Self::launch(Some(dir)).await
    }

    async fn launch(dir: Option<PathBuf>) -> Option<OwnRedis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = OwnRedis {
            process: None,
            port,
            dir,
        };
        match redis.spawn() {
            Ok(()) => {}
            Err(error) if std::env::var("REDIS_URL").is_err() => {
                eprintln!(
                    "SKIPPED: this test runs its own redis-server, which failed to start: {error}"
                );
                return None;
            }
            Err(error) => panic!("REDIS_URL is set but redis-server cannot be started: {error}"),
        }
        redis.listening().await;
        Some(redis)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        // Probe first: `Process::spawn` panics where the program is missing.
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.dir {
            Some(dir) => command.arg("--dir").arg(dir).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        self.process = Some(Process::spawn(command, "redis-server"));
        Ok(())
    }

    async fn listening(&self) {
        within(TIMEOUT, "redis-server to listen", async {
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it as an operator would (SIGTERM: it saves and exits).
    pub(crate) async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate();
            process.wait_exit(TIMEOUT).await;
        }
    }

    /// Starts it again on the same port (and files).
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        self.spawn().expect("redis-server started before");
        self.listening().await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        drop(self.process.take());
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
