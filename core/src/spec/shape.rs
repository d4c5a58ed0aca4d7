//! Reading a spec document into its types with every shape problem listed
//! (unknown fields, values of the wrong type, unknown variants, missing
//! fields), not just the first one serde meets.
//!
//! serde stops at the first error. So after each one the offending entry is
//! taken out of the document (or, for a required field, stood in for by a
//! neutral value) and the document is read again, until it reads or nothing
//! more can be taken out. Each problem is reported once, with its field path.

use serde::de::DeserializeOwned;
use serde_norway::Value;
use serde_path_to_error::Segment;

use crate::error::FieldError;

/// More rounds than any real document has problems; a bound, not a limit users meet.
const MAX_ROUNDS: usize = 64;

/// Values tried, in order, for a required field that had to be taken out, so
/// that reading can go on to the fields after it. Validation never sees them:
/// a document with any shape problem is refused.
fn stand_ins() -> [Value; 5] {
    [
        Value::String(String::new()),
        Value::Number(0.into()),
        Value::Bool(false),
        Value::Sequence(Vec::new()),
        Value::Mapping(serde_norway::Mapping::new()),
    ]
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `text` as `T`, or returns every shape problem found (the first is
/// the one plain serde reports, with its line and column).
pub(super) fn parse_all<T: DeserializeOwned>(text: &str) -> Result<T, Vec<FieldError>> {
    let first = match serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)) {
        Ok(value) => return Ok(value),
        Err(e) => located(e).1,
    };
    let mut errors = vec![first];
    // Not even YAML (or not one document): nothing more can be said.
    let Ok(mut doc) = serde_norway::from_str::<Value>(text) else { return Err(errors) };
    let mut removed: Vec<Vec<Step>> = Vec::new();
    let mut stood_in: Vec<Vec<Step>> = Vec::new();
    // The required field being stood in for, and which stand-in it has now.
    let mut standing_in: Option<(Vec<Step>, usize)> = None;
    for _ in 0..MAX_ROUNDS {
        let (path, error) = match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(_) => break,
            Err(e) => located(e),
        };
        if let Some((at, tried)) = standing_in.take()
            && path.as_ref().is_some_and(|p| p.starts_with(&at))
        {
            // The stand-in itself does not fit there: the next one.
            let Some(value) = stand_ins().into_iter().nth(tried + 1) else { break };
            if !insert(&mut doc, &at, value) {
                break;
            }
            standing_in = Some((at, tried + 1));
            continue;
        }
        let Some(path) = path else {
            push_once(&mut errors, error);
            break;
        };
        if let Some(field) = missing_field(&error.message) {
            let mut at = path;
            at.push(Step::Key(field));
            // A field taken out for its own problem was reported then.
            if !removed.contains(&at) {
                push_once(&mut errors, error);
            }
            let [value, ..] = stand_ins();
            if stood_in.contains(&at) || !insert(&mut doc, &at, value) {
                break;
            }
            stood_in.push(at.clone());
            standing_in = Some((at, 0));
            continue;
        }
        push_once(&mut errors, error);
        if !remove(&mut doc, &path) {
            break;
        }
        removed.push(path);
    }
    Err(errors)
}

/// The path (as steps, when every segment is a key or an index) and the field
/// error of a serde error.
fn located(e: serde_path_to_error::Error<serde_norway::Error>) -> (Option<Vec<Step>>, FieldError) {
    let steps = e
        .path()
        .iter()
        .map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect::<Option<Vec<Step>>>();
    let path = e.path().to_string();
    let path = if path == "." { "spec".to_owned() } else { path };
    // serde_norway prefixes nested errors with their path already; keep it once.
    let message = e.into_inner().to_string();
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
        _ => message,
    };
    (steps, FieldError::new(path, message))
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split_once('`')?.0.to_owned())
}

/// Adds `error` unless its field already has a problem listed.
fn push_once(errors: &mut Vec<FieldError>, error: FieldError) {
    if !errors.iter().any(|e| e.path == error.path) {
        errors.push(error);
    }
}

/// The mapping or sequence holding the last step of `path`.
fn parent<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let (_, up) = path.split_last()?;
    let mut node = doc;
    for step in up {
        node = match (step, node) {
            (Step::Key(key), Value::Mapping(map)) => map.get_mut(key.as_str())?,
            (Step::Index(index), Value::Sequence(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Takes the entry at `path` out of the document; false when there is none.
fn remove(doc: &mut Value, path: &[Step]) -> bool {
    match (path.last(), parent(doc, path)) {
        (Some(Step::Key(key)), Some(Value::Mapping(map))) => map.remove(key.as_str()).is_some(),
        (Some(Step::Index(index)), Some(Value::Sequence(items))) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// Sets the entry at `path` (a key of a mapping); false when its parent is not one.
fn insert(doc: &mut Value, path: &[Step], value: Value) -> bool {
    match (path.last(), parent(doc, path)) {
        (Some(Step::Key(key)), Some(Value::Mapping(map))) => {
            map.insert(Value::String(key.clone()), value);
            true
        }
        _ => false,
    }
}
