//! The configured database: one `Backend`, chosen by the URL's scheme, and
//! what every backend does the same way (check, then run the canonical
//! text; verify each policy's role at start-up).

use std::sync::Arc;

use super::backend::{BACKENDS, Backend};
use super::url::redact;
use super::{Access, Catalog, Checked, Dialect, EngineGuard, FetchLimits, NameRules, Param, Rejection, Rows};
use super::{SchemaColumn, SqlError};
use crate::policy::{Policies, TableAllow};

/// Stack for checking one query (virtual; only what is touched is used).
const CHECK_STACK_BYTES: usize = 256 * 1024 * 1024;

/// A configured database.
pub struct DataSource {
    backend: Box<dyn Backend>,
}

impl DataSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        for (schemes, connect) in BACKENDS {
            if schemes.iter().any(|s| url.starts_with(s)) {
                return Ok(DataSource { backend: connect(url.to_string(), max_connections).await? });
            }
        }
        Err(SqlError::Connect {
            url: redact(url),
            message: "unsupported database URL; use sqlite://PATH, postgres://… or mysql://…".into(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    pub fn rules(&self) -> &NameRules {
        self.backend.rules()
    }

    /// A table name as SQL for this database, quoted part by part.
    pub fn quote_table(&self, schema: Option<&str>, table: &str) -> String {
        let rules = self.rules();
        match schema {
            Some(s) => format!("{}.{}", rules.quote(s), rules.quote(table)),
            None => rules.quote(table),
        }
    }

    /// The query of `n` sample rows of a table the catalogue named.
    pub fn sample_query(&self, schema: Option<&str>, table: &str, n: u32) -> String {
        format!("SELECT * FROM {} LIMIT {n}", self.quote_table(schema, table))
    }

    /// Check `sql` against the policy (the parser layer) and return the
    /// canonical text the database would run. On a thread of its own with a
    /// large stack: a long query makes a deep AST, and walking or dropping
    /// it must not overflow a server thread's stack.
    pub async fn check(&self, sql: &str, tables: &TableAllow) -> Result<Checked, Rejection> {
        let (sql, rules, tables) = (sql.to_string(), self.rules().clone(), tables.clone());
        let catalog = self.catalog().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-sql-check".into())
            .stack_size(CHECK_STACK_BYTES)
            .spawn(move || {
                let _ = tx.send(sluice_sql_guard::check(&sql, &rules, &tables, &catalog));
            })
            .map_err(|e| Rejection(format!("sluice could not start checking the query ({e}); retry")))?;
        rx.await.unwrap_or_else(|_| Err(Rejection("checking the query failed inside sluice; retry".into())))
    }

    async fn catalog(&self) -> Arc<Catalog> {
        self.backend.catalog().await
    }

    /// Check, run and encode one query.
    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        let checked = self.check(sql, access.tables).await?;
        if checked.placeholders != params.len() {
            return Err(SqlError::Params { expected: checked.placeholders, given: params.len() });
        }
        self.run_unchecked(&checked.canonical, params, access, limits).await
    }

    /// The engine layer alone: run `sql` exactly as given, under the
    /// policy's engine-side permissions (read-only connection and
    /// transaction, SQLite's authorizer, the policy's role), without the
    /// parser's check. `fetch` calls it with checked canonical text; tests
    /// call it with hostile text to prove the engine layer holds by itself.
    pub async fn run_unchecked(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        let result = self.backend.fetch(sql, params, access, limits).await;
        // Backends know that a statement timed out, not which limit it was.
        result.map_err(|e| match e {
            SqlError::Timeout { .. } => SqlError::Timeout { seconds: limits.timeout.as_secs_f64() },
            other => other,
        })
    }

    /// Wait (bounded) for the cancels of statements abandoned mid-way.
    pub async fn settle(&self) {
        let cancels = super::cancels();
        cancels.close();
        if tokio::time::timeout(super::CANCEL_TIMEOUT, cancels.wait()).await.is_err() {
            tracing::warn!(left = cancels.len(), "statement cancels did not finish");
        }
    }

    /// Can we still reach the database?
    pub async fn ping(&self) -> bool {
        self.backend.ping().await
    }

    /// A description safe to show and log (no password).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Tables the connection's user could write (empty when it is a
    /// read-only role, or for SQLite, which is opened read-only).
    pub async fn writable_tables(&self) -> Result<Vec<String>, SqlError> {
        self.backend.writable_tables().await
    }

    /// Every column of every table and view outside the system schemas, in
    /// table order.
    pub async fn schema(&self) -> Result<Vec<SchemaColumn>, SqlError> {
        self.backend.schema().await
    }

    /// How the database enforces each policy; an error when a policy's role
    /// is missing or does not match the policy (it must read exactly the
    /// allowed tables and write nothing).
    /// `writable` is what the login user could write (`writable_tables`).
    pub async fn engine_guards(
        &self,
        policies: &Policies,
        writable: &[String],
    ) -> Result<Vec<EngineGuard>, SqlError> {
        let mut out = Vec::new();
        for p in policies.iter() {
            let access = Access { tables: &p.tables, role: p.database.role.as_deref() };
            out.push(self.backend.engine_guard(&p.name, access, writable).await?);
        }
        Ok(out)
    }
}
