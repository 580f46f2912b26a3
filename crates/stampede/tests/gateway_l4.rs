//! L4 (`[[tcp]]`) listeners, end to end against the real binary: bytes
//! come back exactly, through a half-close; connections spread over the
//! pool by its strategy (round-robin, least-conn); a dead backend costs no
//! client a connection, before its health checks take it out (connect
//! retry) and after, nor does one too busy to accept (connect timeout);
//! the PROXY protocol header, v1 and v2, tells the backend the client's
//! real address; a reload moves new connections, not open ones; and a
//! shutdown closes what is left after the drain timeout.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{Gateway, client, connect, get, toml_addrs, unused_addr, wait_backend_up, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What an echo backend does before echoing.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Nothing,
    /// Reads a PROXY protocol header (v1 or v2) and reports its addresses.
    ProxyHeader,
}

/// A TCP backend that echoes every byte and, at the client's end of
/// writing, ends its own; it counts the connections that carried data
/// (health checks carry none) and those open now.
struct Echo {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        Self::start_with(Expect::Nothing, mpsc::unbounded_channel().0).await
    }

    /// Sends the (source, destination) of every PROXY header to `headers`.
    async fn start_with(
        expect: Expect,
        headers: mpsc::UnboundedSender<(SocketAddr, SocketAddr)>,
    ) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo = Echo {
            addr: listener.local_addr().expect("address"),
            served: Arc::default(),
            open: Arc::default(),
        };
        let (served, open) = (Arc::clone(&echo.served), Arc::clone(&echo.open));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (served, open, headers) =
                    (Arc::clone(&served), Arc::clone(&open), headers.clone());
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::SeqCst);
                    echo_one(stream, expect, &served, &headers).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        echo
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn echo_one(
    mut stream: TcpStream,
    expect: Expect,
    served: &AtomicUsize,
    headers: &mpsc::UnboundedSender<(SocketAddr, SocketAddr)>,
) {
    if let Expect::ProxyHeader = expect {
        let Some(addresses) = read_proxy_header(&mut stream).await else {
            return;
        };
        let _ = headers.send(addresses);
    }
    let mut first = [0u8; 1];
    if !matches!(stream.read(&mut first).await, Ok(1)) {
        return; // A health check, or a client that sent nothing.
    }
    served.fetch_add(1, Ordering::SeqCst);
    let (mut reader, mut writer) = stream.split();
    if writer.write_all(&first).await.is_ok()
        && tokio::io::copy(&mut reader, &mut writer).await.is_ok()
    {
        let _ = writer.shutdown().await;
    }
}

/// Parses a PROXY header of either version: (source, destination).
async fn read_proxy_header(stream: &mut TcpStream) -> Option<(SocketAddr, SocketAddr)> {
    let mut start = [0u8; 16];
    stream.read_exact(&mut start).await.ok()?;
    if start.starts_with(b"PROXY ") {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            line.push(stream.read_u8().await.ok()?);
        }
        let line = String::from_utf8(line).ok()?;
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        let [_, _, src, dst, sport, dport] = fields[..] else {
            panic!("a PROXY v1 line has six fields: {line:?}");
        };
        let addr = |ip: &str, port: &str| {
            SocketAddr::new(ip.parse().expect("an IP"), port.parse().expect("a port"))
        };
        return Some((addr(src, sport), addr(dst, dport)));
    }
    assert_eq!(&start[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
    assert_eq!(start[12], 0x21, "v2, PROXY");
    let mut rest = vec![0u8; usize::from(u16::from_be_bytes([start[14], start[15]]))];
    stream.read_exact(&mut rest).await.ok()?;
    let width = match start[13] {
        0x11 => 4,
        0x21 => 16,
        family => panic!("unexpected v2 family {family:#x}"),
    };
    let ip = |at: usize| -> IpAddr {
        let bytes = &rest[at..at + width];
        match <[u8; 4]>::try_from(bytes) {
            Ok(v4) => Ipv4Addr::from(v4).into(),
            Err(_) => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")).into(),
        }
    };
    let port = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
    let ports = 2 * width;
    Some((
        SocketAddr::new(ip(0), port(ports)),
        SocketAddr::new(ip(width), port(ports + 2)),
    ))
}

/// A configuration with one `[[tcp]]` listener over `backends` (pool
/// `echo`); `pool` and `tcp` are extra lines for the pool and the listener.
fn config(backends: &[SocketAddr], pool: &str, tcp: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2
drain_timeout = "500ms"
routes = [{{ pool = "echo" }}]
[pools.echo]
backends = {}
{pool}
[[tcp]]
listen = "127.0.0.1:0"
pool = "echo"
{tcp}
"#,
        toml_addrs(backends.iter().copied())
    )
}

