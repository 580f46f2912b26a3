//! `stampede storm`: a flash crowd on demand, with its invariants checked.
//!
//! What k6 or Locust are to a web app, for a sale. A storm runs against
//! any server that implements the flash-sale contract, through its front
//! door, in three phases:
//!
//! 1. **setup** (`setup`, untimed): create users and a product with the
//!    admin calls and log every user in, so the crowd starts at one
//!    instant with its sessions in hand;
//! 2. **the crowd** (`crowd`): a closed loop (C users at a time) or an open
//!    loop (a fixed arrival rate), with product-page reads mixed in, bounded
//!    by a duration and a request count; `record` keeps every latency in a
//!    histogram per outcome and a per-second timeline, and `progress` shows
//!    it live;
//! 3. **the verdict** (`invariants`): the admin stats and every user's
//!    orders, checked against the contract's invariants.
//!
//! The [`Report`] holds all of it, with the fairness of the sale
//! (`fairness`), as text, JSON or a self-contained HTML page (`html`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stampede_client::{ClientError, ShopClient};
use tokio::task::JoinSet;

mod crowd;
mod fairness;
mod html;
mod invariants;
mod options;
mod progress;
mod record;
mod report;
mod setup;

pub use fairness::Fairness;
pub use html::to_html;
pub use invariants::{Invariants, Violation};
pub use options::{Load, Options};
pub use progress::Progress;
pub use report::{CrowdSummary, LatencyRow, Report, SecondRow};

/// Connections an open loop opens before it starts (a closed loop opens
/// one per concurrent user).
const WARM_OPEN_LOOP: usize = 256;

/// Setup calls hash passwords server-side; they may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a storm could not run to its verdict.
#[derive(Debug, thiserror::Error)]
pub enum StormError {
    /// An option is out of range.
    #[error("--{option}: {problem}")]
    Option {
        /// The option, as the command line spells it.
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The target URL or token is unusable.
    #[error(transparent)]
    Target(#[from] ClientError),
    /// A setup step failed, so no crowd was sent.
    #[error("setup failed while {step}: {source}")]
    Setup {
        /// The step.
        step: &'static str,
        /// What the server or the connection said.
        source: ClientError,
    },
    /// The product page could not be read before the crowd.
    #[error("setup failed while reading the product page: {0}")]
    Warm(String),
    /// Reading the stats or the users' orders failed, so no verdict.
    #[error("checking the invariants failed: {0}")]
    Check(ClientError),
    /// A task of the storm itself failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs a storm as `options` say, drawing on `progress`.
pub async fn run(options: &Options, progress: &Progress) -> Result<Report, StormError> {
    options.validate()?;
    let setup_timeout = SETUP_TIMEOUT.max(options.request_timeout);
    let admin = ShopClient::new(
        &options.target,
        Some(&options.admin_token),
        setup_timeout,
        options.login_concurrency,
    )?;
    let idle = match options.load {
        // Closed-loop users have connections of their own (lanes); the
        // pool only serves setup and the checks.
        Load::Closed { .. } => options.login_concurrency,
        Load::Open { max_in_flight, .. } => max_in_flight,
    };
    let crowd_client = ShopClient::new(&options.target, None, options.request_timeout, idle)?;
    let setup_started = Instant::now();
    let members = setup::prepare(options, &admin, &crowd_client, progress).await?;
    if let Load::Open { max_in_flight, .. } = options.load {
        setup::warm_up(
            options,
            &crowd_client,
            max_in_flight.min(WARM_OPEN_LOOP),
            progress,
        )
        .await?;
    }
    let members = Arc::new(members);
    let setup_time = setup_started.elapsed();
    let ran = crowd::run(options, crowd_client.clone(), members.clone(), progress).await?;

    progress.step("checking the invariants");
    let verdict = check(options, &admin, &crowd_client, &members, &ran).await;
    progress.finish();
    Ok(Report::new(
        options,
        setup_time,
        members.len(),
        &ran,
        verdict?,
    ))
}

/// Reads the stats and every member's orders, and judges them.
async fn check(
    options: &Options,
    admin: &ShopClient,
    client: &ShopClient,
    members: &Arc<Vec<setup::Member>>,
    ran: &crowd::Ran,
) -> Result<Invariants, StormError> {
    let stats = admin.stats().await.map_err(StormError::Check)?;
    let stats = stats.into_iter().find(|s| s.sku == options.sku);
    let orders = {
        let (client, members) = (client.clone(), members.clone());
        bounded(members.len(), options.login_concurrency, move |m| {
            let (client, members) = (client.clone(), members.clone());
            async move {
                client
                    .orders(&members[m].session)
                    .await
                    .map_err(StormError::Check)
            }
        })
        .await?
    };
    let usernames: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    Ok(invariants::judge(
        options,
        stats.as_ref(),
        &usernames,
        &orders,
        &ran.recorder.receipts,
    ))
}

/// Runs `call(0..n)` with at most `concurrency` calls at a time; the
/// results in index order, or the first error.
pub(crate) async fn bounded<T, F, Fut>(
    n: usize,
    concurrency: usize,
    call: F,
) -> Result<Vec<T>, StormError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, StormError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks: JoinSet<Result<Vec<(usize, T)>, StormError>> = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, call) = (next.clone(), call.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(done);
                }
                done.push((i, call(i).await?));
            }
        });
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let done = joined.map_err(|e| StormError::Internal(e.to_string()))??;
        for (i, result) in done {
            results[i] = Some(result);
        }
    }
    Ok(results.into_iter().flatten().collect())
}
