//! FROM items: joins and their constraints, table factors, aliases and
//! table functions, which relations a query reads (a CTE in scope or a
//! table the policy allows), and, on PostgreSQL, which FROM items each
//! part of a FROM clause can see.

use sqlparser::ast::{
    FunctionArg, JoinConstraint, JoinOperator, ObjectName, Spanned, TableAlias, TableFactor, TableWithJoins,
};

use super::columns::FromItem;
use super::{R, Walker, at, first_words, list_or_none, not_allowed, reject};
use crate::{Dialect, allow};

impl Walker<'_> {
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
    pub(super) fn set_visible(&mut self, items: Vec<FromItem>) {
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
}
