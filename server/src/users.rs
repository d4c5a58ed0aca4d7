//! Users, roles and quotas: the users file (YAML, token hashes only), looking a
//! presented token up in constant time, and adding a user with a new token.
//!
//! ```yaml
//! quotas:                 # per role; a user's own `quotas` override them field by field
//!   submitter: { max_queued_jobs: 20, max_running_jobs: 4, max_rank_slots: 8 }
//! users:
//!   - name: alice
//!     role: submitter
//!     tokens: ["sha256:5e88…"]
//!   - name: pipeline
//!     role: submitter
//!     cert_subjects: ["pipeline.ml.example.org"]   # client certificate CNs (with --client-ca)
//! ```

mod quotas;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::quotas::{Quotas, Usage};
use crate::error::{Error, Result};

/// What a user may do. Each role can do everything the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads jobs, plans, events, statistics, artifacts and workers.
    Viewer,
    /// A viewer that submits jobs and cancels its own.
    Submitter,
    /// Everything, on any job.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        [Role::Viewer, Role::Submitter, Role::Admin].into_iter().find(|r| r.name() == name)
    }
}

/// An authenticated caller: who, with which role, under which limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub quotas: Quotas,
}

impl User {
    /// The caller of a port without authentication, and of the deprecated shared token file.
    pub fn implicit_admin(name: &str) -> User {
        User { name: name.to_owned(), role: Role::Admin, quotas: Quotas::for_role(Role::Admin) }
    }
}

/// The users file as written on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Limits per role, below each user's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<Role, Quotas>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
}

/// One user of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// `sha256:<64 hex digits>` of each token the user may present.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Subject common names (CN) of client certificates that name this user
    /// when the public port verifies client certificates (`--client-ca`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Quotas::is_empty")]
    pub quotas: Quotas,
}

/// The users of a loaded file, ready for lookups.
#[derive(Debug, Default)]
pub struct Users {
    entries: Vec<(Arc<User>, Vec<[u8; 32]>)>,
    /// Client certificate subject CN → user.
    subjects: BTreeMap<String, Arc<User>>,
}

