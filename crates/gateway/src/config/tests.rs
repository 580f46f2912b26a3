//! Every configuration mistake names its key and says what is wrong.

use super::*;

fn error(toml: &str) -> String {
    match Config::from_toml(toml, "test.toml") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = r#"
listen = "127.0.0.1:0"
[pools.web]
backends = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]
[[routes]]
pool = "web"
"#;

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let config = Config::from_toml(GOOD, "test.toml").unwrap();
    let pool = &config.pools["web"];
    assert_eq!(pool.strategy, StrategyKind::RoundRobin);
    assert_eq!(pool.backends[1].weight, 3);
    assert_eq!(config.routes[0].path_prefix, "/");
    assert_eq!(config.routes[0].connect_timeout, Duration::from_secs(5));
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.max_header_bytes, 32 * 1024);
}

#[test]
fn unknown_keys_are_named() {
    let e = error(&GOOD.replace("[pools.web]", "[pools.web]\nstrategyy = \"random\""));
    assert!(e.contains("pools.web") && e.contains("strategyy"), "{e}");
    let e = error(&format!("colour = \"blue\"\n{GOOD}"));
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn bad_addresses_are_named() {
    let e = error(&GOOD.replace("127.0.0.1:9002", "127.0.0.1:99999"));
    assert!(
        e.contains("pools.web.backends[1]") && e.contains("not a valid address"),
        "{e}"
    );
    let e = error(&GOOD.replace("127.0.0.1:0", "nowhere"));
    assert!(e.contains("`listen`") && e.contains("HOST:PORT"), "{e}");
}

#[test]
fn unknown_strategies_list_the_known_ones() {
    let e = error(&GOOD.replace("[pools.web]", "[pools.web]\nstrategy = \"fastest\""));
    assert!(
        e.contains("pools.web.strategy") && e.contains("least-conn"),
        "{e}"
    );
}

#[test]
fn empty_pools_are_refused() {
    let e = error(&GOOD.replace(
        r#"["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]"#,
        "[]",
    ));
    assert!(
        e.contains("pools.web.backends") && e.contains("no backends"),
        "{e}"
    );
}

#[test]
fn a_discovering_pool_needs_no_static_backends_nor_a_name_that_resolves_yet() {
    let toml = "routes = [{ pool = \"shop\" }]\n[pools.shop]\n\
                discover = { dns = \"shop.invalid:8080\" }\n";
    let config = Config::from_toml(toml, "test.toml").expect("valid");
    let discover = config.pools["shop"].discover.as_ref().expect("discover");
    assert_eq!(discover.dns, "shop.invalid:8080");
    assert_eq!(discover.interval, std::time::Duration::from_secs(5));
}

#[test]
fn a_discover_name_needs_a_port_and_a_sane_interval() {
    let pool = |discover: &str| {
        error(&format!(
            "routes = [{{ pool = \"shop\" }}]\n[pools.shop]\ndiscover = {{ {discover} }}\n"
        ))
    };
    for dns in ["shop", "shop:", ":8080", "shop:0", "shop:http"] {
        let e = pool(&format!("dns = \"{dns}\""));
        assert!(
            e.contains("pools.shop.discover.dns") && e.contains("HOST:PORT"),
            "{dns}: {e}"
        );
    }
    let e = pool("dns = \"shop:8080\", interval = \"100ms\"");
    assert!(e.contains("pools.shop.discover.interval"), "{e}");
}

#[test]
fn routes_must_name_a_pool_that_exists() {
    let e = error(&GOOD.replace("pool = \"web\"", "pool = \"api\""));
    assert!(e.contains("routes[0].pool") && e.contains("`api`"), "{e}");
}

#[test]
fn durations_and_weights_are_checked() {
    let e = error(&GOOD.replace(
        "pool = \"web\"",
        "pool = \"web\"\nconnect_timeout = \"soon\"",
    ));
    assert!(
        e.contains("routes[0].connect_timeout") && e.contains("duration"),
        "{e}"
    );
    let e = error(&GOOD.replace("weight = 3", "weight = 0"));
    assert!(
        e.contains("pools.web.backends[1]") && e.contains("weight"),
        "{e}"
    );
}

#[test]
fn hash_on_needs_a_hashing_strategy() {
    let e = error(&GOOD.replace("[pools.web]", "[pools.web]\nhash_on = \"header:X-User\""));
    assert!(e.contains("pools.web.hash_on"), "{e}");
    let ok = GOOD.replace(
        "[pools.web]",
        "[pools.web]\nstrategy = \"maglev\"\nhash_on = \"cookie:sid\"",
    );
    let config = Config::from_toml(&ok, "test.toml").unwrap();
    assert_eq!(config.pools["web"].hash_on, HashOn::Cookie("sid".into()));
}

#[test]
fn syntax_errors_give_the_line() {
    let e = error("listen = \n");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn quick_flags_make_one_pool_and_name_the_flag_in_errors() {
    let flags = QuickFlags {
        listen: Some("127.0.0.1:0".into()),
        backends: vec!["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
        strategy: Some("least-conn".into()),
        ..QuickFlags::default()
    };
    let config = Config::from_flags(&flags).unwrap();
    assert_eq!(config.pools["default"].strategy, StrategyKind::LeastConn);
    assert_eq!(config.pools["default"].backends.len(), 2);

    let bad = QuickFlags {
        backends: vec!["nonsense".into()],
        ..flags.clone()
    };
    let e = Config::from_flags(&bad).unwrap_err().to_string();
    assert!(e.contains("--backend") && e.contains("nonsense"), "{e}");
    let bad = QuickFlags {
        strategy: Some("fastest".into()),
        ..flags.clone()
    };
    let e = Config::from_flags(&bad).unwrap_err().to_string();
    assert!(e.contains("--strategy"), "{e}");
    let none = QuickFlags {
        backends: vec![],
        ..flags
    };
    let e = Config::from_flags(&none).unwrap_err().to_string();
    assert!(e.contains("--backend") && e.contains("no backends"), "{e}");
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
    Config::from_file(&path).unwrap();
}

#[test]
fn health_checks_get_haproxys_defaults_and_bad_values_are_named() {
    let checked = GOOD.replace(
        "[[routes]]",
        "[pools.web.health_check]\npath = \"/healthz\"\n[[routes]]",
    );
    let config = Config::from_toml(&checked, "test.toml").unwrap();
    let check = config.pools["web"].health_check.as_ref().unwrap();
    assert_eq!(check.path.as_deref(), Some("/healthz"));
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((check.rise, check.fall), (2, 3));
    assert!(config.pools["web"].health_check.is_some());
    assert!(
        Config::from_toml(GOOD, "t").unwrap().pools["web"]
            .health_check
            .is_none()
    );

    let cases = [
        ("path = \"healthz\"", "pools.web.health_check.path"),
        ("interval = \"0s\"", "pools.web.health_check.interval"),
        (
            "interval = \"1s\"\ntimeout = \"2s\"",
            "pools.web.health_check.timeout",
        ),
        ("rise = 0", "pools.web.health_check.rise"),
        ("fall = 0", "pools.web.health_check.fall"),
        ("every = \"1s\"", "every"),
    ];
    for (line, key) in cases {
        let toml = GOOD.replace(
            "[[routes]]",
            &format!("[pools.web.health_check]\n{line}\n[[routes]]"),
        );
        let e = error(&toml);
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn ejection_has_envoys_shape_and_bad_values_are_named() {
    let with = |lines: &str| {
        GOOD.replace(
            "[[routes]]",
            &format!("[pools.web.ejection]\n{lines}\n[[routes]]"),
        )
    };
    let config = Config::from_toml(&with(""), "test.toml").unwrap();
    let ejection = config.pools["web"].ejection.as_ref().unwrap();
    assert_eq!(ejection.consecutive_failures, 5);
    assert_eq!(
        (ejection.base_time, ejection.max_time),
        (Duration::from_secs(10), Duration::from_secs(300))
    );
    assert!((ejection.max_share - 0.5).abs() < f64::EPSILON);
    let cases = [
        (
            "consecutive_failures = 0",
            "pools.web.ejection.consecutive_failures",
        ),
        ("base_time = \"10m\"", "pools.web.ejection.base_time"),
        ("max_share = 1.5", "pools.web.ejection.max_share"),
    ];
    for (line, key) in cases {
        let e = error(&with(line));
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn retries_are_bounded_and_bad_values_are_named() {
    let with = |lines: &str| {
        GOOD.replace(
            "[[routes]]",
            &format!("[pools.web.retries]\n{lines}\n[[routes]]"),
        )
    };
    let config = Config::from_toml(&with(""), "test.toml").unwrap();
    let retries = config.pools["web"].retries.as_ref().unwrap();
    assert_eq!((retries.max, retries.budget_floor), (1, 10));
    for (line, key) in [
        ("max = 0", "pools.web.retries.max"),
        ("max = 9", "pools.web.retries.max"),
        ("budget_ratio = 2.0", "pools.web.retries.budget_ratio"),
    ] {
        let e = error(&with(line));
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn backups_are_marked_and_a_pool_of_only_backups_is_refused() {
    let toml = GOOD.replace(
        "{ address = \"127.0.0.1:9002\", weight = 3 }",
        "{ address = \"127.0.0.1:9002\", backup = true }",
    );
    let config = Config::from_toml(&toml, "test.toml").unwrap();
    let backends = &config.pools["web"].backends;
    assert_eq!((backends[0].backup, backends[1].backup), (false, true));
    let only = GOOD.replace(
        "backends = [\"127.0.0.1:9001\", { address = \"127.0.0.1:9002\", weight = 3 }]",
        "backends = [{ address = \"127.0.0.1:9001\", backup = true }]",
    );
    let e = error(&only);
    assert!(
        e.contains("pools.web.backends") && e.contains("backup"),
        "{e}"
    );
}

#[test]
fn a_zero_concurrency_limit_is_refused() {
    let toml = GOOD.replace("pool = \"web\"", "pool = \"web\"\nmax_concurrency = 0");
    let e = error(&toml);
    assert!(e.contains("routes[0].max_concurrency"), "{e}");
    let toml = GOOD.replace(
        "pool = \"web\"",
        "pool = \"web\"\nmax_concurrency = 8\nmax_queue = 16",
    );
    let config = Config::from_toml(&toml, "test.toml").unwrap();
    assert_eq!(config.routes[0].max_concurrency, Some(8));
    assert_eq!(config.routes[0].queue_timeout, Duration::from_secs(1));
}

#[test]
fn slow_start_needs_a_window_and_a_strategy_that_does_not_hash() {
    let with = |lines: &str| GOOD.replace("[pools.web]", &format!("[pools.web]\n{lines}"));
    let config = Config::from_toml(&with("slow_start = \"30s\""), "test.toml").unwrap();
    assert_eq!(
        config.pools["web"].slow_start,
        Some(Duration::from_secs(30))
    );
    let e = error(&with("slow_start = \"0s\""));
    assert!(e.contains("pools.web.slow_start"), "{e}");
    let e = error(&with("slow_start = \"30s\"\nstrategy = \"maglev\""));
    assert!(
        e.contains("pools.web.slow_start") && e.contains("maglev"),
        "{e}"
    );
}

#[test]
fn rate_limits_default_to_a_second_of_burst_per_route_and_bad_values_are_named() {
    let toml = GOOD.replace(
        "pool = \"web\"",
        "pool = \"web\"\nrate_limit = { rate = 2.5 }",
    );
    let config = Config::from_toml(&toml, "test.toml").unwrap();
    let limit = config.routes[0].rate_limit.as_ref().unwrap();
    assert_eq!(
        (limit.burst(), limit.per, limit.max_clients),
        (3, RateKey::Route, 100_000)
    );
    for (keys, key) in [
        ("rate = 0.0", "routes[0].rate_limit.rate"),
        ("rate = nan", "routes[0].rate_limit.rate"),
        ("rate = 1.0, burst = 0", "routes[0].rate_limit.burst"),
        (
            "rate = 1.0, max_clients = 0",
            "routes[0].rate_limit.max_clients",
        ),
        ("rate = 1.0, per = \"user\"", "routes[0].rate_limit.per"),
        ("burst = 5", "routes[0].rate_limit"),
    ] {
        let line = format!("pool = \"web\"\nrate_limit = {{ {keys} }}");
        let e = error(&GOOD.replace("pool = \"web\"", &line));
        assert!(e.contains(key), "{keys}: {e}");
    }
}

#[test]
fn a_routes_admission_keys_compare_so_a_reload_can_keep_its_state() {
    let route = |keys: &str| {
        let toml = GOOD.replace("pool = \"web\"", &format!("pool = \"web\"\n{keys}"));
        Config::from_toml(&toml, "test.toml").unwrap().routes[0].clone()
    };
    assert_eq!(route("").admission(), None);
    let limited = route("max_concurrency = 8\nrate_limit = { rate = 5.0 }");
    let timed = route("max_concurrency = 8\nrate_limit = { rate = 5.0 }\nconnect_timeout = \"1s\"");
    assert_eq!(
        limited.admission(),
        timed.admission(),
        "other keys do not matter"
    );
    let faster = route("max_concurrency = 8\nrate_limit = { rate = 6.0 }");
    assert_ne!(limited.admission(), faster.admission());
}

#[test]
fn a_waiting_room_needs_a_concurrency_limit_and_bad_values_are_named() {
    let room = |keys: &str| {
        let line = format!("pool = \"web\"\nmax_concurrency = 4\nwaiting_room = {{ {keys} }}");
        GOOD.replace("pool = \"web\"", &line)
    };
    let config = Config::from_toml(&room(""), "test.toml").unwrap();
    let defaults = config.routes[0].waiting_room.clone().unwrap();
    assert_eq!(defaults, WaitingRoomConfig::default());
    assert_eq!(
        (
            defaults.cookie.as_str(),
            defaults.pass_time,
            defaults.poll_interval,
            defaults.max_waiting,
            defaults.secret,
        ),
        (
            "stampede_room",
            Duration::from_secs(600),
            Duration::from_secs(5),
            1_000_000,
            None
        )
    );
    let e = error(&GOOD.replace("pool = \"web\"", "pool = \"web\"\nwaiting_room = {}"));
    assert!(
        e.contains("routes[0].waiting_room") && e.contains("max_concurrency"),
        "{e}"
    );
    for (keys, key) in [
        (
            "poll_interval = \"500ms\"",
            "routes[0].waiting_room.poll_interval",
        ),
        ("pass_time = \"0s\"", "routes[0].waiting_room.pass_time"),
        ("cookie = \"a b\"", "routes[0].waiting_room.cookie"),
        ("max_waiting = 0", "routes[0].waiting_room.max_waiting"),
        ("secret = \"short\"", "routes[0].waiting_room.secret"),
        ("colour = 1", "routes[0].waiting_room"),
    ] {
        let e = error(&room(keys));
        assert!(e.contains(key), "{keys}: {e}");
    }
}

/// `GOOD` with a `[dns]` table of these lines and one name of these keys.
fn dns(table: &str, name_keys: &str) -> String {
    format!("{GOOD}[dns]\n{table}\n[[dns.names]]\n{name_keys}\n")
}

#[test]
fn dns_gets_short_defaults_and_names_are_fully_qualified() {
    let config =
        Config::from_toml(&dns("", "name = \"Shop.Example.com\"\npool = \"web\""), "t").unwrap();
    let dns = config.dns.expect("dns");
    assert_eq!(dns.listen, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(dns.ttl, Duration::from_secs(5));
    let name = &dns.names[0];
    assert!(name.name.is_fqdn());
    assert_eq!(
        name.name,
        hickory_server::proto::rr::Name::from_ascii("shop.example.com.").unwrap()
    );
    assert_eq!(
        (name.answer, name.when_all_down),
        (DnsAnswer::All, WhenAllDown::All)
    );
    assert!(
        Config::from_toml(GOOD, "t").unwrap().dns.is_none(),
        "off by default"
    );
}

#[test]
fn tcp_and_redirect_listeners_get_their_defaults() {
    let toml = format!(
        "{GOOD}[[tcp]]\nlisten = \"127.0.0.1:6380\"\npool = \"web\"\nproxy_protocol = \"v2\"\n\
         [[redirect]]\nlisten = \"127.0.0.1:8081\"\npool = \"web\"\n"
    );
    let config = Config::from_toml(&toml, "test.toml").unwrap();
    let tcp = &config.tcp[0];
    assert_eq!(tcp.connect_timeout, Duration::from_secs(5));
    assert_eq!(tcp.proxy_protocol, Some(ProxyProtocol::V2));
    assert_eq!(tcp.idle_timeout, None);
    assert_eq!(config.redirect[0].scheme, "http");
}

#[test]
fn tcp_and_redirect_listeners_must_name_a_pool_that_exists() {
    let e = error(&format!(
        "{GOOD}[[tcp]]\nlisten = \"127.0.0.1:0\"\npool = \"redis\"\n"
    ));
    assert!(e.contains("tcp[0].pool") && e.contains("`redis`"), "{e}");
    let e = error(&format!(
        "{GOOD}[[redirect]]\nlisten = \"127.0.0.1:0\"\npool = \"api\"\n"
    ));
    assert!(e.contains("redirect[0].pool") && e.contains("`api`"), "{e}");
}

#[test]
fn tcp_listener_keys_are_checked() {
    let tcp =
        |line: &str| format!("{GOOD}[[tcp]]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\n{line}\n");
    let e = error(&tcp("proxy_protocol = \"v3\""));
    assert!(e.contains("tcp[0].proxy_protocol"), "{e}");
    let e = error(&tcp("connect_timeout = \"0s\""));
    assert!(e.contains("tcp[0].connect_timeout"), "{e}");
    let e = error(&tcp("idle_timeout = \"0s\""));
    assert!(e.contains("tcp[0].idle_timeout"), "{e}");
    let e = error(&format!(
        "{GOOD}[[redirect]]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\nscheme = \"ftp\"\n"
    ));
    assert!(
        e.contains("redirect[0].scheme") && e.contains("`ftp`"),
        "{e}"
    );
}

#[test]
fn bad_dns_values_are_named() {
    let good = "name = \"shop.test\"\npool = \"web\"";
    for (table, keys, key, problem) in [
        (
            "",
            "name = \"shop.test\"\npool = \"api\"",
            "dns.names[0].pool",
            "`api`",
        ),
        (
            "",
            "name = \"a..b\"\npool = \"web\"",
            "dns.names[0].name",
            "not a DNS name",
        ),
        (
            "",
            "name = \"*.shop.test\"\npool = \"web\"",
            "dns.names[0].name",
            "host name",
        ),
        (
            "",
            &format!("{good}\nanswer = \"first\""),
            "dns.names[0].answer",
            "all",
        ),
        (
            "",
            &format!("{good}\nwhen_all_down = \"none\""),
            "dns.names[0].when_all_down",
            "servfail",
        ),
        ("ttl = \"1500ms\"", good, "dns.ttl", "whole seconds"),
        ("ttl = \"2d\"", good, "dns.ttl", "24h"),
        ("listen = \"nowhere\"", good, "dns.listen", "HOST:PORT"),
        ("colour = 1", good, "dns", "colour"),
    ] {
        let e = error(&dns(table, keys));
        assert!(
            e.contains(key) && e.contains(problem),
            "{table} {keys}: {e}"
        );
    }
    let twice = format!(
        "{}[[dns.names]]\nname = \"SHOP.test.\"\npool = \"web\"\n",
        dns("", good)
    );
    let e = error(&twice);
    assert!(
        e.contains("dns.names[1].name") && e.contains("dns.names[0]"),
        "{e}"
    );
    let none = format!("{GOOD}[dns]\nnames = []\n");
    let e = error(&none);
    assert!(e.contains("dns.names") && e.contains("no names"), "{e}");
}

#[test]
fn a_dns_pick_needs_a_pool_of_one_family() {
    let mixed = GOOD.replace("\"127.0.0.1:9001\"", "\"[::1]:9001\"");
    let keys = "name = \"shop.test\"\npool = \"web\"\nanswer = \"pick\"";
    let e = error(&format!("{mixed}[dns]\n[[dns.names]]\n{keys}\n"));
    assert!(
        e.contains("dns.names[0].answer") && e.contains("mixes"),
        "{e}"
    );
    assert!(Config::from_toml(&dns("", keys), "t").is_ok(), "IPv4 only");
    let all = format!("{mixed}[dns]\n[[dns.names]]\nname = \"shop.test\"\npool = \"web\"\n");
    assert!(
        Config::from_toml(&all, "t").is_ok(),
        "`all` over both families"
    );
}

#[test]
fn a_pool_behind_a_tcp_listener_balances_per_connection() {
    let tcp = "[[tcp]]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\n";
    let hashed = GOOD.replace(
        "[pools.web]",
        "[pools.web]\nstrategy = \"maglev\"\nhash_on = \"header:X-User\"",
    );
    let e = error(&format!("{hashed}{tcp}"));
    assert!(
        e.contains("pools.web.hash_on") && e.contains("[[tcp]]"),
        "{e}"
    );
    let sticky = GOOD.replace("[[routes]]", "[pools.web.sticky]\n[[routes]]");
    let e = error(&format!("{sticky}{tcp}"));
    assert!(e.contains("pools.web.sticky"), "{e}");
    for strategy in ["least-conn", "p2c-ewma", "ip-hash", "consistent-hash"] {
        let ok = GOOD.replace(
            "[pools.web]",
            &format!("[pools.web]\nstrategy = \"{strategy}\""),
        );
        Config::from_toml(&format!("{ok}{tcp}"), "test.toml").unwrap();
    }
    // The same pool behind a route alone may hash on a header.
    Config::from_toml(&hashed, "test.toml").unwrap();
}

#[test]
fn routes_may_be_left_out_only_when_another_listener_serves() {
    let pool = "[pools.redis]\nbackends = [\"127.0.0.1:6379\"]\n";
    let e = error(pool);
    assert!(
        e.contains("routes") && e.contains("nothing to serve"),
        "{e}"
    );
    let tcp = format!("{pool}[[tcp]]\nlisten = \"127.0.0.1:0\"\npool = \"redis\"\n");
    let config = Config::from_toml(&tcp, "test.toml").unwrap();
    assert!(config.routes.is_empty());
    let dns = format!("{pool}[dns]\n[[dns.names]]\nname = \"cache.test\"\npool = \"redis\"\n");
    assert!(
        Config::from_toml(&dns, "test.toml").is_ok(),
        "DNS alone serves"
    );
}

#[test]
fn a_route_serves_a_pool_or_a_directory_and_mistakes_are_named() {
    let statics = |keys: &str| format!("{GOOD}[[routes]]\npath_prefix = \"/static\"\n{keys}\n");
    let config = Config::from_toml(&statics("static_dir = \".\""), "test.toml").unwrap();
    let route = &config.routes[1];
    assert!(
        route.static_dir.as_ref().unwrap().is_absolute(),
        "made canonical"
    );
    assert_eq!(route.cache, CacheConfig::default());
    assert_eq!(
        route.cache.immutable_max_age,
        Duration::from_secs(31_536_000)
    );
    assert_eq!(config.compression, None);

    let e = error(&statics("static_dir = \".\"\npool = \"web\""));
    assert!(
        e.contains("routes[1].static_dir") && e.contains("not both"),
        "{e}"
    );
    let e = error(&statics(""));
    assert!(
        e.contains("routes[1].pool") && e.contains("static_dir"),
        "{e}"
    );
    let e = error(&statics("static_dir = \"/no/such/dir\""));
    assert!(
        e.contains("routes[1].static_dir") && e.contains("/no/such/dir"),
        "{e}"
    );
    let e = error(&statics("static_dir = \".\"\nmax_concurrency = 5"));
    assert!(e.contains("routes[1].max_concurrency"), "{e}");
    let e = error(&statics(
        "static_dir = \".\"\ncache = { max_age = \"soon\" }",
    ));
    assert!(e.contains("max_age") && e.contains("not a duration"), "{e}");
}

#[test]
fn compression_offers_the_listed_algorithms_from_a_size_up() {
    let config = Config::from_toml(&format!("{GOOD}[compression]\n"), "test.toml").unwrap();
    let compression = config.compression.unwrap();
    assert_eq!(compression.min_bytes, 1024);
    assert!(compression.offers(Algorithm::Br) && compression.offers(Algorithm::Gzip));
    let only_gzip = format!("{GOOD}[compression]\nalgorithms = [\"gzip\"]\n");
    let compression = Config::from_toml(&only_gzip, "test.toml")
        .unwrap()
        .compression
        .unwrap();
    assert!(compression.offers(Algorithm::Gzip) && !compression.offers(Algorithm::Zstd));
    let e = error(&format!("{GOOD}[compression]\nalgorithms = [\"lzma\"]\n"));
    assert!(
        e.contains("compression.algorithms") && e.contains("lzma"),
        "{e}"
    );
}

#[test]
fn the_file_cache_has_defaults_and_names_its_mistakes() {
    let config = Config::from_toml(GOOD, "test.toml").unwrap();
    assert_eq!(config.file_cache.max_file_bytes, 1024 * 1024);
    assert_eq!(config.file_cache.revalidate, Duration::from_secs(1));
    let e = error(&format!("{GOOD}[file_cache]\nrevalidate = \"soon\"\n"));
    assert!(
        e.contains("file_cache.revalidate") && e.contains("not a duration"),
        "{e}"
    );
    let e = error(&format!("{GOOD}[file_cache]\nmax_files = 3\n"));
    assert!(e.contains("max_files"), "{e}");
}

#[test]
fn a_pool_route_may_compress_set_cache_control_and_cache_answers() {
    let route = |keys: &str, tables: &str| {
        format!("{GOOD}[[routes]]\npath_prefix = \"/p\"\npool = \"web\"\n{keys}\n{tables}")
    };
    let keys = "compress = true\ncache_control = \"public, max-age=0, s-maxage=1\"\n\
                response_cache = { ttl = \"500ms\" }";
    let config = Config::from_toml(&route(keys, "[compression]\n"), "test.toml").unwrap();
    let route_config = &config.routes[1];
    assert!(route_config.compress);
    assert_eq!(
        route_config.cache_control.as_deref(),
        Some("public, max-age=0, s-maxage=1")
    );
    let cache = route_config.response_cache.as_ref().unwrap();
    assert_eq!(cache.ttl, Duration::from_millis(500));
    assert_eq!((cache.max_bytes, cache.max_body_bytes), (16 << 20, 1 << 20));
    assert!(!config.routes[0].compress && config.routes[0].response_cache.is_none());
}

#[test]
fn edge_keys_that_would_do_nothing_are_named() {
    let route = |keys: &str, tables: &str| {
        format!("{GOOD}[[routes]]\npath_prefix = \"/p\"\npool = \"web\"\n{keys}\n{tables}")
    };
    for tables in [
        "",
        "[compression]\nenabled = false\n",
        "[compression]\nalgorithms = []\n",
    ] {
        let e = error(&route("compress = true", tables));
        assert!(
            e.contains("routes[1].compress") && e.contains("[compression]"),
            "{tables}: {e}"
        );
    }
    let e = error(&route("cache_control = \"a\\nb\"", ""));
    assert!(e.contains("routes[1].cache_control"), "{e}");
    let e = error(&route("response_cache = { ttl = \"0s\" }", ""));
    assert!(e.contains("routes[1].response_cache.ttl"), "{e}");
    let e = error(&route(
        "response_cache = { ttl = \"1s\", max_bytes = 10, max_body_bytes = 11 }",
        "",
    ));
    assert!(
        e.contains("routes[1].response_cache.max_body_bytes") && e.contains("max_bytes"),
        "{e}"
    );
    let e = error(&route("response_cache = { ttl = \"1s\", size = 3 }", ""));
    assert!(e.contains("size"), "{e}");
    let statics = |keys: &str| {
        format!(
            "{GOOD}[[routes]]\npath_prefix = \"/s\"\nstatic_dir = \".\"\n{keys}\n[compression]\n"
        )
    };
    for key in [
        "compress = true",
        "cache_control = \"public\"",
        "response_cache = { ttl = \"1s\" }",
    ] {
        let e = error(&statics(key));
        let name = key.split(' ').next().unwrap();
        assert!(
            e.contains(&format!("routes[1].{name}")) && e.contains("pool"),
            "{e}"
        );
    }
}

#[test]
fn the_admin_token_and_ops_are_checked_and_named() {
    let admin = |keys: &str| format!("admin_listen = \"127.0.0.1:0\"\n{keys}\n{GOOD}");
    let config = Config::from_toml(
        &admin("admin_token = \"0123456789abcdef\"\nops = { shop_pool = \"web\" }"),
        "test.toml",
    )
    .unwrap();
    assert_eq!(
        config.admin_token.as_ref().map(AdminToken::secret),
        Some("0123456789abcdef")
    );
    assert!(
        !format!("{config:?}").contains("0123456789abcdef"),
        "Debug hides it"
    );
    let e = error(&admin("admin_token = \"short\""));
    assert!(
        e.contains("admin_token") && e.contains("16 characters"),
        "{e}"
    );
    let e = error(&admin("admin_token = \"has a space in it, 16+\""));
    assert!(e.contains("admin_token") && e.contains("visible"), "{e}");
    let e = error(&admin("ops = { shop_pool = \"shop\" }"));
    assert!(
        e.contains("ops.shop_pool") && e.contains("no pool named `shop`"),
        "{e}"
    );
    let e = error(&format!("{GOOD}[ops]\nshop_pool = \"web\"\n"));
    assert!(e.contains("`ops`") && e.contains("admin_listen"), "{e}");
}

#[test]
fn the_environment_token_wins_and_is_checked_too() {
    let file = format!("admin_token = \"from-the-file-0123\"\n{GOOD}");
    let config = Config::from_toml(&file, "test.toml").unwrap();
    let from_env = config
        .clone()
        .with_admin_token_env(Some("from-the-environment".into()))
        .unwrap();
    assert_eq!(
        from_env.admin_token.as_ref().map(AdminToken::secret),
        Some("from-the-environment")
    );
    let unset = config
        .clone()
        .with_admin_token_env(Some(String::new()))
        .unwrap();
    assert_eq!(
        unset.admin_token, config.admin_token,
        "empty: the file's stays"
    );
    let e = config
        .with_admin_token_env(Some("short".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(ADMIN_TOKEN_ENV) && e.contains("admin_token") && e.contains("16"),
        "{e}"
    );
}