/// The gateway `config` describes, and its `[[tcp]]` listener's address.
async fn gateway(backends: &[SocketAddr], pool: &str, tcp: &str) -> (Gateway, SocketAddr) {
    start(&config(backends, pool, tcp)).await
}

async fn start(toml: &str) -> (Gateway, SocketAddr) {
    let mut gateway = Gateway::with_config(toml).await;
    let addr = gateway.listener_addr("tcp", 0).await;
    (gateway, addr)
}

/// Sends `data` through `addr`, ends the writing side, and reads the
/// whole echo.
async fn echo_through(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = connect(addr).await;
    let (mut reader, mut writer) = stream.into_split();
    let data = data.to_vec();
    let writing = tokio::spawn(async move {
        writer.write_all(&data).await.expect("write");
        writer.shutdown().await.expect("half-close");
    });
    let mut echoed = Vec::new();
    within(
        support::TIMEOUT,
        "the whole echo",
        reader.read_to_end(&mut echoed),
    )
    .await
    .expect("read the echo");
    writing.await.expect("writer");
    echoed
}

/// `n` pseudo-random bytes (xorshift: deterministic, no crate needed).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_comes_back_byte_for_byte_through_a_half_close() {
    let backend = Echo::start().await;
    let (_gateway, addr) = gateway(&[backend.addr], "", "").await;
    let data = random_bytes(1024 * 1024);
    let echoed = echo_through(addr, &data).await;
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echo differs from what was sent");
    assert_eq!(backend.served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_exactly() {
    let backends = [
        Echo::start().await,
        Echo::start().await,
        Echo::start().await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_gateway, addr) = gateway(&addrs, "strategy = \"round-robin\"", "").await;
    for i in 0..9 {
        assert_eq!(
            echo_through(addr, format!("hello {i}").as_bytes()).await,
            format!("hello {i}").as_bytes()
        );
    }
    let served: Vec<usize> = backends.iter().map(Echo::served).collect();
    assert_eq!(served, [3, 3, 3]);
}

/// A connection through the gateway whose echo of one byte has come back,
/// so the backend holds it open.
async fn open_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(b"x").await.expect("write");
    let mut byte = [0u8; 1];
    within(support::TIMEOUT, "the echo", stream.read_exact(&mut byte))
        .await
        .expect("echo");
    stream
}

