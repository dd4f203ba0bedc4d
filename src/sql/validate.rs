//! The AST layer of the read-only guarantee: parse with sqlparser in the
//! backend's dialect and accept exactly one plain query that reads only
//! tables the policy allows and calls no denied function. The database's
//! own read-only mode is the other, independent layer.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::policy::TableAllow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// Why a query was rejected, in words an LLM can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// Functions no query may call, whatever the policy: they read or write
/// files, load code, or exist to stall the server.
fn denied_functions(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Sqlite => {
            &["load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "sqlite_dbpage", "zipfile"]
        }
        Dialect::Postgres => &[
            // files and programs on the server
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "pg_stat_file",
            "pg_ls_logdir",
            "pg_ls_waldir",
            "pg_ls_tmpdir",
            "pg_ls_archive_statusdir",
            "lo_import",
            "lo_export",
            "lo_from_bytea",
            "lo_put",
            "lo_create",
            "lo_creat",
            "lo_unlink",
            "lo_open",
            "lo_write",
            "lowrite",
            "lo_truncate",
            // other servers and dynamic SQL that escapes the table check
            "dblink",
            "dblink_exec",
            "dblink_connect",
            "dblink_connect_u",
            "dblink_open",
            "dblink_send_query",
            "query_to_xml",
            "query_to_xml_and_xmlschema",
            "query_to_xmlschema",
            "cursor_to_xml",
            "table_to_xml",
            "table_to_xml_and_xmlschema",
            "schema_to_xml",
            "database_to_xml",
            "ts_stat",
            "ts_rewrite",
            // server state and other sessions
            "set_config",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_switch_wal",
            "pg_create_restore_point",
            "pg_promote",
            "pg_import_system_collations",
            "pg_start_backup",
            "pg_stop_backup",
            "pg_backup_start",
            "pg_backup_stop",
            "pg_log_backend_memory_contexts",
            "pg_create_logical_replication_slot",
            "pg_create_physical_replication_slot",
            "pg_drop_replication_slot",
            "pg_replication_origin_create",
            "pg_notify",
            // sequences write even in a read-only query
            "nextval",
            "setval",
            // denial of service
            "pg_sleep",
            "pg_sleep_for",
            "pg_sleep_until",
            "pg_advisory_lock",
            "pg_advisory_lock_shared",
            "pg_advisory_xact_lock",
            "pg_advisory_xact_lock_shared",
            "pg_try_advisory_lock",
            "pg_try_advisory_lock_shared",
            "pg_try_advisory_xact_lock",
            "pg_try_advisory_xact_lock_shared",
        ],
        Dialect::MySql => &[
            "sleep",
            "benchmark",
            "get_lock",
            "release_lock",
            "release_all_locks",
            "is_free_lock",
            "is_used_lock",
            "load_file",
            "master_pos_wait",
            "source_pos_wait",
            "master_gtid_wait",
            "sys_exec",
            "sys_eval",
        ],
    }
}

const ALLOWED: &str = "one SELECT (WITH, VALUES and UNION/INTERSECT/EXCEPT are fine)";

/// Check `sql` and return the tables it reads (as written, lower-cased).
pub fn validate(sql: &str, dialect: Dialect, tables: &TableAllow) -> Result<Vec<String>, Rejection> {
    // MySQL runs the text inside /*! … */ comments, which a parser skips:
    // what it cannot see, it cannot check.
    if dialect == Dialect::MySql && sql.contains("/*!") {
        return Err(Rejection(
            "MySQL executable comments (/*! … */) are not allowed: their contents run but cannot be checked; \
             write the SQL without them"
                .into(),
        ));
    }
    let statements = match dialect {
        Dialect::Sqlite => parse(&SQLiteDialect {}, sql)?,
        Dialect::Postgres => parse(&PostgreSqlDialect {}, sql)?,
        Dialect::MySql => parse(&MySqlDialect {}, sql)?,
    };
    let stmt = match statements.as_slice() {
        [] => return Err(Rejection(format!("the query is empty; send {ALLOWED}"))),
        [one] => one,
        many => {
            return Err(Rejection(format!(
                "found {} statements; send exactly one read-only query ({ALLOWED}) without `;` between statements",
                many.len()
            )));
        }
    };
    let Statement::Query(query) = stmt else {
        return Err(Rejection(format!(
            "`{}` is not allowed: only read-only queries run here; send {ALLOWED}",
            statement_keyword(stmt)
        )));
    };
    let mut checker = Checker { dialect, tables, scopes: Vec::new(), read: Vec::new() };
    match query.visit(&mut checker) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => {
            let mut read = checker.read;
            read.sort();
            read.dedup();
            Ok(read)
        }
    }
}

