//! The checker. It parses the caller's text in the
//! backend's dialect, walks the whole AST and accepts only constructs it
//! knows (an allow-list: statement kinds, table factors, expressions,
//! functions, operators, types), checks every relation against the policy,
//! and returns the canonical SQL printed back from that AST. The database
//! runs that text, never the caller's (see `canonical.rs` for why it is
//! safe to send). The engine's own permissions are the other layer
//! (`sqlite.rs`, `postgres.rs`, `mysql.rs`).

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Distinct, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator, LimitClause,
    NamedWindowExpr, ObjectName, ObjectNamePart, OrderBy, OrderByExpr, OrderByKind, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetQuantifier, Spanned, Statement,
    TableAlias, TableFactor, TableWithJoins, UnaryOperator, Value, WildcardAdditionalOptions,
    WindowFrameBound, WindowSpec, WindowType,
};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

mod columns;
mod qualify;

use crate::catalog::Catalog;
use crate::names::{NameRules, Resolved};
use crate::tables::TableAllow;
use crate::{Dialect, allow, canonical};

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

impl Walker<'_> {
    fn deeper(&mut self) -> R {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return reject(format!(
                "the query nests expressions or subqueries more than {MAX_DEPTH} levels deep; simplify it"
            ));
        }
        Ok(())
    }

    fn query(&mut self, q: &Query) -> R {
        self.deeper()?;
        if !q.locks.is_empty() {
            return not_allowed("FOR UPDATE / FOR SHARE", "remove the locking clause");
        }
        if q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return not_allowed("FOR XML/JSON, SETTINGS, FORMAT or pipe syntax", &format!("send {ALLOWED}"));
        }
        let from_depth = self.from_scopes.len();
        let pushed = match &q.with {
            Some(with) => {
                self.scopes.push(Scope {
                    names: with.cte_tables.iter().map(|c| self.ident(&c.alias.name)).collect(),
                    columns: vec![None; with.cte_tables.len()],
                    visible: 0,
                });
                for (i, cte) in with.cte_tables.iter().enumerate() {
                    if cte.from.is_some() {
                        return not_allowed("CTE ... FROM", "write a plain WITH name AS (SELECT …)");
                    }
                    self.alias(&cte.alias)?;
                    // A CTE sees the ones before it, and itself when recursive.
                    self.scopes.last_mut().expect("pushed").visible = if with.recursive { i + 1 } else { i };
                    self.query(&cte.query)?;
                    let columns = if cte.alias.columns.is_empty() {
                        self.output_names(&cte.query)
                    } else {
                        Some(cte.alias.columns.iter().map(|c| self.ident(&c.name)).collect())
                    };
                    self.scopes.last_mut().expect("pushed").columns[i] = columns;
                }
                self.scopes.last_mut().expect("pushed").visible = with.cte_tables.len();
                true
            }
            None => false,
        };
        self.set_expr(&q.body)?;
        if let Some(OrderBy { kind, interpolate }) = &q.order_by {
            if interpolate.is_some() {
                return not_allowed("INTERPOLATE", "remove it");
            }
            match kind {
                OrderByKind::Expressions(list) => self.order_by(list)?,
                OrderByKind::All(_) => return not_allowed("ORDER BY ALL", "list the columns"),
            }
        }
        match &q.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset { limit, offset, limit_by }) => {
                if !limit_by.is_empty() {
                    return not_allowed("LIMIT … BY", "use LIMIT n");
                }
                if let Some(l) = limit {
                    self.expr(l)?;
                }
                if let Some(o) = offset {
                    self.expr(&o.value)?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset)?;
                self.expr(limit)?;
            }
        }
        if let Some(f) = &q.fetch {
            if f.percent {
                return not_allowed("FETCH … PERCENT", "use LIMIT n");
            }
            if let Some(e) = &f.quantity {
                self.expr(e)?;
            }
        }
        if pushed {
            self.scopes.pop();
        }
        // The FROM items of this query's SELECT were in scope for its ORDER BY.
        self.from_scopes.truncate(from_depth);
        self.depth -= 1;
        Ok(())
    }

    fn set_expr(&mut self, body: &SetExpr) -> R {
        match body {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, set_quantifier, .. } => {
                if !matches!(
                    set_quantifier,
                    SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None
                ) {
                    return not_allowed("UNION BY NAME", "use UNION / UNION ALL");
                }
                self.deeper()?;
                let from_depth = self.from_scopes.len();
                self.set_expr(left)?;
                self.from_scopes.truncate(from_depth);
                self.set_expr(right)?;
                self.from_scopes.truncate(from_depth);
                self.depth -= 1;
                Ok(())
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    self.exprs(&row.content)?;
                }
                Ok(())
            }
            SetExpr::Table(_) => not_allowed("`TABLE name`", "write SELECT * FROM name"),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                reject(format!("data-modifying statement inside the query is not allowed; send {ALLOWED}"))
            }
        }
    }

    fn select(&mut self, s: &Select) -> R {
        if s.into.is_some() {
            return reject(
                "SELECT … INTO writes a table, file or variable and is not allowed; remove the INTO clause",
            );
        }
        if !s.optimizer_hints.is_empty() {
            return not_allowed("optimizer hints", "remove the /*+ … */ hint");
        }
        if s.top.is_some() {
            return not_allowed("TOP", "use LIMIT n");
        }
        if s.select_modifiers.is_some() {
            return not_allowed("SELECT modifiers (HIGH_PRIORITY, SQL_CALC_FOUND_ROWS, …)", "remove them");
        }
        if s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.qualify.is_some()
            || s.value_table_mode.is_some()
            || !matches!(s.flavor, SelectFlavor::Standard)
        {
            return not_allowed(
                "this SELECT clause (EXCLUDE, LATERAL VIEW, PREWHERE, CONNECT BY, CLUSTER/DISTRIBUTE/SORT BY, \
                 QUALIFY, FROM-first)",
                "use SELECT … FROM … WHERE … GROUP BY … HAVING … ORDER BY … LIMIT",
            );
        }
        // The FROM items, for `t.column` (PostgreSQL): in scope from here to
        // the end of the query, subqueries and LATERAL included.
        if self.d == Dialect::Postgres {
            let items = self.from_items(&s.from);
            self.from_scopes.push(items);
        }
        // FROM first: it brings the tables, and walking it checks them.
        for t in &s.from {
            self.table_with_joins(t)?;
        }
        if let Some(Distinct::On(list)) = &s.distinct {
            self.exprs(list)?;
        }
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => self.expr(e)?,
                SelectItem::ExprWithAlias { expr, .. } => self.expr(expr)?,
                SelectItem::Wildcard(o) => self.wildcard(o)?,
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), o) => {
                    self.plain_name(n)?;
                    self.wildcard(o)?;
                }
                SelectItem::QualifiedWildcard(..) | SelectItem::ExprWithAliases { .. } => {
                    return not_allowed("this select item", "select columns, expressions, * or table.*");
                }
            }
        }
        if let Some(e) = &s.selection {
            self.expr(e)?;
        }
        match &s.group_by {
            GroupByExpr::Expressions(list, modifiers) => {
                if !modifiers.is_empty() && self.d != Dialect::MySql {
                    return not_allowed("GROUP BY modifiers", "use GROUP BY expressions");
                }
                self.exprs(list)?;
            }
            GroupByExpr::All(_) => return not_allowed("GROUP BY ALL", "list the columns"),
        }
        if let Some(e) = &s.having {
            self.expr(e)?;
        }
        for w in &s.named_window {
            match &w.1 {
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
                NamedWindowExpr::NamedWindow(_) => {}
            }
        }
        Ok(())
    }

    fn wildcard(&mut self, o: &WildcardAdditionalOptions) -> R {
        if o.opt_ilike.is_some()
            || o.opt_exclude.is_some()
            || o.opt_except.is_some()
            || o.opt_replace.is_some()
            || o.opt_rename.is_some()
            || o.opt_alias.is_some()
        {
            return not_allowed("* EXCEPT/EXCLUDE/REPLACE/RENAME", "list the columns you want");
        }
        Ok(())
    }

    fn table_with_joins(&mut self, t: &TableWithJoins) -> R {
        self.table_factor(&t.relation)?;
        for j in &t.joins {
            if j.global {
                return not_allowed("GLOBAL JOIN", "use JOIN");
            }
            self.table_factor(&j.relation)?;
            let c = match &j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => c,
                JoinOperator::StraightJoin(c) if self.d == Dialect::MySql => c,
                _ => {
                    return not_allowed(
                        "this kind of join",
                        "use JOIN, LEFT/RIGHT/FULL [OUTER] JOIN or CROSS JOIN",
                    );
                }
            };
            match c {
                JoinConstraint::On(e) => self.expr(e)?,
                JoinConstraint::Using(cols) => {
                    for c in cols {
                        self.plain_name(c)?;
                    }
                }
                JoinConstraint::Natural | JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, f: &TableFactor) -> R {
        match f {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return not_allowed(
                        "table hints, PARTITION, TABLESAMPLE, time travel or index hints",
                        "name the table plainly",
                    );
                }
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                match args {
                    Some(a) => {
                        if a.settings.is_some() {
                            return not_allowed("SETTINGS", "remove them");
                        }
                        self.table_function(name, &a.args)
                    }
                    None if *with_ordinality => not_allowed("WITH ORDINALITY on a table", "remove it"),
                    None => self.relation(name),
                }
            }
            TableFactor::Derived { subquery, alias, sample, .. } => {
                if sample.is_some() {
                    return not_allowed("TABLESAMPLE", "remove it");
                }
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.query(subquery)
            }
            TableFactor::Function { name, args, alias, .. } => {
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.table_function(name, args)
            }
            TableFactor::UNNEST { alias, array_exprs, with_offset, .. } if self.d == Dialect::Postgres => {
                if *with_offset {
                    return not_allowed("UNNEST … WITH OFFSET", "use WITH ORDINALITY");
                }
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.exprs(array_exprs)
            }
            TableFactor::NestedJoin { table_with_joins, alias } => {
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.deeper()?;
                self.table_with_joins(table_with_joins)?;
                self.depth -= 1;
                Ok(())
            }
            other => reject(format!(
                "`{}` in FROM is not allowed; read from tables, subqueries or the table functions {}",
                first_words(&other.to_string()),
                list_or_none(allow::table_functions(self.d))
            )),
        }
    }

    /// A table alias with optional column names (types only where a table
    /// function needs a column definition list).
    fn alias(&mut self, a: &TableAlias) -> R {
        if a.at.is_some() {
            return not_allowed("alias AT", "use a plain alias");
        }
        for c in &a.columns {
            if let Some(t) = &c.data_type {
                self.data_type(t)?;
            }
        }
        Ok(())
    }

    fn table_function(&mut self, name: &ObjectName, args: &[FunctionArg]) -> R {
        let (fname, loc) = self.function_name(name)?;
        if !allow::table_function(self.d, &fname) {
            return reject(format!(
                "`{fname}(…)`{loc} cannot be read as a table here; read from tables, subqueries or the table \
                 functions {}",
                list_or_none(allow::table_functions(self.d))
            ));
        }
        for a in args {
            self.function_arg(a)?;
        }
        Ok(())
    }

    /// A relation in FROM: a CTE in scope, or a table the policy allows.
    fn relation(&mut self, name: &ObjectName) -> R {
        let parts = self.name_parts(name)?;
        let loc = at(name.span().start);
        if let [table] = parts.as_slice() {
            let folded = self.rules.fold(&table.value, table.quote_style.is_some());
            let is_cte =
                self.scopes.iter().any(|s| s.names[..s.visible].iter().any(|n| self.same_cte(n, &folded)));
            if is_cte {
                return Ok(());
            }
        }
        let r = match parts.as_slice() {
            [table] => self.rules.resolve(None, (&table.value, table.quote_style.is_some())),
            [schema, table] => self.rules.resolve(
                Some((&schema.value, schema.quote_style.is_some())),
                (&table.value, table.quote_style.is_some()),
            ),
            _ => {
                return reject(format!(
                    "`{name}`{loc} has more than two parts; name tables as `table` or `schema.table`"
                ));
            }
        };
        if !self.rules.allows(self.tables, &r) {
            let why = if self.rules.is_system(&r) {
                "system catalogues cannot be read; GET /schema lists the tables and columns you may use"
                    .to_string()
            } else {
                format!("allowed tables: {}", self.tables.describe())
            };
            return reject(format!("table `{name}`{loc} is not allowed by this policy; {why}"));
        }
        self.read.push(r);
        Ok(())
    }

    /// CTE names: exact on MySQL (whose rule we do not rely on), the
    /// database's own comparison elsewhere. A name we take for a CTE must be
    /// one the database takes for it too, or a table would go unchecked.
    fn same_cte(&self, cte: &str, name: &str) -> bool {
        match self.d {
            Dialect::MySql => cte == name,
            _ => self.rules.same_name(cte, name),
        }
    }

    fn ident(&self, i: &Ident) -> String {
        self.rules.fold(&i.value, i.quote_style.is_some())
    }

    fn name_parts<'n>(&self, name: &'n ObjectName) -> Result<Vec<&'n Ident>, Rejection> {
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
    fn check_ident(&self, i: &Ident) -> R {
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
    fn keyword_function(&self, i: &Ident) -> R {
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
    fn plain_name(&self, n: &ObjectName) -> R {
        self.name_parts(n).map(|_| ())
    }

    fn order_by(&mut self, list: &[OrderByExpr]) -> R {
        for o in list {
            if o.with_fill.is_some() {
                return not_allowed("WITH FILL", "remove it");
            }
            self.expr(&o.expr)?;
        }
        Ok(())
    }

    fn exprs(&mut self, list: &[Expr]) -> R {
        list.iter().try_for_each(|e| self.expr(e))
    }

    fn expr(&mut self, e: &Expr) -> R {
        self.deeper()?;
        self.expr_inner(e)?;
        self.depth -= 1;
        Ok(())
    }

    fn expr_inner(&mut self, e: &Expr) -> R {
        let d = self.d;
        match e {
            Expr::Identifier(i) => {
                self.check_ident(i)?;
                self.keyword_function(i)
            }
            Expr::CompoundIdentifier(parts) => {
                parts.iter().try_for_each(|i| self.check_ident(i))?;
                if d == Dialect::Postgres { self.dotted(parts) } else { Ok(()) }
            }
            Expr::Value(v) => self.value(&v.value, at(v.span.start)),
            Expr::TypedString(t) => {
                self.data_type(&t.data_type)?;
                self.value(&t.value.value, at(t.value.span.start))
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x) => self.expr(x),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::InList { expr, list, .. } => {
                self.expr(expr)?;
                self.exprs(list)
            }
            Expr::InSubquery { expr, subquery, .. } => {
                self.expr(expr)?;
                self.query(subquery)
            }
            Expr::Between { expr, low, high, .. } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::BinaryOp { left, op, right } => {
                self.binary_op(op, e)?;
                self.expr(left)?;
                self.expr(right)
            }
            Expr::Like { expr, pattern, escape_char, any, .. }
            | Expr::ILike { expr, pattern, escape_char, any, .. } => {
                if *any {
                    return not_allowed("LIKE ANY", "use several LIKE conditions joined by OR");
                }
                if matches!(e, Expr::ILike { .. }) && d != Dialect::Postgres {
                    return not_allowed("ILIKE", "use LOWER(x) LIKE LOWER(pattern)");
                }
                self.expr(expr)?;
                self.expr(pattern)?;
                escape_char.as_deref().map_or(Ok(()), |x| self.expr(x))
            }
            Expr::SimilarTo { expr, pattern, escape_char, .. } if d == Dialect::Postgres => {
                self.expr(expr)?;
                self.expr(pattern)?;
                escape_char.as_deref().map_or(Ok(()), |x| self.expr(x))
            }
            Expr::RLike { expr, pattern, .. } if d == Dialect::MySql => {
                self.expr(expr)?;
                self.expr(pattern)
            }
            Expr::AnyOp { left, compare_op, right, .. } | Expr::AllOp { left, compare_op, right } => {
                if d != Dialect::Postgres {
                    return not_allowed("ANY/ALL", "use IN (subquery) or EXISTS");
                }
                self.binary_op(compare_op, e)?;
                self.expr(left)?;
                self.expr(right)
            }
            Expr::UnaryOp { op, expr } => {
                let ok = match op {
                    UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not => true,
                    UnaryOperator::BitwiseNot => true,
                    UnaryOperator::PGSquareRoot | UnaryOperator::PGCubeRoot | UnaryOperator::PGAbs => {
                        d == Dialect::Postgres
                    }
                    UnaryOperator::BangNot => d == Dialect::MySql,
                    _ => false,
                };
                if !ok {
                    return reject(format!(
                        "unary operator `{op}`{} is not allowed here; use -, +, NOT or a function",
                        at(e.span().start)
                    ));
                }
                self.expr(expr)
            }
            Expr::Cast { kind, expr, data_type, format } => {
                if format.is_some() || matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return not_allowed("TRY_CAST / SAFE_CAST / CAST … FORMAT", "use CAST(x AS type)");
                }
                if matches!(kind, CastKind::DoubleColon) && d != Dialect::Postgres {
                    return not_allowed("`::` casts", "use CAST(x AS type)");
                }
                self.data_type(data_type)?;
                self.expr(expr)
            }
            Expr::Convert { is_try, expr, data_type, styles, .. } if d == Dialect::MySql => {
                if *is_try || !styles.is_empty() {
                    return not_allowed("TRY_CONVERT or CONVERT styles", "use CONVERT(x, type) or CAST");
                }
                if let Some(t) = data_type {
                    self.data_type(t)?;
                }
                self.expr(expr)
            }
            Expr::AtTimeZone { timestamp, time_zone } if d == Dialect::Postgres => {
                self.expr(timestamp)?;
                self.expr(time_zone)
            }
            Expr::Extract { expr, .. } if d != Dialect::Sqlite => self.expr(expr),
            Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                use sqlparser::ast::{CeilFloorKind, DateTimeField};
                if !matches!(field, CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)) {
                    return not_allowed("CEIL/FLOOR with a unit or scale", "use ceil(x) or floor(x)");
                }
                self.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            Expr::Substring { expr, substring_from, substring_for, .. } => {
                self.expr(expr)?;
                for x in [substring_from, substring_for].into_iter().flatten() {
                    self.expr(x)?;
                }
                Ok(())
            }
            Expr::Trim { expr, trim_what, trim_characters, .. } => {
                self.expr(expr)?;
                if let Some(x) = trim_what {
                    self.expr(x)?;
                }
                trim_characters.as_deref().map_or(Ok(()), |c| self.exprs(c))
            }
            Expr::Overlay { expr, overlay_what, overlay_from, overlay_for } if d == Dialect::Postgres => {
                self.expr(expr)?;
                self.expr(overlay_what)?;
                self.expr(overlay_from)?;
                overlay_for.as_deref().map_or(Ok(()), |x| self.expr(x))
            }
            Expr::Collate { expr, collation } => {
                self.plain_name(collation)?;
                self.expr(expr)
            }
            Expr::Function(f) => self.function(f),
            Expr::Case { operand, conditions, else_result, .. } => {
                if let Some(x) = operand {
                    self.expr(x)?;
                }
                for c in conditions {
                    self.expr(&c.condition)?;
                    self.expr(&c.result)?;
                }
                else_result.as_deref().map_or(Ok(()), |x| self.expr(x))
            }
            Expr::Exists { subquery, .. } => self.query(subquery),
            Expr::Subquery(q) => self.query(q),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) if d != Dialect::Sqlite => {
                sets.iter().try_for_each(|s| self.exprs(s))
            }
            Expr::Tuple(list) => self.exprs(list),
            Expr::Array(a) if d == Dialect::Postgres => self.exprs(&a.elem),
            Expr::Interval(i) if d != Dialect::Sqlite => self.expr(&i.value),
            Expr::CompoundFieldAccess { root, access_chain } if d == Dialect::Postgres => {
                use sqlparser::ast::{AccessExpr, Subscript};
                self.expr(root)?;
                for a in access_chain {
                    match a {
                        AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index)?,
                        AccessExpr::Subscript(Subscript::Slice { lower_bound, upper_bound, stride }) => {
                            for x in [lower_bound, upper_bound, stride].into_iter().flatten() {
                                self.expr(x)?;
                            }
                        }
                        AccessExpr::Dot(Expr::Identifier(name)) => self.field(name)?,
                        AccessExpr::Dot(_) => {
                            return not_allowed("this field access", "select columns by name");
                        }
                    }
                }
                Ok(())
            }
            other => reject(format!(
                "`{}`{} is not an expression sluice allows on {}; use columns, literals, operators, CASE, \
                 CAST, subqueries and the allowed functions",
                first_words(&other.to_string()),
                at(other.span().start),
                d.name()
            )),
        }
    }

    fn binary_op(&self, op: &BinaryOperator, e: &Expr) -> R {
        use BinaryOperator as B;
        let d = self.d;
        let ok = match op {
            B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::Gt
            | B::Lt
            | B::GtEq
            | B::LtEq
            | B::Eq
            | B::NotEq
            | B::And
            | B::Or
            | B::StringConcat
            | B::BitwiseAnd
            | B::BitwiseOr => true,
            B::PGBitwiseShiftLeft | B::PGBitwiseShiftRight => true,
            B::Arrow | B::LongArrow => true,
            B::Xor | B::BitwiseXor | B::MyIntegerDivide | B::Spaceship => d == Dialect::MySql,
            B::PGBitwiseXor
            | B::PGExp
            | B::PGOverlap
            | B::PGRegexMatch
            | B::PGRegexIMatch
            | B::PGRegexNotMatch
            | B::PGRegexNotIMatch
            | B::PGLikeMatch
            | B::PGILikeMatch
            | B::PGNotLikeMatch
            | B::PGNotILikeMatch
            | B::PGStartsWith
            | B::HashArrow
            | B::HashLongArrow
            | B::AtAt
            | B::AtArrow
            | B::ArrowAt
            | B::HashMinus
            | B::AtQuestion
            | B::Question
            | B::QuestionAnd
            | B::QuestionPipe => d == Dialect::Postgres,
            B::Glob => d == Dialect::Sqlite,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            reject(format!(
                "operator `{op}`{} is not allowed on {}; use comparison, arithmetic, AND/OR/NOT, LIKE, IN, \
                 BETWEEN, || and the JSON operators",
                at(e.span().start),
                d.name()
            ))
        }
    }

    fn value(&mut self, v: &Value, loc: String) -> R {
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

    fn function(&mut self, f: &Function) -> R {
        if f.uses_odbc_syntax || !matches!(f.parameters, FunctionArguments::None) {
            return not_allowed("this function call syntax", "call functions as name(arguments)");
        }
        let (name, loc) = self.function_name(&f.name)?;
        if self.d == Dialect::MySql && !self.catalog.is_builtin(&name) {
            return reject(format!(
                "function `{name}`{loc} is not a built-in function of this server (the call would run a stored \
                 function of that name); sluice calls built-in functions only"
            ));
        }
        if !allow::function(self.d, &name) {
            let similar = allow::similar(self.d, &name);
            let hint = if similar.is_empty() {
                String::new()
            } else {
                format!(" Similar allowed functions: {}.", similar.join(", "))
            };
            return reject(format!(
                "function `{name}`{loc} is not allowed on {}: sluice allows only functions known to compute on \
                 their arguments alone (aggregates, window, math, text, date/time, JSON, arrays); the full list \
                 is under `functions` in GET /schema.{hint}",
                self.d.name()
            ));
        }
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) if self.d == Dialect::Postgres && name == "array" => {
                self.query(q)?
            }
            FunctionArguments::Subquery(_) => {
                return not_allowed("a subquery as function argument", "use (SELECT …)");
            }
            FunctionArguments::List(list) => {
                for a in &list.args {
                    self.function_arg(a)?;
                }
                for c in &list.clauses {
                    match c {
                        FunctionArgumentClause::OrderBy(o) => self.order_by(o)?,
                        FunctionArgumentClause::IgnoreOrRespectNulls(_) => {}
                        FunctionArgumentClause::Separator(v) if self.d == Dialect::MySql => {
                            self.value(&v.value, String::new())?
                        }
                        _ => {
                            return not_allowed(
                                "this clause inside a function call",
                                "use ORDER BY or SEPARATOR",
                            );
                        }
                    }
                }
            }
        }
        self.order_by(&f.within_group)?;
        if let Some(x) = &f.filter {
            self.expr(x)?;
        }
        match &f.over {
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec)?,
            Some(WindowType::NamedWindow(_)) | None => {}
        }
        Ok(())
    }

    /// A function's name: one part, as the database looks it up. Quoted
    /// names only on PostgreSQL, where `"lower"` is `lower` (and `"LOWER"`
    /// is no built-in at all); elsewhere a quoted name may be a stored
    /// function.
    fn function_name(&self, name: &ObjectName) -> Result<(String, String), Rejection> {
        let loc = at(name.span().start);
        let parts = self.name_parts(name)?;
        let one = match parts.as_slice() {
            [one] => one,
            // The built-ins' own schema, as sluice prints calls on PostgreSQL.
            [schema, one] if self.d == Dialect::Postgres && self.ident(schema) == "pg_catalog" => one,
            _ => {
                return reject(format!(
                    "function `{name}`{loc}: call functions without a schema, e.g. lower(x)"
                ));
            }
        };
        match one.quote_style {
            None => Ok((one.value.to_ascii_lowercase(), loc)),
            Some(_) if self.d == Dialect::Postgres => Ok((one.value.clone(), loc)),
            Some(_) => reject(format!("function `{name}`{loc}: write function names without quotes")),
        }
    }

    fn function_arg(&mut self, a: &FunctionArg) -> R {
        let arg = match a {
            FunctionArg::Unnamed(arg) => arg,
            FunctionArg::Named { arg, .. } if self.d == Dialect::Postgres => arg,
            _ => return not_allowed("named function arguments", "pass arguments by position"),
        };
        match arg {
            FunctionArgExpr::Expr(e) => self.expr(e),
            FunctionArgExpr::Wildcard => Ok(()),
            FunctionArgExpr::QualifiedWildcard(n) => self.plain_name(n),
            FunctionArgExpr::WildcardWithOptions(o) => self.wildcard(o),
        }
    }

    fn window_spec(&mut self, w: &WindowSpec) -> R {
        self.exprs(&w.partition_by)?;
        self.order_by(&w.order_by)?;
        if let Some(frame) = &w.window_frame {
            for b in std::iter::once(&frame.start_bound).chain(frame.end_bound.as_ref()) {
                if let WindowFrameBound::Preceding(Some(x)) | WindowFrameBound::Following(Some(x)) = b {
                    self.expr(x)?;
                }
            }
        }
        Ok(())
    }

    /// Types a CAST may name: plain scalar types, no object or row types.
    fn data_type(&self, t: &DataType) -> R {
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
                ["timestamptz", "timetz", "citext", "tsvector", "tsquery", "name"].contains(&n.as_str())
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
