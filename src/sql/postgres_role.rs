//! Verifying a policy's PostgreSQL role at start-up: it must read exactly
//! the policy's tables, write nothing and hold no attribute or predefined
//! role that reaches further.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Executor, Row};

use super::postgres::{Lease, PgSource, db_error};
use super::{FetchLimits, SqlError, unreadable};
use crate::policy::TableAllow;

impl PgSource {
    /// Everything wrong with `role` for a policy allowing `tables`.
    pub(crate) async fn role_problems(
        &self,
        role: &str,
        tables: &TableAllow,
    ) -> Result<Vec<String>, SqlError> {
        let mut lease = Lease::acquire(&self.pool).await?;
        let limits = FetchLimits { max_rows: 0, max_bytes: 0, timeout: Duration::from_secs(30) };
        if let Err(e) = lease.conn().execute(AssertSqlSafe(self.begin(limits, Some(role)))).await {
            return Ok(vec![format!(
                "the login user cannot switch to it ({}); create it and GRANT {role} TO the login user",
                db_error(e)
            )]);
        }
        let conn = lease.conn();
        let mut problems = Vec::new();
        let attrs = sqlx::query(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles \
             WHERE rolname = current_user",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        for (i, what) in
            ["SUPERUSER", "BYPASSRLS", "CREATEROLE", "CREATEDB", "REPLICATION"].iter().enumerate()
        {
            if attrs.try_get::<bool, _>(i).unwrap_or(true) {
                problems.push(format!("it has {what}"));
            }
        }
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE rolname IN ('pg_read_all_data', 'pg_write_all_data', \
             'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend', \
             'pg_read_all_settings', 'pg_read_all_stats', 'pg_monitor', 'pg_checkpoint', 'pg_database_owner') \
             AND pg_has_role(current_user, oid, 'USAGE') ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        if !members.is_empty() {
            problems.push(format!("it has the privileges of {}", members.join(", ")));
        }
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE') \
             AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        if !schemas.is_empty() {
            problems.push(format!("it can create objects in schema {}", schemas.join(", ")));
        }
        let create_db: bool =
            sqlx::query_scalar("SELECT has_database_privilege(current_database(), 'CREATE')")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
        if create_db {
            problems.push("it can create schemas in the database".into());
        }
        let relations = sqlx::query(
            "SELECT n.nspname::text AS s, c.relname::text AS t, \
               CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') \
                 ELSE has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT') END AS r, \
               CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE, UPDATE') \
                 ELSE has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') \
                   OR has_any_column_privilege(c.oid, 'INSERT, UPDATE, REFERENCES') END AS w \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S') AND n.nspname <> 'information_schema' \
               AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        lease.release().await;
        let (mut reads, mut writes, mut readable) = (Vec::new(), Vec::new(), Vec::new());
        for row in &relations {
            let (s, t): (String, String) =
                (row.try_get("s").map_err(db_error)?, row.try_get("t").map_err(db_error)?);
            let r = self.rules.stored(&s, &t);
            let name = self.rules.display(&r);
            if row.try_get::<bool, _>("w").unwrap_or(true) {
                writes.push(name.clone());
            }
            if row.try_get::<bool, _>("r").unwrap_or(true) {
                if !self.rules.allows(tables, &r) {
                    reads.push(name);
                }
                readable.push(r);
            }
        }
        if !writes.is_empty() {
            problems.push(format!("it can write {}", writes.join(", ")));
        }
        if !reads.is_empty() {
            problems.push(format!("it can read {}, which the policy does not allow", reads.join(", ")));
        }
        problems.extend(unreadable(&self.rules, tables, &readable));
        Ok(problems)
    }
}