fn parse(dialect: &dyn sqlparser::dialect::Dialect, sql: &str) -> Result<Vec<Statement>, Rejection> {
    Parser::parse_sql(dialect, sql).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg).to_string();
        Rejection(format!("the query does not parse: {msg}"))
    })
}

/// The leading keyword(s) of a statement, for messages.
fn statement_keyword(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [a, b] if matches!(a.to_ascii_uppercase().as_str(), "CREATE" | "DROP" | "ALTER" | "EXPLAIN") => {
            format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
        }
        [a, ..] => a.to_ascii_uppercase(),
        [] => "statement".into(),
    }
}

/// One WITH clause in scope: its CTE names, and (while one of its CTE
/// bodies is being walked) how many of them that body can see.
struct Scope {
    query: *const Query,
    names: Vec<String>,
    cte_bodies: Vec<*const Query>,
    recursive: bool,
    /// Some(i) while walking the body of CTE i.
    in_cte: Option<usize>,
}

struct Checker<'a> {
    dialect: Dialect,
    tables: &'a TableAllow,
    scopes: Vec<Scope>,
    read: Vec<String>,
}

impl Checker<'_> {
    fn is_cte(&self, name: &str) -> bool {
        self.scopes.iter().rev().any(|s| {
            let visible = match (s.in_cte, s.recursive) {
                (Some(i), false) => &s.names[..i],
                _ => &s.names[..],
            };
            visible.iter().any(|n| n == name)
        })
    }

    fn check_table(&mut self, name: &str) -> ControlFlow<Rejection> {
        let lower = name.to_ascii_lowercase();
        let last = lower.rsplit('.').next().unwrap_or(&lower).to_string();
        if denied_functions(self.dialect).contains(&last.as_str()) || last.starts_with("pragma_") {
            return ControlFlow::Break(Rejection(format!(
                "table-valued function `{name}` is not allowed; read from tables instead"
            )));
        }
        if !lower.contains('.') && self.is_cte(&lower) {
            return ControlFlow::Continue(());
        }
        if !self.tables.allows(&lower) {
            let allowed = match self.tables {
                TableAllow::All => "all".to_string(),
                TableAllow::Only(list) => list.join(", "),
            };
            return ControlFlow::Break(Rejection(format!(
                "table `{name}` is not allowed by this policy; allowed tables: {allowed}"
            )));
        }
        self.read.push(lower);
        ControlFlow::Continue(())
    }
}

fn check_set_expr(body: &SetExpr) -> ControlFlow<Rejection> {
    match body {
        SetExpr::Select(s) if s.into.is_some() => ControlFlow::Break(Rejection(
            "SELECT … INTO writes a table and is not allowed; remove the INTO clause".into(),
        )),
        SetExpr::SetOperation { left, right, .. } => {
            check_set_expr(left)?;
            check_set_expr(right)
        }
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            ControlFlow::Break(Rejection(format!(
                "data-modifying statement inside the query is not allowed; send {ALLOWED}"
            )))
        }
        _ => ControlFlow::Continue(()),
    }
}

