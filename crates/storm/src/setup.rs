//! Before the crowd: the users and the product, created through the admin
//! API, and every user logged in. None of it is timed; it only has to be
//! done before the sale opens, so that the crowd starts at one instant with
//! every session in hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stampede_client::{ClientError, NewProduct, NewUser, Session, ShopClient};

use crate::crowd::warmed;
use crate::progress::Progress;
use crate::{Options, StormError, bounded};

/// Users per creation call. Well under the contract's 10,000: the server
/// hashes every password before it answers, and a smaller call keeps each
/// answer within the setup timeout and the progress line moving.
const USERS_PER_CALL: usize = 1_000;

/// How often one login is tried before setup gives up: a crowd's server
/// may shed logins with `503` or `429` too.
const LOGIN_TRIES: u32 = 5;

/// One user of the crowd, logged in.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) username: String,
    pub(crate) session: Session,
}

/// Creates the users and the product (with the `admin` client) and logs
/// every user in (with the crowd's own `client`).
pub(crate) async fn prepare(
    options: &Options,
    admin: &ShopClient,
    client: &ShopClient,
    progress: &Progress,
) -> Result<Vec<Member>, StormError> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let users: Vec<NewUser> = (1..=options.users)
        .map(|n| NewUser {
            username: format!("{}{n}", options.user_prefix),
            password: format!("pw-{:016x}", rng.u64(..)),
        })
        .collect();
    create_users(admin, &users, progress).await?;
    let product = NewProduct {
        sku: options.sku.clone(),
        name: format!("stampede storm {}", options.sku),
        price_cents: 1_999,
        stock: options.stock,
        per_user_limit: options.per_user_limit,
    };
    admin
        .create_product(&product)
        .await
        .map_err(|source| setup("creating the product", source))?;
    log_in(client, users, options.login_concurrency, progress).await
}

/// Opens `connections` keep-alive connections in the open loop's pool,
/// each with one read of the product page (the closed loop's users open
/// their own, see `crowd`).
pub(crate) async fn warm_up(
    options: &Options,
    client: &ShopClient,
    connections: usize,
    progress: &Progress,
) -> Result<(), StormError> {
    progress.step(&format!("opening {connections} connections"));
    let (client, sku) = (client.clone(), options.sku.clone());
    bounded(connections, connections, move |_| {
        let (client, sku) = (client.clone(), sku.clone());
        async move { warmed(client.product(&sku).await) }
    })
    .await?;
    Ok(())
}

async fn create_users(
    admin: &ShopClient,
    users: &[NewUser],
    progress: &Progress,
) -> Result<(), StormError> {
    let mut created = 0;
    for chunk in users.chunks(USERS_PER_CALL) {
        progress.step(&format!("creating users {created}/{}", users.len()));
        admin
            .create_users(chunk)
            .await
            .map_err(|source| setup("creating users", source))?;
        created += chunk.len();
    }
    Ok(())
}

/// Logs every user in, `concurrency` at a time; the members keep the
/// users' order.
async fn log_in(
    client: &ShopClient,
    users: Vec<NewUser>,
    concurrency: usize,
    progress: &Progress,
) -> Result<Vec<Member>, StormError> {
    let users = Arc::new(users);
    let logged_in = Arc::new(AtomicUsize::new(0));
    let sessions = {
        let (client, users, progress) = (client.clone(), users.clone(), progress.clone());
        bounded(users.len(), concurrency, move |i| {
            let (client, users, progress, logged_in) = (
                client.clone(),
                users.clone(),
                progress.clone(),
                logged_in.clone(),
            );
            async move {
                let session = log_in_one(&client, &users[i]).await?;
                let n = logged_in.fetch_add(1, Ordering::Relaxed) + 1;
                progress.step(&format!("logging in {n}/{}", users.len()));
                Ok(session)
            }
        })
        .await?
    };
    Ok(users
        .iter()
        .zip(sessions)
        .map(|(user, session)| Member {
            username: user.username.clone(),
            session,
        })
        .collect())
}

/// Logs one user in, waiting and trying again when the server sheds load.
async fn log_in_one(client: &ShopClient, user: &NewUser) -> Result<Session, StormError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match client.login(&user.username, &user.password).await {
            Ok(session) => return Ok(session),
            Err(ClientError::Refused {
                status: 429 | 503, ..
            }) if tries < LOGIN_TRIES => {
                tokio::time::sleep(Duration::from_millis(200) * tries).await;
            }
            Err(source) => return Err(setup("logging in", source)),
        }
    }
}

fn setup(step: &'static str, source: ClientError) -> StormError {
    StormError::Setup { step, source }
}
