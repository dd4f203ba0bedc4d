//! Literals and types: the values a query may write, and the types a cast
//! (or a column definition list) may name, per dialect.

use sqlparser::ast::{DataType, Value};

use super::{R, Walker, check_placeholder, first_words, reject};
use crate::Dialect;

impl Walker<'_> {
    pub(super) fn value(&mut self, v: &Value, loc: String) -> R {
        let d = self.d;
        match v {
            Value::Number(_, long) if !long => Ok(()),
            Value::SingleQuotedString(_) | Value::Boolean(_) | Value::Null => Ok(()),
            Value::EscapedStringLiteral(_) if d == Dialect::Postgres => Ok(()),
            Value::HexStringLiteral(_) if d != Dialect::Postgres => Ok(()),
            Value::Placeholder(p) => {
                check_placeholder(p, d, &loc)?;
                match p.strip_prefix(['$', '?']).and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => self.placeholders.max_numbered = self.placeholders.max_numbered.max(n),
                    None => self.placeholders.anonymous += 1,
                }
                Ok(())
            }
            Value::DoubleQuotedString(_) if d == Dialect::MySql => {
                reject(format!("a double-quoted string{loc}: use single quotes for strings on MySQL"))
            }
            other => reject(format!(
                "literal `{}`{loc} is not allowed; write strings as '…' (with '' for a quote inside) and pass \
                 other values as bind parameters",
                first_words(&other.to_string())
            )),
        }
    }

    /// Types a CAST may name: plain scalar types, no object or row types.
    pub(super) fn data_type(&self, t: &DataType) -> R {
        use DataType as T;
        let d = self.d;
        let ok = match t {
            T::Character(_)
            | T::Char(_)
            | T::CharacterVarying(_)
            | T::CharVarying(_)
            | T::Varchar(_)
            | T::Text => true,
            T::Numeric(_)
            | T::Decimal(_)
            | T::Dec(_)
            | T::Float(_)
            | T::Real
            | T::Double(_)
            | T::DoublePrecision => true,
            T::SmallInt(_) | T::Int(_) | T::Integer(_) | T::BigInt(_) => true,
            T::Boolean | T::Bool => d != Dialect::MySql || matches!(t, T::Boolean),
            T::Date | T::Time(..) | T::Timestamp(..) => true,
            T::Blob(_) => d != Dialect::Postgres,
            T::Int2(_) | T::Int4(_) | T::Int8(_) | T::Float4 | T::Float8 | T::Bytea | T::Uuid | T::JSONB => {
                d == Dialect::Postgres
            }
            T::JSON => d != Dialect::Sqlite,
            T::Interval { .. } => d == Dialect::Postgres,
            T::Array(sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _)) if d == Dialect::Postgres => {
                return self.data_type(inner);
            }
            T::Datetime(_)
            | T::Signed
            | T::SignedInteger
            | T::Unsigned
            | T::UnsignedInteger
            | T::Binary(_) => d == Dialect::MySql,
            T::TinyInt(_)
            | T::MediumInt(_)
            | T::DecimalUnsigned(_)
            | T::BigIntUnsigned(_)
            | T::IntUnsigned(_) => d == Dialect::MySql,
            T::Custom(name, mods) if mods.is_empty() && d == Dialect::Postgres => {
                let n = name.to_string().to_ascii_lowercase();
                ["timestamptz", "timetz", "tsvector", "tsquery", "name"].contains(&n.as_str())
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            reject(format!(
                "type `{t}` is not allowed in a cast on {}; use a number, text, boolean, date/time, JSON{} type",
                d.name(),
                if d == Dialect::Postgres { ", uuid, bytea or array" } else { "" }
            ))
        }
    }
}