impl Users {
    /// Parses and checks a users file; errors name the file and the user.
    pub fn load(path: &Path) -> Result<Users> {
        let file = UsersFile::read(path)?;
        Users::from_file(&file).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_file(file: &UsersFile) -> std::result::Result<Users, String> {
        let mut entries = Vec::new();
        let mut subjects = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, entry) in file.users.iter().enumerate() {
            let valid_name = !entry.name.is_empty()
                && entry.name.len() <= 64
                && entry.name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
            if !valid_name {
                return Err(format!(
                    "users[{i}].name: must be 1 to 64 characters of [A-Za-z0-9._@-], got {:?}",
                    entry.name
                ));
            }
            if !seen.insert(entry.name.clone()) {
                return Err(format!("users[{i}].name: {:?} appears twice", entry.name));
            }
            let hashes = entry
                .tokens
                .iter()
                .enumerate()
                .map(|(j, hash)| {
                    parse_hash(hash).ok_or_else(|| {
                        format!("users[{i}].tokens[{j}]: must be \"sha256:\" and 64 hex digits (never a plain token)")
                    })
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            let mut quotas = Quotas::for_role(entry.role);
            if let Some(role_quotas) = file.quotas.get(&entry.role) {
                quotas = role_quotas.over(&quotas);
            }
            quotas = entry.quotas.over(&quotas);
            let user = Arc::new(User { name: entry.name.clone(), role: entry.role, quotas });
            for (j, subject) in entry.cert_subjects.iter().enumerate() {
                let field = format!("users[{i}].cert_subjects[{j}]");
                if subject.trim().is_empty() || subject.trim() != subject {
                    return Err(format!("{field}: must be a certificate's subject CN, got {subject:?}"));
                }
                if let Some(other) = subjects.insert(subject.clone(), user.clone()) {
                    return Err(format!("{field}: {subject:?} already names user {:?}", other.name));
                }
            }
            entries.push((user, hashes));
        }
        Ok(Users { entries, subjects })
    }

    /// The user holding `token`. Every hash of every user is compared in
    /// constant time, so timing tells nothing about which (if any) matched.
    pub fn authenticate(&self, token: &[u8]) -> Option<Arc<User>> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for (user, hashes) in &self.entries {
            let mut matched = subtle::Choice::from(0);
            for hash in hashes {
                matched |= hash.ct_eq(&presented);
            }
            if bool::from(matched) {
                found = Some(user.clone());
            }
        }
        found
    }

    /// The user a verified client certificate with subject CN `subject` names.
    pub fn by_subject(&self, subject: &str) -> Option<Arc<User>> {
        self.subjects.get(subject).cloned()
    }

    /// Each user as the file defines it (name, role, quotas, how many
    /// tokens, the certificate subjects), sorted by name; compared before
    /// and after a reload to audit what changed.
    pub fn summary(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|(user, hashes)| {
                let subjects: Vec<&str> = self
                    .subjects
                    .iter()
                    .filter(|(_, u)| Arc::ptr_eq(u, user))
                    .map(|(s, _)| s.as_str())
                    .collect();
                let mut hashes = hashes.clone();
                hashes.sort_unstable();
                let tokens: String = hashes
                    .iter()
                    .map(|h| h.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(",");
                let text = format!(
                    "role {}, tokens [{tokens}], cert_subjects {subjects:?}, quotas {:?}",
                    user.role.name(),
                    user.quotas
                );
                (user.name.clone(), text)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The users file and its current contents, swapped whole on [`Directory::reload`] (SIGHUP).
#[derive(Debug, Clone)]
pub struct Directory {
    path: PathBuf,
    users: Arc<RwLock<Arc<Users>>>,
}

impl Directory {
    pub fn open(path: &Path) -> Result<Directory> {
        let users = Users::load(path)?;
        Ok(Directory { path: path.to_owned(), users: Arc::new(RwLock::new(Arc::new(users))) })
    }

    /// Reads the file again and says which users it changed; on an error the
    /// users loaded before stay in force.
    pub fn reload(&self) -> Result<Reload> {
        let users = Users::load(&self.path)?;
        let mut slot = self.users.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let reload = Reload::between(&slot.summary(), &users.summary(), users.len());
        *slot = Arc::new(users);
        Ok(reload)
    }

    fn current(&self) -> Arc<Users> {
        self.users.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn authenticate(&self, token: &[u8]) -> Option<Arc<User>> {
        self.current().authenticate(token)
    }

    /// The user a verified client certificate's subject CN names.
    pub fn by_subject(&self, subject: &str) -> Option<Arc<User>> {
        self.current().by_subject(subject)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a reload changed, by user name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reload {
    /// Users in the file now.
    pub users: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Users whose role, tokens, certificate subjects or quotas changed.
    pub changed: Vec<String>,
}

impl Reload {
    fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>, users: usize) -> Reload {
        let names =
            |pick: &dyn Fn(&String, &String) -> bool, from: &BTreeMap<String, String>| -> Vec<String> {
                from.iter().filter(|(name, text)| pick(name, text)).map(|(name, _)| name.clone()).collect()
            };
        Reload {
            users,
            added: names(&|name, _| !old.contains_key(name), new),
            removed: names(&|name, _| !new.contains_key(name), old),
            changed: names(&|name, text| old.get(name).is_some_and(|was| was != text), new),
        }
    }

    /// Whether any user was added, removed or changed.
    pub fn changes_users(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }

    /// `added [..], removed [..], changed [..]`, for the audit log.
    pub fn describe(&self) -> String {
        format!("added {:?}, removed {:?}, changed {:?}", self.added, self.removed, self.changed)
    }
}

impl UsersFile {
    /// Reads a users file; a missing file is an error worth seeing.
    pub fn read(path: &Path) -> Result<UsersFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        serde_norway::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Writes the file (mode 0600) through a temporary file and a rename, so a
    /// reloading coordinator never reads half of it.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let text = serde_norway::to_string(self).map_err(|e| Error::Config(format!("users file: {e}")))?;
        let temporary = path.with_extension("yaml.tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(b"# scopd users: token hashes only; edit with `scopd user add`, reload with SIGHUP\n")
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }

    /// Adds `name` with `role` (or a further token to an existing user of the
    /// same role) and returns the new plain token, which is stored only hashed.
    pub fn add_user(&mut self, name: &str, role: Role) -> Result<String> {
        let token = crate::secret::random_hex(32)
            .map_err(|source| Error::Io { path: "/dev/urandom".into(), source })?;
        let hash = hash_token(&token);
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(existing) if existing.role != role => {
                return Err(Error::Config(format!(
                    "user {name:?} already exists with role {}; not changing it to {}",
                    existing.role.name(),
                    role.name()
                )));
            }
            Some(existing) => existing.tokens.push(hash),
            None => self.users.push(UserEntry {
                name: name.to_owned(),
                role,
                tokens: vec![hash],
                cert_subjects: Vec::new(),
                quotas: Quotas::default(),
            }),
        }
        // Refuse to write a file the coordinator would not load.
        Users::from_file(self).map_err(Error::Config)?;
        Ok(token)
    }
}

/// `sha256:<hex>` of a token, as the users file stores it.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The local account running this process, as the audit log names someone
/// who changed the users file from a shell: `local:<login>` (from
/// `/etc/passwd`), else `local:uid <n>`.
pub fn local_account() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "local:unknown".to_owned();
    };
    let login = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid.to_string()).then(|| name.to_owned())
        })
    });
    login.map_or_else(|| format!("local:uid {uid}"), |login| format!("local:{login}"))
}

