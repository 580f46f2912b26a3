//! One timer per connection, re-armed lazily.
//!
//! Every wait of an exchange has a deadline: the next request head within
//! the idle timeout, the response head within the first-byte timeout. A
//! tokio timer per wait costs a timer-wheel insertion and a removal per
//! request, since nearly every wait ends long before its deadline. Instead
//! the connection keeps one timer and only ever moves it earlier; when it
//! fires for a deadline that has since moved later, it re-arms for the
//! current one. Under steady keep-alive traffic that is one re-arm per
//! timeout period instead of two timer operations per request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A connection's timer.
#[derive(Debug)]
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
}

/// Far enough away to mean "not armed"; re-armed lazily when reached.
const UNARMED: Duration = Duration::from_secs(24 * 3600);

impl Timer {
    pub(crate) fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(UNARMED)),
        }
    }

    /// Runs `work` until `deadline`: its output, or `None` if the deadline
    /// passed first.
    pub(crate) async fn run<F: Future>(&mut self, deadline: Instant, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            tokio::select! {
                biased;
                output = &mut work => return Some(output),
                () = &mut self.sleep => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    // Armed for an earlier wait that ended in time.
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_current_deadline_not_an_earlier_one() {
        let mut timer = Timer::new();
        let start = Instant::now();
        // A wait that ends in time leaves the timer armed at 1 s.
        let quick = timer.run(start + Duration::from_secs(1), async { 7 }).await;
        assert_eq!(quick, Some(7));
        // A later deadline is honoured although the timer fires at 1 s.
        let slow = timer.run(start + Duration::from_secs(5), std::future::pending::<()>());
        assert_eq!(slow.await, None);
        assert!(Instant::now() >= start + Duration::from_secs(5));
        assert!(Instant::now() < start + Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_earlier() {
        let mut timer = Timer::new();
        let start = Instant::now();
        let _ = timer.run(start + Duration::from_secs(60), async {}).await;
        let short = timer.run(
            start + Duration::from_millis(10),
            std::future::pending::<()>(),
        );
        assert_eq!(short.await, None);
        assert!(Instant::now() < start + Duration::from_secs(1));
    }
}
