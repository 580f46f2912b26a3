//! The deployment files under `deploy/` are checked as their tools would
//! check them, so that a manifest that Kubernetes would refuse, a compose
//! file that Docker would refuse, or a gateway file the gateway would
//! refuse fails here rather than during a rollout.
//!
//! - Every manifest in `deploy/k8s` against the Kubernetes JSON schemas,
//!   with `kubernetes-validate` (PyPI), which bundles the schemas and so
//!   runs offline; strict, so a misspelled field is an error.
//! - `docker compose config` (or `docker-compose config`) on
//!   `deploy/docker-compose.yml`, where either is installed.
//! - `stampede gateway --check` on every `gateway.toml` under `deploy/`,
//!   including the one inside the Kubernetes ConfigMap.
//!
//! A missing tool skips its check, saying so, except under CI (`CI` set,
//! as `.ci/run` does), where `kubernetes-validate` is installed and its
//! absence is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

/// Runs `command`, or `None` when its program is not installed.
fn run(command: &mut Command) -> Option<Output> {
    match command.output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("{command:?}: {error}"),
    }
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Skips (or under CI fails) for a missing `tool`.
fn missing(tool: &str, install: &str) {
    let why = format!("`{tool}` is not installed ({install})");
    assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
    eprintln!("SKIPPED: {why}");
}

#[test]
fn every_kubernetes_manifest_passes_the_schemas() {
    let manifests: Vec<PathBuf> = files(&deploy_dir().join("k8s"), ".yaml")
        .into_iter()
        .filter(|path| !path.ends_with("kustomization.yaml"))
        .collect();
    assert!(manifests.len() >= 5, "{manifests:?}");
    let kustomization = std::fs::read_to_string(deploy_dir().join("k8s/kustomization.yaml"))
        .expect("kustomization.yaml");
    for manifest in &manifests {
        let name = manifest.file_name().expect("name").to_string_lossy();
        assert!(
            kustomization.contains(&format!("- {name}\n")),
            "kustomization.yaml does not list {name}"
        );
    }
    let Some(output) = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&manifests))
    else {
        return missing("kubernetes-validate", "pip install kubernetes-validate");
    };
    assert_success("kubernetes-validate", &output);
}

#[test]
fn the_compose_file_passes_docker_compose_config() {
    let compose = deploy_dir().join("docker-compose.yml");
    // Docker's compose plugin, else the standalone docker-compose (Debian
    // packages 1.29, which reads the same file format).
    let tools: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    let found = tools.into_iter().find(|tool| {
        let version = run(Command::new(tool[0]).args(&tool[1..]).arg("version"));
        version.is_some_and(|output| output.status.success())
    });
    let Some(tool) = found else {
        eprintln!("SKIPPED: neither `docker compose` nor `docker-compose` is installed");
        return;
    };
    let output = run(Command::new(tool[0])
        .args(&tool[1..])
        .arg("--file")
        .arg(&compose)
        .args(["config", "--quiet"])
        .env("STAMPEDE_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"))
    .expect("compose");
    assert_success(&format!("{} config", tool.join(" ")), &output);
}

/// The TOML of the `gateway.toml` key of a ConfigMap: the block scalar's
/// lines, without their indentation.
fn configmap_gateway_toml(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|l| l.trim() != "gateway.toml: |");
    lines.next().expect("a `gateway.toml: |` key");
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    body.join("\n")
}

#[test]
fn every_gateway_file_passes_gateway_check() {
    let from_k8s = std::env::temp_dir().join(format!("stampede-k8s-{}.toml", std::process::id()));
    let manifest =
        std::fs::read_to_string(deploy_dir().join("k8s/configmap.yaml")).expect("configmap.yaml");
    std::fs::write(&from_k8s, configmap_gateway_toml(&manifest)).expect("write");
    let mut checked = files(&deploy_dir().join("compose"), "gateway.toml");
    checked.push(from_k8s.clone());
    for file in &checked {
        let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .args(["gateway", "--check", "--config"])
            .arg(file)
            .output()
            .expect("stampede");
        assert_success(&format!("gateway --check {}", file.display()), &output);
    }
    std::fs::remove_file(&from_k8s).expect("remove");
    assert_eq!(checked.len(), 2, "{checked:?}");
}
