//! The Dockerfiles against the repository and its cargo targets, without a
//! Docker engine: every `COPY` source exists and is in the build context, the
//! `cargo build` lines name real packages, binaries and features, and the
//! `ENTRYPOINT` is a binary the build stage produced.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

/// What the manifests are checked against.
#[derive(Debug)]
pub struct ImageFacts {
    pub entrypoint: String,
    pub uid: u64,
    pub exposed: Vec<u64>,
}

/// Cargo's view of the workspace: package → (bin targets, features).
pub type Packages = BTreeMap<String, (Vec<String>, Vec<String>)>;

#[derive(Debug, Default)]
struct Stage {
    name: String,
    args: BTreeMap<String, String>,
    /// (flags, sources, destination)
    copies: Vec<(Vec<String>, Vec<String>, String)>,
    runs: Vec<String>,
    entrypoint: Option<String>,
    user: Option<String>,
    exposed: Vec<String>,
}

pub fn check(root: &Path, file: &str, packages: &Packages) -> anyhow::Result<ImageFacts> {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {file}"))?;
    let ignore_file = format!("{file}.dockerignore");
    let ignore = std::fs::read_to_string(root.join(&ignore_file))
        .with_context(|| format!("cannot read {ignore_file}"))?;
    let stages = parse(&text).with_context(|| file.to_owned())?;
    let mut built: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for stage in &stages {
        for run in &stage.runs {
            let bins = cargo_build(&expand(run, &stage.args), packages)
                .with_context(|| format!("{file}: stage {}", stage.name))?;
            built.entry(stage.name.clone()).or_default().extend(bins);
        }
        for (flags, sources, _) in &stage.copies {
            match flags.iter().find_map(|f| f.strip_prefix("--from=")) {
                None => {
                    for source in sources {
                        if !root.join(source).exists() {
                            bail!("{file}: COPY {source}: no such path in the repository");
                        }
                        if !included(&ignore, source)? {
                            bail!("{file}: COPY {source}: excluded from the build context by {ignore_file}");
                        }
                    }
                }
                Some(from) => {
                    if !stages.iter().any(|s| s.name == from) {
                        bail!("{file}: COPY --from={from}: no such stage");
                    }
                    for source in sources.iter().filter(|s| s.starts_with("/out/")) {
                        let bin = source.trim_start_matches("/out/");
                        if !built.get(from).is_some_and(|b| b.iter().any(|x| x == bin)) {
                            bail!(
                                "{file}: COPY --from={from} {source}: stage {from} builds {:?}",
                                built.get(from)
                            );
                        }
                    }
                }
            }
        }
    }
    let last = stages.last().context(format!("{file}: no FROM"))?;
    let entrypoint =
        last.entrypoint.clone().context(format!("{file}: the final stage has no exec-form ENTRYPOINT"))?;
    let binary = entrypoint.rsplit('/').next().unwrap_or_default();
    let from_build = last.copies.iter().any(|(flags, sources, dest)| {
        flags.iter().any(|f| f.starts_with("--from="))
            && sources.iter().any(|s| s.ends_with(&format!("/{binary}")))
            && (*dest == entrypoint || dest.ends_with('/') && format!("{dest}{binary}") == entrypoint)
    });
    let is_bin = packages.values().any(|(bins, _)| bins.iter().any(|b| b == binary));
    if !from_build || !is_bin {
        bail!(
            "{file}: ENTRYPOINT {entrypoint} is not a cargo binary the final stage copies from a build stage"
        );
    }
    let user = last.user.clone().context(format!("{file}: the final stage sets no USER"))?;
    let uid: u64 =
        user.split(':').next().unwrap_or_default().parse().ok().filter(|u| *u != 0).with_context(|| {
            format!(
                "{file}: USER {user} must be a numeric non-root uid (so Kubernetes can check runAsNonRoot)"
            )
        })?;
    let exposed = last.exposed.iter().map(|p| p.trim_end_matches("/tcp").parse().unwrap_or(0)).collect();
    Ok(ImageFacts { entrypoint, uid, exposed })
}

