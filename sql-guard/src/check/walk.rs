//! The walk over queries and SELECTs: a query's WITH (CTE scoping: what
//! each CTE and the query body can see), ORDER BY, LIMIT and FETCH, set
//! operations and VALUES, and the clauses of a SELECT. FROM items are in
//! `from.rs`, names in `idents.rs`.

use sqlparser::ast::{
    Distinct, GroupByExpr, LimitClause, NamedWindowExpr, OrderBy, OrderByExpr, OrderByKind, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetQuantifier,
    WildcardAdditionalOptions,
};

use super::{ALLOWED, MAX_DEPTH, R, Scope, Walker, not_allowed, reject};
use crate::Dialect;

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
