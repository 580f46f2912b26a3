//! One child process of the cluster: started with its output piped, each of
//! its lines passed on with its name in front (`[shop-1] ...`), watched until
//! it says it listens, and signalled when the cluster stops.
//!
//! Each child runs in a process group of its own, so the Ctrl-C a terminal
//! sends to its foreground group reaches `up` alone: `up` then stops the
//! children itself, in the order it chooses, and never mistakes a child that
//! the same Ctrl-C stopped for one that stopped on its own.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::token::TOKEN_VARIABLE;
use crate::{UpError, logline};

/// How long a child that closed its output gets to exit before `up` says
/// so without its status.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What to run: `<binary> ARGS...` under a name.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The name in its log prefix and in messages, such as `shop-1`.
    pub(crate) name: String,
    /// The arguments, starting with the role's subcommand.
    pub(crate) args: Vec<String>,
    /// The admin token, for the roles that check it; every other child
    /// gets no token at all, even when `up` itself has one in its
    /// environment.
    pub(crate) admin_token: Option<String>,
}

/// How a child ended; `None` inside when waiting for it failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit(Option<ExitStatus>);

impl Exit {
    /// Exit code 0.
    pub(crate) fn success(self) -> bool {
        self.0.is_some_and(|s| s.success())
    }

    /// Exit code 0, or ended by the SIGTERM or SIGINT that asked it to stop
    /// (a child still starting may not have its handlers yet).
    pub(crate) fn stopped_cleanly(self) -> bool {
        let by_stop_signal = self.0.and_then(|s| s.signal()).is_some_and(|signal| {
            signal == Signal::SIGTERM as i32 || signal == Signal::SIGINT as i32
        });
        self.success() || by_stop_signal
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(status) => write!(f, "{status}"),
            None => f.write_str("exit status unknown"),
        }
    }
}

