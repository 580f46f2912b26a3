//! The sold-out flag, pushed: the node that sells a sku's last unit
//! publishes the sku on `stampede:sold-out`, and every node following the
//! channel marks it sold out in its own catalogue at once, rather than
//! when its cached copy expires (up to a second later). In that second a
//! flash crowd would otherwise keep sending reservations the store can
//! only refuse.
//!
//! A hint, not the truth: the store decides every reservation, and a
//! missed message costs nothing but that second. So publishing is fire and
//! forget, and a follower whose connection breaks (Redis restarted)
//! subscribes again after a short pause, missing what was said meanwhile.

use std::time::Duration;

use futures_util::StreamExt;

use crate::{Redis, RedisError};

/// The channel.
const CHANNEL: &str = "stampede:sold-out";

/// How long a follower waits before subscribing again after a failure.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);

/// Tells every following node that `sku` is sold out.
pub async fn announce(redis: &Redis, sku: &str) -> Result<(), RedisError> {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(sku)
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}

/// How many nodes follow the flag now.
pub async fn followers(redis: &Redis) -> Result<usize, RedisError> {
    let (_, count): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(CHANNEL)
        .query_async(&mut redis.connection())
        .await?;
    Ok(count)
}

/// Calls `sold_out` with every sku announced from now on, on a task of its
/// own that runs until the runtime stops, resubscribing whenever the
/// connection breaks.
pub fn follow(redis: &Redis, sold_out: impl Fn(String) + Send + Sync + 'static) {
    let client = redis.client.clone();
    tokio::spawn(async move {
        loop {
            if let Err(error) = listen(&client, &sold_out).await {
                tracing::debug!(%error, "Sold-out announcements: subscribing again.");
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
    });
}

/// One subscription, until its connection ends.
async fn listen(client: &redis::Client, sold_out: &impl Fn(String)) -> Result<(), RedisError> {
    let connect = tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub());
    let mut pubsub = connect
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
        .map_err(redis::RedisError::from)??;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        if let Ok(sku) = message.get_payload::<String>() {
            sold_out(sku);
        }
    }
    Ok(())
}
