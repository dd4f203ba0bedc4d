//! Operators, each allowed by name per dialect; on PostgreSQL also those
//! an expression implies, refused where the database redefines them.

use sqlparser::ast::{BinaryOperator, Expr, Spanned};

use super::{R, Walker, at, first_words, reject};
use crate::Dialect;

impl Walker<'_> {
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
}

/// The operators PostgreSQL resolves for an expression, written or implied
/// (`IN` and `IS DISTINCT FROM` compare with `=`, `BETWEEN` with `>=` and
/// `<=`, `LIKE` is `~~`, …).
pub(super) fn implied_operators(e: &Expr) -> Vec<String> {
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
