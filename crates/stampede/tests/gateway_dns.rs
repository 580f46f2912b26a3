//! DNS load balancing, end to end: `stampede gateway` answers its
//! `[[dns.names]]` with the backends of a pool that pass their health
//! checks, over UDP and over TCP, asked with hickory's client. Backends
//! listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (all loopback on Linux), so
//! each is an A record of its own. A backend that dies vanishes from the
//! answers within one check interval; with none left, a name answers every
//! backend or SERVFAIL, as configured. Other names are REFUSED.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use support::{Backend, Gateway, client, get, within};

/// Every backend is checked this often; one failed check takes it out.
const INTERVAL: Duration = Duration::from_millis(200);

/// The TTL the gateway is configured with.
const TTL: u32 = 3;

/// A gateway with the pool `web` of `backends` (each checked every
/// [`INTERVAL`] by a TCP connect, `fall = rise = 1`) and `names`, the
/// `[[dns.names]]` tables.
fn config(backends: &[SocketAddr], names: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 1
routes = [{{ pool = "web" }}]
[pools.web]
backends = [{list}]
[pools.web.health_check]
interval = "{interval}ms"
timeout = "{interval}ms"
rise = 1
fall = 1
[dns]
listen = "127.0.0.1:0"
ttl = "{TTL}s"
{names}
"#,
        list = list.join(", "),
        interval = INTERVAL.as_millis(),
    )
}

/// One `[[dns.names]]` table for the pool `web`, with more keys.
fn name(name: &str, keys: &str) -> String {
    format!("[[dns.names]]\nname = \"{name}\"\npool = \"web\"\n{keys}\n")
}

/// Backends named `a`, `b`, `c` on 127.0.0.1, 127.0.0.2 and 127.0.0.3.
async fn three_backends() -> Vec<Backend> {
    let mut backends = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, i as u8 + 1], 0));
        backends.push(Backend::start_at(name, addr).await);
    }
    backends
}

