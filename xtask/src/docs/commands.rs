//! Commands in the docs against the code: each flag of `scopd`, `scopctl`,
//! `scop-worker` and `cargo xtask` must exist in the `--help` of the
//! subcommand it is given to (or of one above it), and each repository path a
//! command names (`examples/…`, `deploy/…`, `docs/…`) must exist relative to
//! the directory the doc's earlier `cd`s leave it in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::deploy::help::Help;

/// The parsed help of every command path of every checked program.
pub struct Programs {
    /// Program name → command path → help.
    helps: BTreeMap<String, BTreeMap<Vec<String>, Help>>,
}

impl Programs {
    pub fn new(helps: BTreeMap<String, Vec<(Vec<String>, Help)>>) -> Self {
        Self { helps: helps.into_iter().map(|(name, all)| (name, all.into_iter().collect())).collect() }
    }

    /// Whether some command of some program has `--long`.
    pub fn any_has(&self, long: &str) -> bool {
        self.helps.values().flat_map(BTreeMap::values).any(|h| h.option(long).is_some())
    }

    /// Problems with one command's flags; empty when it is not one of ours.
    pub fn check(&self, words: &[String]) -> Vec<String> {
        let Some((program, args)) = ours(words) else { return Vec::new() };
        let Some(helps) = self.helps.get(&program) else { return Vec::new() };
        let mut problems = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut positional_seen = false;
        let mut args = args.iter();
        while let Some(word) = args.next() {
            if word == "--" || word == "…" || word == "..." {
                break; // the rest is the program's own, or left out of the doc
            }
            if let Some(flag) = word.strip_prefix("--") {
                let (long, inline_value) = match flag.split_once('=') {
                    Some((long, _)) => (long, true),
                    None => (flag, false),
                };
                let found = (0..=path.len()).rev().find_map(|n| helps.get(&path[..n])?.option(long));
                match found {
                    Some(opt) if opt.takes_value && !inline_value => drop(args.next()),
                    Some(_) => {}
                    None => {
                        problems.push(format!(
                            "`{program}{}` has no --{long}",
                            path.iter().map(|p| format!(" {p}")).collect::<String>()
                        ));
                        // Whether it took a value is unknown: stop looking for subcommands.
                        positional_seen = true;
                    }
                }
            } else if !word.starts_with('-') && !positional_seen {
                let here = helps.get(&path[..]).map(|h| h.subcommands.contains(word)).unwrap_or(false);
                if here {
                    path.push(word.clone());
                } else if helps.get(&path[..]).is_some_and(|h| !h.subcommands.is_empty()) {
                    problems.push(format!(
                        "`{program}` has no subcommand `{}`",
                        [&path[..], std::slice::from_ref(word)].concat().join(" ")
                    ));
                    positional_seen = true;
                } else {
                    positional_seen = true;
                }
            }
        }
        problems
    }
}

/// `scopctl get jobs` → (`scopctl`, [get, jobs]); `cargo xtask demo --quick` →
/// (`cargo xtask`, …); `cargo run --release --bin scop-worker -- run x` →
/// (`scop-worker`, [run, x]).
fn ours(words: &[String]) -> Option<(String, Vec<String>)> {
    let first = words.first()?;
    match first.as_str() {
        "scopd" | "scopctl" | "scop-worker" => Some((first.clone(), words[1..].to_vec())),
        "cargo" if words.get(1).map(String::as_str) == Some("xtask") => {
            Some(("cargo xtask".to_owned(), words[2..].to_vec()))
        }
        "cargo" if words.get(1).map(String::as_str) == Some("run") => {
            let bin = words.iter().position(|w| w == "--bin").and_then(|i| words.get(i + 1))?;
            let rest = words.iter().position(|w| w == "--").map_or(Vec::new(), |i| words[i + 1..].to_vec());
            Some((bin.clone(), rest))
        }
        _ => None,
    }
}

/// Follows the `cd`s of a block and checks the repository paths it names.
pub struct Paths<'a> {
    root: &'a Path,
    cwd: PathBuf,
    /// Files an earlier command of the doc writes (`> FILE`): later ones may name them.
    created: Vec<PathBuf>,
}

