//! The `[tls]` table's mistakes name the key and the file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::Config;

/// PEM files in the temp directory, removed on drop.
struct Files(Vec<PathBuf>);

impl Files {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn write(&mut self, contents: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "stampede-gateway-tls-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        self.0.push(path.clone());
        path.display().to_string()
    }

    /// A self-signed certificate for `names`: its certificate and key files.
    fn certificate(&mut self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        (
            self.write(&made.cert.pem()),
            self.write(&made.signing_key.serialize_pem()),
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A gateway file whose `[tls]` lists these `(cert, key)` files, plus
/// `extra` lines in the table.
fn toml(certificates: &[(String, String)], extra: &str) -> String {
    let list: Vec<String> = certificates
        .iter()
        .map(|(cert, key)| format!("{{ cert = {cert:?}, key = {key:?} }}"))
        .collect();
    format!(
        "routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [\"127.0.0.1:9001\"]\n\
         [tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{}]\n{extra}\n",
        list.join(", ")
    )
}

fn error(toml: &str) -> String {
    match Config::from_toml(toml, "test.toml") {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn certificates_load_with_their_names_and_the_defaults() {
    let mut files = Files::new();
    let shop = files.certificate(&["shop.test", "WWW.shop.test"]);
    let admin = files.certificate(&["*.admin.test"]);
    let config = Config::from_toml(&toml(&[shop, admin], ""), "test.toml").unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.loaded[0].names, ["shop.test", "www.shop.test"]);
    assert_eq!(tls.loaded[1].names, ["*.admin.test"]);
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert!(!tls.redirect_http && tls.hsts.is_none());
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn an_unreadable_file_is_named_with_its_key() {
    let mut files = Files::new();
    let shop = files.certificate(&["shop.test"]);
    let missing = (shop.0.clone(), "/nonexistent/admin.key".to_owned());
    let e = error(&toml(&[shop, missing], ""));
    assert!(
        e.contains("tls.certificates[1].key") && e.contains("cannot read `/nonexistent/admin.key`"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_pem_is_refused() {
    let mut files = Files::new();
    let (_, key) = files.certificate(&["shop.test"]);
    let garbage = files.write("not a certificate\n");
    let e = error(&toml(&[(garbage.clone(), key.clone())], ""));
    assert!(
        e.contains("tls.certificates[0].cert")
            && e.contains(&garbage)
            && e.contains("no PEM certificate"),
        "{e}"
    );
    // A certificate where the key should be.
    let (cert, _) = files.certificate(&["shop.test"]);
    let e = error(&toml(&[(cert.clone(), cert)], ""));
    assert!(
        e.contains("tls.certificates[0].key") && e.contains("no PEM private key"),
        "{e}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let mut files = Files::new();
    let (shop_cert, _) = files.certificate(&["shop.test"]);
    let (_, other_key) = files.certificate(&["shop.test"]);
    let e = error(&toml(&[(shop_cert.clone(), other_key.clone())], ""));
    assert!(
        e.contains("tls.certificates[0].key")
            && e.contains(&format!("`{other_key}` is not the key of `{shop_cert}`")),
        "{e}"
    );
}

#[test]
fn a_certificate_without_names_may_only_be_the_default() {
    let mut files = Files::new();
    let nameless = files.certificate(&[]);
    let shop = files.certificate(&["shop.test"]);
    Config::from_toml(&toml(&[nameless.clone(), shop.clone()], ""), "test.toml").unwrap();
    let e = error(&toml(&[shop, nameless], ""));
    assert!(
        e.contains("tls.certificates[1].cert") && e.contains("no DNS name"),
        "{e}"
    );
}

#[test]
fn bad_keys_of_the_table_are_named() {
    let mut files = Files::new();
    let shop = [files.certificate(&["shop.test"])];
    let e = error(&toml(&shop, "alpn = [\"h2\", \"h3\"]"));
    assert!(e.contains("tls.alpn[1]") && e.contains("h3"), "{e}");
    let e = error(&toml(&shop, "hsts = \"forever\""));
    assert!(e.contains("tls.hsts") && e.contains("max-age="), "{e}");
    let e = error(&toml(&shop, "handshake_timeout = \"0s\""));
    assert!(e.contains("tls.handshake_timeout"), "{e}");
    let e = error(&toml(&[], ""));
    assert!(
        e.contains("tls.certificates") && e.contains("at least one"),
        "{e}"
    );
    let e = error(&toml(&shop, "redirect = true"));
    assert!(e.contains("redirect"), "{e}");
}
