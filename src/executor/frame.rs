//! The child's frame is untrusted: its values are parsed as plain JSON
//! scalars (or short lists of them), and its error details are clipped to
//! a fixed budget, whatever the code forged.

use serde::Deserialize;
use serde_json::Value;

use super::outcome::clip;

/// A JSON scalar (null, bool, number, string); arrays and objects are
/// refused while parsing.
#[derive(Debug, Clone)]
pub struct Scalar(pub Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Flat { lists: false }).map(Scalar)
    }
}

/// One error detail: a scalar, or a short list of scalars (the functions
/// a code defines).
#[derive(Debug, Clone)]
pub struct Detail(Value);

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Flat { lists: true }).map(Detail)
    }
}

/// The one visitor behind `Scalar` and `Detail`, without buffering: a
/// nested value fails at its first byte. `lists`: also a list of at most
/// 100 scalars.
struct Flat {
    lists: bool,
}

impl<'de> serde::de::Visitor<'de> for Flat {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.lists { "a scalar or a list of at most 100 scalars" } else { "a JSON scalar" })
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if !self.lists {
            return Err(serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &self));
        }
        let mut out = Vec::new();
        while let Some(Scalar(v)) = seq.next_element()? {
            if out.len() == 100 {
                return Err(serde::de::Error::custom("more than 100 items"));
            }
            out.push(v);
        }
        Ok(Value::Array(out))
    }
}

/// Error details as the response carries them: at most 32 fields and
/// 16 KiB of text in all (the harness's own messages and tracebacks fit;
/// a frame the code forged gets no more room than that).
pub(super) fn error_value(e: std::collections::BTreeMap<String, Detail>) -> Value {
    const BUDGET: usize = 16 * 1024;
    let mut left = BUDGET;
    let mut clip_text = |v: Value| match v {
        Value::String(s) => {
            let (s, _) = clip(s, left as u64);
            left -= s.len();
            Value::String(s)
        }
        v => v,
    };
    // The message first: it is what a reader needs.
    let mut e = e;
    let message = e.remove_entry("message");
    let fields: Vec<(String, Detail)> = message.into_iter().chain(e.into_iter().take(31)).collect();
    Value::Object(
        fields
            .into_iter()
            .map(|(k, Detail(v))| {
                let v = match v {
                    Value::Array(l) => Value::Array(l.into_iter().map(&mut clip_text).collect()),
                    v => clip_text(v),
                };
                (k, v)
            })
            .collect(),
    )
}