impl<'a> Paths<'a> {
    pub fn new(root: &'a Path) -> Self {
        Self { root, cwd: root.to_path_buf(), created: Vec::new() }
    }

    /// Notes the files a block writes: its redirections' targets, and the users
    /// file that `scopd user add --users FILE` creates when it is missing.
    pub fn note_created(&mut self, script: &str) {
        for line in script.lines() {
            let adds_a_user = line.contains("scopd user add");
            let mut words = line.split_whitespace().peekable();
            while let Some(word) = words.next() {
                let writes = matches!(word, ">" | ">>") || (adds_a_user && word == "--users");
                if writes && let Some(target) = words.peek() {
                    self.created.push(self.cwd.join(target));
                }
            }
        }
    }

    /// Problems with the paths of one command.
    pub fn check(&mut self, words: &[String]) -> Vec<String> {
        if words.first().map(String::as_str) == Some("cd") {
            match words.get(1) {
                Some(dir) if !dir.contains('$') && !dir.starts_with('~') => {
                    let next = self.cwd.join(dir);
                    if !next.is_dir() {
                        return vec![format!("`cd {dir}`: no such directory from {}", self.shown(&self.cwd))];
                    }
                    self.cwd = next;
                }
                _ => self.cwd = self.root.to_path_buf(),
            }
            return Vec::new();
        }
        let mut problems = Vec::new();
        for word in words.iter().skip(1) {
            let word = word.split_once('=').map_or(word.as_str(), |(_, v)| v);
            let repo_path = ["examples/", "deploy/", "docs/", "scripts/", "xtask/"]
                .iter()
                .any(|prefix| word.starts_with(prefix) || word.starts_with(&format!("../{prefix}")));
            let path = self.cwd.join(word);
            if repo_path && !word.contains(['$', '<', '*']) && !path.exists() && !self.created.contains(&path)
            {
                problems.push(format!("{word}: no such file (from {})", self.shown(&self.cwd)));
            }
        }
        problems
    }

    fn shown(&self, dir: &Path) -> String {
        match dir.strip_prefix(self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => "the repository root".to_owned(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => dir.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::help::parse;

    fn programs() -> Programs {
        let scopd = parse(
            "Usage: scopd [OPTIONS]\n\nCommands:\n  standalone  One machine\n  help  Print\n\nOptions:\n      --data-dir <DATA_DIR>\n          Where\n",
        );
        let standalone = parse(
            "Usage: scopd standalone [OPTIONS]\n\nOptions:\n      --workers <WORKERS>\n          How many\n      --cpu\n          CPU slots\n",
        );
        let mut helps = BTreeMap::new();
        helps.insert("scopd".to_owned(), vec![(vec![], scopd), (vec!["standalone".to_owned()], standalone)]);
        Programs::new(helps)
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_are_looked_up_where_they_are_given() {
        let programs = programs();
        assert!(programs.check(&words("scopd standalone --workers 2 --cpu")).is_empty());
        assert!(programs.check(&words("scopd standalone --data-dir x")).is_empty(), "a parent's flag");
        assert_eq!(programs.check(&words("scopd --workers 2")), ["`scopd` has no --workers"]);
        assert_eq!(programs.check(&words("scopd standalone --gpus=2")), ["`scopd standalone` has no --gpus"]);
        assert_eq!(programs.check(&words("scopd cluster")), ["`scopd` has no subcommand `cluster`"]);
        assert!(programs.check(&words("kubectl --anything")).is_empty(), "not ours");
        assert!(programs.any_has("cpu") && !programs.any_has("gpus"));
    }

    #[test]
    fn paths_follow_cd() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut paths = Paths::new(root);
        assert!(paths.check(&words("scopctl submit examples/fashion-mnist-resnet20.yaml")).is_empty());
        assert_eq!(
            paths.check(&words("cat examples/nope.yaml")),
            ["examples/nope.yaml: no such file (from the repository root)"]
        );
        assert!(paths.check(&words("cd deploy")).is_empty());
        assert_eq!(
            paths.check(&words("kubectl apply -f deploy/k8s")),
            ["deploy/k8s: no such file (from deploy)"]
        );
    }
}
