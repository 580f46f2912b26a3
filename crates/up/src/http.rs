//! The few admin calls `up` makes to the cluster it started, through its
//! gateway like any client: JSON in, a status and the error code out.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::UpError;

/// How long one call may take; creating users hashes their passwords.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What an admin `POST` that creates something found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// `201`: created now.
    New,
    /// `409 exists`: it was there already.
    Existed,
}

/// The admin API of one cluster.
#[derive(Debug)]
pub(crate) struct AdminApi {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

impl AdminApi {
    /// The API behind `addr`, called with `token`.
    pub(crate) fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    /// `POST path` with `body`: [`Created::New`] on `201`,
    /// [`Created::Existed`] on `409 exists`, an error otherwise.
    pub(crate) async fn create(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Created, UpError> {
        let what = format!("POST {path}");
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, self.post(path, body))
            .await
            .map_err(|_| UpError::Http {
                what: what.clone(),
                detail: format!("no answer within {CALL_TIMEOUT:?}"),
            })?
            .map_err(|detail| UpError::Http {
                what: what.clone(),
                detail,
            })?;
        match status {
            StatusCode::CREATED => Ok(Created::New),
            StatusCode::CONFLICT if error_code(&body).as_deref() == Some("exists") => {
                Ok(Created::Existed)
            }
            _ => Err(UpError::Seed {
                what,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// The `error` field of a contract error body.
fn error_code(body: &[u8]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(body.get("error")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn reads_the_error_code_of_a_contract_body() {
        let body = br#"{"error": "exists", "message": "sku DEMO-001 exists"}"#;
        assert_eq!(error_code(body).as_deref(), Some("exists"));
        assert_eq!(
            error_code(br#"{"error":"invalid"}"#).as_deref(),
            Some("invalid")
        );
        assert_eq!(error_code(b"not json"), None);
    }
}
