//! The browser harness itself (`support::browser`): headless Chromium, driven
//! by playwright-core, loads a page the gateway serves and runs its script.
//! The storefront's and the operations page's scenarios use the same harness
//! in their own test files.

mod support;

use support::browser::run_scenario;
use support::{Gateway, TempDir};

#[tokio::test]
async fn chromium_runs_a_page_the_gateway_serves() {
    let site = TempDir::new();
    site.write(
        "index.html",
        r#"<!doctype html><html><head><title>harness</title><script src="/app.js" defer></script></head>
<body><p id="out">script not run</p></body></html>"#,
    );
    site.write(
        "app.js",
        "document.getElementById('out').textContent = 'script ran: ' + (6 * 7);",
    );
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[routes]]
static_dir = "{}"

[pools]
"#,
        site.0.display()
    ))
    .await;
    run_scenario(
        "smoke.mjs",
        &[
            ("STAMPEDE_BASE_URL", gateway.url("")),
            ("STAMPEDE_EXPECT", "script ran: 42".to_owned()),
        ],
    )
    .await;
}
