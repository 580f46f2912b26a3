//! The start sequence of the cluster, in its one order: the schema first
//! (one `migrate`, so that N nodes never race to create the same tables),
//! then the shop nodes side by side, then the gateway in front of them on
//! the addresses they reported.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use crate::UpError;
use crate::child::Spec;
use crate::logline::{ADMIN, LISTENING};
use crate::supervisor::{ChildId, Supervisor};
use crate::token::AdminToken;

/// What this cluster runs with, settled before anything starts.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) nodes: usize,
    pub(crate) port: u16,
    pub(crate) database_url: String,
    /// Redis for the shops' sessions (`stampede shop --redis-url`).
    pub(crate) redis_url: Option<String>,
    pub(crate) token: AdminToken,
    /// The data directory, absolute.
    pub(crate) data_dir: PathBuf,
    pub(crate) startup_timeout: Duration,
    /// A TOML file every shop node reads (`stampede shop --config`).
    pub(crate) shop_config: Option<PathBuf>,
}

/// Where the started cluster answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    /// The gateway: the cluster's one public address.
    pub(crate) gateway: SocketAddr,
    /// The gateway's admin listener (`/metrics`, `/healthz`).
    pub(crate) metrics: SocketAddr,
}

/// Starts every role; on an error, what did start is left to the caller
/// to stop.
pub(crate) async fn start(sup: &mut Supervisor, plan: &Plan) -> Result<Started, UpError> {
    check_port(plan.port)?;
    sup.run_once(&migrate(plan), plan.startup_timeout).await?;
    let shops = start_shops(sup, plan).await?;
    // The worker listens nowhere, so there is nothing to wait for: if it
    // fails, the supervisor sees it exit like any other child.
    sup.start(&worker(plan))?;
    start_gateway(sup, plan, &shops).await
}

/// A clear message before anything starts when the gateway's port is
/// taken; the gateway's own failure still covers a port taken later.
fn check_port(port: u16) -> Result<(), UpError> {
    if port == 0 {
        return Ok(());
    }
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|source| UpError::PortTaken { port, source })
}

fn migrate(plan: &Plan) -> Spec {
    Spec {
        name: "migrate".to_owned(),
        args: strings(&["migrate", "--database-url", &plan.database_url]),
        admin_token: None,
    }
}

fn shop(plan: &Plan, number: usize) -> Spec {
    let name = format!("shop-{number}");
    let mut args = strings(&[
        "shop",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &plan.database_url,
        "--node-name",
        &name,
    ]);
    if let Some(url) = &plan.redis_url {
        args.extend(strings(&["--redis-url", url]));
    }
    if let Some(config) = &plan.shop_config {
        args.push("--config".to_owned());
        args.push(config.display().to_string());
    }
    Spec {
        args,
        name,
        admin_token: Some(plan.token.secret().to_owned()),
    }
}

fn worker(plan: &Plan) -> Spec {
    Spec {
        name: "worker".to_owned(),
        args: strings(&[
            "worker",
            "--database-url",
            &plan.database_url,
            "--name",
            "worker",
        ]),
        admin_token: None,
    }
}

/// The gateway, from a file written into the data directory on every
/// start (the shop nodes' ports change): a user who wants to see or tune
/// what `up` runs reads it there. Beside it, the storefront's assets for
/// its static route.
fn gateway(plan: &Plan, shops: &[SocketAddr]) -> Result<Spec, UpError> {
    let path = plan.data_dir.join("gateway.toml");
    let assets = plan.data_dir.join("assets");
    let data_dir_error = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| UpError::DataDir { path, source }
    };
    stampede_shop::assets::export(&assets).map_err(data_dir_error(&assets))?;
    std::fs::write(&path, gateway_toml(plan.port, shops, &assets))
        .map_err(data_dir_error(&path))?;
    Ok(Spec {
        name: "gateway".to_owned(),
        args: vec![
            "gateway".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ],
        // The shops' token guards the gateway's admin listener too, and
        // lets its operations page read the sale from them.
        admin_token: Some(plan.token.secret().to_owned()),
    })
}

/// The gateway's configuration: least-conn over the shop nodes; a node
/// that cannot reach its store (`/readyz` fails) is taken out and eased
/// back in; a request whose connection to a node failed goes to another.
/// No passive ejection: a node shedding load answers `503 overloaded`, and
/// ejecting it would pile its share onto the others. When half the nodes or
/// more fail `/readyz` at once, the cause is shared (the database or Redis
/// is away), so the pool fails open (`panic_threshold`): each node still
/// answers what it can without that store, such as product pages without
/// Redis, and answers the rest `503` itself. The operations page (`/ops`
/// on the admin listener) shows the sale as the shop pool reports it. The
/// storefront's stylesheet and script come from `assets` (fingerprinted
/// names: cached a year, `immutable`), compressed, without a trip to a node.
fn gateway_toml(port: u16, shops: &[SocketAddr], assets: &std::path::Path) -> String {
    let backends: Vec<String> = shops.iter().map(|s| format!("\"{s}\"")).collect();
    let assets = serde_json::Value::from(assets.display().to_string());
    let prefix = stampede_shop::assets::PREFIX;
    format!(
        "# Written by `stampede up` on every start; changes here are overwritten.\n\
         listen = \"127.0.0.1:{port}\"\n\
         admin_listen = \"127.0.0.1:0\"\n\
         routes = [\n  {{ pool = \"shop\" }},\n  \
         {{ path_prefix = \"{prefix}\", static_dir = {assets} }},\n]\n\n\
         [compression]\n\
         min_bytes = 1024\n\n\
         [pools.shop]\n\
         strategy = \"least-conn\"\n\
         slow_start = \"10s\"\n\
         panic_threshold = 0.5\n\
         backends = [{}]\n\n\
         [pools.shop.health_check]\n\
         path = \"/readyz\"\n\
         interval = \"1s\"\n\n\
         [pools.shop.retries]\n\
         max = 1\n\n\
         [ops]\n\
         shop_pool = \"shop\"\n",
        backends.join(", ")
    )
}

