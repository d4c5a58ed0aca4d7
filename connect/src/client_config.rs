//! The client configuration file that `scopctl` reads and `scopd standalone`
//! writes: where the coordinator's public API is and how to authenticate.
//!
//! ```yaml
//! server: http://127.0.0.1:7070
//! token_file: /var/lib/scop/client.token   # or `token: <the token>`
//! ca_cert: /etc/scop/ca.pem                # optional, for TLS
//! ```
//!
//! It lives at `$SCOPCTL_CONFIG`, else `$XDG_CONFIG_HOME/scop/scopctl.yaml`,
//! else `$HOME/.config/scop/scopctl.yaml`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a client config file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the config's shape: `<file>: <field>: <problem>`.
    #[error("{0}")]
    Parse(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Environment variable naming the config file explicitly.
pub const CONFIG_ENV: &str = "SCOPCTL_CONFIG";

/// How `scopctl` reaches a coordinator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port` of the public API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The bearer token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file whose first non-comment line is the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl ClientConfig {
    /// Where the config file is looked for, from this process's environment.
    pub fn default_path() -> Option<PathBuf> {
        Self::path_from(|name| std::env::var_os(name))
    }

    /// [`ClientConfig::default_path`] with the environment given as a lookup.
    pub fn path_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(explicit) = set(CONFIG_ENV) {
            return Some(explicit);
        }
        let base = set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|home| home.join(".config")))?;
        Some(base.join("scop").join("scopctl.yaml"))
    }

    /// Reads and parses a config file; errors name the file and the field.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let deserializer = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let at = if field == "." { String::new() } else { format!(" {field}") };
            Error::Parse(format!("{}:{at}: {}", path.display(), e.into_inner()))
        })
    }

    /// Writes the file, creating its directory; readable by its owner only,
    /// since it may hold a token.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_with_header(path, "")
    }

    /// [`ClientConfig::write`] with `header` (comment lines, each starting
    /// with `#`) above the settings.
    pub fn write_with_header(&self, path: &Path, header: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |source| Error::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
        }
        let yaml = serde_norway::to_string(self).expect("the client config serialises");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // An existing file keeps its old mode on open; tighten it as well.
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        file.write_all(header.as_bytes()).map_err(io)?;
        file.write_all(yaml.as_bytes()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(vars: &[(&str, &str)]) -> Option<PathBuf> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        ClientConfig::path_from(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
    }

    #[test]
    fn the_path_follows_the_explicit_variable_then_xdg_then_home() {
        let explicit = [("SCOPCTL_CONFIG", "/etc/scopctl.yaml"), ("HOME", "/home/u")];
        assert_eq!(path(&explicit), Some("/etc/scopctl.yaml".into()));
        let xdg = [("XDG_CONFIG_HOME", "/x"), ("HOME", "/home/u")];
        assert_eq!(path(&xdg), Some("/x/scop/scopctl.yaml".into()));
        assert_eq!(path(&[("HOME", "/home/u")]), Some("/home/u/.config/scop/scopctl.yaml".into()));
        assert_eq!(path(&[("HOME", "")]), None);
    }

    #[test]
    fn written_files_read_back_and_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/scopctl.yaml");
        let config = ClientConfig {
            server: Some("http://127.0.0.1:7070".into()),
            token_file: Some("/data/client.token".into()),
            ..ClientConfig::default()
        };
        config.write(&file).unwrap();
        assert_eq!(ClientConfig::read(&file).unwrap(), config);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn bad_files_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scopctl.yaml");
        std::fs::write(&file, "server: http://h:1\ntokn: x\n").unwrap();
        let err = ClientConfig::read(&file).unwrap_err().to_string();
        assert!(err.contains("scopctl.yaml") && err.contains("unknown field `tokn`"), "{err}");
        let err = ClientConfig::read(&dir.path().join("missing.yaml")).unwrap_err().to_string();
        assert!(err.contains("missing.yaml"), "{err}");
    }
}