impl Visitor for Checker<'_> {
    type Break = Rejection;

    fn pre_visit_statement(&mut self, _s: &Statement) -> ControlFlow<Rejection> {
        // The top-level query is not a Statement visit; any statement found
        // inside it (INSERT in a CTE, …) is a write.
        ControlFlow::Break(Rejection(format!(
            "data-modifying statement inside the query is not allowed; send {ALLOWED}"
        )))
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<Rejection> {
        if !q.locks.is_empty() {
            return ControlFlow::Break(Rejection(
                "locking clauses (FOR UPDATE / FOR SHARE) are not allowed in a read-only query".into(),
            ));
        }
        check_set_expr(&q.body)?;
        if let SetExpr::Table(t) = q.body.as_ref() {
            let name = match (&t.schema_name, &t.table_name) {
                (Some(s), Some(n)) => format!("{s}.{n}"),
                (None, Some(n)) => n.clone(),
                _ => String::new(),
            };
            self.check_table(&name)?;
        }
        // Is this the body of a CTE of the innermost WITH?
        if let Some(top) = self.scopes.last_mut()
            && let Some(i) = top_cte_index(top, q)
        {
            top.in_cte = Some(i);
        }
        if let Some(with) = &q.with {
            self.scopes.push(Scope {
                query: q as *const Query,
                names: with.cte_tables.iter().map(|c| c.alias.name.value.to_ascii_lowercase()).collect(),
                cte_bodies: with.cte_tables.iter().map(|c| c.query.as_ref() as *const Query).collect(),
                recursive: with.recursive,
                in_cte: None,
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<Rejection> {
        if self.scopes.last().is_some_and(|s| std::ptr::eq(s.query, q)) {
            self.scopes.pop();
        }
        if let Some(top) = self.scopes.last_mut()
            && top_cte_index(top, q).is_some()
        {
            top.in_cte = None;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Rejection> {
        let name = object_name(relation);
        self.check_table(&name)
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Rejection> {
        if let Expr::Function(f) = expr {
            let name = object_name(&f.name).to_ascii_lowercase();
            let last = name.rsplit('.').next().unwrap_or(&name);
            if denied_functions(self.dialect).contains(&last) {
                return ControlFlow::Break(Rejection(format!(
                    "function `{last}` is not allowed: it reads or writes files, loads code or stalls the server"
                )));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Index of `q` among the CTE bodies of `scope`'s WITH clause (by address:
/// the AST outlives the walk, and addresses are only compared).
fn top_cte_index(scope: &Scope, q: &Query) -> Option<usize> {
    scope.cte_bodies.iter().position(|p| std::ptr::eq(*p, q))
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.clone(),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(tables: &[&str]) -> TableAllow {
        TableAllow::Only(tables.iter().map(|t| t.to_string()).collect())
    }

    fn check(sql: &str, tables: &TableAllow) -> Result<Vec<String>, String> {
        validate(sql, Dialect::Sqlite, tables).map_err(|r| r.0)
    }

    #[test]
    fn plain_queries_pass_and_report_their_tables() {
        let all = TableAllow::All;
        assert_eq!(check("SELECT * FROM iris", &all).unwrap(), vec!["iris"]);
        assert_eq!(
            check("select a.x from Iris a join wine b on a.id = b.id", &all).unwrap(),
            vec!["iris", "wine"]
        );
        assert!(check("VALUES (1), (2)", &all).unwrap().is_empty());
        assert_eq!(check("SELECT 1 UNION SELECT id FROM iris", &all).unwrap(), vec!["iris"]);
        assert!(check("SELECT * FROM iris WHERE id IN (SELECT id FROM iris)", &only(&["iris"])).is_ok());
    }

    #[test]
    fn anything_but_one_query_is_rejected() {
        let all = TableAllow::All;
        for (sql, needle) in [
            ("", "empty"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("INSERT INTO iris VALUES (1)", "INSERT"),
            ("UPDATE iris SET id = 1", "UPDATE"),
            ("DROP TABLE iris", "DROP TABLE"),
            ("CREATE TABLE x (a INT)", "CREATE TABLE"),
            ("PRAGMA query_only = 0", "PRAGMA"),
            ("ATTACH DATABASE 'x.db' AS x", "ATTACH"),
            ("BEGIN", "BEGIN"),
            ("EXPLAIN QUERY PLAN SELECT 1", "EXPLAIN"),
            ("SELECT * FROM iris WHERE", "does not parse"),
        ] {
            let e = check(sql, &all).unwrap_err();
            assert!(e.contains(needle), "{sql}: {e}");
        }
    }

    #[test]
    fn denied_functions_anywhere_are_rejected() {
        let all = TableAllow::All;
        for sql in [
            "SELECT load_extension('/tmp/x.so')",
            "SELECT id FROM iris WHERE readfile('/etc/passwd') IS NOT NULL",
            "SELECT (SELECT writefile('/tmp/x', 'y'))",
            "SELECT * FROM pragma_table_info('iris')",
            "SELECT * FROM main.pragma_database_list",
        ] {
            assert!(check(sql, &all).is_err(), "{sql}");
        }
    }

    #[test]
    fn allow_list_with_cte_scoping() {
        let t = only(&["iris"]);
        assert!(check("SELECT * FROM wine", &t).unwrap_err().contains("`wine`"));
        assert!(check("SELECT * FROM main.wine", &t).is_err());
        assert!(check("SELECT * FROM \"wine\"", &t).is_err());
        assert!(check("SELECT * FROM iris WHERE id IN (SELECT target FROM wine)", &t).is_err());
        // A CTE may be named like a forbidden table…
        assert!(check("WITH wine AS (SELECT * FROM iris) SELECT * FROM wine", &t).is_ok());
        // …but a non-recursive CTE body does not see its own name: this reads
        // the real table.
        assert!(check("WITH wine AS (SELECT * FROM wine) SELECT * FROM wine", &t).is_err());
        // Nor does an outer query see a CTE defined in a subquery.
        assert!(
            check("SELECT * FROM (WITH wine AS (SELECT * FROM iris) SELECT * FROM wine), wine", &t).is_err()
        );
        // Later CTEs see earlier ones.
        assert!(check("WITH a AS (SELECT * FROM iris), b AS (SELECT * FROM a) SELECT * FROM b", &t).is_ok());
        assert!(
            check(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT * FROM c",
                &t
            )
            .is_ok()
        );
    }
}
