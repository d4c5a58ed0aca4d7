//! How every scop program reaches a coordinator's gRPC port: `scopctl` the
//! public port, the agent the worker port, and the test harness both.
//!
//! [`endpoint`] builds the channel's endpoint (TLS with the system's CAs plus
//! an optional one, for `https://` or when a CA is given), [`Bearer`] adds
//! `authorization: Bearer <token>` to every call, [`read_token`] reads a token
//! file, and [`client_config`] is the file `scopctl` reads and `scopd
//! standalone` writes. It sits below the client, the agent and the server so
//! that none of them depends on another for it, and keeps tonic out of
//! `scop-core`.

pub mod client_config;

use std::path::Path;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive of every connection, so that a dead peer is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// What can go wrong before a connection is attempted. Callers put it in
/// their own words (and errors).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not a URL tonic accepts.
    #[error("not a URL: {0}")]
    Address(String),
    /// The TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The token cannot travel in a header.
    #[error("the token must be printable ASCII")]
    Token,
}

/// The endpoint of a coordinator's port at `server` (`http://` or
/// `https://host:port`), with TLS for `https://` or when `ca_pem` (a PEM CA to
/// trust besides the system's) is given.
pub fn endpoint(server: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, ConnectError> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| ConnectError::Address(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Some(TCP_KEEPALIVE));
    if server.starts_with("https://") || ca_pem.is_some() {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| ConnectError::Tls(e.to_string()))?;
    }
    Ok(endpoint)
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a
/// token). Its `Debug` never shows the token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The header for `token`; `None` sends none.
    pub fn new(token: Option<&str>) -> Result<Bearer, ConnectError> {
        match token {
            Some(token) => {
                Ok(Bearer(Some(format!("Bearer {token}").parse().map_err(|_| ConnectError::Token)?)))
            }
            None => Ok(Bearer(None)),
        }
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<redacted>)" } else { "Bearer(none)" })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose every call carries the bearer token.
pub type Authenticated = InterceptedService<Channel, Bearer>;

/// Why a token file gave no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("no token in the file")]
    Empty,
}

/// The first line of a token file that is neither empty nor a `#` comment.
pub fn read_token(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .ok_or(TokenFileError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_header_and_never_in_debug() {
        let mut bearer = Bearer::new(Some("s3cret")).unwrap();
        assert!(!format!("{bearer:?}").contains("s3cret"));
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer s3cret");
        let request = Bearer::new(None).unwrap().call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
        assert!(matches!(Bearer::new(Some("bad\ntoken")), Err(ConnectError::Token)));
    }

    #[test]
    fn token_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.token");
        std::fs::write(&file, "# written by scopd\n\n  tok-1  \ntok-2\n").unwrap();
        assert_eq!(read_token(&file).unwrap(), "tok-1");
        std::fs::write(&file, "# nothing\n\n").unwrap();
        assert!(matches!(read_token(&file), Err(TokenFileError::Empty)));
        assert!(matches!(read_token(&dir.path().join("missing")), Err(TokenFileError::Read(_))));
    }

    #[test]
    fn bad_addresses_are_refused_before_connecting() {
        assert!(matches!(endpoint("not a url", None), Err(ConnectError::Address(_))));
        assert!(endpoint("http://127.0.0.1:1", None).is_ok());
    }
}
