//! Shop nodes as real `stampede shop` processes, a cluster of them behind
//! a real gateway, and a small API client that keeps one user's session
//! cookie, for the shop's integration tests.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::{Value, json};
use stampede_testkit::TestDb;

use super::{Gateway, HttpClient, Process, Reply, TempFile, client, send, stampede};

/// The admin token every test node is started with.
pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The password every test user gets.
pub(crate) const PASSWORD: &str = "correct horse";

/// A running `stampede shop`, killed when dropped.
#[derive(Debug)]
pub(crate) struct ShopNode {
    process: Process,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    _config: TempFile,
}

impl ShopNode {
    /// Starts a node on `database_url`; `extra` is TOML appended to the
    /// generated config (it must start with a `[section]`). Passwords are
    /// hashed cheaply so that tests can create many users.
    pub(crate) async fn start(database_url: &str, name: &str, extra: &str) -> ShopNode {
        Self::start_with(database_url, name, "", extra).await
    }

    /// [`ShopNode::start`] with `top`, top-level keys such as
    /// `redis_url = "..."`, too.
    pub(crate) async fn start_with(
        database_url: &str,
        name: &str,
        top: &str,
        extra: &str,
    ) -> ShopNode {
        Self::start_args(database_url, name, top, extra, &[]).await
    }

    /// [`ShopNode::start_with`] with more command-line `args` (such as
    /// `--log-format json`).
    pub(crate) async fn start_args(
        database_url: &str,
        name: &str,
        top: &str,
        extra: &str,
        args: &[&str],
    ) -> ShopNode {
        let quote = |s: &str| Value::from(s).to_string();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = {}\nnode_name = {}\n{top}\n\
             [passwords]\nmemory_kib = 64\niterations = 1\n{extra}\n",
            quote(database_url),
            quote(name),
        );
        let config = TempFile::new("toml", &toml);
        let mut command = stampede("shop");
        command
            .arg("--config")
            .arg(&config.0)
            .args(args)
            .env("STAMPEDE_ADMIN_TOKEN", ADMIN_TOKEN);
        let mut process = Process::spawn(command, name);
        let line = process
            .line_after("stampede shop listening on http://")
            .await;
        let addr = line.split_whitespace().next().unwrap_or_default();
        ShopNode {
            addr: addr.parse().expect("listen address"),
            process,
            _config: config,
        }
    }

    /// `http://ADDR/PATH`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Each role process is its [`Process`]: kill, terminate, wait, stderr.
macro_rules! a_process {
    ($($role:ty),*) => {$(
        impl std::ops::Deref for $role {
            type Target = Process;
            fn deref(&self) -> &Process {
                &self.process
            }
        }
        impl std::ops::DerefMut for $role {
            fn deref_mut(&mut self) -> &mut Process {
                &mut self.process
            }
        }
    )*};
}
a_process!(ShopNode, WorkerProcess, Gateway);

/// A running `stampede worker`, killed when dropped.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    process: Process,
    /// The admin listener, when started with `--admin-listen`.
    pub(crate) admin: Option<SocketAddr>,
}

impl WorkerProcess {
    /// Starts a worker on `database_url` named `name` with more `args`.
    pub(crate) async fn start(database_url: &str, name: &str, args: &[&str]) -> WorkerProcess {
        let mut command = stampede("worker");
        command
            .args(["--database-url", database_url, "--name", name])
            .args(args);
        let mut process = Process::spawn(command, name);
        let admin = match args.contains(&"--admin-listen") {
            false => None,
            true => {
                let rest = process.line_after("admin (metrics) on http://").await;
                Some(
                    rest.trim()
                        .trim_end_matches("/metrics")
                        .parse()
                        .expect("admin address"),
                )
            }
        };
        process.line_after("stampede worker running").await;
        WorkerProcess { process, admin }
    }
}

/// `text` as an `application/x-www-form-urlencoded` value.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// N shop nodes on one database behind one gateway (round-robin).
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<ShopNode>,
    pub(crate) gateway: Gateway,
    /// The database; dropped (and removed) last.
    pub(crate) db: TestDb,
}

impl Cluster {
    /// Starts `nodes` nodes with `extra` config (see [`ShopNode::start`]).
    pub(crate) async fn start(db: TestDb, nodes: usize, extra: &str) -> Cluster {
        Self::start_with(db, nodes, "", extra).await
    }

    /// [`Cluster::start`] with `top`, top-level keys for every node (see
    /// [`ShopNode::start_with`]).
    pub(crate) async fn start_with(db: TestDb, nodes: usize, top: &str, extra: &str) -> Cluster {
        let mut started = Vec::new();
        for i in 1..=nodes {
            started.push(ShopNode::start_with(&db.url, &format!("shop-{i}"), top, extra).await);
        }
        let mut args = vec!["--strategy".to_owned(), "round-robin".to_owned()];
        for node in &started {
            args.extend(["--backend".to_owned(), node.addr.to_string()]);
        }
        let gateway = Gateway::with_flags(&args).await;
        Cluster {
            nodes: started,
            gateway,
            db,
        }
    }

