//! Authentication of a gRPC port: bearer tokens (the users file's token
//! hashes, each caller a user with a role, or static tokens from a file,
//! compared in constant time), or on the public port a verified client
//! certificate whose subject CN a user lists; and the role check each public
//! call makes.

use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status, service::Interceptor};

use crate::error::{Error, Result};
use crate::users::{Directory, Role, User};

/// The tokens a port accepts.
#[derive(Clone)]
pub struct TokenSet {
    tokens: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("TokenSet").field("count", &self.tokens.len()).finish()
    }
}

impl TokenSet {
    /// Reads one token per line; blank lines and lines starting with `#` are skipped.
    pub fn load(path: &Path) -> Result<TokenSet> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| line.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(Error::Config(format!("{}: no tokens in the file", path.display())));
        }
        Ok(TokenSet { tokens })
    }

    /// Whether `presented` is one of the tokens. Every token is compared, each
    /// in constant time, so the answer does not leak which one matched or how
    /// much of one matched (only whether some token has the same length).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for token in &self.tokens {
            matched |= token.as_slice().ct_eq(presented);
        }
        matched.into()
    }
}

/// Checks `authorization: Bearer <token>` on every request of a service;
/// `None` tokens lets everything through (`--insecure-no-auth`).
#[derive(Debug, Clone)]
pub struct BearerAuth {
    tokens: Option<Arc<TokenSet>>,
}

impl BearerAuth {
    pub fn new(tokens: Option<TokenSet>) -> Self {
        Self { tokens: tokens.map(Arc::new) }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(tokens) = &self.tokens else { return Ok(request) };
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata: send `authorization: Bearer <token>`")
        })?;
        let token = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <token>`"))?;
        if tokens.accepts(token) { Ok(request) } else { Err(Status::unauthenticated("invalid token")) }
    }
}

/// How the public port knows its callers.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No authentication (`--insecure-no-auth`): every caller is the admin "anonymous".
    Open,
    /// The deprecated shared token file: every holder is the admin "admin".
    Shared(Arc<TokenSet>),
    /// The users file: each token names a user with a role.
    Users(Directory),
}

/// The authenticated caller, put in each request's extensions by [`ClientAuth`].
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<User>);

/// Authenticates every public call and records who made it.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    credentials: Credentials,
}

impl ClientAuth {
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials }
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let user = match &self.credentials {
            Credentials::Open => Arc::new(User::implicit_admin("anonymous")),
            Credentials::Shared(tokens) => {
                if !tokens.accepts(bearer(&request)?) {
                    return Err(Status::unauthenticated("invalid token"));
                }
                Arc::new(User::implicit_admin("admin"))
            }
            // A bearer token, when sent, decides; otherwise a verified client certificate.
            Credentials::Users(directory) => match certificate_subject(&request)? {
                Some(subject) if request.metadata().get("authorization").is_none() => {
                    directory.by_subject(&subject).ok_or_else(|| {
                        Status::unauthenticated(format!(
                            "client certificate subject CN={subject:?} names no user of the users file"
                        ))
                    })?
                }
                _ => directory
                    .authenticate(bearer(&request)?)
                    .ok_or_else(|| Status::unauthenticated("unknown or revoked token"))?,
            },
        };
        request.extensions_mut().insert(Caller(user));
        Ok(request)
    }
}

/// The subject CN of the client certificate the TLS layer verified, if the
/// client sent one (only when the port has a client CA).
fn certificate_subject(request: &Request<()>) -> Result<Option<String>, Status> {
    let Some(chain) = request.peer_certs() else { return Ok(None) };
    let Some(leaf) = chain.first() else { return Ok(None) };
    super::client_cert::subject_common_name(leaf).map(Some).ok_or_else(|| {
        Status::unauthenticated(
            "the client certificate's subject has no single common name (CN) to name a user",
        )
    })
}

fn bearer(request: &Request<()>) -> Result<&[u8], Status> {
    let header = request.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated("missing authorization metadata: send `authorization: Bearer <token>`")
    })?;
    header
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <token>`"))
}

/// The caller of a request that went through [`ClientAuth`].
pub fn caller<T>(request: &Request<T>) -> Result<Arc<User>, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.0.clone())
        .ok_or_else(|| Status::unauthenticated("the call carries no authenticated user"))
}

/// PERMISSION_DENIED unless `user`'s role is at least `needed`.
pub fn require(user: &User, needed: Role, call: &str) -> Result<(), Status> {
    if user.role >= needed {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "user {:?} ({}) may not call {call}: it needs the {} role",
            user.name,
            user.role.name(),
            needed.name()
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_skip_comments_and_match_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# client tokens\n\nalpha-token\n  beta-token  \n").unwrap();
        let set = TokenSet::load(&path).unwrap();
        assert!(set.accepts(b"alpha-token"));
        assert!(set.accepts(b"beta-token"));
        assert!(!set.accepts(b"alpha-toke"));
        assert!(!set.accepts(b"alpha-tokenx"));
        assert!(!set.accepts(b""));
        assert_eq!(format!("{set:?}"), "TokenSet { count: 2 }");

        std::fs::write(&path, "# nothing\n").unwrap();
        let err = TokenSet::load(&path).unwrap_err().to_string();
        assert!(err.ends_with("tokens: no tokens in the file"), "{err}");
    }

    #[test]
    fn interceptor_wants_a_bearer_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut auth = BearerAuth::new(Some(TokenSet::load(&path).unwrap()));
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request.metadata_mut().insert("authorization", value.parse().unwrap());
            }
            request
        };
        assert!(auth.call(with(Some("Bearer s3cret"))).is_ok());
        for (value, message) in [
            (None, "missing authorization"),
            (Some("s3cret"), "must be `Bearer <token>`"),
            (Some("Bearer wrong"), "invalid token"),
        ] {
            let status = auth.call(with(value)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert!(status.message().contains(message), "{value:?}: {}", status.message());
        }
        assert!(BearerAuth::new(None).call(with(None)).is_ok());
    }
}
