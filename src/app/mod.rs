//! The application: one `App` that every door (HTTP, review pages, MCP,
//! `/tools/call`, CLI) calls with a `Grant` from the one permission table.
//!
//! - `authz.rs`     the permission table, `Caller`, `Grant`
//! - `pipeline.rs`  one request, top to bottom
//! - `prepare.rs`   a request checked against its policy
//! - `trail.rs`     its audit record
//! - `response.rs`  filling the verdict
//! - `admission.rs` the bounded wait for a slot
//! - `catalogue.rs` what a policy shows of the database
//! - `records.rs`   reading the audit log, metrics, readiness
//! - `startup.rs`   wiring at start-up
//! - `stop.rs`      executions owned by the server; a graceful stop
//! - `types.rs`     request, response, errors

pub mod authz;
pub mod types;

mod admission;
mod catalogue;
mod pipeline;
mod prepare;
mod records;
mod response;
mod startup;
mod stop;
mod trail;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use authz::{Caller, Grant, act, grant};
pub use startup::{AppConfig, DEFAULT_PREFORK, StartError, audit_url};
pub use stop::StopReport;
pub use types::{AppError, ExecuteRequest, ExecuteResponse, Resources, Timings};

use crate::audit::AuditStore;
use crate::executor::Executor;
use crate::policy::Policies;
use crate::sql::{DataSource, EngineGuard};

pub struct App {
    pub policies: Policies,
    audit: AuditStore,
    metrics: crate::metrics::Metrics,
    audited: bool,
    source: DataSource,
    /// How the database itself enforces each policy.
    sql_guards: Vec<EngineGuard>,
    executor: Arc<Executor>,
    admission: admission::Admission,
    ready: AtomicBool,
    stop: stop::Stop,
    /// This app, for the tasks its executions run on.
    me: Weak<App>,
}

impl App {
    /// Warm, and not stopping.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.stop.stopping()
    }

    /// The zygotes were warmed once.
    pub fn is_warm(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.stopping()
    }

    /// Stop taking new executions (`/readyz` and new work answer 503 from
    /// now on); what runs goes on.
    pub fn begin_stop(&self) {
        self.stop.begin();
    }

    /// End a stop's grace now: what runs is killed and recorded
    /// `interrupted` (a second SIGTERM or SIGINT).
    pub fn kill_now(&self) {
        self.stop.kill_now();
    }

    /// A graceful stop: new work is refused, executions in flight get up
    /// to `grace` to finish, then are killed and recorded `interrupted`;
    /// returns once every record is complete, every child cleaned up and
    /// every abandoned statement cancelled in the database.
    pub async fn stop(&self, grace: Duration) -> StopReport {
        let report = self.stop.finish(grace, crate::executor::CLEANUP_WAIT).await;
        tokio::join!(self.executor.cleaned_up(), self.source.settle());
        report
    }

    /// The last step of a stop, once no connection is left: the records
    /// of requests refused meanwhile are written (bounded).
    pub async fn settle(&self) {
        self.stop.settle(Duration::from_secs(5)).await;
    }

    /// The principal of an API key (authentication; what it may do is the
    /// permission table's business).
    pub async fn authenticate(
        &self,
        key: &str,
    ) -> Result<Option<crate::audit::keys::Principal>, crate::audit::AuditError> {
        self.audit.authenticate(key).await
    }

    /// The audit store, for the key commands of the CLI (`ManageKeys`).
    pub fn keys(&self, _: &Grant<act::ManageKeys>) -> &AuditStore {
        &self.audit
    }

    /// The data source, for tests of the engine layer and sample queries.
    pub fn source(&self) -> &DataSource {
        &self.source
    }
}