/// Adds a user to the file at `path` (created if missing) and returns its new token.
pub fn add_to_file(path: &Path, name: &str, role: Role) -> Result<String> {
    let mut file = if path.exists() { UsersFile::read(path)? } else { UsersFile::default() };
    let token = file.add_user(name, role)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    }
    file.write(path)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_found_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let alice = add_to_file(&path, "alice", Role::Submitter).unwrap();
        let bob = add_to_file(&path, "bob", Role::Viewer).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&alice) && !text.contains(&bob), "plain tokens on disk:\n{text}");
        assert!(text.contains(&hash_token(&alice)));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let users = Users::load(&path).unwrap();
        assert_eq!(users.authenticate(alice.as_bytes()).unwrap().name, "alice");
        assert_eq!(users.authenticate(bob.as_bytes()).unwrap().role, Role::Viewer);
        assert!(users.authenticate(&alice.as_bytes()[1..]).is_none());
        assert!(users.authenticate(b"").is_none());

        let err = add_to_file(&path, "alice", Role::Admin).unwrap_err().to_string();
        assert!(err.contains("already exists with role submitter"), "{err}");
        let second = add_to_file(&path, "alice", Role::Submitter).unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.authenticate(second.as_bytes()).unwrap().name, "alice");
        assert_eq!(users.authenticate(alice.as_bytes()).unwrap().name, "alice");
    }

    #[test]
    fn bad_files_are_refused_naming_the_entry() {
        let check = |yaml: &str, expected: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("users.yaml");
            std::fs::write(&path, yaml).unwrap();
            let err = Users::load(&path).unwrap_err().to_string();
            assert!(err.contains("users.yaml") && err.contains(expected), "{yaml}: {err}");
        };
        check(
            "users: [{ name: a, role: admin, tokens: [plain-token] }]\n",
            "users[0].tokens[0]: must be \"sha256:\"",
        );
        check(
            "users: [{ name: a, role: admin }, { name: a, role: viewer }]\n",
            "users[1].name: \"a\" appears twice",
        );
        check("users: [{ name: 'a b', role: admin }]\n", "users[0].name: must be");
        check(
            "users: [{ name: a, role: admin, cert_subjects: [x] }, { name: b, role: viewer, cert_subjects: [y, x] }]\n",
            "users[1].cert_subjects[1]: \"x\" already names user \"a\"",
        );
        check(
            "users: [{ name: a, role: admin, cert_subjects: [' x'] }]\n",
            "users[0].cert_subjects[0]: must be",
        );
        check("users: [{ name: a, role: root }]\n", "unknown variant `root`");
        check("user: []\n", "unknown field `user`");
    }

    #[test]
    fn quotas_layer_role_defaults_then_the_file_then_the_user() {
        let file: UsersFile = serde_norway::from_str(
            "quotas: { submitter: { max_queued_jobs: 5, max_running_jobs: 2 } }\n\
             users:\n  - { name: a, role: submitter, quotas: { max_running_jobs: 1 } }\n  - { name: b, role: admin }\n",
        )
        .unwrap();
        let users = Users::from_file(&file).unwrap();
        let a = &users.entries[0].0.quotas;
        assert_eq!((a.max_queued_jobs, a.max_running_jobs, a.max_priority), (Some(5), Some(1), Some(0)));
        let b = &users.entries[1].0.quotas;
        assert_eq!((b.max_queued_jobs, b.max_priority), (None, None));
    }

    #[test]
    fn reload_swaps_the_users_and_keeps_them_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let token = add_to_file(&path, "alice", Role::Admin).unwrap();
        let directory = Directory::open(&path).unwrap();
        assert!(directory.authenticate(token.as_bytes()).is_some());
        std::fs::write(&path, "users: [{ name: alice, role: admin, tokens: [nope] }]\n").unwrap();
        assert!(directory.reload().is_err());
        assert!(directory.authenticate(token.as_bytes()).is_some(), "a bad file must not lock everyone out");
        // Reloading an unchanged file changes nobody.
        std::fs::write(&path, "users: []\n").unwrap();
        add_to_file(&path, "alice", Role::Admin).unwrap();
        let bob = add_to_file(&path, "bob", Role::Viewer).unwrap();
        let reload = directory.reload().unwrap();
        assert_eq!(
            (reload.users, reload.added.clone(), reload.changed.clone()),
            (2, vec!["bob".into()], vec!["alice".into()])
        );
        assert!(!directory.reload().unwrap().changes_users());
        let mut file = UsersFile::read(&path).unwrap();
        file.users[1].cert_subjects = vec!["bob.example.org".into()];
        file.write(&path).unwrap();
        let reload = directory.reload().unwrap();
        assert_eq!(reload.describe(), "added [], removed [], changed [\"bob\"]");
        assert_eq!(directory.by_subject("bob.example.org").unwrap().name, "bob");
        assert!(directory.authenticate(bob.as_bytes()).is_some());
        std::fs::write(&path, "users: []\n").unwrap();
        let reload = directory.reload().unwrap();
        assert_eq!((reload.users, reload.removed), (0, vec!["alice".to_owned(), "bob".to_owned()]));
        assert!(directory.authenticate(token.as_bytes()).is_none());
        assert!(directory.by_subject("bob.example.org").is_none());
    }
}
