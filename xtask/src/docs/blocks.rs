//! The fenced code blocks of a Markdown file, with how each is meant to be used.
//!
//! A shell block's info string says what `cargo xtask check-docs` does with it:
//! ` ```sh run ` blocks run here (in a scratch copy of the repository, from its
//! root); ` ```sh ` blocks, meant for a cluster, a GPU machine or a second
//! terminal, are only parsed: every command's flags must exist in its `--help`
//! and every repository path it names must exist.

/// What a block is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A shell block that runs here.
    Run,
    /// A shell block that is only parsed.
    Shell,
    /// A YAML block.
    Yaml,
    /// Anything else (output, plain text).
    Other,
}

/// One fenced block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: Kind,
    /// 1-based line of the opening fence, for messages.
    pub line: usize,
    pub text: String,
}

/// The fenced blocks of `markdown` in order.
pub fn parse(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(Kind, usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some((kind(info.trim()), index + 1, String::new())),
            (Some(_), Some(_)) => {
                let (kind, line, text) = open.take().expect("an open block");
                blocks.push(Block { kind, line, text });
            }
            (Some((_, _, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

fn kind(info: &str) -> Kind {
    let mut words = info.split_whitespace();
    match (words.next(), words.next()) {
        (Some("sh" | "bash" | "shell"), Some("run")) => Kind::Run,
        (Some("sh" | "bash" | "shell"), _) => Kind::Shell,
        (Some("yaml" | "yml"), _) => Kind::Yaml,
        _ => Kind::Other,
    }
}

/// The commands of a shell block: comments dropped, `\` continuations joined,
/// split at `&&`, `;`, `|` and `&`, each as its words (quotes removed).
pub fn commands(script: &str) -> Vec<Vec<String>> {
    let mut joined = String::new();
    for line in script.lines() {
        let line = strip_comment(line);
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
            }
            None => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    let mut commands = Vec::new();
    for line in joined.lines() {
        for part in line.split(['|', ';', '&']) {
            let words = words(part);
            if !words.is_empty() {
                commands.push(words);
            }
        }
    }
    commands
}

/// `line` without a `# comment` (a `#` that starts a word, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut quote, mut previous) = (None, ' ');
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

/// Words of one command, quotes removed; redirections and their targets dropped.
fn words(part: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quote, mut any) = (String::new(), None, false);
    for c in part.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), _) if q == c => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            _ => (word, any) = (word + &c.to_string(), true),
        }
    }
    if any {
        words.push(word);
    }
    // `JOB=$(scopctl submit x.yaml)`: the command inside the substitution.
    if let Some(inner) = words.first().and_then(|w| w.split_once("$(")).map(|(_, inner)| inner.to_owned()) {
        words[0] = inner;
        if let Some(last) = words.last_mut() {
            *last = last.trim_end_matches(')').to_owned();
        }
        words.retain(|w| !w.is_empty());
    }
    let mut kept = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
        } else if matches!(word.as_str(), ">" | ">>" | "<" | "2>" | "2>&1") {
            skip_next = word != "2>&1";
        } else if !word.starts_with('>') && !word.starts_with("2>") {
            kept.push(word);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_their_kinds() {
        let md = "text\n```sh run\nscopctl workers\n```\n```sh\nkubectl apply -k x\n```\n```yaml\na: 1\n```\n```\nout\n```\n";
        let kinds: Vec<(Kind, usize)> = parse(md).iter().map(|b| (b.kind, b.line)).collect();
        assert_eq!(kinds, [(Kind::Run, 2), (Kind::Shell, 5), (Kind::Yaml, 8), (Kind::Other, 11)]);
        assert_eq!(parse(md)[0].text, "scopctl workers\n");
    }

    fn check(script: &str, expected: &[&[&str]]) {
        let found = commands(script);
        let expected: Vec<Vec<String>> =
            expected.iter().map(|c| c.iter().map(|w| (*w).to_owned()).collect()).collect();
        assert_eq!(found, expected, "{script:?}");
    }

    #[test]
    fn commands_are_split_and_cleaned() {
        check("scopd standalone --workers 2   # two agents\n", &[&["scopd", "standalone", "--workers", "2"]]);
        check("a --x \\\n  --y 1 && b\n", &[&["a", "--x", "--y", "1"], &["b"]]);
        check("scopctl completion bash > /etc/x\n", &[&["scopctl", "completion", "bash"]]);
        check("echo 'a # b' | wc -l\n", &[&["echo", "a # b"], &["wc", "-l"]]);
        check("scopd standalone &\n", &[&["scopd", "standalone"]]);
        check("JOB=$(scopctl submit x.yaml)\n", &[&["scopctl", "submit", "x.yaml"]]);
    }
}
