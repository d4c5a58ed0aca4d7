//! What a binary accepts, read from its clap `--help`: long options, the
//! environment variable and default of each, the required ones, subcommands.
//!
//! The manifests are checked against this, not against a copy of the flag
//! list, so a renamed flag or variable fails the check the day it changes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::shell;

/// One `--long` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub long: String,
    /// Whether it takes a value (`--name <VALUE>`) or is a switch.
    pub takes_value: bool,
    pub env: Option<String>,
    pub default: Option<String>,
}

/// The parsed help of one command.
#[derive(Debug, Clone, Default)]
pub struct Help {
    /// What was run, for error messages (`scop-worker agent --help`).
    pub command: String,
    pub options: Vec<Opt>,
    /// Options the usage line lists outside `[OPTIONS]`.
    pub required: Vec<String>,
    pub subcommands: Vec<String>,
}

impl Help {
    /// Runs `binary args… --help` and parses what it prints.
    pub fn of(binary: &Path, args: &[&str]) -> anyhow::Result<Help> {
        let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let command = [name.as_str()].iter().chain(args).copied().collect::<Vec<_>>().join(" ") + " --help";
        let text = shell::output(Command::new(binary).args(args).arg("--help"))
            .with_context(|| format!("cannot read `{command}`"))?;
        let mut help = parse(&text);
        if help.options.is_empty() {
            bail!("`{command}` lists no options; has its format changed?\n{text}");
        }
        help.command = command;
        Ok(help)
    }

    pub fn option(&self, long: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.long == long)
    }

    /// The option read from environment variable `env`.
    pub fn option_for_env(&self, env: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.env.as_deref() == Some(env))
    }

    /// Every environment variable the command reads, for error messages.
    pub fn envs(&self) -> Vec<&str> {
        self.options.iter().filter_map(|o| o.env.as_deref()).collect()
    }
}

/// Parses clap's long help (`--help`: each option on its own line, its text
/// indented below it, ending in `[default: …]` and `[env: NAME=]`).
pub fn parse(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(usage) = trimmed.strip_prefix("Usage:") {
            help.required.extend(required_in_usage(usage));
        } else if !line.starts_with(' ') && trimmed.ends_with(':') {
            section = trimmed.trim_end_matches(':');
        } else if section == "Commands" && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(name) = trimmed.split_whitespace().next().filter(|n| *n != "help") {
                help.subcommands.push(name.to_owned());
            }
        } else if !matches!(section, "" | "Commands" | "Arguments") {
            // "Options", and any heading of their own (scopctl's "Connection").
            if let Some(opt) = option_line(trimmed) {
                help.options.push(opt);
            } else if let Some(last) = help.options.last_mut() {
                last.env = last
                    .env
                    .take()
                    .or_else(|| bracketed(trimmed, "env: ").map(|e| e.trim_end_matches('=').to_owned()));
                last.default = last.default.take().or_else(|| bracketed(trimmed, "default: "));
            }
        }
    }
    help
}

/// `-h, --help` or `--slots <SLOTS>` (an option's own line).
fn option_line(line: &str) -> Option<Opt> {
    let rest = match line.strip_prefix('-') {
        Some(short) if !short.starts_with('-') => short.split_once(", ")?.1,
        _ => line,
    };
    let rest = rest.strip_prefix("--")?;
    let (long, value) = match rest.split_once(' ') {
        Some((long, value)) => (long, value.trim()),
        None => (rest, ""),
    };
    Some(Opt {
        long: long.to_owned(),
        takes_value: value.starts_with('<'),
        env: bracketed(value, "env: ").map(|e| e.trim_end_matches('=').to_owned()),
        default: bracketed(value, "default: "),
    })
}

/// The text of `[<tag>…]` in `line`, if any.
fn bracketed(line: &str, tag: &str) -> Option<String> {
    let start = line.find(&format!("[{tag}"))? + 1 + tag.len();
    let end = line[start..].find(']')? + start;
    Some(line[start..end].to_owned())
}

/// `--coordinator` and `--token-file` in `scop-worker agent [OPTIONS] --coordinator <C> --token-file <T>`.
fn required_in_usage(usage: &str) -> Vec<String> {
    usage.split_whitespace().filter_map(|word| word.strip_prefix("--")).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "\
Serve a coordinator

Usage: scop-worker agent [OPTIONS] --coordinator <COORDINATOR> --token-file <TOKEN_FILE>

Options:
      --coordinator <COORDINATOR>
          The coordinator's worker port, `host:port` or `http://host:port` [env: SCOP_COORDINATOR=]
      --slots <SLOTS>
          CPU slots to offer [env: SCOP_SLOTS=] [default: 1]
      --cpu
          Offer CPU slots even when CUDA GPUs are present [env: SCOP_CPU_ONLY=]
      --worker-bin <WORKER_BIN>
          The executable run for each rank (default: this one)
  -h, --help
          Print help
";

    const SCOPD: &str = "\
The scop coordinator.

Usage: scopd [OPTIONS]
       scopd <COMMAND>

Commands:
  standalone  Run the coordinator plus local worker agents: the default for one machine
  help        Print this message or the help of the given subcommand(s)

Options:
      --public-addr <PUBLIC_ADDR>
          Public gRPC API address [default: 127.0.0.1:7070] [env: SCOP_PUBLIC_ADDR=]
  -V, --version
          Print version
";

    fn check(text: &str, long: &str, expected: Option<(bool, Option<&str>, Option<&str>)>) {
        let help = parse(text);
        let found = help.option(long).map(|o| (o.takes_value, o.env.as_deref(), o.default.as_deref()));
        assert_eq!(found, expected, "--{long} in {:?}", help.options);
    }

    #[test]
    fn options_envs_and_defaults() {
        check(AGENT, "coordinator", Some((true, Some("SCOP_COORDINATOR"), None)));
        check(AGENT, "slots", Some((true, Some("SCOP_SLOTS"), Some("1"))));
        check(AGENT, "cpu", Some((false, Some("SCOP_CPU_ONLY"), None)));
        check(AGENT, "worker-bin", Some((true, None, None)));
        check(AGENT, "help", Some((false, None, None)));
        check(AGENT, "threads", None);
        check(SCOPD, "public-addr", Some((true, Some("SCOP_PUBLIC_ADDR"), Some("127.0.0.1:7070"))));
        check(SCOPD, "version", Some((false, None, None)));
    }

    #[test]
    fn required_options_and_subcommands() {
        let agent = parse(AGENT);
        assert_eq!(agent.required, ["coordinator", "token-file"]);
        assert!(agent.subcommands.is_empty());
        assert_eq!(agent.option_for_env("SCOP_CPU_ONLY").map(|o| o.long.as_str()), Some("cpu"));
        let scopd = parse(SCOPD);
        assert!(scopd.required.is_empty());
        assert_eq!(scopd.subcommands, ["standalone"]);
    }
}
