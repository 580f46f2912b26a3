//! What `up` tells the person who ran it: its own progress lines
//! (`[up] ...`), and, once the cluster answers, where it is and a curl
//! session to paste into another terminal.
//!
//! The session is printed whole in one write so that the children's log
//! lines cannot land in the middle of it, and every path in it is quoted
//! for the shell, since a data directory may have spaces in its name. The
//! admin token itself is never printed, only where to find it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::seed::{DEMO_SKU, Demo};
use crate::token::{TOKEN_VARIABLE, TokenSource};

/// Prints one progress line of `up` itself.
pub(crate) fn say(message: &str) {
    let _ = writeln!(std::io::stdout().lock(), "[up] {message}");
}

/// Everything the ready message shows.
#[derive(Debug)]
pub(crate) struct Ready<'a> {
    pub(crate) url: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) nodes: usize,
    pub(crate) database: &'a str,
    pub(crate) token: &'a TokenSource,
    pub(crate) demo: &'a Demo,
    pub(crate) data_dir: &'a Path,
}

/// Prints the ready message.
pub(crate) fn ready(ready: &Ready<'_>) {
    let _ = std::io::stdout().lock().write_all(render(ready).as_bytes());
}

/// The ready message, as [`ready`] prints it.
pub(crate) fn render(r: &Ready<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nstampede is up: http://{}", r.url);
    let _ = writeln!(
        out,
        "  {} shop node{} behind the gateway (least-conn), database {}",
        r.nodes,
        if r.nodes == 1 { "" } else { "s" },
        r.database
    );
    let _ = writeln!(
        out,
        "  storefront:  http://{}/ (log in as a demo user)",
        r.url
    );
    let _ = writeln!(out, "  metrics:     http://{}/metrics", r.metrics);
    let _ = writeln!(
        out,
        "  operations:  http://{}/ops (log in with the admin token)",
        r.metrics
    );
    let _ = writeln!(out, "  admin token: {}", token_note(r.token));
    let _ = writeln!(out, "  demo users:  {}", demo_note(r.demo));
    out.push_str("  Ctrl-C stops everything.\n\n");
    out.push_str(&session(r));
    out
}

fn token_note(token: &TokenSource) -> String {
    match token {
        TokenSource::Environment => format!("from ${TOKEN_VARIABLE}"),
        TokenSource::File { path, generated } => format!(
            "in {}{}",
            path.display(),
            if *generated { " (generated now)" } else { "" }
        ),
    }
}

fn demo_note(demo: &Demo) -> String {
    let file = demo.users_file.display();
    match (&demo.users, demo.product_created || demo.users_created) {
        (Some(users), true) => format!("{} created now; passwords in {file}", users.len()),
        (Some(_), false) => format!("already there (not seeded again); passwords in {file}"),
        (None, _) => "already in this database, but their passwords are not in this \
                      data directory (made for another database?)"
            .to_owned(),
    }
}