/// A started child.
#[derive(Debug)]
pub(crate) struct Child {
    name: String,
    pid: Option<Pid>,
    /// Its output lines without colour codes, while someone reads them;
    /// dropped once it is ready so that they no longer pile up.
    lines: Option<mpsc::UnboundedReceiver<String>>,
    last_line: String,
    /// The tasks passing its output on.
    forwarders: Vec<JoinHandle<()>>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Child {
    /// Starts `binary` as `spec` says.
    pub(crate) fn spawn(binary: &Path, spec: &Spec) -> Result<Self, UpError> {
        let mut child = command(binary, spec)
            .spawn()
            .map_err(|source| UpError::Spawn {
                name: spec.name.clone(),
                binary: binary.to_owned(),
                source,
            })?;
        let (forwarders, lines) = forward_output(&mut child, &spec.name);
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(Self {
            name: spec.name.clone(),
            pid,
            lines: Some(lines),
            last_line: String::new(),
            forwarders,
            exit: watch_exit(child),
        })
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.pid.map(Pid::as_raw)
    }

    /// How it ended, if it has.
    pub(crate) fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Asks it to stop with SIGTERM, unless it has ended already.
    pub(crate) fn terminate(&self) {
        if let (Some(pid), None) = (self.pid, self.exited()) {
            // ESRCH only means it ended in the meantime.
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    /// SIGKILLs its whole process group, so that nothing it started
    /// survives either.
    pub(crate) fn kill(&self) {
        if let (Some(pid), None) = (self.pid, self.exited()) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }

    /// Resolves when it ends; owns what it needs, so it can be spawned.
    pub(crate) fn ended(&self) -> impl Future<Output = Exit> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            match exit.wait_for(Option::is_some).await {
                Ok(exit) => exit.unwrap_or(Exit(None)),
                // The waiting task is gone without a word: the runtime is
                // shutting down, and its drop kills the child.
                Err(_) => Exit(None),
            }
        }
    }

    /// Waits until it ends, or until `deadline`.
    pub(crate) async fn wait_exit_until(&self, deadline: Instant) -> Option<Exit> {
        tokio::time::timeout_at(deadline, self.ended()).await.ok()
    }

    /// Waits until its last output lines have been passed on (they may
    /// still be on their way when it has exited), or until `deadline`:
    /// something it started may hold its output open.
    pub(crate) async fn flush_output(&mut self, deadline: Instant) {
        for forwarder in &mut self.forwarders {
            let _ = tokio::time::timeout_at(deadline, forwarder).await;
        }
    }

    /// Waits until lines have shown each of `markers` followed by an
    /// address, and returns those addresses in the order of `markers`.
    pub(crate) async fn wait_ready<const N: usize>(
        &mut self,
        markers: [&str; N],
        timeout: Duration,
    ) -> Result<[SocketAddr; N], UpError> {
        let deadline = Instant::now() + timeout;
        let mut found: [Option<SocketAddr>; N] = [None; N];
        while found.iter().any(Option::is_none) {
            let Some(line) = self.next_line(deadline, timeout).await? else {
                return Err(self.failed().await);
            };
            for (slot, marker) in found.iter_mut().zip(markers) {
                if slot.is_none() {
                    *slot = logline::addr_after(&line, marker);
                }
            }
        }
        self.lines = None;
        // Every slot is filled here; the default is never used.
        Ok(found.map(|addr| addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))))
    }

    /// Waits until it has run to completion (a one-shot such as `migrate`)
    /// and succeeded.
    pub(crate) async fn wait_success(&mut self, timeout: Duration) -> Result<(), UpError> {
        let deadline = Instant::now() + timeout;
        while self.next_line(deadline, timeout).await?.is_some() {}
        match self.wait_exit_until(Instant::now() + EXIT_GRACE).await {
            Some(exit) if exit.success() => Ok(()),
            _ => Err(self.failed().await),
        }
    }

    /// The next line of output, `None` once the output has ended (the child
    /// is gone), or `NotReady` at the deadline.
    async fn next_line(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<String>, UpError> {
        let Some(lines) = self.lines.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(line) => {
                if let Some(line) = &line {
                    self.last_line.clone_from(line);
                }
                Ok(line)
            }
            Err(_) => Err(UpError::NotReady {
                name: self.name.clone(),
                timeout,
            }),
        }
    }

    /// The error for a child that ended while starting: how it exited and
    /// its last line, usually the reason.
    async fn failed(&self) -> UpError {
        let exit = self.wait_exit_until(Instant::now() + EXIT_GRACE).await;
        let last_line = self.last_line.trim();
        UpError::StartFailed {
            name: self.name.clone(),
            status: exit.map_or_else(|| "closed its output".to_owned(), |e| e.to_string()),
            last_line: if last_line.is_empty() {
                "it printed nothing".to_owned()
            } else {
                last_line.to_owned()
            },
        }
    }
}

impl Drop for Child {
    /// A child nobody watches any more must not outlive its supervision
    /// (normally it has been stopped before this).
    fn drop(&mut self) {
        self.kill();
    }
}

fn command(binary: &Path, spec: &Spec) -> Command {
    let mut command = Command::new(binary);
    command
        .args(&spec.args)
        .env_remove(TOKEN_VARIABLE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Should `up` itself fail hard, its children die with it rather
        // than linger holding ports.
        .kill_on_drop(true);
    if let Some(token) = &spec.admin_token {
        command.env(TOKEN_VARIABLE, token);
    }
    // Colour codes are for people; into a file or a pipe they are noise.
    if !std::io::stderr().is_terminal() {
        command.env("NO_COLOR", "1");
    }
    command
}

/// Where a child's stream goes on: the same stream of `up`.
#[derive(Debug, Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    /// Writes one whole line at once, so that lines of different children
    /// never interleave. A closed stdout (`up | head`) is not worth dying
    /// for: the line is dropped.
    fn write_line(self, prefix: &str, line: &str) {
        let _ = match self {
            Self::Stdout => writeln!(std::io::stdout().lock(), "{prefix}{line}"),
            Self::Stderr => writeln!(std::io::stderr().lock(), "{prefix}{line}"),
        };
    }
}

/// Passes the child's stdout and stderr on (see [`forward`]); the lines
/// also come out of the receiver.
fn forward_output(
    child: &mut tokio::process::Child,
    name: &str,
) -> (Vec<JoinHandle<()>>, mpsc::UnboundedReceiver<String>) {
    let (tx, lines) = mpsc::unbounded_channel();
    let prefix = format!("[{name}] ");
    let mut forwarders = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        forwarders.push(forward(stdout, Sink::Stdout, prefix.clone(), tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        forwarders.push(forward(stderr, Sink::Stderr, prefix, tx));
    }
    (forwarders, lines)
}

/// Waits for the child in a task of its own (which owns it, and so kills
/// it if the runtime is dropped first); the receiver tells how it ended.
fn watch_exit(mut child: tokio::process::Child) -> watch::Receiver<Option<Exit>> {
    let (tx, exit) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await.ok();
        let _ = tx.send(Some(Exit(status)));
    });
    exit
}

