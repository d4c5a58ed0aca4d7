//! Spec fields in the docs against the spec's serde types: every field the
//! tables of `docs/job-spec.md` name must be one the parser accepts, and every
//! YAML block that is a job spec must parse.
//!
//! A field is tried by setting it in a valid spec (the Fashion-MNIST example)
//! and parsing: "unknown field" means the doc names a field the code lacks.
//! Nothing here keeps its own list of fields.

use std::path::Path;

use anyhow::Context;
use scop_core::spec::JobSpec;
use serde_norway::{Mapping, Value};

/// Problems with the fields named in the tables of `markdown` (docs/job-spec.md).
pub fn check_tables(markdown: &str, example: &Path) -> anyhow::Result<Vec<String>> {
    let base: Value = serde_norway::from_str(&std::fs::read_to_string(example)?)
        .with_context(|| format!("{}", example.display()))?;
    let mut problems = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let mut in_field_table: Option<bool> = None;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            sections = if heading.eq_ignore_ascii_case("top level") {
                vec![String::new()]
            } else {
                backticked(heading)
            };
            continue;
        }
        let Some(first_cell) = line.strip_prefix('|').and_then(|rest| rest.split('|').next()) else {
            in_field_table = None;
            continue;
        };
        // A table's header row says whether its rows are fields (`| field | ...`).
        let is_field_table = *in_field_table.get_or_insert_with(|| first_cell.trim() == "field");
        if !is_field_table {
            continue;
        }
        for field in backticked(first_cell) {
            for section in &sections {
                if let Some(problem) = try_field(&base, section, &field) {
                    problems.push(problem);
                }
            }
        }
    }
    Ok(problems)
}

/// Parses `base` with `section.field` set; says why when the field is unknown.
fn try_field(base: &Value, section: &str, field: &str) -> Option<String> {
    let mut spec = base.clone();
    let root = spec.as_mapping_mut()?;
    let target = if section.is_empty() {
        root
    } else {
        let entry = root.entry(Value::from(section)).or_insert_with(|| Value::Mapping(Mapping::new()));
        if !entry.is_mapping() {
            *entry = Value::Mapping(Mapping::new());
        }
        entry.as_mapping_mut()?
    };
    // Any value will do: a wrong type is fine, only an unknown name is not.
    target.insert(Value::from(field), Value::Null);
    let text = serde_norway::to_string(&spec).ok()?;
    let shown = if section.is_empty() { field.to_owned() } else { format!("{section}.{field}") };
    match JobSpec::from_yaml(&text) {
        Err(e) if e.to_string().contains(&format!("unknown field `{field}`")) => {
            Some(format!("docs/job-spec.md names `{shown}`, which the spec does not have: {e}"))
        }
        _ => None,
    }
}

/// A YAML block that is a job spec (it has `model` and `data`) must parse.
pub fn check_yaml_block(text: &str) -> Option<String> {
    let value: Value = serde_norway::from_str(text).ok()?;
    let map = value.as_mapping()?;
    if !(map.contains_key("model") && map.contains_key("data")) {
        return None;
    }
    JobSpec::from_yaml(text).err().map(|e| format!("this job spec does not parse: {e}"))
}

/// The `code spans` of a line.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fashion-mnist-resnet20.yaml")
    }

    #[test]
    fn unknown_fields_in_tables_are_found() {
        let doc = "## Top level\n| field | type |\n|---|---|\n| `seed` | int |\n| `seeds` | int |\n\
                   ## Training stages: `pretrain` and `finetune`\n| field |\n| `lr` | x |\n| `learning_rate` | x |\n\
                   ## `data`\n| field |\n| `mean`, `std` | x |\n\ntext\n| `format` | layout |\n| `idx` | files |\n";
        let problems = check_tables(doc, &example()).unwrap();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("`seeds`"), "{problems:#?}");
        assert!(problems[1].contains("`pretrain.learning_rate`"), "{problems:#?}");
        assert!(problems[2].contains("`finetune.learning_rate`"), "{problems:#?}");
    }

    #[test]
    fn spec_blocks_must_parse() {
        assert_eq!(check_yaml_block("server: http://x\n"), None, "not a job spec");
        let good = "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: d }\n";
        assert_eq!(check_yaml_block(good), None);
        let bad = "model: { arch: resnet20, num_classes: 10, width: 2 }\ndata: { format: idx, root: d }\n";
        assert!(check_yaml_block(bad).is_some_and(|p| p.contains("width")));
    }
}
