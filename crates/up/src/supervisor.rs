//! The children of one `stampede up`, from start to stop: who is running,
//! which of them ended on its own, and stopping them all.
//!
//! Stopping goes newest first: the gateway stops taking requests and
//! finishes those in flight while the shops behind it still answer, then
//! the shops stop. Each gets SIGTERM (every role drains and exits 0 on it);
//! whoever is still running when the drain timeout has passed gets SIGKILL.
//! A second stop request (Ctrl-C again) skips the rest of the wait.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::child::{Child, Exit, Spec};
use crate::{StopRequests, UpError, say, stop_requested};

/// How long a SIGKILLed child gets to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Names a child kept by a [`Supervisor`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildId(usize);

/// The running children, in the order they were started.
#[derive(Debug)]
pub(crate) struct Supervisor {
    binary: PathBuf,
    children: Vec<Child>,
}

impl Supervisor {
    /// Children will be started from `binary`.
    pub(crate) fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            children: Vec::new(),
        }
    }

    /// Starts a child and keeps it until [`Self::stop`].
    pub(crate) fn start(&mut self, spec: &Spec) -> Result<ChildId, UpError> {
        let child = self.spawn(spec)?;
        self.children.push(child);
        Ok(ChildId(self.children.len() - 1))
    }

    /// A child started by [`Self::start`].
    pub(crate) fn child(&mut self, id: ChildId) -> &mut Child {
        &mut self.children[id.0]
    }

    /// Runs a one-shot child to success. It is not kept: should the wait
    /// be abandoned (a stop request), dropping it kills it.
    pub(crate) async fn run_once(&self, spec: &Spec, timeout: Duration) -> Result<(), UpError> {
        self.spawn(spec)?.wait_success(timeout).await
    }

    fn spawn(&self, spec: &Spec) -> Result<Child, UpError> {
        let child = Child::spawn(&self.binary, spec)?;
        match child.pid() {
            Some(pid) => say(&format!("started {} (pid {pid})", spec.name)),
            None => say(&format!("started {}", spec.name)),
        }
        Ok(child)
    }

    /// Waits for the first child to end, and says which and how.
    pub(crate) async fn first_exit(&self) -> (String, Exit) {
        let mut exits = JoinSet::new();
        for child in &self.children {
            let (name, ended) = (child.name().to_owned(), child.ended());
            exits.spawn(async move { (name, ended.await) });
        }
        match exits.join_next().await {
            Some(Ok(found)) => found,
            // No children, or a waiter panicked: nothing ends this way.
            _ => std::future::pending().await,
        }
    }

    /// Stops every child (see the module docs); `UncleanStop` names those
    /// that had to be killed or exited with an error.
    pub(crate) async fn stop(
        &mut self,
        drain: Duration,
        requests: &mut StopRequests,
    ) -> Result<(), UpError> {
        // Whoever ended already has been reported (it is why we stop).
        let running: Vec<&Child> = self
            .children
            .iter()
            .rev()
            .filter(|c| c.exited().is_none())
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = running.iter().map(|c| c.name()).collect();
        say(&format!("stopping {}", names.join(", ")));
        let mut drain = Drain {
            deadline: Instant::now() + drain,
            timeout: drain,
            hurried: false,
        };
        let mut problems = Vec::new();
        for child in running {
            if let Some(problem) = stop_one(child, &mut drain, requests).await {
                say(&problem);
                problems.push(problem);
            }
        }
        let flushed = Instant::now() + KILL_GRACE;
        for child in &mut self.children {
            child.flush_output(flushed).await;
        }
        if problems.is_empty() {
            say("all stopped");
            Ok(())
        } else {
            Err(UpError::UncleanStop(problems.join("; ")))
        }
    }
}

/// The time left for stopping.
#[derive(Debug)]
struct Drain {
    deadline: Instant,
    timeout: Duration,
    /// A second stop request cut the wait short.
    hurried: bool,
}

/// Stops one child; a problem to report unless it stopped cleanly.
async fn stop_one(child: &Child, drain: &mut Drain, requests: &mut StopRequests) -> Option<String> {
    child.terminate();
    let exit = tokio::select! {
        exit = child.wait_exit_until(drain.deadline) => exit,
        () = stop_requested(requests), if !drain.hurried => {
            say("asked again: killing what is left");
            drain.deadline = Instant::now();
            drain.hurried = true;
            child.wait_exit_until(drain.deadline).await
        }
    };
    let name = child.name();
    match exit {
        Some(exit) if exit.stopped_cleanly() => None,
        Some(exit) => Some(format!("{name} ended with {exit}")),
        None => {
            child.kill();
            let _ = child.wait_exit_until(Instant::now() + KILL_GRACE).await;
            Some(if drain.hurried {
                format!("{name} was killed")
            } else {
                format!(
                    "{name} was still running after {:?} and was killed",
                    drain.timeout
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// A child that exits 0 on SIGTERM, as every role does.
    const GRACEFUL: &str = "trap 'exit 0' TERM; while :; do sleep 0.05; done";
    /// A child that ignores SIGTERM (the disposition survives the exec).
    const STUBBORN: &str = "trap '' TERM; exec sleep 30";

    fn sh(name: &str, script: &str) -> Spec {
        Spec {
            name: name.to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
            admin_token: None,
        }
    }

    fn supervisor(children: &[(&str, &str)]) -> Supervisor {
        let mut sup = Supervisor::new(PathBuf::from("/bin/sh"));
        for (name, script) in children {
            sup.start(&sh(name, script)).expect("start");
        }
        sup
    }

    fn requests() -> (mpsc::UnboundedSender<()>, StopRequests) {
        mpsc::unbounded_channel()
    }

    #[tokio::test]
    async fn graceful_children_stop_cleanly() {
        let mut sup = supervisor(&[("shop-1", GRACEFUL), ("gateway", GRACEFUL)]);
        // Let the shells install their traps.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_tx, mut rx) = requests();
        sup.stop(Duration::from_secs(5), &mut rx)
            .await
            .expect("clean stop");
        assert!(sup.children.iter().all(|c| c.exited().is_some()));
    }

    #[tokio::test]
    async fn stragglers_are_killed_after_the_drain_timeout() {
        let mut sup = supervisor(&[("stubborn", STUBBORN), ("gateway", GRACEFUL)]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_tx, mut rx) = requests();
        let error = sup
            .stop(Duration::from_millis(300), &mut rx)
            .await
            .expect_err("unclean");
        let message = error.to_string();
        assert!(message.contains("stubborn was still running"), "{message}");
        assert!(!message.contains("gateway"), "{message}");
        assert!(sup.children.iter().all(|c| c.exited().is_some()));
    }

    #[tokio::test]
    async fn asking_twice_kills_at_once() {
        let mut sup = supervisor(&[("stubborn", STUBBORN)]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (tx, mut rx) = requests();
        tx.send(()).expect("second request");
        let started = Instant::now();
        let result = sup.stop(Duration::from_secs(60), &mut rx).await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn the_first_child_to_end_is_named() {
        let sup = supervisor(&[("shop-1", "sleep 30"), ("shop-2", "exit 3")]);
        let (name, exit) = tokio::time::timeout(Duration::from_secs(5), sup.first_exit())
            .await
            .expect("an exit");
        assert_eq!(name, "shop-2");
        assert_eq!(exit.to_string(), "exit status: 3");
    }
}