/// The default of an `ARG` in any stage of the Dockerfile, or before the first FROM.
pub fn arg_default(root: &Path, file: &str, name: &str) -> anyhow::Result<Option<String>> {
    let text = std::fs::read_to_string(root.join(file)).with_context(|| format!("cannot read {file}"))?;
    Ok(instructions(&text).filter(|(keyword, _)| keyword == "ARG").find_map(|(_, rest)| {
        rest.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v.trim_matches('"').to_owned())
    }))
}

/// Instructions with line continuations joined and comments dropped.
fn instructions(text: &str) -> impl Iterator<Item = (String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined.into_iter().filter(|l| !l.trim().is_empty()).map(|line| {
        let (keyword, rest) = line.trim().split_once(char::is_whitespace).unwrap_or((line.trim(), ""));
        (keyword.to_uppercase(), rest.trim().to_owned())
    })
}

fn parse(text: &str) -> anyhow::Result<Vec<Stage>> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut global = BTreeMap::new();
    for (keyword, rest) in instructions(text) {
        let words: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        if keyword == "FROM" {
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.clone(),
                _ => format!("stage {}", stages.len()),
            };
            stages.push(Stage { name, args: global.clone(), ..Stage::default() });
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            if keyword == "ARG" {
                let (name, value) = rest.split_once('=').unwrap_or((&rest, ""));
                global.insert(name.to_owned(), value.trim_matches('"').to_owned());
                continue;
            }
            bail!("{keyword} before the first FROM");
        };
        match keyword.as_str() {
            "ARG" => {
                if let Some((name, value)) = rest.split_once('=') {
                    stage.args.insert(name.to_owned(), value.trim_matches('"').to_owned());
                }
            }
            "COPY" | "ADD" => {
                let (flags, paths): (Vec<String>, Vec<String>) =
                    words.into_iter().partition(|w| w.starts_with("--"));
                let Some((dest, sources)) = paths.split_last() else {
                    bail!("{keyword} {rest}: no destination")
                };
                stage.copies.push((flags, sources.to_vec(), dest.clone()));
            }
            "RUN" => stage.runs.push(rest),
            "USER" => stage.user = Some(rest),
            "EXPOSE" => stage.exposed.extend(words),
            "ENTRYPOINT" => {
                let form: Vec<String> = serde_json::from_str(&rest)
                    .with_context(|| format!("ENTRYPOINT {rest}: not the exec (JSON) form"))?;
                stage.entrypoint = form.first().cloned();
            }
            _ => {}
        }
    }
    Ok(stages)
}

