//! `cargo xtask check-docs`: every command in the docs works as written.
//!
//! - `docs/cli.md` is generated from the binaries' clap `--help` and must match;
//!   `--write` regenerates it.
//! - In README.md and docs/*.md, every shell block is parsed: the flags given
//!   to `scopd`, `scopctl`, `scop-worker` and `cargo xtask` must exist in that
//!   subcommand's `--help`, and the repository paths named must exist from the
//!   directory the block's `cd`s lead to. Every `--flag` in a code span of the
//!   prose must be some command's flag.
//! - Every field the tables of docs/job-spec.md name must parse as a spec
//!   field, and every YAML block that is a job spec must parse.
//! - Blocks marked ` ```sh run ` also run, in order per file, in a scratch copy
//!   of the repository (see [`scratch`]) with tiny schedules.

mod blocks;
mod cli_ref;
mod commands;
mod scratch;
mod spec_fields;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::shell;

/// Longest a runnable block may take (a tiny two-rank job under `scopd`
/// takes about a minute on two cores).
const BLOCK_LIMIT: Duration = Duration::from_secs(900);

pub fn run(write: bool) -> anyhow::Result<()> {
    let root = shell::root();
    let bin_dir = shell::debug_binaries()?;
    let mut problems = Vec::new();

    let cli = cli_ref::generate(&bin_dir)?;
    let cli_path = root.join("docs/cli.md");
    if write {
        std::fs::write(&cli_path, &cli)?;
        eprintln!("check-docs: wrote {}", cli_path.display());
    } else if std::fs::read_to_string(&cli_path).ok().as_deref() != Some(cli.as_str()) {
        problems.push(
            "docs/cli.md differs from the binaries' --help: run `cargo xtask check-docs --write`".to_owned(),
        );
    }

    let mut helps = BTreeMap::new();
    for binary in cli_ref::BINARIES {
        helps.insert(binary.to_owned(), cli_ref::all_helps(&bin_dir.join(binary))?);
    }
    helps.insert("cargo xtask".to_owned(), cli_ref::all_helps(&std::env::current_exe()?)?);
    let programs = commands::Programs::new(helps);

    let mut docs = vec![root.join("README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);

    let mut runnable = Vec::new();
    for doc in &docs {
        let name = doc.strip_prefix(&root).unwrap_or(doc).display().to_string();
        let text = std::fs::read_to_string(doc)?;
        let mut paths = commands::Paths::new(&root);
        let parsed = blocks::parse(&text);
        // Lines inside fenced blocks are not prose (docs/cli.md's help texts among them).
        let in_blocks: Vec<std::ops::RangeInclusive<usize>> =
            parsed.iter().map(|b| b.line..=b.line + b.text.lines().count() + 1).collect();
        for block in parsed {
            let at = format!("{name}:{}", block.line);
            match block.kind {
                blocks::Kind::Run | blocks::Kind::Shell => {
                    paths.note_created(&block.text);
                    for words in blocks::commands(&block.text) {
                        for problem in programs.check(&words).into_iter().chain(paths.check(&words)) {
                            problems.push(format!("{at}: {problem}"));
                        }
                    }
                    if block.kind == blocks::Kind::Run {
                        runnable.push((at, block.text.clone()));
                    }
                }
                blocks::Kind::Yaml => {
                    problems.extend(spec_fields::check_yaml_block(&block.text).map(|p| format!("{at}: {p}")));
                }
                blocks::Kind::Other => {}
            }
        }
        for (number, line) in text.lines().enumerate() {
            if in_blocks.iter().any(|r| r.contains(&(number + 1))) {
                continue;
            }
            for span in code_spans(line) {
                let words: Vec<String> = span.split_whitespace().map(str::to_owned).collect();
                let at = format!("{name}:{}", number + 1);
                match words.first().and_then(|w| w.strip_prefix("--")) {
                    Some(flag) => {
                        let flag = flag.split('=').next().unwrap_or_default();
                        if !programs.any_has(flag) {
                            problems.push(format!("{at}: no command has --{flag}"));
                        }
                    }
                    None => problems.extend(programs.check(&words).into_iter().map(|p| format!("{at}: {p}"))),
                }
            }
        }
        if name == "docs/job-spec.md" {
            let example = root.join("examples/fashion-mnist-resnet20.yaml");
            problems.extend(spec_fields::check_tables(&text, &example)?);
        }
    }
    if !problems.is_empty() {
        bail!("check-docs: {} problems:\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!(
        "check-docs: {} docs parsed, docs/cli.md up to date; running {} blocks",
        docs.len(),
        runnable.len()
    );

    let scratch = scratch::Scratch::new(&bin_dir)?;
    for (at, script) in runnable {
        scratch.run(&at, &script, BLOCK_LIMIT)?;
    }
    eprintln!("check-docs: all checks passed");
    Ok(())
}

/// The code spans of a prose line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).filter(|s| !s.trim().is_empty()).collect()
}
