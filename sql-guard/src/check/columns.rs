//! PostgreSQL reads `t.name` as the column `name` of the FROM item `t` when
//! it has one, and otherwise as a call of the function `name(t)` — of any
//! function, whatever the allow-list says (`(x).name` likewise). So on
//! PostgreSQL a dotted name is accepted only where the guard knows it is a
//! real column: the FROM items of each SELECT are listed with their columns
//! (base tables from the catalogue, CTEs and subqueries from their output
//! names, table functions from what they return), and a name the guard
//! cannot place is refused unless it is an allowed function anyway.
//! Knowing too few columns only refuses a query; claiming one that is not
//! there would let a call through, so every guess errs on the short side.

use sqlparser::ast::{
    Expr, Ident, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor,
    TableWithJoins,
};

use super::{R, Walker, at, reject};

/// One FROM item of a SELECT.
#[derive(Debug, Clone)]
pub(super) struct FromItem {
    /// The name a query refers to it by (alias, table or function), folded.
    name: String,
    /// An unaliased table's schema, for `schema.table.column`.
    schema: Option<String>,
    /// Its columns, folded; `None` when the guard cannot know them.
    columns: Option<Vec<String>>,
}

impl Walker<'_> {
    /// The FROM items of one SELECT.
    pub(super) fn items_of_from(&self, from: &[TableWithJoins]) -> Vec<FromItem> {
        let mut items = Vec::new();
        for t in from {
            self.items_of(&t.relation, &mut items);
            for j in &t.joins {
                self.items_of(&j.relation, &mut items);
            }
        }
        items
    }

    pub(super) fn items_of(&self, f: &TableFactor, out: &mut Vec<FromItem>) {
        match f {
            TableFactor::Table { name, alias, args: None, .. } => {
                let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
                let item = match parts.as_slice() {
                    [t] if self.cte_columns(&self.ident(t)).is_some() => FromItem {
                        name: self.ident(t),
                        schema: None,
                        columns: self.cte_columns(&self.ident(t)).flatten(),
                    },
                    [t] => self.base_table(None, t),
                    [s, t] => self.base_table(Some(s), t),
                    _ => return,
                };
                out.push(self.aliased(alias.as_ref(), item));
            }
            TableFactor::Table { name, alias, args: Some(_), with_ordinality, .. }
            | TableFactor::Function { name, alias, with_ordinality, .. } => {
                let fname = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase());
                let fname = fname.unwrap_or_default();
                let named = alias.as_ref().map(|a| self.ident(&a.name)).unwrap_or_else(|| fname.clone());
                let columns: Option<Vec<String>> = match fname.as_str() {
                    "json_each" | "json_each_text" | "jsonb_each" | "jsonb_each_text" => {
                        Some(vec!["key".into(), "value".into()])
                    }
                    "json_array_elements"
                    | "json_array_elements_text"
                    | "jsonb_array_elements"
                    | "jsonb_array_elements_text" => Some(vec!["value".into()]),
                    // Functions of a base type: one column, named by the alias.
                    "generate_series"
                    | "generate_subscripts"
                    | "regexp_matches"
                    | "regexp_split_to_table"
                    | "string_to_table"
                    | "json_object_keys"
                    | "jsonb_object_keys"
                    | "jsonb_path_query" => Some(vec![named]),
                    // Records or arrays of rows (`unnest` of a composite array,
                    // `json_to_recordset`): only an alias column list names them.
                    _ => None,
                };
                let columns = columns.map(|mut c| {
                    if *with_ordinality {
                        c.push("ordinality".into());
                    }
                    c
                });
                out.push(self.aliased(alias.as_ref(), FromItem { name: fname, schema: None, columns }));
            }
            // An array of rows unnests into their columns, several arrays into
            // several columns: only an alias column list names them.
            TableFactor::UNNEST { alias, .. } => {
                let item = FromItem { name: "unnest".into(), schema: None, columns: None };
                out.push(self.aliased(alias.as_ref(), item));
            }
            TableFactor::Derived { subquery, alias, .. } => {
                let item =
                    FromItem { name: String::new(), schema: None, columns: self.output_names(subquery) };
                out.push(self.aliased(alias.as_ref(), item));
            }
            TableFactor::NestedJoin { table_with_joins, alias: None } => {
                out.extend(self.items_of_from(std::slice::from_ref(table_with_joins)));
            }
            TableFactor::NestedJoin { alias: Some(a), .. } => {
                out.push(FromItem { name: self.ident(&a.name), schema: None, columns: None });
            }
            _ => {}
        }
    }

    pub(super) fn base_table(&self, schema: Option<&Ident>, table: &Ident) -> FromItem {
        let r = self.rules.resolve(
            schema.map(|s| (s.value.as_str(), s.quote_style.is_some())),
            (table.value.as_str(), table.quote_style.is_some()),
        );
        let columns = self.catalog.columns(&r.schema, &r.table).map(|cols| cols.to_vec());
        FromItem { name: r.table, schema: Some(r.schema), columns }
    }

    /// An alias renames the item and, in order, its first columns.
    pub(super) fn aliased(&self, alias: Option<&TableAlias>, mut item: FromItem) -> FromItem {
        let Some(a) = alias else { return item };
        item.name = self.ident(&a.name);
        item.schema = None;
        if !a.columns.is_empty() {
            let mut cols = item.columns.unwrap_or_default();
            for (i, c) in a.columns.iter().enumerate() {
                let name = self.ident(&c.name);
                match cols.get_mut(i) {
                    Some(slot) => *slot = name,
                    None => cols.push(name),
                }
            }
            item.columns = Some(cols);
        }
        item
    }

    /// The output columns of a CTE in scope: `Some(None)` for a CTE whose
    /// columns are unknown, `None` when no CTE has that name.
    pub(super) fn cte_columns(&self, name: &str) -> Option<Option<Vec<String>>> {
        self.scopes.iter().rev().find_map(|s| {
            s.names[..s.visible].iter().position(|n| self.same_cte(n, name)).map(|i| s.columns[i].clone())
        })
    }

    /// The names of a query's output columns, as PostgreSQL names them.
    pub(super) fn output_names(&self, q: &Query) -> Option<Vec<String>> {
        // Its own WITH is out of scope once it has been walked, and a CTE of
        // it may share a table's name: not followed.
        if q.with.is_some() {
            return None;
        }
        self.set_expr_names(&q.body)
    }

    pub(super) fn set_expr_names(&self, body: &SetExpr) -> Option<Vec<String>> {
        match body {
            SetExpr::Select(s) => {
                let mut items: Option<Vec<FromItem>> = None;
                let mut out = Vec::new();
                for p in &s.projection {
                    match p {
                        SelectItem::ExprWithAlias { alias, .. } => out.push(self.ident(alias)),
                        SelectItem::UnnamedExpr(e) => out.push(self.expr_name(e)),
                        // `*` over USING or NATURAL joins merges and reorders
                        // the joined columns: not followed.
                        SelectItem::Wildcard(_) if merges_columns(&s.from) => return None,
                        SelectItem::Wildcard(_) => {
                            for it in items.get_or_insert_with(|| self.items_of_from(&s.from)).iter() {
                                out.extend(it.columns.clone()?);
                            }
                        }
                        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                            let q = self.ident(n.0.last()?.as_ident()?);
                            let all = items.get_or_insert_with(|| self.items_of_from(&s.from));
                            out.extend(all.iter().find(|it| it.name == q)?.columns.clone()?);
                        }
                        _ => return None,
                    }
                }
                Some(out)
            }
            SetExpr::Query(q) => self.output_names(q),
            SetExpr::SetOperation { left, .. } => self.set_expr_names(left),
            SetExpr::Values(v) => {
                Some((1..=v.rows.first()?.content.len()).map(|i| format!("column{i}")).collect())
            }
            _ => None,
        }
    }

    /// PostgreSQL's name for an unaliased output column (FigureColname), or
    /// `?column?` where the guard does not follow it.
    pub(super) fn expr_name(&self, e: &Expr) -> String {
        match e {
            Expr::Identifier(i) => self.ident(i),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| self.ident(i)).unwrap_or_default(),
            Expr::Function(f) => f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .unwrap_or_default(),
            Expr::Cast { expr, .. } | Expr::Nested(expr) => self.expr_name(expr),
            _ => "?column?".into(),
        }
    }

    /// `q.c` or `s.t.c` on PostgreSQL: only a column the guard can place.
    /// (Not even an allowed function: `q.upper` would call `upper(q)`
    /// through the search path, not `pg_catalog.upper`.)
    pub(super) fn dotted(&self, parts: &[Ident]) -> R {
        let folded: Vec<String> = parts.iter().map(|i| self.ident(i)).collect();
        let find = |schema: Option<&str>, name: &str| {
            self.from_scopes
                .iter()
                .rev()
                .flat_map(|s| s.iter().rev())
                .find(|it| it.name == name && schema.is_none_or(|sch| it.schema.as_deref() == Some(sch)))
        };
        let (item, column) = match folded.as_slice() {
            [q, c] => (find(None, q), c),
            [s, t, c] => (find(Some(s), t), c),
            _ => (None, folded.last().expect("two or more parts")),
        };
        if item.and_then(|it| it.columns.as_ref()).is_some_and(|cols| cols.contains(column)) {
            return Ok(());
        }
        let name = parts.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(".");
        let known = match item.and_then(|it| it.columns.as_ref()) {
            Some(cols) if !cols.is_empty() => format!(" (its columns: {})", cols.join(", ")),
            _ => String::new(),
        };
        reject(format!(
            "`{name}`{}: on PostgreSQL this calls the function `{column}` unless `{}` has a column of that name, and \
             sluice cannot find one{known}; name a real column, write it without the table prefix, or alias it in a \
             subquery",
            at(parts[0].span.start),
            folded[..folded.len() - 1].join(".")
        ))
    }

    /// `(x).c` on PostgreSQL: a composite field, or a call of `c(x)`.
    pub(super) fn field(&self, name: &Ident) -> R {
        let c = self.ident(name);
        reject(format!(
            "`(…).{c}`{}: on PostgreSQL this may call a function `{c}`; field selection is not allowed here, use \
             the allowed functions instead",
            at(name.span.start)
        ))
    }
}

/// Does a FROM clause merge columns (USING or NATURAL joins, or joins in
/// parentheses that the guard does not look into for this)?
fn merges_columns(from: &[TableWithJoins]) -> bool {
    use sqlparser::ast::{JoinConstraint, JoinOperator as J};
    from.iter().any(|t| {
        matches!(t.relation, TableFactor::NestedJoin { .. })
            || t.joins.iter().any(|j| {
                let c = match &j.join_operator {
                    J::Join(c)
                    | J::Inner(c)
                    | J::Left(c)
                    | J::LeftOuter(c)
                    | J::Right(c)
                    | J::RightOuter(c)
                    | J::FullOuter(c)
                    | J::CrossJoin(c)
                    | J::StraightJoin(c) => Some(c),
                    _ => None,
                };
                matches!(c, Some(JoinConstraint::Using(_) | JoinConstraint::Natural))
                    || matches!(j.relation, TableFactor::NestedJoin { .. })
            })
    })
}
