//! Function calls: the name as the database looks it up, allowed by name
//! per dialect, their arguments, clauses and windows.

use sqlparser::ast::{
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, ObjectName, Spanned,
    WindowFrameBound, WindowSpec, WindowType,
};

use super::{R, Rejection, Walker, at, not_allowed, reject};
use crate::{Dialect, allow};

impl Walker<'_> {
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
}