    /// A client of the front door (the gateway).
    pub(crate) fn api(&self) -> Api {
        Api::new(&self.gateway.url(""))
    }

    /// The admin client of the front door.
    pub(crate) fn admin(&self) -> Api {
        Api::admin(&self.gateway.url(""))
    }
}

/// One client of the API: a base URL, and the session cookie it was given.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: HttpClient,
    base: String,
    /// The `stampede_session` cookie, as `name=value`.
    pub(crate) cookie: Option<String>,
    /// Every other cookie answers set (the read-your-writes pin), as
    /// `name=value`.
    others: Vec<String>,
    bearer: Option<String>,
}

impl Api {
    /// A client of `base` (`http://ADDR`), with no session.
    pub(crate) fn new(base: &str) -> Api {
        Api {
            client: client(),
            base: base.trim_end_matches('/').to_owned(),
            cookie: None,
            others: Vec::new(),
            bearer: None,
        }
    }

    /// A client that sends the admin token.
    pub(crate) fn admin(base: &str) -> Api {
        Api {
            bearer: Some(ADMIN_TOKEN.to_owned()),
            ..Api::new(base)
        }
    }

    /// The same session, talking to another address (another node).
    pub(crate) fn via(&self, base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// Sends a request; `body` goes as JSON. Keeps the cookies the answer
    /// sets (a cookie set empty is dropped).
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = body.map(|json| (Bytes::from(json.to_string()), "application/json"));
        self.send(method, path, body, headers).await
    }

    /// `POST path` with an HTML form's fields, URL-encoded, and `headers`.
    pub(crate) async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect();
        let body = Some((
            Bytes::from(body.join("&")),
            "application/x-www-form-urlencoded",
        ));
        self.send(Method::POST, path, body, headers).await
    }

    /// `POST path` with exactly these bytes and content type.
    pub(crate) async fn post_raw(
        &mut self,
        path: &str,
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> Reply {
        self.send(Method::POST, path, Some((body.into(), content_type)), &[])
            .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let jar: Vec<&str> = self
            .cookie
            .iter()
            .chain(&self.others)
            .map(String::as_str)
            .collect();
        if !jar.is_empty() {
            request = request.header("cookie", jar.join("; "));
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some((bytes, content_type)) => {
                request = request.header("content-type", content_type);
                Full::new(bytes)
            }
            None => Full::default(),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let reply = send(&self.client, request.body(body).expect("request")).await;
        for set in reply.headers.get_all("set-cookie") {
            self.keep_cookie(set.to_str().unwrap_or_default());
        }
        reply
    }

    /// Stores the cookie of one `Set-Cookie` value.
    fn keep_cookie(&mut self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or_default().trim();
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let kept = (!value.is_empty()).then(|| pair.to_owned());
        if name == "stampede_session" {
            self.cookie = kept;
        } else {
            self.forget_cookie(name);
            self.others.extend(kept);
        }
    }

    /// Drops the cookie `name` (other than the session's), as a browser
    /// does when it expires.
    pub(crate) fn forget_cookie(&mut self, name: &str) {
        self.others
            .retain(|c| c.split_once('=').map_or(c.as_str(), |(n, _)| n) != name);
    }

    /// `GET path`.
    pub(crate) async fn get(&mut self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&mut self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    /// `POST /api/v1/login`.
    pub(crate) async fn login(&mut self, username: &str, password: &str) -> Reply {
        let body = json!({ "username": username, "password": password });
        self.post("/api/v1/login", &body).await
    }

    /// `POST /api/v1/orders` for `quantity` of `sku`, with an optional
    /// idempotency key.
    pub(crate) async fn order(&mut self, sku: &str, quantity: i64, key: Option<&str>) -> Reply {
        let body = json!({ "sku": sku, "quantity": quantity });
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.call(Method::POST, "/api/v1/orders", Some(&body), &headers)
            .await
    }

    /// Creates users `{prefix}0..{prefix}{n-1}` with [`PASSWORD`] (admin).
    pub(crate) async fn create_users(&mut self, prefix: &str, n: usize) -> Reply {
        let users: Vec<Value> = (0..n)
            .map(|i| json!({ "username": format!("{prefix}{i}"), "password": PASSWORD }))
            .collect();
        self.post("/api/v1/admin/users", &json!({ "users": users }))
            .await
    }

    /// Creates a product on sale now (admin).
    pub(crate) async fn create_product(
        &mut self,
        sku: &str,
        stock: i64,
        per_user_limit: i64,
    ) -> Reply {
        let body = json!({
            "sku": sku, "name": format!("Product {sku}"), "price_cents": 1999,
            "stock": stock, "per_user_limit": per_user_limit,
        });
        self.post("/api/v1/admin/products", &body).await
    }

    /// The stats entry of `sku` (admin).
    pub(crate) async fn stats(&mut self, sku: &str) -> Value {
        let reply = self.get("/api/v1/admin/stats").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let all = reply.json();
        let entries = all["skus"].as_array().cloned().unwrap_or_default();
        entries
            .into_iter()
            .find(|e| e["sku"] == sku)
            .unwrap_or_else(|| panic!("no stats for {sku}: {all}"))
    }
}
