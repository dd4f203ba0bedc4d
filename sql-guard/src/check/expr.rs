//! Expressions: what each kind of expression may contain, per dialect.
//! Function calls are in `function.rs`, operators in `operators.rs`,
//! literals and cast types in `types.rs`.

use sqlparser::ast::{CastKind, DataType, Expr, Spanned, UnaryOperator};

use super::operators::implied_operators;
use super::{R, Walker, at, first_words, not_allowed, reject};
use crate::Dialect;

impl Walker<'_> {
    pub(super) fn exprs(&mut self, list: &[Expr]) -> R {
        list.iter().try_for_each(|e| self.expr(e))
    }

    pub(super) fn expr(&mut self, e: &Expr) -> R {
        self.deeper()?;
        self.expr_inner(e)?;
        self.depth -= 1;
        Ok(())
    }

    pub(super) fn expr_inner(&mut self, e: &Expr) -> R {
        let d = self.d;
        if d == Dialect::Postgres {
            for op in implied_operators(e) {
                self.operator(&op, e)?;
            }
        }
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
            // `DATE '…'`: SQLite has no typed literals (it reads a column
            // named DATE), MySQL only for dates and times.
            Expr::TypedString(t) => {
                let ok = match d {
                    Dialect::Postgres => true,
                    Dialect::MySql => {
                        matches!(
                            t.data_type,
                            DataType::Date
                                | DataType::Time(..)
                                | DataType::Timestamp(..)
                                | DataType::Datetime(_)
                        )
                    }
                    Dialect::Sqlite => false,
                };
                if !ok {
                    return not_allowed("a typed literal (TYPE '…')", "write CAST('…' AS type)");
                }
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
                // Printed as written (sqlparser cannot read `pg_catalog.floor(…)`
                // back), so it resolves through the search path.
                let name = if matches!(e, Expr::Ceil { .. }) { "ceil" } else { "floor" };
                if d == Dialect::Postgres && self.catalog.is_shadowed(name) {
                    return reject(format!(
                        "`{}`{}: this database has a function `{name}` outside pg_catalog that the call could reach; \
                         use round(x) or trunc(x) instead",
                        name.to_ascii_uppercase(),
                        at(e.span().start)
                    ));
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
            Expr::Trim { trim_characters: Some(_), .. } if d == Dialect::Postgres => {
                not_allowed("TRIM(x, characters)", "use TRIM(BOTH characters FROM x) or btrim(x, characters)")
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
}
