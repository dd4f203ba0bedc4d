//! PostgreSQL resolves an unqualified function name through the search
//! path, where a function of the same name (or a better-typed overload)
//! could shadow the built-in the allow-list meant. The printed query calls
//! every function as `pg_catalog.name`, so the engine itself can only run
//! built-ins. Forms that the grammar maps to built-ins anyway (keywords
//! such as `CURRENT_DATE`, `COALESCE`, `GREATEST`, `ARRAY(…)`) stay as they
//! are, and `SUBSTRING(x, a, b)` becomes `SUBSTRING(x FROM a FOR b)`.
//! (`CEIL(x)` and `FLOOR(x)` stay as written: sqlparser cannot read them
//! back qualified. They are refused where the catalogue shows a function of
//! that name outside pg_catalog.)

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArguments, Ident, ObjectName, ObjectNamePart, Statement, TableFactor, VisitMut, VisitorMut,
};

/// Names the PostgreSQL grammar turns into special forms, not calls.
const GRAMMAR_FORMS: &[&str] = &["coalesce", "nullif", "greatest", "least", "array"];

pub(super) fn functions(mut stmt: Statement) -> Statement {
    let _ = stmt.visit(&mut Qualify);
    stmt
}

struct Qualify;

fn qualified(name: &mut ObjectName) {
    if name.0.len() == 1 {
        name.0.insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
    }
}

impl VisitorMut for Qualify {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => {
                let keyword = matches!(f.args, FunctionArguments::None);
                let form = f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    i.quote_style.is_none() && GRAMMAR_FORMS.contains(&i.value.to_ascii_lowercase().as_str())
                });
                if !keyword && !form {
                    qualified(&mut f.name);
                }
            }
            // `SUBSTRING(x, a, b)` and `SUBSTR(…)` are plain calls (PostgreSQL
            // 14+); `SUBSTRING(x FROM a FOR b)` is grammar for the built-in.
            Expr::Substring { special, shorthand, .. } => {
                *special = false;
                *shorthand = false;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } = t {
            qualified(name);
        }
        ControlFlow::Continue(())
    }
}
