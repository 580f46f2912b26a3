//! The live line a storm shows while it runs: what setup is doing, then
//! elapsed time, requests per second, units sold, stock left and errors.
//!
//! indicatif draws it on stderr and hides it by itself when stderr is not a
//! terminal, so piped output (and `--json`) carries no escape codes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::record::Live;

/// How often the crowd's line is redrawn.
const REFRESH: Duration = Duration::from_millis(250);

/// The live line; cheap to clone, every clone draws the same line.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A line on stderr, or none at all when `visible` is false.
    pub fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        Self { bar }
    }

    /// Shows what is being done now.
    pub(crate) fn step(&self, message: &str) {
        self.bar.set_message(message.to_owned());
        self.bar.tick();
    }

    /// Redraws the crowd's numbers from `live` until the task is aborted.
    pub(crate) fn follow(&self, live: Arc<Live>, stock: i64, start: Instant) -> JoinHandle<()> {
        let bar = self.bar.clone();
        tokio::spawn(async move {
            let mut last = (start, 0u64);
            let mut ticks = tokio::time::interval(REFRESH);
            loop {
                ticks.tick().await;
                let now = Instant::now();
                let requests = live.requests.load(Ordering::Relaxed);
                let rate = (requests - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
                last = (now, requests);
                let sold = live.sold.load(Ordering::Relaxed);
                bar.set_message(format!(
                    "{:>6.1}s  {rate:>9.0} req/s  sold {sold}/{stock}  stock left {}  errors {}",
                    (now - start).as_secs_f64(),
                    stock - sold,
                    live.errors.load(Ordering::Relaxed),
                ));
                bar.tick();
            }
        })
    }

    /// Removes the line.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
