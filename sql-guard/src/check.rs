//! The checker. It parses the caller's text in the
//! backend's dialect, walks the whole AST and accepts only constructs it
//! knows (an allow-list: statement kinds, table factors, expressions,
//! functions, operators, types), checks every relation against the policy,
//! and returns the canonical SQL printed back from that AST. The database
//! runs that text, never the caller's (see `canonical.rs` for why it is
//! safe to send). The engine's own permissions are the other layer
//! (`sqlite.rs`, `postgres.rs`, `mysql.rs`).

use sqlparser::ast::Statement;
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

mod columns;
mod expr;
mod from;
mod function;
mod idents;
mod operators;
mod qualify;
mod types;
mod walk;

use crate::catalog::Catalog;
use crate::names::{NameRules, Resolved};
use crate::tables::TableAllow;
use crate::{Dialect, canonical};

/// Longest query text accepted (bytes): bounds parse time and AST size.
pub const MAX_SQL_BYTES: usize = 100_000;
/// Deepest nesting of expressions and subqueries accepted.
const MAX_DEPTH: usize = 100;
/// sqlparser's own recursion bound while parsing.
const PARSER_RECURSION: usize = 60;

/// Why a query was rejected, in words an LLM can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// A query that passed the guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The text the database runs: the checked AST printed back.
    pub canonical: String,
    /// Tables read, as a query names them.
    pub tables: Vec<String>,
    /// How many bind parameters the query takes.
    pub placeholders: usize,
}

const ALLOWED: &str = "one SELECT (WITH, VALUES and UNION/INTERSECT/EXCEPT are fine)";

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(msg.into()))
}

fn at(loc: Location) -> String {
    if loc.line == 0 { String::new() } else { format!(" at line {}, column {}", loc.line, loc.column) }
}

fn parser_dialect(d: Dialect) -> &'static dyn sqlparser::dialect::Dialect {
    match d {
        Dialect::Sqlite => &SQLiteDialect {},
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::MySql => &MySqlDialect {},
    }
}

/// Check `sql` for a policy's `tables` under the database's naming `rules`,
/// with what `catalog` knows of the database's columns and functions.
pub fn check(
    sql: &str,
    rules: &NameRules,
    tables: &TableAllow,
    catalog: &Catalog,
) -> Result<Checked, Rejection> {
    let d = rules.dialect;
    if sql.len() > MAX_SQL_BYTES {
        return reject(format!(
            "the query is {} bytes; at most {MAX_SQL_BYTES} are accepted: aggregate in SQL or send a shorter query",
            sql.len()
        ));
    }
    let dialect = parser_dialect(d);
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Rejection(format!("the query does not parse: {e}")))?;
    scan_input(sql, &tokens, d)?;
    let keyword = statement_keyword(&tokens);
    let statements = Parser::new(dialect)
        .with_recursion_limit(PARSER_RECURSION)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| {
            // A statement that is no query at all (PRAGMA, ATTACH, VACUUM …)
            // is refused for what it is, not for how it parses.
            let first = keyword.split(' ').next().unwrap_or("");
            if NOT_QUERIES.contains(&first) {
                return Rejection(format!(
                    "`{keyword}` is not allowed: only read-only queries run here; send {ALLOWED}"
                ));
            }
            let msg = e.to_string();
            Rejection(format!(
                "the query does not parse: {}",
                msg.strip_prefix("sql parser error: ").unwrap_or(&msg)
            ))
        })?;
    let stmt = match statements.as_slice() {
        [] => return reject(format!("the query is empty; send {ALLOWED}")),
        [one] => one,
        many => {
            return reject(format!(
                "found {} statements; send exactly one read-only query ({ALLOWED}) without `;` between statements",
                many.len()
            ));
        }
    };
    let Statement::Query(query) = stmt else {
        return reject(format!(
            "`{keyword}` is not allowed: only read-only queries run here; send {ALLOWED}"
        ));
    };
    let mut w = Walker {
        d,
        rules,
        tables,
        catalog,
        scopes: Vec::new(),
        from_scopes: Vec::new(),
        read: Vec::new(),
        depth: 0,
        placeholders: Placeholders::default(),
    };
    w.query(query)?;
    // On PostgreSQL the database resolves function names through the search
    // path, where a function of the same name could shadow the built-in:
    // print every call as `pg_catalog.name`, so only built-ins can run.
    let printed = match d {
        Dialect::Postgres => qualify::functions(stmt.clone()),
        _ => stmt.clone(),
    };
    let canonical = printed.to_string();
    canonical::check(&canonical, &printed, d, dialect).map_err(|p| {
        Rejection(format!(
            "the query cannot be passed to the database unambiguously: {p}. Rewrite that part (sluice sends the \
             query re-printed without comments, and refuses text that the database could read differently)"
        ))
    })?;
    let mut read: Vec<String> = w.read.iter().map(|r| rules.display(r)).collect();
    read.sort();
    read.dedup();
    Ok(Checked { canonical, tables: read, placeholders: w.placeholders.count() })
}

