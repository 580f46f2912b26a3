//! A TCP relay in the test process, between a role and a store, that a
//! test can cut (every connection dropped, new ones refused) and restore
//! on the same address: an outage of the store without stopping the
//! shared server other tests use.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A relay from `addr` to a target.
#[derive(Debug)]
pub(crate) struct Relay {
    /// Where to connect instead of the target.
    pub(crate) addr: SocketAddr,
    target: SocketAddr,
    tasks: JoinSet<()>,
}

impl Relay {
    /// Relays a new ephemeral port to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let mut relay = Relay {
            addr: listener.local_addr().expect("relay address"),
            target,
            tasks: JoinSet::new(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Drops every relayed connection and stops listening.
    pub(crate) async fn cut(&mut self) {
        self.tasks.shutdown().await;
    }

    /// Listens again on the same address.
    pub(crate) async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind relay");
        self.serve(listener);
    }
}
