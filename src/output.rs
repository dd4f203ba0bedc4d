//! What leaves the sandbox: the policy's bounds on the output channel
//! (`[output]`), applied by the server to what the child returned, and the
//! summary the audit record keeps of it.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::policy::{LabelKinds, Output};

/// Bytes of captured output the audit record keeps when it is not returned.
const EXCERPT_BYTES: usize = 4096;

/// The labels break the policy's `[output]` bounds: an `invalid_output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub reason: &'static str,
    pub message: String,
    pub index: Option<usize>,
}

impl Violation {
    pub fn detail(&self) -> Value {
        let mut d = json!({"message": self.message, "reason": self.reason});
        if let Some(i) = self.index {
            d["index"] = json!(i);
        }
        d
    }
}

/// Check labels against the policy's kinds, label size and distinct count
/// (`distinct`: the keys of their `counts`, already made for the response).
pub fn check(o: &Output, policy: &str, labels: &[Value], distinct: usize) -> Result<(), Violation> {
    for (i, l) in labels.iter().enumerate() {
        match l {
            Value::String(s) if o.labels == LabelKinds::Numbers => {
                return Err(Violation {
                    reason: "label_kind",
                    // The label itself is not repeated: it may be row data.
                    message: format!(
                        "labels[{i}] is text ({} characters); policy `{policy}` allows only numbers, booleans and \
                         null as labels: return class numbers (e.g. 0, 1, 2) instead of names",
                        s.chars().count()
                    ),
                    index: Some(i),
                });
            }
            Value::String(s) if o.max_label_bytes > 0 && s.len() as u64 > o.max_label_bytes => {
                return Err(Violation {
                    reason: "label_too_long",
                    message: format!(
                        "labels[{i}] is {} bytes of text; policy `{policy}` allows at most {} bytes per label: \
                         return short class names",
                        s.len(),
                        o.max_label_bytes
                    ),
                    index: Some(i),
                });
            }
            _ => {}
        }
    }
    if o.max_distinct_labels > 0 && distinct as u64 > o.max_distinct_labels {
        return Err(Violation {
            reason: "too_many_labels",
            message: format!(
                "the result has {distinct} distinct labels; policy `{policy}` allows at most {}: \
                 return a few classes, not a value per row",
                o.max_distinct_labels
            ),
            index: None,
        });
    }
    Ok(())
}

/// Labels as JSON text shows them, as strings: "setosa", "1", "true", "null".
pub fn counts(labels: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for p in labels {
        let key = match p {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Counts of at least `min` rows (smaller groups could single out rows).
pub fn suppress(counts: BTreeMap<String, u64>, min: u64) -> BTreeMap<String, u64> {
    counts.into_iter().filter(|(_, n)| *n >= min).collect()
}

/// What the audit record keeps of what left the sandbox.
pub fn summary(
    labels: Option<&[Value]>,
    distinct: usize,
    returned: &str,
    stdout: &str,
    stderr: &str,
    stdout_returned: bool,
) -> Value {
    let mut s = json!({
        "returned": returned,
        "stdout_bytes": stdout.len(),
        "stderr_bytes": stderr.len(),
        "stdout_returned": stdout_returned,
    });
    if let Some(l) = labels {
        let text = serde_json::to_string(l).unwrap_or_default();
        s["labels"] = json!(l.len());
        s["distinct_labels"] = json!(distinct);
        s["labels_bytes"] = json!(text.len());
        s["labels_sha256"] = json!(hex::encode(Sha256::digest(text.as_bytes())));
    }
    if !stdout_returned {
        s["stdout_excerpt"] = json!(excerpt(stdout));
        s["stderr_excerpt"] = json!(excerpt(stderr));
    }
    s
}

/// `s` cut to at most `limit` bytes on a character boundary, marked with
/// `…` when cut.
pub fn clip(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    format!("{}… [{} bytes in all]", &s[..s.floor_char_boundary(limit)], s.len())
}

fn excerpt(s: &str) -> String {
    s[..s.floor_char_boundary(EXCERPT_BYTES)].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_counts_use_json_text() {
        let c = counts(&[
            serde_json::json!("a"),
            serde_json::json!(1),
            serde_json::json!(true),
            serde_json::json!(null),
            serde_json::json!(1),
            serde_json::json!(0.5),
        ]);
        assert_eq!(c["a"], 1);
        assert_eq!(c["1"], 2);
        assert_eq!(c["true"], 1);
        assert_eq!(c["null"], 1);
        assert_eq!(c["0.5"], 1);
    }

    #[test]
    fn the_bounds_hold_and_say_what_is_allowed() {
        let mut o = Output::default();
        let labels = [json!("a"), json!("bb"), json!(1), json!("a")];
        assert!(check(&o, "p", &labels, 3).is_ok());
        o.labels = LabelKinds::Numbers;
        let v = check(&o, "p", &labels, 3).unwrap_err();
        assert_eq!((v.reason, v.index), ("label_kind", Some(0)));
        assert!(v.message.contains("policy `p`") && v.message.contains("numbers"), "{}", v.message);
        o.labels = LabelKinds::Any;
        o.max_label_bytes = 1;
        assert_eq!(check(&o, "p", &labels, 3).unwrap_err().index, Some(1));
        o.max_label_bytes = 0;
        o.max_distinct_labels = 2;
        assert_eq!(check(&o, "p", &labels, 3).unwrap_err().reason, "too_many_labels");
        o.max_distinct_labels = 3;
        assert!(check(&o, "p", &labels, 3).is_ok());
    }

    #[test]
    fn small_groups_are_left_out_and_the_audit_keeps_a_fingerprint() {
        let c = suppress(counts(&[json!("a"), json!("a"), json!("b")]), 2);
        assert_eq!(c, BTreeMap::from([("a".to_string(), 2)]));
        let s = summary(Some(&[json!("a"), json!(1)]), 2, "counts", "x".repeat(5000).as_str(), "", false);
        assert_eq!(s["distinct_labels"], 2);
        assert_eq!(s["labels_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(s["stdout_excerpt"].as_str().unwrap().len(), EXCERPT_BYTES);
    }
}
