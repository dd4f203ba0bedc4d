//! One request, top to bottom: the grant (authorization, checked by the
//! door) → audit open → policy and request checks → admission → SQL →
//! sandbox → outcome → audit close → response.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::App;
use super::authz::{Grant, act};
use super::prepare::Prepared;
use super::trail;
use super::types::{AppError, ExecuteRequest, ExecuteResponse};
use crate::executor::{ExecError, Job};
use crate::policy::Policy;
use crate::sql::{Access, FetchLimits, Rows, SqlError};
use crate::status::Status;

impl App {
    /// Run one request to a verdict, on the record, and count it. The
    /// execution is the server's from here: it runs on a task of its own,
    /// so a caller that goes away (a closed connection, a dropped future)
    /// does not cut it short; it runs to its verdict and its record is
    /// completed, or a stop kills it and records it `interrupted`.
    pub async fn execute(
        &self,
        grant: &Grant<act::RunCode>,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, AppError> {
        if self.stop.stopping() {
            // Refused at once, on the record, without joining the work a
            // stop waits for.
            let (start, finish) = trail::refused_request(
                Uuid::now_v7(),
                grant.caller(),
                &req,
                &self.policies,
                &AppError::Stopping,
            );
            self.note(start, finish).await;
            self.metrics.observe(Status::NotReady, 0.0);
            return Err(AppError::Stopping);
        }
        let Some(app) = self.me.upgrade() else {
            return Err(AppError::Stopping);
        };
        let grant = grant.clone();
        let id = Uuid::now_v7();
        let task = self.stop.tracker().spawn(async move {
            // Until its record is complete (the task's end): the spares'
            // refill, which costs about as much CPU as a request, waits
            // for it while the pools can (executor/pool.rs).
            let _serving = app.executor.serving();
            let started = Instant::now();
            let result = app.execute_audited(id, &grant, req).await;
            let status = match &result {
                Ok(r) => r.status,
                Err(e) => e.status(),
            };
            let seconds = started.elapsed().as_secs_f64();
            app.metrics.observe(status, seconds);
            // One line per execution for the operator (no SQL, code or values).
            tracing::info!(
                execution_id = %id,
                principal = %grant.caller().principal.label(),
                status = %status.as_str(),
                ms = (seconds * 1000.0).round() as u64,
                "execution"
            );
            result
        });
        task.await.unwrap_or_else(|e| {
            tracing::error!("an execution task failed: {e}");
            Err(AppError::Internal("the execution failed inside sluice; retry the request".into()))
        })
    }

    /// The audit row is written before any work and completed with the
    /// outcome, whatever it is (a stop's kill included).
    async fn execute_audited(
        &self,
        id: Uuid,
        grant: &Grant<act::RunCode>,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, AppError> {
        if !self.audited {
            return self.run_until_killed(id, grant, req).await;
        }
        let opening = trail::opening(id, grant.caller(), &req, &self.policies);
        self.audit.start(&opening).await.map_err(|e| {
            tracing::error!("audit insert failed: {e}");
            AppError::AuditUnavailable("the audit database refused the insert".into())
        })?;
        let full_text = (req.sql_query.clone(), req.classifier_code.clone());
        let result = self.run_until_killed(id, grant, req).await;
        if let Err(e) = self.audit.finish(id, &trail::closing(&result, full_text)).await {
            // The verdict stands; the row stays `running` and says so.
            tracing::error!(execution_id = %id, "audit completion failed: {e}");
        }
        result
    }

    /// `run`, unless a stop's grace ends first: then the work is dropped,
    /// which kills the child and closes the database session.
    async fn run_until_killed(
        &self,
        id: Uuid,
        grant: &Grant<act::RunCode>,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, AppError> {
        tokio::select! {
            biased;
            r = self.run(id, grant, req) => r,
            () = self.stop.killed() => Err(AppError::Interrupted { execution_id: id }),
        }
    }

    /// Record a request that could not even be parsed (HTTP 400).
    pub async fn record_rejected(&self, grant: &Grant<act::RunCode>, message: &str) {
        let id = Uuid::now_v7();
        let (start, finish) = trail::rejected(id, grant.caller(), message);
        self.note(start, finish).await;
    }

    /// Write the whole record of a request that ran nothing, on a task of
    /// its own: a caller that goes away between the two writes does not
    /// leave the row `running`.
    async fn note(&self, start: crate::audit::NewExecution, finish: crate::audit::Finish) {
        if !self.audited {
            return;
        }
        let Some(app) = self.me.upgrade() else { return };
        let id = start.execution_id;
        let write = self.stop.notes().spawn(async move {
            if let Err(e) = async {
                app.audit.start(&start).await?;
                app.audit.finish(id, &finish).await
            }
            .await
            {
                tracing::error!("auditing a refused request failed: {e}");
            }
        });
        let _ = write.await;
    }

    async fn run(
        &self,
        id: Uuid,
        grant: &Grant<act::RunCode>,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, AppError> {
        let started = Instant::now();
        let (policy, prepared) = self.prepare(grant, &req)?;
        if self.stop.stopping() {
            return Err(AppError::Stopping);
        }
        if !self.is_ready() {
            return Err(AppError::NotReady);
        }
        let _permit = self.admission.enter().await?;
        // A stop that began while this request waited for its slot.
        if self.stop.stopping() {
            return Err(AppError::Stopping);
        }
        let mut resp = ExecuteResponse::new(id, policy);
        if let Some(rows) = self.fetch(&req, &prepared, policy, &mut resp).await? {
            self.sandbox(policy, prepared, rows, &mut resp).await;
        }
        resp.timings_ms.total = ms(started);
        Ok(resp)
    }

    /// The SQL stage: the rows, or `None` with the verdict set.
    async fn fetch(
        &self,
        req: &ExecuteRequest,
        prepared: &Prepared,
        policy: &Policy,
        resp: &mut ExecuteResponse,
    ) -> Result<Option<Rows>, AppError> {
        let t_sql = Instant::now();
        let fetched = self
            .source
            .fetch(
                &req.sql_query,
                &prepared.params,
                Access { tables: &policy.tables, role: policy.database.role.as_deref() },
                FetchLimits {
                    max_rows: policy.limits.max_rows,
                    max_bytes: policy.limits.max_fetch_bytes,
                    timeout: Duration::from_secs_f64(policy.limits.sql_timeout_s),
                },
            )
            .await;
        resp.timings_ms.sql = Some(ms(t_sql));
        match fetched {
            Ok(rows) => {
                resp.row_count = Some(rows.row_count);
                resp.columns = Some(rows.columns.clone());
                Ok(Some(rows))
            }
            Err(SqlError::Unavailable { message }) => Err(AppError::DatabaseUnavailable(message)),
            Err(SqlError::Database { message }) if no_such_table(&message) => {
                let hint = self.table_hint(policy).await;
                resp.set_sql_error(SqlError::Database { message: format!("{message}{hint}") });
                Ok(None)
            }
            Err(SqlError::Database { message }) if message.to_lowercase().contains("column") => {
                // Name what exists, so the next attempt can use it.
                let hint = self.column_hint(&req.sql_query, policy).await;
                resp.set_sql_error(SqlError::Database { message: format!("{message}{hint}") });
                Ok(None)
            }
            Err(e) => {
                resp.set_sql_error(e);
                Ok(None)
            }
        }
    }

    /// The sandbox stage: the code runs in a fresh child; its outcome and
    /// the policy's output bounds make the verdict.
    async fn sandbox(&self, policy: &Policy, prepared: Prepared, rows: Rows, resp: &mut ExecuteResponse) {
        let job = Job {
            id: resp.execution_id,
            code: prepared.code,
            entrypoint: prepared.entrypoint,
            rows: rows.arrow,
            row_count: rows.row_count,
            limits: prepared.limits,
        };
        let t_box = Instant::now();
        let outcome = self.executor.run(policy, job).await;
        resp.timings_ms.sandbox = Some(ms(t_box));
        match outcome {
            Ok(o) => {
                resp.set_outcome(o);
                resp.shape_output(policy);
            }
            Err(e @ (ExecError::Start(_) | ExecError::Jail(_) | ExecError::UnknownEnvironment(_))) => {
                tracing::error!(execution_id = %resp.execution_id, environment = %policy.environment, "environment unavailable: {e}");
                resp.set_error(Status::InternalError, json!({
                    "message": format!(
                        "policy `{}` runs in environment `{}`, which could not be started (the server's log and \
                         `sluice doctor` say why); this is not your code's fault, and retrying will not help \
                         until an operator fixes the environment",
                        policy.name, policy.environment
                    ),
                }));
            }
            Err(ExecError::Backoff(e)) => {
                tracing::warn!(execution_id = %resp.execution_id, environment = %policy.environment, "{e}");
                resp.set_error(Status::InternalError, json!({
                    "message": format!(
                        "policy `{}` runs in environment `{}`, which failed to start moments ago ({e}); this is \
                         not your code's fault: retry after that, and if it keeps failing an operator must fix \
                         the environment",
                        policy.name, policy.environment
                    ),
                }));
            }
            Err(ExecError::Capacity(e)) => {
                tracing::warn!(execution_id = %resp.execution_id, "no child: {e}");
                resp.set_error(Status::InternalError, json!({
                    "message": format!(
                        "sluice could not give this request a sandboxed process just now ({e}); this is not your \
                         code's fault: retry in a few seconds"
                    ),
                }));
            }
            Err(e) => {
                tracing::error!(execution_id = %resp.execution_id, "executor failed: {e}");
                resp.set_error(Status::InternalError, json!({
                    "message": "sluice failed to run the code (its sandbox process broke); this is not your code's fault, retry the request",
                }));
            }
        }
    }
}

/// SQLite "no such table", PostgreSQL `relation "x" does not exist`, MySQL
/// "Table 'db.x' doesn't exist".
fn no_such_table(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("no such table")
        || (m.starts_with("relation ") && m.contains("does not exist"))
        || (m.starts_with("table ") && m.contains("doesn't exist"))
}

pub(super) fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