fn addrs(backends: &[Backend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

fn ips(backends: &[&Backend]) -> BTreeSet<IpAddr> {
    backends.iter().map(|b| b.addr.ip()).collect()
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// hickory's client for the gateway's responder over `transport`.
async fn dns_client(gateway: &Gateway, transport: Transport) -> Client<TokioRuntimeProvider> {
    let server = gateway.dns.expect("the gateway serves DNS");
    let provider = TokioRuntimeProvider::default();
    match transport {
        Transport::Udp => {
            let (client, background) =
                Client::from_sender(UdpClientStream::builder(server, provider).build());
            tokio::spawn(background);
            client
        }
        Transport::Tcp => {
            let (stream, handle) = TcpClientStream::new(server, None, None, provider);
            let stream = within(support::TIMEOUT, "a TCP connection", stream)
                .await
                .expect("connect over TCP");
            let (client, background) = Client::new(stream, handle);
            tokio::spawn(background);
            client
        }
    }
}

/// What one query got.
#[derive(Debug)]
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    /// The addresses in the order answered.
    addresses: Vec<IpAddr>,
    ttls: BTreeSet<u32>,
}

impl Reply {
    fn set(&self) -> BTreeSet<IpAddr> {
        self.addresses.iter().copied().collect()
    }
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, kind: RecordType) -> Reply {
    let query = client.query(Name::from_str(name).expect("name"), DNSClass::IN, kind);
    let response = within(support::TIMEOUT, "a DNS answer", query)
        .await
        .expect("a DNS answer");
    let addresses = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    Reply {
        code: response.metadata.response_code,
        authoritative: response.metadata.authoritative,
        addresses,
        ttls: response.answers.iter().map(|r| r.ttl).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_answer_every_healthy_backend_rotated() {
    let backends = three_backends().await;
    let gateway = Gateway::with_config(&config(&addrs(&backends), &name("shop.test", ""))).await;
    let all = ips(&backends.iter().collect::<Vec<_>>());
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut dns = dns_client(&gateway, transport).await;
        let mut firsts = BTreeSet::new();
        for _ in 0..3 {
            let reply = ask(&mut dns, "shop.test.", RecordType::A).await;
            assert_eq!(
                reply.code,
                ResponseCode::NoError,
                "{transport:?}: {reply:?}"
            );
            assert!(reply.authoritative, "{transport:?}: {reply:?}");
            assert_eq!(reply.set(), all, "{transport:?}");
            assert_eq!(reply.ttls, [TTL].into(), "{transport:?}");
            firsts.insert(reply.addresses[0]);
        }
        assert_eq!(firsts, all, "{transport:?}: each address leads in turn");

        let upper = ask(&mut dns, "SHOP.test.", RecordType::A).await;
        assert_eq!(upper.set(), all, "names compare without case");
        let v6 = ask(&mut dns, "shop.test.", RecordType::AAAA).await;
        assert_eq!(
            (v6.code, v6.authoritative, v6.addresses.len()),
            (ResponseCode::NoError, true, 0),
            "no IPv6 backend: NODATA"
        );
        let other = ask(&mut dns, "other.test.", RecordType::A).await;
        assert_eq!(
            (other.code, other.addresses.len()),
            (ResponseCode::Refused, 0)
        );
    }

    let metrics = get(&client(), &gateway.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"stampede_gateway_dns_queries_total{name="shop.test.",rcode="NOERROR"} 10"#
        ) && metrics
            .contains(r#"stampede_gateway_dns_queries_total{name="none",rcode="REFUSED"} 2"#),
        "{metrics}"
    );
}

/// Asks for `shop.test.` until `done` holds for the answer's addresses;
/// how long that took.
async fn until(
    dns: &mut Client<TokioRuntimeProvider>,
    what: &str,
    done: impl Fn(&BTreeSet<IpAddr>) -> bool,
) -> Duration {
    let start = Instant::now();
    within(Duration::from_secs(5), what, async {
        while !done(&ask(dns, "shop.test.", RecordType::A).await.set()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_vanishes_within_one_check_interval_and_comes_back() {
    let backends = three_backends().await;
    let gateway = Gateway::with_config(&config(&addrs(&backends), &name("shop.test", ""))).await;
    let mut udp = dns_client(&gateway, Transport::Udp).await;
    let mut tcp = dns_client(&gateway, Transport::Tcp).await;
    let all = ips(&backends.iter().collect::<Vec<_>>());
    assert_eq!(ask(&mut udp, "shop.test.", RecordType::A).await.set(), all);

    let b = &backends[1];
    b.stop();
    let gone = until(&mut udp, "b to vanish", |set| !set.contains(&b.addr.ip())).await;
    // The next check fails at once (connection refused): one interval,
    // and a margin for a loaded machine.
    assert!(gone <= INTERVAL + Duration::from_millis(500), "{gone:?}");
    let left = ips(&[&backends[0], &backends[2]]);
    assert_eq!(ask(&mut udp, "shop.test.", RecordType::A).await.set(), left);
    assert_eq!(ask(&mut tcp, "shop.test.", RecordType::A).await.set(), left);

    let _b = Backend::start_at("b", b.addr).await;
    until(&mut udp, "b to come back", |set| *set == all).await;
    assert_eq!(ask(&mut tcp, "shop.test.", RecordType::A).await.set(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_answers_the_one_backend_the_strategy_picks() {
    let backends = three_backends().await;
    let toml = config(&addrs(&backends), &name("shop.test", "answer = \"pick\""));
    let gateway = Gateway::with_config(&toml).await;
    let mut dns = dns_client(&gateway, Transport::Udp).await;
    let mut picked = BTreeSet::new();
    for _ in 0..6 {
        let reply = ask(&mut dns, "shop.test.", RecordType::A).await;
        assert_eq!(reply.addresses.len(), 1, "{reply:?}");
        picked.extend(reply.addresses);
    }
    assert_eq!(
        picked,
        ips(&backends.iter().collect::<Vec<_>>()),
        "round-robin goes round"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_a_name_answers_all_of_them_or_servfail() {
    let backends = three_backends().await;
    let names = name("all.test", "when_all_down = \"all\"")
        + &name("fail.test", "when_all_down = \"servfail\"");
    let gateway = Gateway::with_config(&config(&addrs(&backends), &names)).await;
    let mut dns = dns_client(&gateway, Transport::Tcp).await;
    let all = ips(&backends.iter().collect::<Vec<_>>());
    assert_eq!(ask(&mut dns, "fail.test.", RecordType::A).await.set(), all);

    for backend in &backends {
        backend.stop();
    }
    within(Duration::from_secs(5), "SERVFAIL", async {
        while ask(&mut dns, "fail.test.", RecordType::A).await.code != ResponseCode::ServFail {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let reply = ask(&mut dns, "all.test.", RecordType::A).await;
    assert_eq!(
        (reply.code, reply.set()),
        (ResponseCode::NoError, all),
        "every backend, down or not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_names_but_not_where_dns_listens() {
    let backends = three_backends().await;
    let before = config(&addrs(&backends), &name("shop.test", ""));
    let gateway = Gateway::with_config(&before).await;
    let mut dns = dns_client(&gateway, Transport::Udp).await;
    assert_eq!(
        ask(&mut dns, "shop.test.", RecordType::A).await.code,
        ResponseCode::NoError
    );

    gateway.rewrite_config(&before.replace("shop.test", "store.test"));
    gateway.hangup();
    within(Duration::from_secs(5), "the new name", async {
        while ask(&mut dns, "store.test.", RecordType::A).await.code != ResponseCode::NoError {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let old = ask(&mut dns, "shop.test.", RecordType::A).await;
    assert_eq!(old.code, ResponseCode::Refused, "the old name is gone");

    let elsewhere = before.replace(
        "[dns]\nlisten = \"127.0.0.1:0\"",
        "[dns]\nlisten = \"127.0.0.1:1\"",
    );
    gateway.rewrite_config(&elsewhere);
    gateway.hangup();
    within(Duration::from_secs(5), "the refusal to be logged", async {
        while !gateway.stderr().contains("dns.listen") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        ask(&mut dns, "store.test.", RecordType::A).await.code,
        ResponseCode::NoError,
        "still serving the previous configuration"
    );
}
