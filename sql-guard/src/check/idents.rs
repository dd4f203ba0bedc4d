//! Names: identifiers and the quote styles passed on, object names part
//! by part, CTE name comparison, and the bare words that call functions.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::{R, Rejection, Walker, at, reject};
use crate::Dialect;

impl Walker<'_> {
    /// CTE names: exact on MySQL (whose rule we do not rely on), the
    /// database's own comparison elsewhere. A name we take for a CTE must be
    /// one the database takes for it too, or a table would go unchecked.
    pub(super) fn same_cte(&self, cte: &str, name: &str) -> bool {
        match self.d {
            Dialect::MySql => cte == name,
            _ => self.rules.same_name(cte, name),
        }
    }

    pub(super) fn ident(&self, i: &Ident) -> String {
        self.rules.fold(&i.value, i.quote_style.is_some())
    }

    pub(super) fn name_parts<'n>(&self, name: &'n ObjectName) -> Result<Vec<&'n Ident>, Rejection> {
        name.0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => {
                    self.check_ident(i)?;
                    Ok(i)
                }
                ObjectNamePart::Function(_) => reject(format!("`{name}` is not a plain name")),
            })
            .collect()
    }

    /// Quote styles every engine reads the same way; no variables.
    pub(super) fn check_ident(&self, i: &Ident) -> R {
        let ok_quote = matches!(
            (self.d, i.quote_style),
            (_, None)
                | (Dialect::Postgres, Some('"'))
                | (Dialect::MySql, Some('`'))
                | (Dialect::Sqlite, Some('"' | '`'))
        );
        if !ok_quote {
            let q = if self.d == Dialect::MySql { "`name`" } else { "\"name\"" };
            return reject(format!(
                "the name `{i}` is quoted in a way sluice does not pass on; quote names as {q}"
            ));
        }
        if i.quote_style.is_none() && (i.value.starts_with('@') || i.value.starts_with('$')) {
            return reject(format!(
                "variable `{}`{} is not allowed: queries cannot read or set session or system variables",
                i.value,
                at(i.span.start)
            ));
        }
        Ok(())
    }

    /// Words that read like column names but call functions: they say who
    /// and where the session is (`current_role`, `current_schema`, …).
    pub(super) fn keyword_function(&self, i: &Ident) -> R {
        if i.quote_style.is_some() {
            return Ok(());
        }
        let words: &[&str] = match self.d {
            Dialect::Postgres => &[
                "current_role",
                "current_schema",
                "current_user",
                "session_user",
                "user",
                "current_catalog",
                "system_user",
            ],
            Dialect::MySql => &["current_user", "current_role", "session_user", "system_user", "user"],
            Dialect::Sqlite => &[],
        };
        let lower = i.value.to_ascii_lowercase();
        if words.contains(&lower.as_str()) {
            return reject(format!(
                "`{}`{} is a function that reports the session; it is not allowed here",
                i.value,
                at(i.span.start)
            ));
        }
        Ok(())
    }

    /// A column or table name used as a name (no check against the policy).
    pub(super) fn plain_name(&self, n: &ObjectName) -> R {
        self.name_parts(n).map(|_| ())
    }
}
