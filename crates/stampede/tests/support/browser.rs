//! Browser scenarios: scripts in `tests/browser/` that drive Debian's
//! Chromium, headless, through playwright-core, against a server a test has
//! started on loopback.
//!
//! Playwright runs on Node, so a scenario is a Node script (`lib.mjs` holds
//! what they share: the launch, failure screenshots, console-error checks)
//! and the Rust test around it owns the servers and the verdict. What a
//! scenario needs is installed on first use: Chromium from Debian's packages
//! (where `apt-get` may run), playwright-core from the npm registry at the
//! version `package-lock.json` pins. Where that is impossible the test says
//! it skipped and why, except under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A scenario's whole run, Chromium's start included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

/// Runs `tests/browser/{script}` with `env` (for example `STAMPEDE_BASE_URL`,
/// which relative URLs resolve against). Panics with the script's output
/// and its screenshots' paths when the scenario fails; answers false, having
/// said why, when no browser can be had here.
pub(crate) async fn run_scenario(script: &str, env: &[(&str, String)]) -> bool {
    let chromium = match tools() {
        Ok(chromium) => chromium,
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
            eprintln!("SKIPPED browser scenario {script}: {why}");
            return false;
        }
    };
    let child = Command::new("node")
        .arg(scripts_dir().join(script))
        .current_dir(scripts_dir())
        .env("STAMPEDE_CHROMIUM", chromium)
        .env("STAMPEDE_SCREENSHOTS", screenshots_dir())
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let pid = child.id().to_string();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let Ok(output) = tokio::time::timeout(SCENARIO_LIMIT, waiting).await else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("browser scenario {script} ran past {SCENARIO_LIMIT:?}; killed");
    };
    let output = output.expect("the waiting thread").expect("node's output");
    assert!(
        output.status.success(),
        "browser scenario {script} failed ({}):\n{}",
        output.status,
        text(&output)
    );
    true
}

/// Chromium's path, once playwright-core is in place too; or why not.
fn tools() -> Result<PathBuf, String> {
    static TOOLS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let chromium = chromium()?;
            playwright()?;
            Ok(chromium)
        })
        .clone()
}

/// `STAMPEDE_CHROMIUM`, else a Chromium on `PATH`, else Debian's package,
/// installed now.
fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STAMPEDE_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let on_path = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(which)
    };
    if let Some(path) = on_path() {
        return Ok(path);
    }
    eprintln!("installing Chromium from Debian's packages (apt-get install chromium)");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    match installed {
        Ok(output) if output.status.success() => {
            on_path().ok_or_else(|| "apt-get installed chromium, but it is not on PATH".into())
        }
        Ok(output) => Err(format!(
            "no Chromium, and `apt-get install chromium` failed:\n{}",
            text(&output)
        )),
        Err(error) => Err(format!("no Chromium, and apt-get cannot run ({error})")),
    }
}

/// playwright-core in `tests/browser/node_modules`, installed from the npm
/// registry by `npm ci` when missing.
fn playwright() -> Result<(), String> {
    if which("node").is_none() {
        return Err("Node.js (`node`) is not installed".into());
    }
    if scripts_dir().join("node_modules/playwright-core").is_dir() {
        return Ok(());
    }
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(scripts_dir())
        .output();
    match installed {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!("`npm ci` failed:\n{}", text(&output))),
        Err(error) => Err(format!("npm cannot run ({error})")),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where failing scenarios leave their screenshots: under the build's
/// temporary directory, so a clean checkout stays clean.
fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
