//! Table names as a policy lists them: `orders`, `sales.orders`,
//! `"Orders"`. How a name matches a table is the database's own rule
//! (`names`).

/// Which tables a policy lets a query read. How a name matches a table is
/// the database's own rule (`names`): an unquoted part is folded the
/// way the database folds it, a quoted part compares exactly, and an
/// unqualified entry means the connection's default schema or database.
#[derive(Debug, Clone, PartialEq)]
pub enum TableAllow {
    /// Every table outside the database's system schemas.
    All,
    Only(Vec<TableRef>),
}

impl TableAllow {
    /// The entries as written, for messages.
    pub fn describe(&self) -> String {
        match self {
            TableAllow::All => "all tables".into(),
            TableAllow::Only(list) => list.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
        }
    }
}

/// One part of a name: `orders` or, quoted, `"Orders"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePart {
    pub value: String,
    pub quoted: bool,
}

/// A table as a policy names it: `orders`, `sales.orders`, `"Orders"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub schema: Option<NamePart>,
    pub table: NamePart,
}

impl TableRef {
    /// Parse `table`, `schema.table`, with parts optionally in double quotes
    /// (`""` for a quote inside).
    pub fn parse(text: &str) -> Result<TableRef, String> {
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let part = if chars.peek() == Some(&'"') {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("`{text}`: a quoted name is not closed")),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            value.push('"');
                        }
                        Some('"') => break,
                        Some(c) if c.is_control() => {
                            return Err(format!("`{text}`: control character in a name"));
                        }
                        Some(c) => value.push(c),
                    }
                }
                NamePart { value, quoted: true }
            } else {
                let mut value = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                        return Err(format!(
                            "`{text}`: `{c}` cannot appear in an unquoted name; quote the name (\"…\") or use \
                             letters, digits and _"
                        ));
                    }
                    value.push(c);
                    chars.next();
                }
                if value.is_empty() || value.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                    return Err(format!("`{text}` is not a table name (expected `table` or `schema.table`)"));
                }
                NamePart { value, quoted: false }
            };
            if part.value.is_empty() {
                return Err(format!("`{text}`: empty quoted name"));
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(c) => return Err(format!("`{text}`: unexpected `{c}` after a quoted name")),
            }
        }
        match parts.len() {
            1 => Ok(TableRef { schema: None, table: parts.remove(0) }),
            2 => {
                let table = parts.remove(1);
                Ok(TableRef { schema: Some(parts.remove(0)), table })
            }
            _ => Err(format!("`{text}` has more than two parts; write `table` or `schema.table`")),
        }
    }
}

impl std::fmt::Display for NamePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.quoted {
            write!(f, "\"{}\"", self.value.replace('"', "\"\""))
        } else {
            f.write_str(&self.value)
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => write!(f, "{}", self.table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_parse_with_quotes() {
        let t = TableRef::parse("iris").unwrap();
        assert_eq!(t, TableRef { schema: None, table: NamePart { value: "iris".into(), quoted: false } });
        let t = TableRef::parse("sales.\"Big \"\"Orders\"\"\"").unwrap();
        assert_eq!(t.schema.as_ref().unwrap().value, "sales");
        assert_eq!(t.table, NamePart { value: "Big \"Orders\"".into(), quoted: true });
        assert_eq!(t.to_string(), "sales.\"Big \"\"Orders\"\"\"");
        for bad in ["", "a.b.c", "a b", "\"open", "1abc", "a.", "\"\""] {
            assert!(TableRef::parse(bad).is_err(), "{bad}");
        }
    }
}
