//! The walk over queries, SELECTs, FROM items and names: what may appear
//! where, which relations a query reads, and CTE scoping.

use sqlparser::ast::{
    Distinct, FunctionArg, GroupByExpr, Ident, JoinConstraint, JoinOperator, LimitClause, NamedWindowExpr,
    ObjectName, ObjectNamePart, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetQuantifier, Spanned, TableAlias, TableFactor,
    TableWithJoins, WildcardAdditionalOptions,
};

use super::columns::FromItem;
use super::{
    ALLOWED, MAX_DEPTH, R, Rejection, Scope, Walker, at, first_words, list_or_none, not_allowed, reject,
};
use crate::{Dialect, allow};

impl Walker<'_> {
    pub(super) fn deeper(&mut self) -> R {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return reject(format!(
                "the query nests expressions or subqueries more than {MAX_DEPTH} levels deep; simplify it"
            ));
        }
        Ok(())
    }

    pub(super) fn query(&mut self, q: &Query) -> R {
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

    pub(super) fn set_expr(&mut self, body: &SetExpr) -> R {
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

    pub(super) fn select(&mut self, s: &Select) -> R {
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
        // FROM first: it brings the tables, and walking it checks them. Its
        // items (PostgreSQL, for `t.column`) stay in scope to the end of the
        // query; while FROM is walked, each part sees only what PostgreSQL
        // lets it see.
        if self.d == Dialect::Postgres {
            self.from_scopes.push(Vec::new());
        }
        let mut seen = Vec::new();
        for t in &s.from {
            self.table_with_joins(t, &mut seen)?;
        }
        self.set_visible(seen);
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

    pub(super) fn wildcard(&mut self, o: &WildcardAdditionalOptions) -> R {
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

    /// One FROM entry and its joins. `seen` holds the FROM items before it
    /// (PostgreSQL); what each part may refer to is what PostgreSQL lets it
    /// see: a LATERAL subquery or a function the items before it, an ON
    /// clause the items of its own join tree so far, anything else none.
    pub(super) fn table_with_joins(&mut self, t: &TableWithJoins, seen: &mut Vec<FromItem>) -> R {
        let tree = seen.len();
        self.walk_from_item(&t.relation, seen)?;
        for j in &t.joins {
            if j.global {
                return not_allowed("GLOBAL JOIN", "use JOIN");
            }
            self.walk_from_item(&j.relation, seen)?;
            self.set_visible(seen[tree..].to_vec());
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
                    self.join_equality()?;
                }
                JoinConstraint::Natural => self.join_equality()?,
                JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    /// USING and NATURAL joins compare with `=` (PostgreSQL resolves it).
    fn join_equality(&self) -> R {
        if self.d == Dialect::Postgres && self.catalog.is_shadowed_operator("=") {
            return reject(
                "a USING or NATURAL join compares with `=`, which this database also defines outside pg_catalog; \
                 write the join with ON",
            );
        }
        Ok(())
    }

    /// Walk one FROM item with what it may see, then add it to `seen`.
    fn walk_from_item(&mut self, f: &TableFactor, seen: &mut Vec<FromItem>) -> R {
        let sees_left = matches!(
            f,
            TableFactor::Derived { lateral: true, .. }
                | TableFactor::Function { .. }
                | TableFactor::Table { args: Some(_), .. }
                | TableFactor::UNNEST { .. }
        );
        self.set_visible(if sees_left { seen.clone() } else { Vec::new() });
        self.table_factor(f)?;
        if self.d == Dialect::Postgres {
            self.items_of(f, seen);
        }
        Ok(())
    }

    /// The current SELECT's FROM items that the part being walked can see.
    fn set_visible(&mut self, items: Vec<FromItem>) {
        if self.d == Dialect::Postgres
            && let Some(top) = self.from_scopes.last_mut()
        {
            *top = items;
        }
    }

    pub(super) fn table_factor(&mut self, f: &TableFactor) -> R {
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
                let outer = self.from_scopes.last().cloned().unwrap_or_default();
                self.table_with_joins(table_with_joins, &mut Vec::new())?;
                self.set_visible(outer);
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
    pub(super) fn alias(&mut self, a: &TableAlias) -> R {
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

    pub(super) fn table_function(&mut self, name: &ObjectName, args: &[FunctionArg]) -> R {
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
    pub(super) fn relation(&mut self, name: &ObjectName) -> R {
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

    pub(super) fn order_by(&mut self, list: &[OrderByExpr]) -> R {
        for o in list {
            if o.with_fill.is_some() {
                return not_allowed("WITH FILL", "remove it");
            }
            self.expr(&o.expr)?;
        }
        Ok(())
    }
}
