//! How a table name in a query or a policy means a table: the database's
//! own rules, so that the parser and the engine agree on which table a name
//! is. PostgreSQL folds unquoted names to lower case and compares quoted
//! names exactly; SQLite compares every name case-insensitively (ASCII);
//! MySQL/MariaDB compare table and database names exactly unless the server
//! runs with `lower_case_table_names` 1 or 2. An unqualified name is the
//! connection's default schema (PostgreSQL: `current_schema()`, pinned as
//! the transaction's `search_path`), database (MySQL: `DATABASE()`) or
//! `main` (SQLite).

use crate::tables::{NamePart, TableAllow, TableRef};

use crate::Dialect;

/// The naming rules of one connected database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRules {
    pub dialect: Dialect,
    /// The default schema/database, as the catalogue stores it.
    pub default_schema: String,
    /// MySQL with `lower_case_table_names = 0`: names compare exactly.
    pub case_sensitive: bool,
}

/// A table reference resolved the way the database resolves it: both
/// parts as the catalogue stores them (up to `NameRules::key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub schema: String,
    pub table: String,
    /// Written without a schema.
    pub unqualified: bool,
}

impl NameRules {
    pub fn sqlite() -> Self {
        Self { dialect: Dialect::Sqlite, default_schema: "main".into(), case_sensitive: false }
    }

    /// A name part as the database stores or looks it up.
    pub fn fold(&self, value: &str, quoted: bool) -> String {
        match self.dialect {
            Dialect::Postgres if quoted => value.to_string(),
            Dialect::Postgres | Dialect::Sqlite => value.to_ascii_lowercase(),
            Dialect::MySql if self.case_sensitive => value.to_string(),
            Dialect::MySql => value.to_ascii_lowercase(),
        }
    }

    /// The comparison key of an already folded (catalogue) name.
    fn key(&self, stored: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => stored.to_ascii_lowercase(),
            Dialect::MySql if !self.case_sensitive => stored.to_ascii_lowercase(),
            _ => stored.to_string(),
        }
    }

    pub fn resolve(&self, schema: Option<(&str, bool)>, table: (&str, bool)) -> Resolved {
        Resolved {
            schema: match schema {
                Some((s, q)) => self.fold(s, q),
                None => self.default_schema.clone(),
            },
            table: self.fold(table.0, table.1),
            unqualified: schema.is_none(),
        }
    }

    /// The table a policy entry means.
    pub fn entry(&self, e: &TableRef) -> Resolved {
        self.resolve(e.schema.as_ref().map(part), part(&e.table))
    }

    /// The table of a catalogue row (names exactly as stored).
    pub fn stored(&self, schema: &str, table: &str) -> Resolved {
        Resolved { schema: schema.into(), table: table.into(), unqualified: false }
    }

    pub fn same(&self, a: &Resolved, b: &Resolved) -> bool {
        self.key(&a.schema) == self.key(&b.schema) && self.key(&a.table) == self.key(&b.table)
    }

    /// Two folded names (CTE names, aliases) the database takes as equal.
    pub fn same_name(&self, a: &str, b: &str) -> bool {
        self.key(a) == self.key(b)
    }

    /// Does the policy let a query read `r`?
    pub fn allows(&self, allow: &TableAllow, r: &Resolved) -> bool {
        if self.is_system(r) {
            return false;
        }
        match allow {
            TableAllow::All => true,
            TableAllow::Only(list) => list.iter().any(|e| self.same(&self.entry(e), r)),
        }
    }

    /// System catalogues are never readable, whatever the policy says: they
    /// hold password hashes, settings, server paths and other sessions'
    /// queries. On PostgreSQL an unqualified `pg_*` name resolves to
    /// `pg_catalog` before the default schema, so it is refused too.
    pub fn is_system(&self, r: &Resolved) -> bool {
        let schema = self.key(&r.schema);
        let table = self.key(&r.table);
        match self.dialect {
            Dialect::Postgres => {
                ["pg_catalog", "information_schema"].contains(&schema.as_str())
                    || schema.starts_with("pg_toast")
                    || schema.starts_with("pg_temp")
                    || (r.unqualified && table.to_ascii_lowercase().starts_with("pg_"))
            }
            Dialect::MySql => ["mysql", "information_schema", "performance_schema", "sys"]
                .contains(&schema.to_ascii_lowercase().as_str()),
            // `pragma_*` are SQLite's eponymous tables over PRAGMAs.
            Dialect::Sqlite => {
                schema != "main" || table.starts_with("sqlite_") || table.starts_with("pragma_")
            }
        }
    }

    /// `r` as a query should name it: unqualified in the default schema.
    pub fn display(&self, r: &Resolved) -> String {
        if self.key(&r.schema) == self.key(&self.default_schema) {
            r.table.clone()
        } else {
            format!("{}.{}", r.schema, r.table)
        }
    }

    /// A name part quoted for this dialect (for SQL that sluice writes).
    pub fn quote(&self, name: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }
}

