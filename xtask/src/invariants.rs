//! `cargo xtask check-architecture`: the invariants of ARCHITECTURE.md that a
//! text scan can prove.
//!
//! - Stage names and job-directory file names are written only in `scop-core`
//!   (`stage.rs`, `job_dir.rs`); everyone else uses `Stage` and `JobDir`.
//! - One orchestration: the stage sequence (a list of `Stage::` variants), the
//!   summary table's style and the rendezvous records are written only in
//!   `scop-core` (`StagePlan`, `summary::JobSummary`, `rendezvous::group`); the
//!   coordinator, `scop-worker run` and `scopctl` call them. Two diagnostics
//!   that connect a lone rank by hand ([`HAND_BUILT_RECORDS`]) are the exception.
//! - The coordinator's inside (`scheduler/`, `domain/`, `store/`, `users/`, the
//!   artifact store and liveness) knows no protocol: no `pb::` type, no
//!   `scop_proto`, no `tonic`, tests included. The scheduler sends domain
//!   commands; `server/src/api/` converts at the edge.
//!
//! Only library and binary code is scanned: a file's `#[cfg(test)]` module (by
//! convention its last item, or its own `tests.rs`), `tests/` and `benches/` may spell names out, since
//! there they are the expected values.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The stage names, as `scop_core::stage::Stage::as_str` writes them.
const STAGE_NAMES: [&str; 6] = ["pretrain", "knockoff", "score", "decide", "finetune", "export"];

/// The file names of a job's directory, as `scop_core::job_dir` writes them.
const JOB_DIR_FILES: [&str; 11] = [
    "metrics.jsonl",
    "plan.json",
    "statistics.jsonl",
    "metrics.json",
    "model.safetensors",
    "arch.json",
    "model.pt",
    "model-card.json",
    "checkpoints",
    "summary.json",
    "job-spec.json",
];

/// Diagnostics that build a rendezvous record by hand for a rank they connect
/// themselves (a benchmark, `check-nccl`); no job runs through them.
const HAND_BUILT_RECORDS: [&str; 2] = ["worker/src/collective/bench.rs", "worker/src/commands/nccl_check.rs"];

/// Where protocol types must not appear (folders and files), and the words that
/// would bring them in.
const PROTOCOL_FREE: [&str; 7] = [
    "server/src/scheduler",
    "server/src/domain",
    "server/src/store",
    "server/src/users",
    "server/src/users.rs",
    "server/src/artifacts.rs",
    "server/src/liveness.rs",
];
const PROTOCOL_WORDS: [&str; 3] = ["pb::", "scop_proto", "tonic"];

/// The crates that must take the vocabulary from `scop-core` (which writes it,
/// and whose spec validation names the `pretrain` and `finetune` sections).
const CRATES: [&str; 5] = ["connect", "server", "agent", "worker", "client"];

pub fn run() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut problems = Vec::new();
    for krate in CRATES {
        for file in rust_files(&root.join(krate).join("src"))? {
            let relative = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            problems.extend(check_file(&relative, &text));
        }
    }
    for place in PROTOCOL_FREE {
        for file in rust_files(&root.join(place))? {
            let relative = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            problems.extend(check_protocol_free(&relative, &text));
        }
    }
    if !problems.is_empty() {
        bail!("architecture check failed ({} findings):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!(
        "check-architecture: stage and job-directory file names, the stage sequence, the summary table \
         and rendezvous records are written only in core; no protocol type in {}",
        PROTOCOL_FREE.join(", ")
    );
    Ok(())
}

/// The findings in one file, each as `path:line: what`.
fn check_file(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    // A test module in its own file (`mod tests;` behind `#[cfg(test)]`).
    if path.ends_with("/tests.rs") {
        return found;
    }
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let at = |what: String| format!("{path}:{}: {what}", index + 1);
        for literal in string_literals(code) {
            if STAGE_NAMES.contains(&literal) {
                found.push(at(format!("stage name \"{literal}\" (use scop_core::stage::Stage)")));
            }
            if JOB_DIR_FILES.contains(&literal) {
                found.push(at(format!("job-directory file name \"{literal}\" (use scop_core::job_dir)")));
            }
        }
        if code.contains("[Stage::") {
            found.push(at("a stage sequence (use scop_core::stage::StagePlan)".to_owned()));
        }
        if contains_word(code, "ASCII_MARKDOWN") {
            found.push(at(
                "the summary table's style (use scop_core::summary::JobSummary::render)".to_owned()
            ));
        }
        if builds_record(code) && !HAND_BUILT_RECORDS.contains(&path) {
            found.push(at("a rendezvous record built by hand (use scop_core::rendezvous::group)".to_owned()));
        }
    }
    found
}

/// Whether `code` constructs a record's transport (`BackendRendezvous::Tcp {
/// peers: ... }`, or one whose fields follow on the next lines) rather than
/// matching on one (`BackendRendezvous::Tcp { peers, .. }`).
fn builds_record(code: &str) -> bool {
    ["BackendRendezvous::Tcp {", "BackendRendezvous::Nccl {"].iter().any(|open| {
        code.match_indices(open).any(|(at, _)| {
            let rest = code[at + open.len()..].trim();
            rest.is_empty() || (rest.contains(':') && !rest.contains(".."))
        })
    })
}

