//! Where the coordinator is and how to authenticate, layered: flags, then the
//! environment (`SCOP_SERVER`, `SCOP_TOKEN`), then the client config file that
//! `scopd standalone` writes (`scop_connect::client_config`), then the default
//! `http://127.0.0.1:7070`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use scop_connect::TokenFileError;
use scop_connect::client_config::{CONFIG_ENV, ClientConfig};

use crate::error::{Error, Result};

/// The coordinator `scopctl` talks to when nothing says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// What the command line said about the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFlags {
    pub server: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
}

/// The resolved connection: every layer applied, the token read.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token itself.
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl Settings {
    /// Resolves `flags` against this process's environment and config file.
    pub fn resolve(flags: &ConnectionFlags) -> Result<Settings> {
        Self::resolve_with(flags, |name| std::env::var_os(name))
    }

    /// [`Settings::resolve`] with the environment given as a lookup.
    pub fn resolve_with(flags: &ConnectionFlags, env: impl Fn(&str) -> Option<OsString>) -> Result<Settings> {
        let var = |name: &str| env(name).and_then(|v| v.into_string().ok()).filter(|v| !v.is_empty());
        let file = read_config(&env)?;
        let (config, config_dir) = match &file {
            Some((config, path)) => (config.clone(), path.parent().map(Path::to_owned)),
            None => (ClientConfig::default(), None),
        };
        // Relative paths in the config file are relative to the file.
        let in_config_dir = |p: &Path| match &config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        };
        let server = flags
            .server
            .clone()
            .or_else(|| var("SCOP_SERVER"))
            .or(config.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = if let Some(token) = &flags.token {
            Some(token.clone())
        } else if let Some(path) = &flags.token_file {
            Some(read_token(path)?)
        } else if let Some(token) = var("SCOP_TOKEN") {
            Some(token)
        } else if let Some(token) = config.token {
            Some(token)
        } else {
            config.token_file.as_deref().map(|p| read_token(&in_config_dir(p))).transpose()?
        };
        let ca_cert = flags.ca_cert.clone().or_else(|| config.ca_cert.as_deref().map(in_config_dir));
        Ok(Settings { server: normalise_server(&server), token, ca_cert })
    }
}

/// The config file, if there is one. A file named by `$SCOPCTL_CONFIG` must
/// exist; the default location may be empty.
fn read_config(env: &impl Fn(&str) -> Option<OsString>) -> Result<Option<(ClientConfig, PathBuf)>> {
    let Some(path) = ClientConfig::path_from(env) else { return Ok(None) };
    let explicit = env(CONFIG_ENV).is_some_and(|v| !v.is_empty());
    if !explicit && !path.exists() {
        return Ok(None);
    }
    let config = ClientConfig::read(&path).map_err(|e| Error::Config(format!("client config: {e}")))?;
    Ok(Some((config, path)))
}

/// The first line of a token file that is neither empty nor a `#` comment.
pub fn read_token(path: &Path) -> Result<String> {
    scop_connect::read_token(path).map_err(|e| match e {
        TokenFileError::Read(source) => Error::io(path.display())(source),
        TokenFileError::Empty => Error::Config(format!("{}: no token in the file", path.display())),
    })
}

/// `host:port` means `http://host:port`.
fn normalise_server(server: &str) -> String {
    if server.contains("://") { server.to_owned() } else { format!("http://{server}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env(Vec<(&'static str, String)>);

    impl Env {
        fn lookup(&self) -> impl Fn(&str) -> Option<OsString> + '_ {
            |name| self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.into())
        }
    }

    fn check(flags: ConnectionFlags, env: &Env, expected: (&str, Option<&str>)) {
        let settings = Settings::resolve_with(&flags, env.lookup()).unwrap();
        assert_eq!((settings.server.as_str(), settings.token.as_deref()), expected, "{flags:?}");
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.token"), "# written by scopd standalone\nfile-token\n")
            .unwrap();
        std::fs::write(dir.path().join("flag.token"), "flag-file-token\n").unwrap();
        let config = dir.path().join("scopctl.yaml");
        std::fs::write(&config, "server: http://from-file:1\ntoken_file: client.token\n").unwrap();
        let path = config.display().to_string();

        let none = Env(vec![("HOME", dir.path().join("nobody").display().to_string())]);
        check(ConnectionFlags::default(), &none, (DEFAULT_SERVER, None));
        let file = Env(vec![("SCOPCTL_CONFIG", path.clone())]);
        check(ConnectionFlags::default(), &file, ("http://from-file:1", Some("file-token")));
        let env = Env(vec![
            ("SCOPCTL_CONFIG", path),
            ("SCOP_SERVER", "from-env:2".into()),
            ("SCOP_TOKEN", "env-token".into()),
        ]);
        check(ConnectionFlags::default(), &env, ("http://from-env:2", Some("env-token")));
        let flags = ConnectionFlags {
            server: Some("https://from-flag:3".into()),
            token_file: Some(dir.path().join("flag.token")),
            ..ConnectionFlags::default()
        };
        check(flags.clone(), &env, ("https://from-flag:3", Some("flag-file-token")));
        let flags = ConnectionFlags { token: Some("flag-token".into()), ..flags };
        check(flags, &env, ("https://from-flag:3", Some("flag-token")));
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml").display().to_string();
        let env = Env(vec![("SCOPCTL_CONFIG", missing)]);
        let error =
            Settings::resolve_with(&ConnectionFlags::default(), env.lookup()).unwrap_err().to_string();
        assert!(error.starts_with("client config: ") && error.contains("missing.yaml"), "{error}");
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "# nothing\n\n").unwrap();
        let flags = ConnectionFlags { token_file: Some(empty), ..ConnectionFlags::default() };
        let error = Settings::resolve_with(&flags, Env(vec![]).lookup()).unwrap_err().to_string();
        assert!(error.ends_with("empty.token: no token in the file"), "{error}");
    }
}
