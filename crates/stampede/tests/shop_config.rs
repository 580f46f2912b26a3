//! Starting a shop node, or not: no admin token, a bad key or a bad
//! database URL each stop it with one message that names the problem.

mod support;

use support::{Run, TempFile, run_to_end, stampede};

async fn shop(args: &[&str], token: Option<&str>) -> Run {
    let mut command = stampede("shop");
    command.args(args).env_remove("STAMPEDE_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("STAMPEDE_ADMIN_TOKEN", token);
    }
    run_to_end(command, &format!("stampede shop {}", args.join(" "))).await
}

#[tokio::test]
async fn without_an_admin_token_a_node_refuses_to_start() {
    let run = shop(
        &["--database-url", "sqlite:///tmp/never.db", "--check"],
        None,
    )
    .await;
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        run.stderr.contains("`admin_token`") && run.stderr.contains("STAMPEDE_ADMIN_TOKEN"),
        "{}",
        run.stderr
    );
    let run = shop(
        &["--database-url", "sqlite:///tmp/never.db", "--check"],
        Some("0123456789abcdef"),
    )
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("configuration ok"));
}

#[tokio::test]
async fn a_bad_key_is_named() {
    let file = TempFile::new(
        "toml",
        "database_url = \"sqlite:///tmp/x.db\"\n[orders]\nhold = \"forever\"\n",
    );
    let path = file.0.display().to_string();
    let run = shop(&["--config", &path, "--check"], Some("0123456789abcdef")).await;
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("`orders.hold`: `forever` is not a duration"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_unknown_database_is_refused_clearly() {
    let run = shop(
        &[
            "--database-url",
            "mysql://root:secret@localhost/x",
            "--listen",
            "127.0.0.1:0",
        ],
        Some("0123456789abcdef"),
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(
        run.stderr.contains("unsupported database URL"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("secret"),
        "the password leaked: {}",
        run.stderr
    );

    let mut command = stampede("migrate");
    command.args(["--database-url", "sqlite:///nonexistent-dir/x.db"]);
    let run = run_to_end(command, "stampede migrate").await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("stampede migrate:"), "{}", run.stderr);
}