/// The lines of a protocol-free file that name the protocol, comments aside.
fn check_protocol_free(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for word in PROTOCOL_WORDS {
            if contains_word(code, word) {
                found.push(format!(
                    "{path}:{}: protocol type `{word}` inside the coordinator (use domain types, \
                     such as the scheduler's WorkerCommand; server/src/api/ converts)",
                    index + 1
                ));
            }
        }
    }
    found
}

/// Whether `word` starts an identifier in `code` (so `tonic` is found in
/// `use tonic::Status` but not in `monotonic`).
fn contains_word(code: &str, word: &str) -> bool {
    code.match_indices(word)
        .any(|(at, _)| !code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'))
}

/// The contents of the plain string literals on one line (no raw strings, no escapes).
fn string_literals(code: &str) -> Vec<&str> {
    let mut literals = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        literals.push(&after[..end]);
        rest = &after[end + 1..];
    }
    literals
}

/// The `.rs` files under `dir`, sorted; `dir` itself when it is a file.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, text: &str, expected: &[&str]) {
        assert_eq!(check_file(path, text), expected, "{path}");
    }

    #[test]
    fn names_outside_core_are_found_and_tests_are_skipped() {
        check(
            "worker/src/run.rs",
            "let a = dir.join(\"plan.json\");\nlet s = \"knockoff\"; // \"export\" in a comment\n",
            &[
                "worker/src/run.rs:1: job-directory file name \"plan.json\" (use scop_core::job_dir)",
                "worker/src/run.rs:2: stage name \"knockoff\" (use scop_core::stage::Stage)",
            ],
        );
        check(
            "worker/src/run.rs",
            "let a = 1;\n#[cfg(test)]\nmod tests { const S: &str = \"export\"; }\n",
            &[],
        );
        check("client/src/x.rs", "format!(\"{}/exported\", \"knock\")\n", &[]);
    }

    #[test]
    fn orchestration_written_outside_core_is_found() {
        let text = "let line = [Stage::Knockoff, Stage::Decide];\n\
                    table.load_style(ASCII_MARKDOWN);\n\
                    let b = BackendRendezvous::Tcp { peers: p, listen: None };\n\
                    let n = BackendRendezvous::Nccl {\n\
                    if let BackendRendezvous::Tcp { listen: slot, .. } = &mut r.backend {}\n\
                    match b { BackendRendezvous::Nccl { device, .. } => {} }\n";
        check(
            "worker/src/run.rs",
            text,
            &[
                "worker/src/run.rs:1: a stage sequence (use scop_core::stage::StagePlan)",
                "worker/src/run.rs:2: the summary table's style (use scop_core::summary::JobSummary::render)",
                "worker/src/run.rs:3: a rendezvous record built by hand (use scop_core::rendezvous::group)",
                "worker/src/run.rs:4: a rendezvous record built by hand (use scop_core::rendezvous::group)",
            ],
        );
        check("server/src/store/tests.rs", "for s in [Stage::Knockoff, Stage::Decide] {}\n", &[]);
        let diagnostic = "let b = BackendRendezvous::Tcp { peers: p, listen: None };\n";
        check("worker/src/commands/nccl_check.rs", diagnostic, &[]);
    }

    #[test]
    fn protocol_types_in_the_scheduler_are_found_even_in_tests() {
        let text = "use crate::domain::WorkerCommand; // not pb:: here\n#[cfg(test)]\nfn t() { let _ = pb::CancelTask::default(); }\nuse tonic::Status;\n";
        let found = check_protocol_free("server/src/scheduler/x.rs", text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("server/src/scheduler/x.rs:3: protocol type `pb::`"), "{found:?}");
        assert!(found[1].starts_with("server/src/scheduler/x.rs:4: protocol type `tonic`"), "{found:?}");
        let clean =
            "let c = WorkerCommand::Cancel;\nlet t = Instant::now(); // monotonic\nlet monotonic = 1;\n";
        assert_eq!(check_protocol_free("server/src/scheduler/x.rs", clean), Vec::<String>::new());
    }

    #[test]
    fn the_coordinator_inside_is_protocol_free_today() {
        for place in PROTOCOL_FREE {
            let files = rust_files(&workspace_root().join(place)).unwrap();
            assert!(!files.is_empty(), "{place} has no Rust file: the list is out of date");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                assert_eq!(check_protocol_free(&file.display().to_string(), &text), Vec::<String>::new());
            }
        }
    }

    #[test]
    fn the_lists_match_what_core_writes() {
        let stage = std::fs::read_to_string(workspace_root().join("core/src/stage.rs")).unwrap();
        for name in STAGE_NAMES {
            assert!(stage.contains(&format!("=> \"{name}\"")), "{name} is not a stage name in core");
        }
        let job_dir = std::fs::read_to_string(workspace_root().join("core/src/job_dir.rs")).unwrap();
        for name in JOB_DIR_FILES {
            assert!(job_dir.contains(&format!(": &str = \"{name}\";")), "{name} is not a constant of JobDir");
        }
    }
}