/// Starts every shop at once, then learns their addresses.
async fn start_shops(sup: &mut Supervisor, plan: &Plan) -> Result<Vec<SocketAddr>, UpError> {
    let started: Vec<ChildId> = (1..=plan.nodes)
        .map(|n| sup.start(&shop(plan, n)))
        .collect::<Result<_, _>>()?;
    let mut addrs = Vec::with_capacity(started.len());
    for id in started {
        let [addr] = sup
            .child(id)
            .wait_ready([LISTENING], plan.startup_timeout)
            .await?;
        addrs.push(addr);
    }
    Ok(addrs)
}

async fn start_gateway(
    sup: &mut Supervisor,
    plan: &Plan,
    shops: &[SocketAddr],
) -> Result<Started, UpError> {
    let id = sup.start(&gateway(plan, shops)?)?;
    let [gateway, metrics] = sup
        .child(id)
        .wait_ready([LISTENING, ADMIN], plan.startup_timeout)
        .await?;
    Ok(Started { gateway, metrics })
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            nodes: 2,
            port: 0,
            database_url: "sqlite:///d/stampede.db".to_owned(),
            redis_url: None,
            token: AdminToken::given("secret"),
            data_dir: PathBuf::from("/d"),
            startup_timeout: Duration::from_secs(1),
            shop_config: None,
        }
    }

    #[test]
    fn a_redis_url_goes_to_every_shop() {
        let on_redis = Plan {
            redis_url: Some("redis://127.0.0.1:6379/3".to_owned()),
            ..plan()
        };
        let args = shop(&on_redis, 1).args.join(" ");
        assert!(
            args.ends_with("--redis-url redis://127.0.0.1:6379/3"),
            "{args}"
        );
    }

    #[test]
    fn a_shop_config_goes_to_every_shop() {
        let configured = Plan {
            shop_config: Some(PathBuf::from("/etc/shop.toml")),
            ..plan()
        };
        let args = shop(&configured, 1).args.join(" ");
        assert!(args.ends_with("--config /etc/shop.toml"), "{args}");
    }

    #[test]
    fn the_shops_and_the_gateway_get_the_token_and_nothing_else_does() {
        let plan = plan();
        let shop = shop(&plan, 2);
        assert_eq!(shop.name, "shop-2");
        assert_eq!(
            shop.args.join(" "),
            "shop --listen 127.0.0.1:0 --database-url sqlite:///d/stampede.db --node-name shop-2"
        );
        assert_eq!(shop.admin_token.as_deref(), Some("secret"));
        assert!(!shop.args.iter().any(|a| a.contains("secret")));
        assert_eq!(migrate(&plan).admin_token, None);
        let worker = worker(&plan);
        assert_eq!(worker.admin_token, None);
        assert_eq!(
            worker.args.join(" "),
            "worker --database-url sqlite:///d/stampede.db --name worker"
        );
    }

    #[test]
    fn the_gateway_runs_from_a_valid_file_over_the_shop_nodes() {
        let dir = crate::files::tests::TempDir::new();
        let plan = Plan {
            data_dir: dir.0.clone(),
            ..plan()
        };
        let addrs: Vec<SocketAddr> = vec![([127, 0, 0, 1], 1).into(), ([127, 0, 0, 1], 2).into()];
        let gateway = gateway(&plan, &addrs).expect("written");
        let file = dir.0.join("gateway.toml");
        assert_eq!(
            gateway.args,
            ["gateway", "--config", &file.display().to_string()]
        );
        let config = stampede_gateway::Config::from_file(&file).expect("a valid gateway file");
        let pool = &config.pools["shop"];
        let backends: Vec<SocketAddr> = pool.backends.iter().map(|b| b.address).collect();
        assert_eq!(backends, addrs);
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert!(pool.health_check.is_some() && pool.retries.is_some());
        assert!((pool.panic_threshold - 0.5).abs() < f64::EPSILON);
        assert_eq!(config.ops.expect("[ops]").shop_pool, "shop");
        assert_eq!(gateway.admin_token.as_deref(), Some("secret"));
        assert!(!gateway.args.iter().any(|a| a.contains("secret")));
        let assets = dir.0.join("assets");
        let route = config
            .routes
            .iter()
            .find(|r| r.static_dir.as_deref() == Some(assets.as_path()))
            .expect("a static route for the assets");
        assert_eq!(route.path_prefix, stampede_shop::assets::PREFIX);
        for asset in stampede_shop::assets::all() {
            assert!(assets.join(&asset.name).is_file(), "{}", asset.name);
        }
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        let error = check_port(port).expect_err("taken");
        assert!(
            error.to_string().contains(&format!("port {port}")),
            "{error}"
        );
        assert!(check_port(0).is_ok());
    }
}