/// Refusals that need the caller's own text: characters and comments that
/// engines read differently (the printed text has no comments at all, but a
/// caller should hear why a part of their query would vanish or differ).
fn scan_input(
    sql: &str,
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
    d: Dialect,
) -> Result<(), Rejection> {
    let offsets = canonical::char_offsets(sql);
    for t in tokens {
        let start = offsets.at(t.span.start.line, t.span.start.column);
        let end = offsets.at(t.span.end.line, t.span.end.column);
        let text = sql.get(start..end).unwrap_or("");
        let loc = at(t.span.start);
        match &t.token {
            Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline) => {
                if let Some(c) = text.chars().find(|c| !c.is_ascii()) {
                    return reject(format!(
                        "non-ASCII whitespace (U+{:04X}){loc}: databases disagree on whether it separates words; \
                         use ordinary spaces",
                        c as u32
                    ));
                }
            }
            Token::Whitespace(Whitespace::MultiLineComment(body)) => {
                let b = body.trim_start();
                if b.starts_with('!') || b.starts_with("M!") || b.starts_with('+') {
                    return reject(format!(
                        "executable comments and optimizer hints (/*! … */, /*M! … */, /*+ … */){loc} are not \
                         allowed: their contents would run unchecked; write the SQL without them"
                    ));
                }
            }
            // MySQL ends `-- ` comments only at ASCII whitespace after the dashes.
            Token::Whitespace(Whitespace::SingleLineComment { comment, prefix })
                if d == Dialect::MySql
                    && prefix == "--"
                    && !comment.is_empty()
                    && !comment.starts_with([' ', '\t', '\n', '\r']) =>
            {
                return reject(format!(
                    "`--` followed by `{}`{loc}: MySQL starts a comment only at `-- ` with an ASCII space",
                    comment.chars().next().unwrap_or(' ')
                ));
            }
            Token::CustomBinaryOperator(op) if op.contains("--") || op.contains("/*") => {
                return reject(format!(
                    "operator `{op}`{loc} contains a comment marker; put spaces between operators and comments"
                ));
            }
            Token::Placeholder(p) => check_placeholder(p, d, &loc)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_placeholder(p: &str, d: Dialect, loc: &str) -> Result<(), Rejection> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    let ok = match d {
        Dialect::Sqlite => p == "?" || p.strip_prefix('?').is_some_and(digits),
        Dialect::MySql => p == "?",
        Dialect::Postgres => p.strip_prefix('$').is_some_and(digits),
    };
    if ok {
        Ok(())
    } else {
        let want = match d {
            Dialect::Sqlite => "`?` or `?1`, `?2`, …",
            Dialect::MySql => "`?`",
            Dialect::Postgres => "`$1`, `$2`, …",
        };
        reject(format!("placeholder `{p}`{loc} is not allowed; use {want} and pass the values in `params`"))
    }
}

/// The leading keyword(s) of the query, for messages (from the tokens:
/// printing a whole statement just to name it could recurse deeply).
/// Statements that are no query, refused by name when they do not parse
/// (a misspelt SELECT is a parse error, not "not allowed").
const NOT_QUERIES: &[&str] = &[
    "PRAGMA",
    "ATTACH",
    "DETACH",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "ANALYSE",
    "CALL",
    "DO",
    "COPY",
    "LOAD",
    "SET",
    "SHOW",
    "USE",
    "LOCK",
    "UNLOCK",
    "GRANT",
    "REVOKE",
    "TRUNCATE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "UPSERT",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "RENAME",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "EXPLAIN",
    "DESCRIBE",
    "DESC",
    "DECLARE",
    "FETCH",
    "CLOSE",
    "LISTEN",
    "NOTIFY",
    "UNLISTEN",
    "HANDLER",
    "KILL",
    "FLUSH",
    "RESET",
    "DISCARD",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "CHECKPOINT",
    "CLUSTER",
    "COMMENT",
    "SECURITY",
    "REFRESH",
    "IMPORT",
    "INSTALL",
    "UNINSTALL",
    "OPTIMIZE",
    "REPAIR",
    "CHECK",
    "CACHE",
    "PURGE",
    "SHUTDOWN",
    "HELP",
];

fn statement_keyword(tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> String {
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(2)
        .map(|t| match &t.token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    match words.as_slice() {
        [a, b] if matches!(a.as_str(), "CREATE" | "DROP" | "ALTER" | "EXPLAIN") && !b.is_empty() => {
            format!("{a} {b}")
        }
        [a, ..] if !a.is_empty() => a.clone(),
        _ => "this statement".into(),
    }
}

#[derive(Default)]
struct Placeholders {
    anonymous: usize,
    max_numbered: usize,
}

impl Placeholders {
    fn count(&self) -> usize {
        self.anonymous.max(self.max_numbered)
    }
}

/// One WITH clause in scope.
struct Scope {
    /// CTE names, folded.
    names: Vec<String>,
    /// Their output columns, where known (PostgreSQL).
    columns: Vec<Option<Vec<String>>>,
    /// How many of them the part being walked can see.
    visible: usize,
}

struct Walker<'a> {
    d: Dialect,
    rules: &'a NameRules,
    tables: &'a TableAllow,
    catalog: &'a Catalog,
    scopes: Vec<Scope>,
    /// The FROM items of the SELECTs being walked, innermost last.
    from_scopes: Vec<Vec<columns::FromItem>>,
    read: Vec<Resolved>,
    depth: usize,
    placeholders: Placeholders,
}

type R = Result<(), Rejection>;

/// Refuse a construct by name, saying what to use instead.
fn not_allowed(what: &str, instead: &str) -> R {
    reject(format!("{what} is not allowed in a read-only query here; {instead}"))
}

fn first_words(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "(none on this database)".into() } else { names.join(", ") }
}
