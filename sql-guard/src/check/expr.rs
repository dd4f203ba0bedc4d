//! Expressions: operators, literals, function calls and cast types, each
//! allowed by name per dialect.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, ObjectName, Spanned, UnaryOperator, Value, WindowFrameBound, WindowSpec, WindowType,
};

use super::{R, Rejection, Walker, at, check_placeholder, first_words, not_allowed, reject};
use crate::{Dialect, allow};

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

    /// An operator symbol PostgreSQL will resolve for `e`: refused where
    /// the database defines it outside pg_catalog for built-in types too.
    pub(super) fn operator(&self, symbol: &str, e: &Expr) -> R {
        if !self.catalog.is_shadowed_operator(symbol) {
            return Ok(());
        }
        reject(format!(
            "`{}`{}: this database defines the operator `{symbol}` outside pg_catalog for built-in types, so \
             PostgreSQL could run that one instead of the built-in; use a function instead (e.g. mod(a, b) for %, \
             concat(a, b) for ||, a = ANY(…) only where `=` is not redefined)",
            first_words(&e.to_string()),
            at(e.span().start)
        ))
    }

    pub(super) fn binary_op(&self, op: &BinaryOperator, e: &Expr) -> R {
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

    pub(super) fn value(&mut self, v: &Value, loc: String) -> R {
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

    pub(super) fn function(&mut self, f: &Function) -> R {
        if f.uses_odbc_syntax || !matches!(f.parameters, FunctionArguments::None) {
            return not_allowed("this function call syntax", "call functions as name(arguments)");
        }
        let (name, loc) = self.function_name(&f.name)?;
        if self.d == Dialect::MySql && self.catalog.is_shadowed(&name) {
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
    pub(super) fn function_name(&self, name: &ObjectName) -> Result<(String, String), Rejection> {
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

    pub(super) fn function_arg(&mut self, a: &FunctionArg) -> R {
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

    pub(super) fn window_spec(&mut self, w: &WindowSpec) -> R {
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
    pub(super) fn data_type(&self, t: &DataType) -> R {
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
                ["timestamptz", "timetz", "tsvector", "tsquery", "name"].contains(&n.as_str())
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

/// The operators PostgreSQL resolves for an expression, written or implied
/// (`IN` and `IS DISTINCT FROM` compare with `=`, `BETWEEN` with `>=` and
/// `<=`, `LIKE` is `~~`, …).
fn implied_operators(e: &Expr) -> Vec<String> {
    let v = |ops: &[&str]| ops.iter().map(|o| o.to_string()).collect();
    match e {
        Expr::BinaryOp { op, .. } => vec![op.to_string()],
        Expr::UnaryOp { op, .. } => vec![op.to_string()],
        Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => vec![compare_op.to_string()],
        Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::InSubquery { .. } => v(&["="]),
        Expr::Case { operand: Some(_), .. } => v(&["="]),
        Expr::Between { negated: false, .. } => v(&[">=", "<="]),
        Expr::Between { negated: true, .. } => v(&["<", ">"]),
        Expr::Like { negated, .. } => v(&[if *negated { "!~~" } else { "~~" }]),
        Expr::ILike { negated, .. } => v(&[if *negated { "!~~*" } else { "~~*" }]),
        Expr::SimilarTo { negated, .. } => v(&[if *negated { "!~" } else { "~" }]),
        Expr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("nullif")) =>
        {
            v(&["="])
        }
        _ => Vec::new(),
    }
}