/// The curl session: log in, look at the product, buy one, and the admin
/// view of what was sold.
fn session(r: &Ready<'_>) -> String {
    let base = format!("http://{}", r.url);
    let jar = shell_quote(&r.data_dir.join("cookies.txt").display().to_string());
    let curl = "curl -s -w '\\n'";
    let json = "-H 'Content-Type: application/json'";
    let mut out = String::from("Try it (copy and paste into another terminal):\n\n");
    if let Some(user) = r.demo.users.as_ref().and_then(|u| u.first()) {
        let login = format!(
            r#"{{"username": {}, "password": {}}}"#,
            json_string(&user.username),
            json_string(&user.password)
        );
        let _ = writeln!(
            out,
            "  {curl} -c {jar} -b {jar} {json} \\\n      -d {} {base}/api/v1/login",
            shell_quote(&login)
        );
    }
    let _ = writeln!(out, "  {curl} {base}/api/v1/products/{DEMO_SKU}");
    let order = format!(r#"{{"sku": {}, "quantity": 1}}"#, json_string(DEMO_SKU));
    let _ = writeln!(
        out,
        "  {curl} -c {jar} -b {jar} {json} \\\n      -d {} {base}/api/v1/orders",
        shell_quote(&order)
    );
    let _ = writeln!(
        out,
        "  {curl} -H \"Authorization: Bearer {}\" \\\n      {base}/api/v1/admin/stats\n",
        bearer(r.token)
    );
    out
}

/// `text` as a JSON string, quotes included.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The shell words that produce the admin token.
fn bearer(token: &TokenSource) -> String {
    match token {
        TokenSource::Environment => format!("${TOKEN_VARIABLE}"),
        TokenSource::File { path, .. } => {
            format!("$(cat {})", shell_quote(&path.display().to_string()))
        }
    }
}

/// `word` as one POSIX shell word: as it is when that is safe, else in
/// single quotes.
pub(crate) fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::seed::DemoUser;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote("/tmp/stampede-data/x.txt"),
            "/tmp/stampede-data/x.txt"
        );
        assert_eq!(shell_quote("/my data/x"), "'/my data/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote(r#"{"a": 1}"#), r#"'{"a": 1}'"#);
    }

    fn demo(users: Option<Vec<DemoUser>>, created: bool) -> Demo {
        Demo {
            product_created: created,
            users_created: created,
            users,
            users_file: PathBuf::from("/d/demo-users"),
        }
    }

    fn rendered(demo: &Demo, token: &TokenSource) -> String {
        render(&Ready {
            url: ([127, 0, 0, 1], 8080).into(),
            metrics: ([127, 0, 0, 1], 9901).into(),
            nodes: 3,
            database: "sqlite:///d/stampede.db",
            token,
            demo,
            data_dir: Path::new("/my data"),
        })
    }

    #[test]
    fn the_session_logs_in_buys_and_never_shows_the_token() {
        let users = vec![DemoUser {
            username: "demo1".into(),
            password: "pw1".into(),
        }];
        let token = TokenSource::File {
            path: PathBuf::from("/my data/admin-token"),
            generated: true,
        };
        let text = rendered(&demo(Some(users), true), &token);
        assert!(
            text.contains("stampede is up: http://127.0.0.1:8080\n"),
            "{text}"
        );
        assert!(
            text.contains("storefront:  http://127.0.0.1:8080/ "),
            "{text}"
        );
        assert!(text.contains("http://127.0.0.1:9901/metrics"), "{text}");
        assert!(text.contains("http://127.0.0.1:9901/ops"), "{text}");
        assert!(
            text.contains("in /my data/admin-token (generated now)"),
            "{text}"
        );
        assert!(text.contains("1 created now"), "{text}");
        assert!(
            text.contains(
                "-c '/my data/cookies.txt' -b '/my data/cookies.txt' -H 'Content-Type: application/json' \\\n      \
                 -d '{\"username\": \"demo1\", \"password\": \"pw1\"}' http://127.0.0.1:8080/api/v1/login"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "-d '{\"sku\": \"DEMO-001\", \"quantity\": 1}' http://127.0.0.1:8080/api/v1/orders"
            ),
            "{text}"
        );
        assert!(
            text.contains("Bearer $(cat '/my data/admin-token')"),
            "{text}"
        );
    }

    #[test]
    fn later_starts_and_unknown_passwords_say_so() {
        let users = vec![DemoUser {
            username: "demo1".into(),
            password: "pw1".into(),
        }];
        let text = rendered(&demo(Some(users), false), &TokenSource::Environment);
        assert!(text.contains("already there (not seeded again)"), "{text}");
        assert!(text.contains("from $STAMPEDE_ADMIN_TOKEN"), "{text}");
        assert!(text.contains("Bearer $STAMPEDE_ADMIN_TOKEN"), "{text}");

        let text = rendered(&demo(None, false), &TokenSource::Environment);
        assert!(!text.contains("/api/v1/login"), "{text}");
        assert!(text.contains("passwords are not in this"), "{text}");
    }
}
