//! The crowd itself: logged-in users trying to buy, as a closed loop (a
//! fixed number at a time) or an open loop (a fixed arrival rate).
//!
//! Users arrive in order (member 0 first) and each keeps trying until the
//! sale answers it for good: `201`, `sold_out` or `limit_exceeded`. A shed
//! request (`503`, `429`) is tried again after the server's `Retry-After`
//! (capped, so a crowd stays a crowd); an error is tried again a few times
//! and then the user gives up. Reads of the product page are mixed in at
//! the configured ratio. Both models stop at the duration or the request
//! count, whichever comes first, and wait for the answers in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use stampede_client::{Answer, Lane, OrderBody, Outcome, ShopClient};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::options::Load;
use crate::record::{Live, Recorder};
use crate::setup::Member;
use crate::{Options, Progress, StormError, bounded};

/// A user who gets this many errors (not sheds) gives up.
const MAX_ERRORS_PER_USER: u8 = 10;
/// The longest a user waits before trying again, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);
/// The wait after an error, or a shed without `Retry-After`.
const RETRY_WAIT: Duration = Duration::from_millis(50);

/// What the crowd did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) recorder: Recorder,
    /// From the first request to the last answer.
    pub(crate) elapsed: Duration,
    /// Members who made at least one attempt (members `0..arrived`).
    pub(crate) arrived: usize,
}

/// Everything the crowd's tasks share.
struct Crowd {
    client: ShopClient,
    members: Arc<Vec<Member>>,
    sku: String,
    order: OrderBody,
    read_ratio: f64,
    deadline: Instant,
    max_requests: u64,
    admitted: AtomicU64,
    /// The next member to arrive.
    next: AtomicUsize,
    /// Members done with the sale.
    done: AtomicUsize,
    errors: Vec<AtomicU8>,
    recorder: Mutex<Recorder>,
    live: Arc<Live>,
}

/// What a user does after an answer.
enum Then {
    Done,
    TryAgainAfter(Duration),
}

/// Runs the crowd of `members` as `options` say, showing progress.
pub(crate) async fn run(
    options: &Options,
    client: ShopClient,
    members: Arc<Vec<Member>>,
    progress: &Progress,
) -> Result<Ran, StormError> {
    let lanes = match options.load {
        Load::Closed { concurrency, .. } => {
            let lanes = concurrency.min(members.len());
            progress.step(&format!("opening {lanes} connections"));
            open_lanes(&client, &options.sku, lanes).await?
        }
        Load::Open { .. } => Vec::new(),
    };
    progress.step("the crowd is in");
    let start = Instant::now();
    let live = Arc::new(Live::default());
    let crowd = Arc::new(Crowd {
        client,
        errors: members.iter().map(|_| AtomicU8::new(0)).collect(),
        members,
        sku: options.sku.clone(),
        order: OrderBody::new(&options.sku, options.quantity),
        read_ratio: options.read_ratio,
        deadline: start + options.duration,
        max_requests: options.max_requests.unwrap_or(u64::MAX),
        admitted: AtomicU64::new(0),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        recorder: Mutex::new(Recorder::new(start)),
        live: live.clone(),
    });
    let follower = progress.follow(live, options.stock, start);
    match options.load {
        Load::Closed { think_time, .. } => {
            closed_loop(&crowd, lanes, think_time, options.seed).await
        }
        Load::Open {
            rate,
            max_in_flight,
        } => open_loop(&crowd, rate, max_in_flight, options.seed).await,
    }
    follower.abort();
    let elapsed = start.elapsed();
    let arrived = crowd.next.load(Ordering::Relaxed).min(crowd.members.len());
    let recorder = std::mem::replace(&mut *crowd.lock(), Recorder::new(start));
    Ok(Ran {
        recorder,
        elapsed,
        arrived,
    })
}

/// One lane per closed-loop user slot, each opened with one read of the
/// product page: the crowd's users have been on the page before the sale
/// opens, so the crowd's first instant measures the sale, not handshakes.
async fn open_lanes(client: &ShopClient, sku: &str, lanes: usize) -> Result<Vec<Lane>, StormError> {
    let (client, sku) = (client.clone(), sku.to_owned());
    bounded(lanes, lanes, move |_| {
        let (client, sku) = (client.clone(), sku.clone());
        async move {
            let mut lane = Lane::open(&client)
                .await
                .map_err(|e| StormError::Warm(e.to_string()))?;
            warmed(lane.product(&sku).await)?;
            Ok(lane)
        }
    })
    .await
}

/// A warm-up read must succeed: a crowd against a page that fails would
/// measure nothing.
pub(crate) fn warmed(answer: Answer) -> Result<(), StormError> {
    match answer.outcome {
        Outcome::Read => Ok(()),
        _ => Err(StormError::Warm(answer.detail.unwrap_or_else(|| {
            format!("the product page answered {:?}", answer.status)
        }))),
    }
}