async fn wait_open(backends: &[Echo], expected: [usize; 3]) {
    within(
        Duration::from_secs(5),
        &format!("open connections {expected:?}"),
        async {
            while backends.iter().map(Echo::open).collect::<Vec<_>>() != expected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_a_connection_to_the_backend_with_fewest_open() {
    let backends = [
        Echo::start().await,
        Echo::start().await,
        Echo::start().await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_gateway, addr) = gateway(&addrs, "strategy = \"least-conn\"", "").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Some(open_connection(addr).await));
    }
    wait_open(&backends, [1, 1, 1]).await;
    // After three picks round-robin would send the next to the first
    // backend; least-conn sends it to the one whose connection ended.
    for k in [1, 2, 0] {
        clients[k] = None;
        let idle = within(
            Duration::from_secs(5),
            "a backend to lose its connection",
            async {
                loop {
                    if let Some(i) = backends.iter().position(|b| b.open() == 0) {
                        return i;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        )
        .await;
        // The gateway counts the connection out when both directions end,
        // a moment after the backend does.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = backends[idle].served();
        clients[k] = Some(open_connection(addr).await);
        wait_open(&backends, [1, 1, 1]).await;
        assert_eq!(backends[idle].served(), before + 1);
    }
    let served: Vec<usize> = backends.iter().map(Echo::served).collect();
    assert_eq!(served, [2, 2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_costs_no_connection_before_or_after_its_checks_fail() {
    let live = [Echo::start().await, Echo::start().await];
    let dead = unused_addr();
    let check =
        "[pools.echo.health_check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2";
    let (gateway, addr) = gateway(&[live[0].addr, dead, live[1].addr], check, "").await;
    // Before the checks take it out: its picks are retried on another.
    for i in 0..6 {
        let data = format!("early {i}");
        assert_eq!(echo_through(addr, data.as_bytes()).await, data.as_bytes());
    }
    let client = client();
    wait_backend_up(&client, &gateway, dead, 0.0).await;
    for i in 0..6 {
        let data = format!("late {i}");
        assert_eq!(echo_through(addr, data.as_bytes()).await, data.as_bytes());
    }
    assert_eq!(live[0].served() + live[1].served(), 12);
    assert!(
        live.iter().all(|b| b.served() >= 3),
        "both live backends serve"
    );
    let metrics = get(&client, &gateway.admin_url("/metrics")).await.text();
    let relayed = |backend: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("stampede_gateway_tcp_connections_total{")
                    && l.contains(&format!("backend=\"{backend}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(
        relayed(&live[0].addr.to_string()) + relayed(&live[1].addr.to_string()),
        12.0,
        "{metrics}"
    );
    assert_eq!(relayed(&dead.to_string()), 0.0);
    assert_eq!(relayed("none"), 0.0, "no client lost its connection");
}

/// Connects through a listener with `proxy_protocol = "VERSION"`; the
/// header the backend read must name the client's address and port and
/// the listener's, and the data must follow it unchanged.
async fn proxy_header_names_the_client(version: &str) {
    let (headers, mut received) = mpsc::unbounded_channel();
    let backend = Echo::start_with(Expect::ProxyHeader, headers).await;
    let (_gateway, addr) = gateway(
        &[backend.addr],
        "",
        &format!("proxy_protocol = \"{version}\""),
    )
    .await;
    let mut stream = connect(addr).await;
    let client = stream.local_addr().expect("client address");
    stream.write_all(b"after the header").await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    within(
        support::TIMEOUT,
        "the echo",
        stream.read_to_end(&mut echoed),
    )
    .await
    .expect("echo");
    assert_eq!(echoed, b"after the header");
    let (source, destination) = within(support::TIMEOUT, "the header", received.recv())
        .await
        .expect("a header");
    assert_eq!((source, destination), (client, addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_v1_header_names_the_client() {
    proxy_header_names_the_client("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_v2_header_names_the_client() {
    proxy_header_names_the_client("v2").await;
}

/// A listener whose accept queue is full, as a backend too busy to
/// accept: the kernel drops further handshakes, so connecting hangs while
/// it lives.
struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl Blackhole {
    async fn start() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let addr = listener.local_addr().expect("address");
        let mut queued = Vec::new();
        while let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            queued.push(stream);
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        Blackhole {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_accept_in_time_is_skipped_for_the_next() {
    let hole = Blackhole::start().await;
    let live = Echo::start().await;
    let (gateway, addr) = gateway(
        &[hole.addr, live.addr],
        "strategy = \"round-robin\"",
        "connect_timeout = \"300ms\"",
    )
    .await;
    for i in 0..2 {
        let data = format!("patient {i}");
        assert_eq!(echo_through(addr, data.as_bytes()).await, data.as_bytes());
    }
    assert_eq!(live.served(), 2);
    let logs = gateway.stderr();
    assert!(logs.contains("connect timed out after 300ms"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sends_new_connections_to_the_new_pool_and_leaves_open_ones() {
    let (old, new) = (Echo::start().await, Echo::start().await);
    let listener = "[[tcp]]\nlisten = \"127.0.0.1:0\"\npool = ";
    let with_other = |tcp_pool: &str| {
        config(&[old.addr], "", "").replace(
            &format!("{listener}\"echo\""),
            &format!("{listener}\"{tcp_pool}\""),
        ) + &format!("[pools.other]\nbackends = [\"{}\"]\n", new.addr)
    };
    let (gateway, addr) = start(&with_other("echo")).await;
    let mut open = open_connection(addr).await;
    assert_eq!(old.served(), 1);

    gateway.rewrite_config(&with_other("other"));
    gateway.hangup();
    within(
        Duration::from_secs(5),
        "new connections to reach the new pool",
        async {
            while new.served() == 0 {
                echo_through(addr, b"ping").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    // The connection opened before the reload still talks to its backend.
    open.write_all(b"still here").await.expect("write");
    let mut echoed = [0u8; 10];
    within(support::TIMEOUT, "the echo", open.read_exact(&mut echoed))
        .await
        .expect("echo");
    assert_eq!(&echoed, b"still here");
    assert_eq!(old.open(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_connections_after_the_drain_timeout() {
    let backend = Echo::start().await;
    let (mut gateway, addr) = gateway(&[backend.addr], "", "").await;
    let mut open = open_connection(addr).await;
    gateway.terminate();
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    let status = status.unwrap_or_else(|| panic!("still running; stderr:\n{}", gateway.stderr()));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gateway.stderr());
    let mut rest = Vec::new();
    let read = within(support::TIMEOUT, "the close", open.read_to_end(&mut rest)).await;
    assert!(
        read.is_err() || rest.is_empty(),
        "closed: {read:?} {rest:?}"
    );
}