/// `${NAME}` and `$NAME` replaced by the ARG defaults.
fn expand(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in args {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    out
}

/// The binaries a `cargo build` in `run` produces; its packages, binaries and
/// features must exist, and it must be `--release --locked`.
fn cargo_build(run: &str, packages: &Packages) -> anyhow::Result<Vec<String>> {
    let Some(start) = run.find("cargo build") else { return Ok(Vec::new()) };
    let command = run[start..].split("&&").next().unwrap_or_default();
    let words: Vec<&str> = command.split_whitespace().map(|w| w.trim_matches('"')).collect();
    let value_of = |flag: &str| words.windows(2).filter(|w| w[0] == flag).map(|w| w[1]).collect::<Vec<_>>();
    for required in ["--release", "--locked"] {
        if !words.contains(&required) {
            bail!("`{}` must use {required}", command.trim());
        }
    }
    let mut bins = Vec::new();
    let chosen = value_of("-p");
    for package in &chosen {
        let (targets, _) = packages
            .get(*package)
            .with_context(|| format!("cargo build -p {package}: no such workspace package"))?;
        bins.extend(targets.iter().cloned());
    }
    let features: Vec<&str> =
        value_of("--features").iter().flat_map(|f| f.split([',', ' '])).filter(|f| !f.is_empty()).collect();
    for feature in features {
        if !chosen.iter().any(|p| packages[*p].1.iter().any(|f| f == feature)) {
            bail!("cargo build --features {feature}: none of {chosen:?} has that feature");
        }
    }
    let named = value_of("--bin");
    for bin in &named {
        if !bins.iter().any(|b| b == bin) {
            bail!("cargo build --bin {bin}: not a binary of {chosen:?} (they have {bins:?})");
        }
    }
    Ok(if named.is_empty() { bins } else { named.iter().map(|b| (*b).to_owned()).collect() })
}

/// Whether `path` is in the build context under `.dockerignore` rules of the
/// forms `*`, `name` and `!name` (last match wins); other patterns are refused
/// rather than guessed at.
fn included(ignore: &str, path: &str) -> anyhow::Result<bool> {
    let mut keep = true;
    for pattern in ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (negated, body) = pattern.strip_prefix('!').map_or((false, pattern), |b| (true, b));
        let body = body.trim_end_matches('/');
        let matches = if body == "*" {
            true
        } else if body.contains(['*', '?', '[']) {
            bail!(".dockerignore pattern {pattern:?} is not supported by this check");
        } else {
            super::pod::under(path.trim_end_matches('/'), body)
        };
        if matches {
            keep = negated;
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_rules_take_the_last_match() {
        let ignore = "# only sources\n*\n!Cargo.toml\n!server\nserver/target\n";
        for (path, expected) in [
            ("Cargo.toml", true),
            ("server", true),
            ("server/src/main.rs", true),
            ("server/target", false),
            ("target", false),
        ] {
            assert_eq!(included(ignore, path).unwrap(), expected, "{path}");
        }
        assert!(included("**/*.rs\n", "a.rs").unwrap_err().to_string().contains("not supported"));
    }

    #[test]
    fn cargo_builds_name_real_packages_bins_and_features() {
        let packages: Packages =
            [("scop-worker".to_owned(), (vec!["scop-worker".to_owned()], vec!["nccl".to_owned()]))].into();
        let check = |run: &str| cargo_build(run, &packages).map_err(|e| e.to_string());
        let ok = "cargo build --release --locked -p scop-worker --bin scop-worker --features \"nccl\" && install x";
        assert_eq!(check(ok), Ok(vec!["scop-worker".to_owned()]));
        assert_eq!(
            check("cargo build --release --locked -p scop-worker --features \"\""),
            Ok(vec!["scop-worker".to_owned()])
        );
        assert!(
            check("cargo build --release --locked -p scop-wrker")
                .unwrap_err()
                .contains("no such workspace package")
        );
        assert!(
            check("cargo build --release --locked -p scop-worker --features cuda")
                .unwrap_err()
                .contains("cuda")
        );
        assert!(check("cargo build --release -p scop-worker").unwrap_err().contains("--locked"));
        assert!(
            check("cargo build --release --locked -p scop-worker --bin scopd")
                .unwrap_err()
                .contains("--bin scopd")
        );
    }

    #[test]
    fn stages_arguments_and_continuations() {
        let text = "ARG BASE=debian\nFROM ${BASE} AS build\nARG F=nccl\nRUN cargo build \\\n  --features ${F}\n# note\nFROM x\nCOPY --from=build /out/a /usr/local/bin/a\nUSER 10001:10001\nENTRYPOINT [\"/usr/local/bin/a\"]\n";
        let stages = parse(text).unwrap();
        assert_eq!(stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["build", "stage 1"]);
        assert_eq!(expand(&stages[0].runs[0], &stages[0].args), "cargo build --features nccl");
        assert_eq!(stages[1].entrypoint.as_deref(), Some("/usr/local/bin/a"));
        assert_eq!(
            stages[1].copies[0],
            (vec!["--from=build".to_owned()], vec!["/out/a".to_owned()], "/usr/local/bin/a".to_owned())
        );
    }
}