/// A task per lane, each serving one user at a time.
async fn closed_loop(crowd: &Arc<Crowd>, lanes: Vec<Lane>, think_time: Duration, seed: u64) {
    let mut tasks = JoinSet::new();
    for (worker, mut lane) in lanes.into_iter().enumerate() {
        let crowd = crowd.clone();
        let mut rng =
            fastrand::Rng::with_seed(seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        tasks.spawn(async move {
            while let Some(member) = crowd.arrive() {
                while crowd.admit() {
                    let sent = Instant::now();
                    let then = if rng.f64() < crowd.read_ratio {
                        crowd.read(lane.product(&crowd.sku).await, sent);
                        Then::TryAgainAfter(Duration::ZERO)
                    } else {
                        let session = &crowd.members[member].session;
                        let answer = lane.order(session, &crowd.order).await;
                        crowd.bought(member, &answer, sent)
                    };
                    match then {
                        Then::Done => break,
                        Then::TryAgainAfter(wait) => sleep(wait + think_time).await,
                    }
                }
                if !crowd.admit_more() {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One arrival every `1 / rate` seconds, each timed from when it was due.
/// An arrival is a read, or the next waiting user's attempt; a user told
/// to try again waits at the back of the line.
async fn open_loop(crowd: &Arc<Crowd>, rate: f64, max_in_flight: usize, seed: u64) {
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let waiting = Arc::new(Mutex::new(VecDeque::new()));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tasks = JoinSet::new();
    for slot in 0u32.. {
        let due = start + period * slot;
        tokio::time::sleep_until(due.into()).await;
        while tasks.try_join_next().is_some() {}
        if crowd.done.load(Ordering::Relaxed) >= crowd.members.len() {
            break;
        }
        let member = if rng.f64() < crowd.read_ratio {
            None
        } else {
            let next = lock(&waiting).pop_front().or_else(|| crowd.arrive());
            match next {
                Some(member) => Some(member),
                // Everyone left is waiting for an answer: nobody arrives now.
                None => continue,
            }
        };
        if !crowd.admit() {
            break;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            crowd.lock().dropped += 1;
            lock(&waiting).extend(member);
            continue;
        };
        let (crowd, waiting) = (crowd.clone(), waiting.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match member {
                None => crowd.read(crowd.client.product(&crowd.sku).await, due),
                Some(member) => {
                    let session = &crowd.members[member].session;
                    let answer = crowd.client.order(session, &crowd.order).await;
                    if let Then::TryAgainAfter(_) = crowd.bought(member, &answer, due) {
                        lock(&waiting).push_back(member);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

impl Crowd {
    /// The next user to arrive, if any is left.
    fn arrive(&self) -> Option<usize> {
        let member = self.next.fetch_add(1, Ordering::Relaxed);
        (member < self.members.len()).then_some(member)
    }

    /// Whether another request may go: before the deadline and within the
    /// request count. Counts the request.
    fn admit(&self) -> bool {
        self.admit_more() && self.admitted.fetch_add(1, Ordering::Relaxed) < self.max_requests
    }

    /// Whether the crowd may go on at all.
    fn admit_more(&self) -> bool {
        Instant::now() < self.deadline && self.admitted.load(Ordering::Relaxed) < self.max_requests
    }

    /// Records a read, timed from `due`.
    fn read(&self, answer: Answer, due: Instant) {
        self.lock().record(None, &answer, due.elapsed(), &self.live);
    }

    /// Records `member`'s attempt to buy, timed from `due`; what the user
    /// does next.
    fn bought(&self, member: usize, answer: &Answer, due: Instant) -> Then {
        self.lock()
            .record(Some(member), answer, due.elapsed(), &self.live);
        let then = self.then(member, answer);
        if let Then::Done = then {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        then
    }

    fn then(&self, member: usize, answer: &Answer) -> Then {
        match answer.outcome {
            Outcome::Created | Outcome::SoldOut | Outcome::LimitExceeded => Then::Done,
            Outcome::Overloaded => Then::TryAgainAfter(
                answer
                    .retry_after
                    .map_or(RETRY_WAIT, |wait| wait.min(MAX_RETRY_WAIT)),
            ),
            Outcome::NotStarted | Outcome::Read | Outcome::Failed | Outcome::Unanswered => {
                let errors = self.errors[member].fetch_add(1, Ordering::Relaxed) + 1;
                if errors >= MAX_ERRORS_PER_USER {
                    Then::Done
                } else {
                    Then::TryAgainAfter(RETRY_WAIT)
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        lock(&self.recorder)
    }
}

/// A lock that survives a panicked holder: the record is plain counters,
/// valid whatever was interrupted.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn sleep(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}
