//! Reading what sluice knows: audit records, metrics, readiness. Each
//! takes the grant the permission table gave for it.

use serde_json::{Value, json};

use super::App;
use super::authz::{Grant, act};
use super::types::AppError;
use crate::audit::{Filter, Page, Record};

impl App {
    /// One audit record, if the grant shows it (404 otherwise, so a key
    /// learns nothing of records it may not see).
    pub async fn record(&self, grant: &Grant<act::ReadRecord>, id: &str) -> Result<Record, AppError> {
        let unseen = || {
            AppError::NotFound(format!(
                "no execution {} that this key may see{}",
                crate::output::clip(id, 64),
                match grant.reach() {
                    super::authz::Reach::Own => " (a key without the audit role sees only its own)",
                    super::authz::Reach::Any => "",
                }
            ))
        };
        match self.audit.get(id).await {
            Ok(r) if grant.sees(&r) => Ok(r),
            Ok(_) | Err(crate::audit::AuditError::NotFound(_)) => Err(unseen()),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of records matching `filter`, within what the grant shows.
    pub async fn records(
        &self,
        grant: &Grant<act::ListRecords>,
        mut filter: Filter,
    ) -> Result<Page, AppError> {
        filter.scope = grant.scope();
        Ok(self.audit.list(&filter).await?)
    }

    /// How many records match `filter`, within what the grant shows.
    pub async fn count_records(
        &self,
        grant: &Grant<act::ListRecords>,
        mut filter: Filter,
    ) -> Result<i64, AppError> {
        filter.scope = grant.scope();
        Ok(self.audit.count(&filter).await?)
    }

    /// Walk the hash chain.
    pub async fn verify_chain(
        &self,
        _: &Grant<act::VerifyChain>,
    ) -> Result<crate::audit::chain::Verification, AppError> {
        Ok(crate::audit::chain::verify(&self.audit).await?)
    }

    /// Prometheus text for GET /metrics.
    pub async fn metrics_text(&self, _: &Grant<act::ReadMetrics>) -> String {
        let up = if self.executor.all_alive() { 1.0 } else { 0.0 };
        let running = self.executor.running_count();
        let envs = self.executor.environment_stats();
        let per_env = |f: fn(&(String, bool, u64)) -> f64| envs.iter().map(|e| (e.0.clone(), f(e))).collect();
        let labeled = [
            (
                "sluice_environment_up",
                "1 while the environment's zygote runs (an on-demand one is 0 until its first request).",
                "environment",
                per_env(|e| if e.1 { 1.0 } else { 0.0 }),
            ),
            (
                "sluice_environment_rss_bytes",
                "Resident memory of the environment's zygote now (0 when it is not running).",
                "environment",
                per_env(|e| e.2 as f64),
            ),
        ];
        let (spares, target, misses) = self.executor.spare_stats();
        self.metrics.render(
            &[
                (
                    "sluice_prefork_ready",
                    "Children forked and sandboxed ahead of time, waiting for a request (all policies).",
                    spares as f64,
                ),
                ("sluice_prefork_target", "Children the pools keep ready (all policies).", target as f64),
                (
                    "sluice_prefork_misses_total",
                    "Requests that found no child ready and forked their own on their path.",
                    misses as f64,
                ),
                ("sluice_zygotes_up", "1 when every eager environment's zygote is running.", up),
                (
                    "sluice_zygotes_running",
                    "Environments whose zygote runs now (on-demand ones start with their first request).",
                    running as f64,
                ),
                (
                    "sluice_ready",
                    "1 once the zygotes are warm, 0 again once stopping.",
                    if self.is_ready() { 1.0 } else { 0.0 },
                ),
                (
                    "sluice_queue_waiting",
                    "Requests waiting for an execution slot.",
                    self.admission.waiting() as f64,
                ),
            ],
            &labeled,
        )
    }

    /// Facts for /readyz: whether sluice is ready, and with a grant for
    /// the server's details what it runs on (the database, its guards,
    /// the sandbox layers, zygote pids).
    pub async fn readiness(&self, details: Option<&Grant<act::ReadServerDetails>>) -> (bool, Value) {
        let zygotes = self.executor.all_alive();
        // Stopping answers at once: no wait on a database that may hang.
        let db = !self.is_stopping() && self.source.ping().await;
        let ready = self.is_ready() && zygotes && db;
        let environments = self.executor.describe();
        if details.is_some() {
            let body = json!({
                "ready": ready,
                "warm": self.is_warm(),
                "stopping": self.is_stopping(),
                "database": {"reachable": db, "url": self.source.describe(), "sql_guards": self.sql_guards},
                "environments": environments,
            });
            return (ready, body);
        }
        let alive: serde_json::Map<String, Value> = environments
            .as_object()
            .map(|envs| envs.iter().map(|(k, v)| (k.clone(), json!({"alive": v["alive"]}))).collect())
            .unwrap_or_default();
        let brief = json!({
            "ready": ready,
            "warm": self.is_warm(),
            "stopping": self.is_stopping(),
            "database": {"reachable": db},
            "environments": Value::Object(alive),
            "detail": "send `Authorization: Bearer <key>` of a key with the audit role for the database, its guards and the sandbox layers",
        });
        (ready, brief)
    }
}
