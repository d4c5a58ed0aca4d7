//! Checks of request fields shared by the handlers; each error names the field.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};

/// Longest id, request id or label value accepted.
const MAX_ID: usize = 128;
const MAX_LABEL_KEY: usize = 63;
const MAX_LABEL_VALUE: usize = 256;
const MAX_LABELS: usize = 64;

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidArgument { field: field.to_owned(), message }
}

/// A required id: non-empty, at most 128 printable ASCII characters.
pub fn id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty".into()));
    }
    if value.len() > MAX_ID || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            format!("must be at most {MAX_ID} printable ASCII characters, got {value:?}"),
        ));
    }
    Ok(value)
}

/// An optional idempotency key: empty means none.
pub fn request_id(value: String) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    id("request_id", &value)?;
    Ok(Some(value))
}

/// Labels: keys of 1–63 characters of `[A-Za-z0-9._/-]`, values of at most 256.
pub fn labels(field: &str, labels: HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(field, format!("at most {MAX_LABELS} labels, got {}", labels.len())));
    }
    let labels: BTreeMap<String, String> = labels.into_iter().collect();
    for (key, value) in &labels {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_LABEL_KEY
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        if !key_ok {
            return Err(invalid(
                &format!("{field}[{key:?}]"),
                format!("keys must be 1 to {MAX_LABEL_KEY} characters of [A-Za-z0-9._/-]"),
            ));
        }
        if value.len() > MAX_LABEL_VALUE {
            return Err(invalid(
                &format!("{field}[{key:?}]"),
                format!("values must be at most {MAX_LABEL_VALUE} bytes, got {}", value.len()),
            ));
        }
    }
    Ok(labels)
}

/// A page token from a previous `ListJobs` response.
pub fn page_token(value: &str) -> Result<Option<i64>> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<i64>() {
        Ok(position) if position > 0 => Ok(Some(position)),
        _ => Err(invalid("page_token", format!("not a token this server issued: {value:?}"))),
    }
}

/// The page size: 0 means 50, and more than 1000 is lowered to 1000.
pub fn page_size(value: u32) -> u32 {
    match value {
        0 => 50,
        n => n.min(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_in_errors() {
        assert_eq!(id("job_id", "").unwrap_err().to_string(), "job_id: must not be empty");
        assert!(id("job_id", "a b").unwrap_err().to_string().starts_with("job_id: must be at most 128"));
        assert_eq!(request_id(String::new()).unwrap(), None);
        let bad = HashMap::from([("team name".to_owned(), "x".to_owned())]);
        assert!(
            labels("labels", bad).unwrap_err().to_string().starts_with("labels[\"team name\"]: keys must be")
        );
        let good = HashMap::from([("team/area".to_owned(), "vision".to_owned())]);
        assert_eq!(labels("labels", good).unwrap().len(), 1);
        assert_eq!(page_token("").unwrap(), None);
        assert_eq!(page_token("17").unwrap(), Some(17));
        assert!(page_token("-3").unwrap_err().to_string().starts_with("page_token: not a token"));
        assert_eq!((page_size(0), page_size(7), page_size(5000)), (50, 7, 1000));
    }
}