/// Passes each line of `stream` on to `sink` with `prefix`, and to `lines`
/// while someone listens there.
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    sink: Sink,
    prefix: String,
    lines: mpsc::UnboundedSender<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // Bytes rather than `lines()`: one invalid UTF-8 byte must not end
        // the forwarding.
        while reader
            .read_until(b'\n', &mut buf)
            .await
            .is_ok_and(|n| n > 0)
        {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            sink.write_line(&prefix, line);
            if !lines.is_closed() {
                let _ = lines.send(logline::strip_ansi(line));
            }
            buf.clear();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str) -> Child {
        let spec = Spec {
            name: name.to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
            admin_token: None,
        };
        Child::spawn(Path::new("/bin/sh"), &spec).expect("spawn sh")
    }

    const SHORT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn learns_addresses_in_the_order_asked() {
        let mut child = sh(
            "fake",
            "echo 'admin (metrics) on http://127.0.0.1:2/metrics'; \
             echo 'starting' >&2; echo 'listening on 127.0.0.1:1' >&2; sleep 5",
        );
        let addrs = child
            .wait_ready([logline::LISTENING, logline::ADMIN], SHORT)
            .await
            .expect("ready");
        let expected = ["127.0.0.1:1", "127.0.0.1:2"].map(|a| a.parse().expect("address"));
        assert_eq!(addrs, expected);
        child.kill();
    }

    #[tokio::test]
    async fn a_child_that_dies_while_starting_names_its_last_line() {
        let mut child = sh("shop-9", "echo 'bad database URL' >&2; exit 3");
        let error = child
            .wait_ready([logline::LISTENING], SHORT)
            .await
            .expect_err("not ready");
        let message = error.to_string();
        assert!(message.contains("shop-9"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("bad database URL"), "{message}");
    }

    #[tokio::test]
    async fn a_silent_child_times_out() {
        let mut child = sh("slow", "sleep 5");
        let error = child
            .wait_ready([logline::LISTENING], Duration::from_millis(200))
            .await
            .expect_err("not ready");
        assert!(matches!(error, UpError::NotReady { .. }), "{error}");
        child.kill();
    }

    #[tokio::test]
    async fn one_shots_must_succeed() {
        sh("ok", "echo migrated")
            .wait_success(SHORT)
            .await
            .expect("success");
        let error = sh("migrate", "echo 'no such host' >&2; exit 1")
            .wait_success(SHORT)
            .await
            .expect_err("failure");
        assert!(error.to_string().contains("no such host"), "{error}");
    }

    #[tokio::test]
    async fn a_terminated_child_stopped_cleanly() {
        let child = sh("plain", "sleep 5");
        child.terminate();
        let exit = child
            .wait_exit_until(Instant::now() + SHORT)
            .await
            .expect("ended");
        assert!(exit.stopped_cleanly() && !exit.success(), "{exit}");
        let killed = sh("killed", "sleep 5");
        killed.kill();
        let exit = killed
            .wait_exit_until(Instant::now() + SHORT)
            .await
            .expect("ended");
        assert!(!exit.stopped_cleanly(), "{exit}");
    }

    #[tokio::test]
    async fn the_token_reaches_only_the_children_given_it() {
        let script = format!("test -z \"${TOKEN_VARIABLE}\" || exit 9");
        sh("gateway", &script)
            .wait_success(SHORT)
            .await
            .expect("no token");
        let spec = Spec {
            name: "shop".to_owned(),
            args: vec![
                "-c".to_owned(),
                format!("test \"${TOKEN_VARIABLE}\" = secret || exit 9"),
            ],
            admin_token: Some("secret".to_owned()),
        };
        Child::spawn(Path::new("/bin/sh"), &spec)
            .expect("spawn")
            .wait_success(SHORT)
            .await
            .expect("token passed");
    }
}
