//! A `stampede` child process: its stdout read line by line (where roles
//! print the addresses they listen on), its stderr collected for failure
//! messages, and killed when dropped so no test leaves a process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::TIMEOUT;

/// `stampede ROLE` with logs at `warn`, ready to spawn; without the
/// environment's admin token, which each test gives where it means to.
pub(crate) fn stampede(role: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
    command
        .arg(role)
        .env("RUST_LOG", "warn")
        .env_remove("STAMPEDE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running child, killed when dropped.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    name: String,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    /// The thread collecting stderr; done at the pipe's end.
    stderr_reader: std::thread::JoinHandle<()>,
}

impl Process {
    /// Spawns `command`; `name` labels failure messages.
    pub(crate) fn spawn(mut command: Command, name: &str) -> Process {
        let mut child = command.spawn().expect("spawn stampede");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr_pipe);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if let Ok(mut all) = stderr.lock() {
                        all.push_str(&line);
                    }
                    line.clear();
                }
            })
        };
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Once nobody listens, keep draining the pipe anyway.
                let _ = tx.send(line);
            }
        });
        Process {
            child,
            name: name.to_owned(),
            stdout: rx,
            stderr,
            stderr_reader,
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest;
    /// panics with the process's stderr if it exits or takes too long.
    pub(crate) async fn line_after(&mut self, prefix: &str) -> String {
        loop {
            match tokio::time::timeout(TIMEOUT, self.stdout.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Ok(None) => {
                    let status = self.child.wait().ok();
                    // Give the stderr thread a moment to collect the last lines.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    panic!(
                        "{} exited ({status:?}) before printing `{prefix}`; stderr:\n{}",
                        self.name,
                        self.stderr()
                    );
                }
                Err(_) => panic!(
                    "{} did not print `{prefix}` in time; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// The address in the first stdout line starting with `prefix`.
    pub(crate) async fn addr_after(&mut self, prefix: &str) -> SocketAddr {
        let rest = self.line_after(prefix).await;
        let addr = rest.split_whitespace().next().unwrap_or_default();
        let addr = addr.trim_end_matches("/metrics");
        addr.parse().unwrap_or_else(|_| {
            panic!("{}: `{addr}` after `{prefix}` is not an address", self.name)
        })
    }

    /// The admin listener's address, from the line every role prints.
    pub(crate) async fn admin_addr(&mut self) -> SocketAddr {
        self.addr_after("admin (metrics) on http://").await
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Sends SIGTERM and blocks until the process exits or `limit` passes
    /// (for `Drop` impls, where nothing can be awaited); a process that
    /// stops its own children needs the chance to.
    pub(crate) fn stop_within(&mut self, limit: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; `None` if it is still running after `limit`.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.stderr_collected().await;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the stderr thread has read what the exited process
    /// wrote: its last lines may still be in the pipe. Bounded, since a
    /// child of the process may hold the pipe open.
    async fn stderr_collected(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.stderr_reader.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
