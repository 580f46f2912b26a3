//! The `[tls]` table: the HTTPS listener's keys, and the certificate files
//! they name, read and checked while the file is validated. So `--check`,
//! a start and a reload all refuse a missing, malformed or mismatched
//! certificate, naming its key and file, before it could fail a handshake;
//! and a reload re-reads the files, which is how renewed certificates are
//! taken up without a restart.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

use super::de;

/// The protocols the HTTPS listener may offer by ALPN.
const PROTOCOLS: [&str; 2] = ["h2", "http/1.1"];

/// `[tls]`: TLS termination on a listener of its own, beside the plain one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Where HTTPS clients connect.
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Certificates chosen by the name the client asks for (SNI) among
    /// each one's subjectAltName DNS names; the first is served when the
    /// client names none or an unknown one.
    pub certificates: Vec<CertificateFiles>,
    /// Protocols offered by ALPN, preferred first.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// The plain listener answers every request with a redirect to the
    /// same host and path on the HTTPS listener.
    #[serde(default)]
    pub redirect_http: bool,
    /// `Strict-Transport-Security` value for every HTTPS answer; none when
    /// absent.
    #[serde(default)]
    pub hsts: Option<String>,
    /// How long a client may take to complete its handshake.
    #[serde(
        default = "default_handshake_timeout",
        deserialize_with = "de::duration"
    )]
    pub handshake_timeout: Duration,
    /// The certificates as read when the file was validated, in the order
    /// of `certificates`.
    #[serde(skip)]
    pub(crate) loaded: Vec<Certificate>,
}

/// `tls.certificates[N]`: a PEM certificate chain (leaf first) and its
/// PEM private key, paths relative to the working directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate read from its files, ready to serve.
#[derive(Clone)]
pub(crate) struct Certificate {
    pub(crate) key: Arc<CertifiedKey>,
    /// Its subjectAltName DNS names, lowercase (`*.example.com` for a
    /// wildcard).
    pub(crate) names: Vec<String>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn default_alpn() -> Vec<String> {
    PROTOCOLS.iter().map(|&p| p.to_owned()).collect()
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// Checks the keys and reads every certificate; the key returned is
    /// relative to `tls`.
    pub(super) fn validate(&mut self) -> Result<(), (String, String)> {
        if self.certificates.is_empty() {
            return Err((
                "certificates".into(),
                "no certificates; list at least one { cert = \"FILE.pem\", key = \"FILE.key\" }"
                    .into(),
            ));
        }
        if let Some((i, unknown)) = self
            .alpn
            .iter()
            .enumerate()
            .find(|(_, p)| !PROTOCOLS.contains(&p.as_str()))
        {
            return Err((
                format!("alpn[{i}]"),
                format!("`{unknown}` is not a protocol the gateway speaks: \"h2\" or \"http/1.1\""),
            ));
        }
        if let Some(hsts) = &self.hsts {
            let valid = http::HeaderValue::from_str(hsts).is_ok();
            if !valid || !hsts.trim_start().starts_with("max-age=") {
                return Err((
                    "hsts".into(),
                    format!(
                        "`{hsts}` is not a Strict-Transport-Security value (`max-age=SECONDS; ...`)"
                    ),
                ));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(("handshake_timeout".into(), "must be more than 0".into()));
        }
        self.loaded = self
            .certificates
            .iter()
            .enumerate()
            .map(|(i, files)| {
                let certificate = files
                    .load()
                    .map_err(|(key, problem)| (format!("certificates[{i}].{key}"), problem))?;
                if i > 0 && certificate.names.is_empty() {
                    return Err((
                        format!("certificates[{i}].cert"),
                        format!(
                            "`{}` has no DNS name in its subjectAltName, so no client could ask for it; only the first certificate (the default) may",
                            files.cert.display()
                        ),
                    ));
                }
                Ok(certificate)
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

impl CertificateFiles {
    /// Reads the chain and key and checks that they belong together; the
    /// key returned is `cert` or `key`.
    fn load(&self) -> Result<Certificate, (&'static str, String)> {
        let cert = self.cert.display();
        let chain = read(&self.cert)
            .and_then(|pem| CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>())
            .map_err(|e| ("cert", pem_problem(&self.cert, e, "certificate")))?;
        let leaf = chain.first().ok_or_else(|| {
            (
                "cert",
                format!("`{cert}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"),
            )
        })?;
        let names = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| {
                (
                    "cert",
                    format!("`{cert}` is not a valid X.509 certificate: {e}"),
                )
            })?
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect();
        let key = read(&self.key)
            .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem))
            .map_err(|e| ("key", pem_problem(&self.key, e, "private key")))?;
        let key = CertifiedKey::from_der(chain, key, &crate::tls::provider()).map_err(|e| {
            let problem = match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!("`{}` is not the key of `{cert}`", self.key.display())
                }
                other => format!("`{}`: {other}", self.key.display()),
            };
            ("key", problem)
        })?;
        Ok(Certificate {
            key: Arc::new(key),
            names,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, pem::Error> {
    std::fs::read(path).map_err(pem::Error::Io)
}

/// What is wrong with a PEM file, for the user: `what` is what it should hold.
fn pem_problem(path: &Path, error: pem::Error, what: &str) -> String {
    let path = path.display();
    match error {
        pem::Error::Io(e) => format!("cannot read `{path}`: {e}"),
        pem::Error::NoItemsFound => format!("`{path}` holds no PEM {what}"),
        other => format!("`{path}` is not a valid PEM {what}: {other}"),
    }
}

#[cfg(test)]
mod tests;