fn part(p: &NamePart) -> (&str, bool) {
    (p.value.as_str(), p.quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> TableAllow {
        TableAllow::Only(names.iter().map(|n| TableRef::parse(n).unwrap()).collect())
    }

    fn pg() -> NameRules {
        NameRules { dialect: Dialect::Postgres, default_schema: "public".into(), case_sensitive: true }
    }

    #[test]
    fn postgres_folds_unquoted_and_compares_quoted_exactly() {
        let r = pg();
        let allow = only(&["allowed", "\"Mixed\""]);
        assert!(r.allows(&allow, &r.resolve(None, ("ALLOWED", false))));
        assert!(r.allows(&allow, &r.resolve(Some(("public", false)), ("allowed", true))));
        assert!(!r.allows(&allow, &r.resolve(None, ("ALLOWED", true))), "\"ALLOWED\" is another table");
        assert!(!r.allows(&allow, &r.resolve(Some(("other", false)), ("allowed", false))), "other schema");
        assert!(r.allows(&allow, &r.resolve(None, ("Mixed", true))));
        assert!(!r.allows(&allow, &r.resolve(None, ("Mixed", false))), "unquoted Mixed is mixed");
        assert!(!r.allows(&TableAllow::All, &r.resolve(None, ("pg_authid", false))));
        assert!(!r.allows(&TableAllow::All, &r.resolve(Some(("pg_catalog", false)), ("pg_class", false))));
        assert!(r.allows(&TableAllow::All, &r.resolve(Some(("sales", false)), ("orders", false))));
    }

    #[test]
    fn mysql_follows_lower_case_table_names() {
        let exact = NameRules { dialect: Dialect::MySql, default_schema: "app".into(), case_sensitive: true };
        let allow = only(&["allowed"]);
        assert!(exact.allows(&allow, &exact.resolve(None, ("allowed", true))));
        assert!(!exact.allows(&allow, &exact.resolve(None, ("ALLOWED", false))));
        assert!(!exact.allows(&allow, &exact.resolve(Some(("other", false)), ("allowed", false))));
        assert!(!exact.allows(&TableAllow::All, &exact.resolve(Some(("mysql", false)), ("user", false))));
        let folded = NameRules { case_sensitive: false, ..exact };
        assert!(folded.allows(&allow, &folded.resolve(Some(("APP", false)), ("ALLOWED", false))));
    }

    #[test]
    fn sqlite_ignores_case_and_has_one_schema() {
        let r = NameRules::sqlite();
        let allow = only(&["iris"]);
        assert!(r.allows(&allow, &r.resolve(Some(("MAIN", false)), ("IRIS", true))));
        assert!(r.allows(&allow, &r.resolve(None, ("IRIS", true))));
        assert!(!r.allows(&allow, &r.resolve(Some(("temp", false)), ("iris", false))));
        assert!(!r.allows(&TableAllow::All, &r.resolve(None, ("sqlite_master", false))));
    }
}
