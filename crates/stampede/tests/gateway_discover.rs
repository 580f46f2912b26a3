//! Backends found through DNS (`[pools.NAME] discover`), end to end: the
//! gateway resolves a real name through the system resolver (`localhost`,
//! which every machine resolves without a DNS server) and serves from the
//! addresses it finds, with no static backend and no reload.

mod support;

use std::time::Duration;

use support::{Backend, Gateway, client, get, served_by, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_only_a_name_serves_from_the_addresses_it_resolves_to() {
    let backend = Backend::start("discovered").await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 2\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\n\
         discover = {{ dns = \"localhost:{}\", interval = \"1s\" }}\n",
        backend.addr.port()
    );
    let gateway = Gateway::with_config(&toml).await;
    let client = client();
    // `localhost` may resolve to ::1 as well, where nothing listens; the
    // IPv4 address is the one that must be found.
    let found = backend.addr.to_string();
    within(Duration::from_secs(5), "the discovered backend", async {
        loop {
            let state = get(&client, &gateway.admin_url("/backends")).await.json();
            let listed = state["pools"][0]["backends"].as_array().cloned();
            if listed
                .into_iter()
                .flatten()
                .any(|b| b["backend"].as_str() == Some(found.as_str()))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served_by(&client, &gateway, 4).await.contains("discovered"));
}
