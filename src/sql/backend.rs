//! One trait every database implements, and the table of backends by URL
//! scheme: a new backend is a file with a `Backend` impl and one row in
//! `BACKENDS`. Dialect knowledge (names, quoting, functions) comes with the
//! backend's `NameRules` and `Dialect` and stays inside `sql/`.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{
    Access, Catalog, Dialect, EngineGuard, FetchLimits, NameRules, Param, Rows, SchemaColumn, SqlError,
};
use super::{mysql, postgres, sqlite};
use crate::policy::TableAllow;

pub trait Backend: Send + Sync {
    fn dialect(&self) -> Dialect;

    /// How this database resolves and quotes names.
    fn rules(&self) -> &NameRules;

    /// A description safe to show and log (no password).
    fn describe(&self) -> String;

    /// Can we still reach the database?
    fn ping(&self) -> BoxFuture<'_, bool>;

    /// Run `sql` exactly as given under the policy's engine-side
    /// permissions, fetching at most `limits`.
    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param],
        access: Access<'a>,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Rows, SqlError>>;

    /// Every column of every table and view outside the system schemas, in
    /// table order.
    fn schema(&self) -> BoxFuture<'_, Result<Vec<SchemaColumn>, SqlError>>;

    /// What the parser layer needs to know of the database (columns, names
    /// that may not reach a built-in). Default: nothing.
    fn catalog(&self) -> BoxFuture<'_, Arc<Catalog>> {
        Box::pin(async { Arc::default() })
    }

    /// Tables the login user could write. Default: none (opened read-only).
    fn writable_tables(&self) -> BoxFuture<'_, Result<Vec<String>, SqlError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// How queries take on a policy's database role.
    fn role_switch(&self) -> &'static str {
        "no database roles"
    }

    /// What is wrong with `role` for a policy allowing `tables` (it must
    /// read exactly those and write nothing).
    fn role_problems<'a>(
        &'a self,
        _role: &'a str,
        _tables: &'a TableAllow,
    ) -> BoxFuture<'a, Result<Vec<String>, SqlError>> {
        Box::pin(async { Ok(vec!["this database has no roles".to_string()]) })
    }

    /// How the database itself enforces one policy. Default: the policy's
    /// role, verified at start-up.
    fn engine_guard<'a>(
        &'a self,
        policy: &'a str,
        access: Access<'a>,
        writable: &'a [String],
    ) -> BoxFuture<'a, Result<EngineGuard, SqlError>> {
        Box::pin(role_guard(self, policy, access, writable))
    }
}

type Connect = fn(String, u32) -> BoxFuture<'static, Result<Box<dyn Backend>, SqlError>>;

/// Every backend, by the schemes of its URLs.
pub(super) const BACKENDS: &[(&[&str], Connect)] = &[
    (&["sqlite:"], |url, n| {
        Box::pin(async move { Ok(boxed(sqlite::SqliteSource::connect(&url, n).await?)) })
    }),
    (&["postgres:", "postgresql:"], |url, n| {
        Box::pin(async move { Ok(boxed(postgres::PgSource::connect(&url, n).await?)) })
    }),
    (&["mysql:", "mariadb:"], |url, n| {
        Box::pin(async move { Ok(boxed(mysql::MySqlSource::connect(&url, n).await?)) })
    }),
];

fn boxed(b: impl Backend + 'static) -> Box<dyn Backend> {
    Box::new(b)
}

/// The engine guard of a backend with roles: the policy's role, which must
/// read exactly the allowed tables and write nothing.
async fn role_guard<B: Backend + ?Sized>(
    b: &B,
    policy: &str,
    access: Access<'_>,
    writable: &[String],
) -> Result<EngineGuard, SqlError> {
    let Some(role) = access.role else {
        return Ok(EngineGuard {
            policy: policy.into(),
            tables: false,
            writes: writable.is_empty(),
            detail: format!(
                "no database role for this policy: only sluice's parser keeps queries to the allowed tables{}; \
                 set [database] role (README, \"A role per policy\")",
                if writable.is_empty() {
                    ""
                } else {
                    ", and the login user could write (a READ ONLY transaction does not stop every write)"
                }
            ),
        });
    };
    let problems = b.role_problems(role, access.tables).await?;
    if !problems.is_empty() {
        return Err(SqlError::Role(format!(
            "policy `{policy}`: database role `{role}` does not match the policy: {}; fix the grants \
             (README, \"A role per policy\")",
            problems.join("; ")
        )));
    }
    Ok(EngineGuard {
        policy: policy.into(),
        tables: true,
        writes: true,
        detail: format!(
            "queries run as role `{role}` ({}), verified at start-up to read exactly the allowed tables \
             and hold no privilege to write",
            b.role_switch()
        ),
    })
}
