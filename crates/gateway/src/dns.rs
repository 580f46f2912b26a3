//! The authoritative DNS responder: the names of `[[dns.names]]` answered
//! with the backends of a pool that are in rotation, over UDP and TCP on one
//! port ("DNS load balancing", as F5's GSLB or Route 53's health-checked
//! records do it, but fed by the gateway's own health checks).
//!
//! Every query reads the current configuration and the backends' state,
//! so a backend that fails its health check (or is drained, or ejected)
//! is gone from the very next answer, and a reload's names, pools and TTL
//! apply at once. The rule for "in rotation" is the pool's own
//! ([`Pool::in_rotation`]), so DNS and HTTP clients never disagree.
//!
//! - `answer = "all"`: every backend in rotation, the list rotated by one
//!   per query (BIND's cyclic order), so clients that take the first
//!   address spread over the pool.
//! - `answer = "pick"`: the one backend the pool's strategy picks for the
//!   querier's address (which is its resolver's, not the end user's).
//! - While no backend is in rotation: `when_all_down = "all"` answers every
//!   backend of the pool, `"servfail"` answers `SERVFAIL`.
//!
//! An A query is answered with the IPv4 backends, AAAA with the IPv6 ones;
//! a configured name with none of the family asked for, or asked another
//! type, gets an empty `NOERROR` (NODATA). Ports are not in A records (SRV
//! is not served). Like BIND and CoreDNS for a name outside every zone they
//! serve, any other name is `REFUSED`: the gateway is authoritative for its
//! names only, and recursion is never offered.
//!
//! hickory-server parses and encodes every message and runs the UDP and TCP
//! loops (truncation for UDP, idle timeouts for TCP); this module only
//! decides the answer.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use stampede_balance::Backend;
use tokio::sync::watch;

use crate::config::{DnsAnswer, DnsConfig, WhenAllDown};
use crate::pool::Pool;
use crate::server::{Current, StartError, runtime};
use crate::telemetry;

/// How long a DNS-over-TCP connection may stay silent before it is closed
/// (RFC 7766 asks for seconds, not minutes; BIND's default is 30 s).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Responses queued per TCP connection.
const TCP_RESPONSES: usize = 32;

/// How often binding TCP on the port UDP got for `:0` is tried before
/// giving up (another process may take that TCP port in between).
const BIND_TRIES: usize = 5;

/// The configured names, resolved to their pools.
#[derive(Debug)]
pub(crate) struct Names {
    ttl: u32,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: LowerName,
    pool: Arc<Pool>,
    answer: DnsAnswer,
    when_all_down: WhenAllDown,
    /// Turns of the `all` rotation, IPv4's and IPv6's: one counter for
    /// both would, for clients asking A then AAAA, advance each family's
    /// list by two and leave half of its orders unseen.
    turns: [AtomicUsize; 2],
}

/// What a query gets.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// These addresses (none: NODATA).
    Addresses(Vec<IpAddr>),
    /// Not a configured name.
    Refused,
    /// No backend in rotation, and the name says `servfail`.
    ServFail,
}

impl Names {
    /// The names of `config`, each with its pool from `pools` (validation
    /// made sure they exist).
    pub(crate) fn new(config: &DnsConfig, pools: &[(String, Arc<Pool>)]) -> Self {
        let entries = config
            .names
            .iter()
            .filter_map(|entry| {
                let (_, pool) = pools.iter().find(|(name, _)| *name == entry.pool)?;
                Some(Entry {
                    name: LowerName::new(&entry.name),
                    pool: Arc::clone(pool),
                    answer: entry.answer,
                    when_all_down: entry.when_all_down,
                    turns: Default::default(),
                })
            })
            .collect();
        Self {
            // Validation bounds the TTL to a day.
            ttl: u32::try_from(config.ttl.as_secs()).unwrap_or(u32::MAX),
            entries,
        }
    }

    fn entry(&self, name: &LowerName) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == *name)
    }

    /// The answer to a query of `kind` for `name` from `client`.
    fn answer(&self, name: &LowerName, kind: RecordType, client: IpAddr) -> Answer {
        let Some(entry) = self.entry(name) else {
            return Answer::Refused;
        };
        let v4 = match kind {
            RecordType::A => true,
            RecordType::AAAA => false,
            _ => return Answer::Addresses(Vec::new()),
        };
        // Before any pick: a pick thrown away for the other family would
        // still move the strategy on, and a client asking A and AAAA in
        // turn could then always get the same A over round-robin.
        if !entry.pool.backends.iter().any(|b| b.addr.is_ipv4() == v4) {
            return Answer::Addresses(Vec::new());
        }
        let Some(backends) = entry.backends(client) else {
            return Answer::ServFail;
        };
        let mut addresses: Vec<IpAddr> = Vec::new();
        for ip in backends.iter().map(|b| b.addr.ip()) {
            // Several ports of one host are one address.
            if ip.is_ipv4() == v4 && !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        if entry.answer == DnsAnswer::All && !addresses.is_empty() {
            let turn = entry.turns[usize::from(v4)].fetch_add(1, Ordering::Relaxed);
            let n = addresses.len();
            addresses.rotate_left(turn % n);
        }
        Answer::Addresses(addresses)
    }
}

