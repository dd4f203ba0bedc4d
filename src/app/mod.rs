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
mod trail;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use authz::{Caller, Grant, act, grant};
pub use startup::{AppConfig, StartError, audit_url};
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
}

impl App {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
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
