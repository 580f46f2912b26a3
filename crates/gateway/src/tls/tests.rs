//! Certificates chosen by name, and where the redirect points.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;

/// A self-signed certificate for `names`, as validation would load it.
fn certificate(names: &[&str]) -> Certificate {
    let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names.clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let chain = vec![CertificateDer::from(made.cert.der().to_vec())];
    Certificate {
        key: Arc::new(CertifiedKey::from_der(chain, key, &provider()).unwrap()),
        names,
    }
}

#[test]
fn names_choose_their_certificate_and_wildcards_cover_one_label() {
    let (shop, admin) = (certificate(&["shop.test"]), certificate(&["*.admin.test"]));
    let certificates = Certificates::new(&[shop.clone(), admin.clone()]);
    let found = |name| {
        certificates
            .find(name)
            .map(|key| Arc::ptr_eq(key, &admin.key))
    };
    assert_eq!(found("shop.test"), Some(false));
    assert_eq!(
        found("SHOP.test"),
        Some(false),
        "names are case-insensitive"
    );
    assert_eq!(found("eu.admin.test"), Some(true));
    assert_eq!(found("admin.test"), None, "a wildcard needs a label");
    assert_eq!(found("a.eu.admin.test"), None, "and covers only one");
    assert_eq!(found("other.test"), None);
}

#[test]
fn the_first_certificate_listing_a_name_serves_it() {
    let (first, second) = (certificate(&["shop.test"]), certificate(&["shop.test"]));
    let certificates = Certificates::new(&[first.clone(), second]);
    let served = certificates.find("shop.test").unwrap();
    assert!(Arc::ptr_eq(served, &first.key));
    assert!(Arc::ptr_eq(&certificates.default, &first.key));
}

#[test]
fn the_redirect_keeps_host_path_and_query_and_names_the_port() {
    let uri: Uri = "/cart?item=7".parse().unwrap();
    let location = |host, port| https_location(host, port, &uri);
    assert_eq!(
        location("shop.test", 8443).unwrap(),
        "https://shop.test:8443/cart?item=7"
    );
    assert_eq!(
        location("shop.test", 443).unwrap(),
        "https://shop.test/cart?item=7"
    );
    assert_eq!(location("[::1]", 443).unwrap(), "https://[::1]/cart?item=7");
    // Never somewhere else than the host asked for.
    assert!(location("evil.test/x?", 443).is_none());
    assert!(location("user@evil.test", 443).is_none());
    assert!(location("", 443).is_none());
}

#[test]
fn a_request_without_host_cannot_be_redirected() {
    let uri: Uri = "/".parse().unwrap();
    assert!(matches!(
        redirect(None, &uri, 8443),
        Err(GatewayError::MalformedRequest)
    ));
    let response = redirect(Some("shop.test:8080"), &uri, 8443).unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        response.headers()[header::LOCATION],
        "https://shop.test:8443/"
    );
}