impl Entry {
    /// The backends to answer with, or `None` for `SERVFAIL`.
    fn backends(&self, client: IpAddr) -> Option<Vec<&Arc<Backend>>> {
        let chosen = match self.answer {
            DnsAnswer::All => self.pool.in_rotation(),
            DnsAnswer::Pick => {
                let no_headers: &[httparse::Header<'_>] = &[];
                let choice = self.pool.choose(client, "", no_headers);
                choice
                    .map(|c| &self.pool.backends[c.index])
                    .into_iter()
                    .collect()
            }
        };
        if !chosen.is_empty() {
            return Some(chosen);
        }
        match self.when_all_down {
            WhenAllDown::All => Some(self.pool.backends.iter().collect()),
            WhenAllDown::Servfail => None,
        }
    }
}

/// The UDP socket and TCP listener of the responder, on one port.
#[derive(Debug)]
pub(crate) struct Sockets {
    udp: UdpSocket,
    tcp: std::net::TcpListener,
}

impl Sockets {
    /// The address both are bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Binds UDP and TCP on `addr`. For port 0, TCP takes the port the kernel
/// gave UDP, and both are tried again if another process holds it for TCP.
pub(crate) fn bind(addr: SocketAddr) -> Result<Sockets, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(addr).map_err(bind_error)?;
        udp.set_nonblocking(true).map_err(bind_error)?;
        let bound = udp.local_addr().map_err(bind_error)?;
        match crate::server::bind(bound) {
            Ok(tcp) => return Ok(Sockets { udp, tcp }),
            Err(StartError::Bind { source, .. })
                if addr.port() == 0
                    && source.kind() == io::ErrorKind::AddrInUse
                    && tries < BIND_TRIES =>
            {
                tries += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Answers queries on `sockets` until `stop` turns true.
pub(crate) fn serve(
    sockets: Sockets,
    current: Current,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    runtime()?.block_on(async move {
        let mut server = Server::new(Responder { current });
        server.register_socket(tokio::net::UdpSocket::from_std(sockets.udp)?);
        let tcp = tokio::net::TcpListener::from_std(sockets.tcp)?;
        server.register_listener(tcp, TCP_IDLE, TCP_RESPONSES);
        let _ = stop.wait_for(|stop| *stop).await;
        server.shutdown_gracefully().await.map_err(io::Error::other)
    })
}

/// hickory's handler: decides the answer from the current configuration.
struct Responder {
    current: Current,
}

#[async_trait::async_trait]
impl RequestHandler for Responder {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let (code, records) = self.respond(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        // Authoritative for the names it serves; nothing else is answered.
        metadata.authoritative = code != ResponseCode::Refused;
        // An OPT record in return tells an EDNS client how large an answer
        // may come over UDP before it is truncated (RFC 6891).
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            records.iter(),
            [],
            [],
            [],
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "Could not send a DNS answer.");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl Responder {
    /// The response code and answer records for `request`.
    fn respond(&self, request: &Request) -> (ResponseCode, Vec<Record>) {
        if request.metadata.op_code != OpCode::Query {
            return (ResponseCode::NotImp, Vec::new());
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return (ResponseCode::FormErr, Vec::new());
        };
        let query = info.query;
        let shared = Arc::clone(&self.current.borrow());
        let Some(names) = &shared.dns else {
            return (ResponseCode::Refused, Vec::new());
        };
        let answer = match query.query_class() {
            DNSClass::IN => names.answer(query.name(), query.query_type(), info.src.ip()),
            _ => Answer::Refused,
        };
        let (code, addresses) = match answer {
            Answer::Addresses(addresses) => (ResponseCode::NoError, addresses),
            Answer::Refused => (ResponseCode::Refused, Vec::new()),
            Answer::ServFail => (ResponseCode::ServFail, Vec::new()),
        };
        let known = code != ResponseCode::Refused;
        telemetry::dns_query(known.then(|| query.name()), code);
        let name = Name::from(query.name());
        let records = addresses
            .into_iter()
            .map(|ip| Record::from_rdata(name.clone(), names.ttl, rdata(ip)))
            .collect();
        (code, records)
    }
}

fn rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4.into()),
        IpAddr::V6(v6) => RData::AAAA(v6.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    use stampede_balance::Out;

    use super::*;
    use crate::config::Config;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// The names of a configuration with the pool `web` of `backends` and
    /// the `[[dns.names]]` keys `keys` for `shop.test`.
    fn names(backends: &str, keys: &str) -> Names {
        let toml = format!(
            "routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = {backends}\n\
             [dns]\n[[dns.names]]\nname = \"shop.test\"\npool = \"web\"\n{keys}\n"
        );
        let config = Config::from_toml(&toml, "test.toml").expect("config");
        let pool = Arc::new(Pool::new(0, "web", &config.pools["web"], None));
        let dns = config.dns.as_ref().expect("dns");
        Names::new(dns, &[("web".to_owned(), pool)])
    }

    fn lower(name: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(name).expect("name"))
    }

    fn ask(names: &Names, kind: RecordType) -> Answer {
        names.answer(&lower("shop.test."), kind, CLIENT)
    }

    fn addresses(names: &Names, kind: RecordType) -> Vec<IpAddr> {
        match ask(names, kind) {
            Answer::Addresses(addresses) => addresses,
            other => panic!("expected addresses, got {other:?}"),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().expect("ip")).collect()
    }

    const THREE: &str = r#"["127.0.0.1:80", "127.0.0.2:80", "127.0.0.3:80"]"#;

    #[test]
    fn all_answers_every_backend_in_rotation_rotated_per_query() {
        let names = names(THREE, "");
        let first = addresses(&names, RecordType::A);
        assert_eq!(first, ips(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]));
        assert_eq!(
            addresses(&names, RecordType::A),
            ips(&["127.0.0.2", "127.0.0.3", "127.0.0.1"])
        );
        names.entries[0].pool.set_out(1, Out::Unhealthy, true);
        let left: BTreeSet<_> = addresses(&names, RecordType::A).into_iter().collect();
        assert_eq!(left, ips(&["127.0.0.1", "127.0.0.3"]).into_iter().collect());
        names.entries[0].pool.set_out(0, Out::Draining, true);
        assert_eq!(addresses(&names, RecordType::A), ips(&["127.0.0.3"]));
    }

    #[test]
    fn names_compare_without_case_and_others_are_refused() {
        let names = names(THREE, "");
        assert!(matches!(
            names.answer(&lower("SHOP.Test."), RecordType::A, CLIENT),
            Answer::Addresses(a) if a.len() == 3
        ));
        assert_eq!(
            names.answer(&lower("other.test."), RecordType::A, CLIENT),
            Answer::Refused
        );
        assert_eq!(
            names.answer(&lower("www.shop.test."), RecordType::A, CLIENT),
            Answer::Refused
        );
    }

    #[test]
    fn each_family_gets_its_own_backends_and_other_types_get_nodata() {
        let mixed = names(r#"["127.0.0.1:80", "[::1]:80", "127.0.0.1:81"]"#, "");
        assert_eq!(addresses(&mixed, RecordType::A), ips(&["127.0.0.1"]));
        assert_eq!(addresses(&mixed, RecordType::AAAA), ips(&["::1"]));
        assert_eq!(addresses(&mixed, RecordType::MX), Vec::<IpAddr>::new());
        let v4_only = names(THREE, "");
        assert_eq!(addresses(&v4_only, RecordType::AAAA), Vec::<IpAddr>::new());
    }

    #[test]
    fn pick_answers_the_strategys_one_backend() {
        let names = names(THREE, "answer = \"pick\"");
        let picks: Vec<_> = (0..3).map(|_| addresses(&names, RecordType::A)).collect();
        assert!(picks.iter().all(|p| p.len() == 1), "{picks:?}");
        let distinct: BTreeSet<_> = picks.into_iter().flatten().collect();
        assert_eq!(distinct.len(), 3, "round-robin goes round");
    }

    #[test]
    fn asking_for_the_other_family_moves_neither_the_rotation_nor_the_strategy() {
        let two = r#"["127.0.0.1:80", "127.0.0.2:80"]"#;
        for keys in ["", "answer = \"pick\""] {
            let names = names(two, keys);
            let mut firsts = BTreeSet::new();
            for _ in 0..2 {
                firsts.insert(addresses(&names, RecordType::A)[0]);
                assert!(addresses(&names, RecordType::AAAA).is_empty());
            }
            assert_eq!(firsts.len(), 2, "{keys}: both lead in turn");
        }
        let mixed = names(
            r#"["127.0.0.1:80", "127.0.0.2:80", "[::1]:80", "[::2]:80"]"#,
            "",
        );
        let mut firsts = BTreeSet::new();
        for _ in 0..2 {
            firsts.insert(addresses(&mixed, RecordType::A)[0]);
            firsts.insert(addresses(&mixed, RecordType::AAAA)[0]);
        }
        assert_eq!(firsts.len(), 4, "each family rotates on its own");
    }

    #[test]
    fn when_all_are_down_the_answer_is_every_backend_or_servfail() {
        for keys in ["", "answer = \"pick\""] {
            let all = names(THREE, keys);
            for i in 0..3 {
                all.entries[0].pool.set_out(i, Out::Unhealthy, true);
            }
            assert_eq!(addresses(&all, RecordType::A).len(), 3, "{keys}");
        }
        let servfail = names(THREE, "when_all_down = \"servfail\"");
        for i in 0..3 {
            servfail.entries[0].pool.set_out(i, Out::Unhealthy, true);
        }
        assert_eq!(ask(&servfail, RecordType::A), Answer::ServFail);
    }
}
