//! The few admin calls `up` makes to the cluster it started, through its
//! gateway like any client, with the contract's client; a `409 exists` is
//! an answer here (an earlier start made it), not an error.

use std::net::SocketAddr;
use std::time::Duration;

use stampede_client::{ClientError, NewProduct, NewUser, ShopClient};

use crate::UpError;

/// How long one call may take; creating users hashes their passwords.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What an admin `POST` that creates something found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// `201`: created now.
    New,
    /// `409 exists`: it was there already.
    Existed,
}

/// The admin API of one cluster.
#[derive(Debug)]
pub(crate) struct AdminApi {
    client: ShopClient,
}

impl AdminApi {
    /// The API behind `addr`, called with `token`.
    pub(crate) fn new(addr: SocketAddr, token: &str) -> Result<Self, UpError> {
        let client = ShopClient::new(&format!("http://{addr}"), Some(token), CALL_TIMEOUT, 1)?;
        Ok(Self { client })
    }

    /// Creates the product unless it exists.
    pub(crate) async fn create_product(&self, product: &NewProduct) -> Result<Created, UpError> {
        created(self.client.create_product(product).await)
    }

    /// Creates the users unless they exist.
    pub(crate) async fn create_users(&self, users: &[NewUser]) -> Result<Created, UpError> {
        created(self.client.create_users(users).await)
    }
}

fn created<T>(result: Result<T, ClientError>) -> Result<Created, UpError> {
    match result {
        Ok(_) => Ok(Created::New),
        Err(error) if error.code() == Some("exists") => Ok(Created::Existed),
        Err(error) => Err(error.into()),
    }
}
