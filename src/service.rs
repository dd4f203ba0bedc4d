//! The one orchestrator of a request: policy → SQL → sandbox → response.
//! HTTP, the CLI (`sluice run`) and, later, MCP are thin adapters over
//! `App::execute`, so they cannot disagree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::audit::keys::Principal;
use crate::audit::{AuditStore, Finish, NewExecution};
use crate::config::DataDir;
use crate::environment::Environments;
use crate::executor::{ChildLimits, ExecError, Executor, Job, Outcome};
use crate::policy::{Policies, Policy};
use crate::sql::{Access, ColumnInfo, DataSource, EngineGuard, FetchLimits, Param, SqlError};
use crate::verdict::Status;
use crate::{code, demo, runtime};

/// POST /execute-classifier body (DESIGN §3), and the arguments of the
/// `execute_classifier` tool: one type, so the API and the tool schemas
/// cannot drift apart.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// Exactly one read-only SQL query (SELECT, WITH, VALUES, UNION …). Use `?` (SQLite, MySQL) or `$1`
    /// (PostgreSQL) placeholders for values and pass them in `params`.
    pub sql_query: String,
    /// Positional bind parameters for the query: strings, numbers, booleans or null.
    #[serde(default)]
    pub params: Vec<Value>,
    /// Python source defining `def classify(df)`: `df` is a pandas DataFrame of the query's rows; return one
    /// label per row (list, numpy array or Series of str/int/float/bool/None), or
    /// {"labels": [...], "scores": [...]}. numpy, pandas, scikit-learn and scipy are available; there is no
    /// network, no subprocess and no file access outside a scratch directory.
    pub classifier_code: String,
    /// Name of the function to call (default `classify`).
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// Wall-clock limit in seconds for the code (default and maximum come from the policy: 30 and 120).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Memory limit in MB for the code (policy default 512, maximum 4096).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Named policy (default `default`): decides allowed tables and limits.
    #[serde(default)]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub sql: Option<f64>,
    pub sandbox: Option<f64>,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
}

/// The verdict of one request. Every key is always present.
#[derive(Debug, Clone, Serialize)]
pub struct ExecuteResponse {
    pub execution_id: Uuid,
    pub status: Status,
    pub row_count: Option<usize>,
    pub columns: Option<Vec<ColumnInfo>>,
    pub predictions: Option<Vec<Value>>,
    pub scores: Option<Vec<Option<f64>>>,
    pub label_counts: Option<BTreeMap<String, u64>>,
    pub error: Option<Value>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timings_ms: Timings,
    pub resources: Resources,
    pub policy: String,
    pub environment: String,
    /// How the sandboxed process ended (audit detail, not part of the body).
    #[serde(skip)]
    pub exit_signal: Option<i32>,
    /// What left the sandbox, for the audit record (not part of the body).
    #[serde(skip)]
    pub output: Option<Value>,
}

/// Why a request was not executed at all (non-200 answers).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("too many requests are waiting ({waiting}); retry shortly")]
    QueueFull { waiting: usize },
    #[error("sluice is starting up (warming the Python environment); retry shortly")]
    NotReady,
    #[error("{0}")]
    Forbidden(String),
    #[error("the audit log cannot be written, so nothing runs: {0}")]
    AuditUnavailable(String),
    #[error("the database is unavailable ({0}); retry shortly")]
    DatabaseUnavailable(String),
}

impl ServiceError {
    /// The status an audit record gets for a request that did not run.
    fn audit_status(&self) -> &'static str {
        match self {
            ServiceError::BadRequest { .. } => "bad_request",
            ServiceError::QueueFull { .. } => "queue_full",
            ServiceError::NotReady => "not_ready",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::AuditUnavailable(_) => "internal_error",
            ServiceError::DatabaseUnavailable(_) => "database_unavailable",
        }
    }
}

/// `Err(message)` unless the caller's key has `role` (admin has every role).
/// The service checks it itself on everything that reads data, whichever
/// door (HTTP, tools, MCP) the request came through.
pub fn require_role(caller: &Caller, role: crate::audit::keys::Role) -> Result<(), String> {
    if caller.principal.has(role) {
        return Ok(());
    }
    let name = |r: &crate::audit::keys::Role| format!("{r:?}").to_lowercase();
    let have: Vec<String> = caller.principal.roles.iter().map(name).collect();
    Err(format!(
        "this key ({}) has role(s) {}; this needs `{}`",
        caller.principal.label(),
        have.join(", "),
        name(&role)
    ))
}

/// Who sent a request, from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client_addr: Option<String>,
}

/// What `App::build` needs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    /// `None`: the demo database.
    pub database: Option<String>,
    pub policies_dir: Option<PathBuf>,
    /// Requests running at once (default: the number of CPUs).
    pub concurrency: usize,
    /// Requests that may wait for a slot before new ones get 429.
    pub queue: usize,
    /// Print environment-building progress to stderr.
    pub progress: bool,
    /// `None`: SQLite `audit.sqlite` in the data dir.
    pub audit_database: Option<String>,
    /// Connections in the data source's pool (default: 2 × concurrency).
    pub db_connections: Option<usize>,
    /// Skip the audit log. Only the benchmark sets this, to measure what
    /// auditing costs; no flag, variable or policy reaches it.
    #[doc(hidden)]
    pub benchmark_without_audit: bool,
}

impl AppConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let cpus = crate::config::available_cpus();
        Self {
            data_dir: data_dir.into(),
            database: None,
            policies_dir: None,
            concurrency: cpus,
            queue: cpus * 16,
            progress: true,
            audit_database: None,
            db_connections: None,
            benchmark_without_audit: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Environment(#[from] crate::environment::EnvError),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Jail(#[from] crate::jail::JailError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    WritableDatabase(String),
    #[error("{0}")]
    SqlGuard(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub struct App {
    pub policies: Policies,
    pub audit: AuditStore,
    pub metrics: crate::metrics::Metrics,
    audited: bool,
    source: DataSource,
    /// How the database itself enforces each policy.
    sql_guards: Vec<EngineGuard>,
    executor: Arc<Executor>,
    admission: Admission,
    ready: AtomicBool,
}

impl App {
    /// Load policies, build missing environments and the demo database,
    /// connect to the database. Does not start zygotes (see `warm_up`).
    pub async fn build(cfg: AppConfig) -> Result<App, StartError> {
        let data = DataDir::new(&cfg.data_dir);
        create_private_dir(data.root())?;
        let policies = Policies::load(cfg.policies_dir.as_deref())?;
        let audit = AuditStore::open(&audit_url(&cfg)).await?;
        let interrupted = audit.mark_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                "marked {interrupted} audit row(s) left `running` by a stopped server as `interrupted`"
            );
        }
        for p in policies.iter() {
            if !Environments::names().any(|n| n == p.environment) {
                return Err(StartError::Policy(crate::policy::PolicyError::Invalid {
                    file: format!("policy `{}`", p.name),
                    key: "environment",
                    problem: format!(
                        "unknown environment `{}`; known: {}",
                        p.environment,
                        Environments::names().collect::<Vec<_>>().join(", ")
                    ),
                }));
            }
        }

        let mut wanted: Vec<String> = policies.iter().map(|p| p.environment.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let (envs, data2, progress) = (wanted.clone(), data.clone(), cfg.progress);
        let built = tokio::task::spawn_blocking(move || {
            let mut e = Environments::new(data2);
            e.progress = progress;
            envs.iter().map(|n| e.ensure(n, false)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("environment build panicked")?;

        let url = match &cfg.database {
            Some(u) => u.clone(),
            None => {
                let default_env = built.iter().find(|e| e.name == "default").unwrap_or(&built[0]).clone();
                let data3 = data.clone();
                let path = tokio::task::spawn_blocking(move || demo::ensure(&data3, &default_env))
                    .await
                    .expect("demo build panicked")?;
                format!("sqlite://{}", path.display())
            }
        };
        let pool_size = cfg.db_connections.unwrap_or(cfg.concurrency * 2).max(1) as u32;
        let source = DataSource::connect(&url, pool_size).await?;
        let writable = source.writable_tables().await?;
        if !writable.is_empty() {
            let strict: Vec<&str> = policies
                .iter()
                .filter(|p| p.database.require_read_only_role)
                .map(|p| p.name.as_str())
                .collect();
            let what = format!(
                "the database user of {} can write ({}); sluice keeps queries read-only, but a read-only role \
                 is the layer that holds if the others fail (see README, \"read-only role\")",
                source.describe(),
                writable.join(", ")
            );
            if !strict.is_empty() {
                return Err(StartError::WritableDatabase(format!(
                    "{what}; policy `{}` requires a read-only role",
                    strict.join("`, `")
                )));
            }
            tracing::warn!("{what}");
        }
        let sql_guards = source.engine_guards(&policies, &writable).await?;
        for g in &sql_guards {
            if g.tables && g.writes {
                continue;
            }
            if policies.get(&g.policy).is_some_and(|p| p.database.require_role) {
                return Err(StartError::SqlGuard(format!(
                    "policy `{}` requires the database to enforce it ([database] require_role), but: {}",
                    g.policy, g.detail
                )));
            }
            tracing::warn!("SQL guard degraded for policy `{}`: {}", g.policy, g.detail);
        }
        let files = runtime::install(&data.runtime()).map_err(|source| StartError::Io {
            what: format!("writing runtime files under {}", data.runtime().display()),
            source,
        })?;
        let scratch =
            crate::executor::scratch::prepare(&data.scratch()).map_err(|source| StartError::Io {
                what: format!("preparing the scratch dirs under {}", data.scratch().display()),
                source,
            })?;
        let jail = crate::jail::Jail::prepare(&policies, cfg.policies_dir.as_deref(), &data.runtime())?;
        let executor = Arc::new(Executor::new(files, scratch, built, jail));
        Ok(App {
            policies,
            audit,
            metrics: Default::default(),
            audited: !cfg.benchmark_without_audit,
            source,
            sql_guards,
            executor,
            admission: Admission::new(cfg.concurrency.max(1), cfg.queue),
            ready: AtomicBool::new(false),
        })
    }

    /// Start every environment's zygote; the app is ready afterwards.
    pub async fn warm_up(&self) -> Result<(), StartError> {
        let mut envs: Vec<&str> = self.policies.iter().map(|p| p.environment.as_str()).collect();
        envs.sort();
        envs.dedup();
        for env in envs {
            self.executor.warm(env, &self.policies).await?;
        }
        if !self.ready.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.executor.clone().supervise());
        }
        Ok(())
    }

    /// Every sandbox layer on this host (from the default policy's
    /// environment), and whether every policy accepts the missing ones.
    pub async fn layers(
        &self,
    ) -> Result<(Vec<crate::jail::Layer>, Result<(), crate::jail::JailError>), StartError> {
        let env =
            self.policies.get("default").map(|p| p.environment.clone()).unwrap_or_else(|| "default".into());
        Ok(self.executor.layers(&env, &self.policies).await?)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// "; columns of iris: id, sepal_length, …" for the tables a query
    /// names, among those the policy allows.
    async fn column_hint(&self, sql: &str, policy: &Policy) -> String {
        let Ok(cols) = self.source.schema().await else { return String::new() };
        let rules = self.source.rules();
        let words: std::collections::HashSet<String> = sql
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let mut by_table: Vec<(String, Vec<String>)> = Vec::new();
        for c in cols {
            let r = rules.stored(&c.schema, &c.table);
            let name = rules.display(&r);
            if !rules.allows(&policy.tables, &r) || !words.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            match by_table.last_mut() {
                Some((last, list)) if *last == name => list.push(c.column),
                _ => by_table.push((name, vec![c.column])),
            }
        }
        by_table.iter().map(|(t, c)| format!("; columns of {t}: {}", c.join(", "))).collect()
    }

    /// A table name as SQL for this database, quoted part by part.
    pub fn quote_table(&self, schema: Option<&str>, table: &str) -> String {
        let rules = self.source.rules();
        match schema {
            Some(s) => format!("{}.{}", rules.quote(s), rules.quote(table)),
            None => rules.quote(table),
        }
    }

    /// Tables and columns the policy lets a query read, and the functions
    /// it may call (GET /schema).
    pub async fn schema(&self, caller: &Caller, policy: &str) -> Result<Value, ServiceError> {
        require_role(caller, crate::audit::keys::Role::Execute).map_err(ServiceError::Forbidden)?;
        if !caller.principal.may_use_policy(policy) {
            return Err(ServiceError::Forbidden(format!("this key may not use policy `{policy}`")));
        }
        let p = self.policies.get(policy).ok_or_else(|| ServiceError::BadRequest {
            field: "policy".into(),
            message: format!(
                "unknown policy `{policy}`; known policies: {}",
                self.policies.names().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let cols =
            self.source.schema().await.map_err(|e| ServiceError::DatabaseUnavailable(e.to_string()))?;
        let rules = self.source.rules();
        let mut tables: Vec<Value> = Vec::new();
        for c in cols {
            let r = rules.stored(&c.schema, &c.table);
            if !rules.allows(&p.tables, &r) {
                continue;
            }
            let name = rules.display(&r);
            if tables.last().map(|t| t["name"] != name.as_str()).unwrap_or(true) {
                tables.push(json!({"name": name, "schema": c.schema, "table": c.table, "columns": []}));
            }
            if let Some(Value::Array(list)) = tables.last_mut().map(|t| &mut t["columns"]) {
                list.push(json!({"name": c.column, "type": c.data_type}));
            }
        }
        let dialect = self.source.dialect();
        Ok(json!({
            "policy": p.name,
            "dialect": format!("{dialect:?}").to_lowercase(),
            "tables": tables,
            "functions": crate::sql::allow::functions(dialect),
            "table_functions": crate::sql::allow::table_functions(dialect),
        }))
    }

    /// Facts for /readyz.
    pub async fn readiness(&self) -> (bool, Value) {
        let zygotes = self.executor.all_alive().await;
        let db = self.source.ping().await;
        let ready = self.is_ready() && zygotes && db;
        let body = json!({
            "ready": ready,
            "warm": self.is_ready(),
            "database": {"reachable": db, "url": self.source.describe(), "sql_guards": self.sql_guards},
            "environments": self.executor.describe().await,
        });
        (ready, body)
    }

    /// Run one request to a verdict, on the record, and count it.
    pub async fn execute(
        &self,
        caller: &Caller,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, ServiceError> {
        require_role(caller, crate::audit::keys::Role::Execute).map_err(ServiceError::Forbidden)?;
        let started = Instant::now();
        let result = self.execute_audited(caller, req).await;
        let status = match &result {
            Ok(r) => r.status.as_str(),
            Err(e) => e.audit_status(),
        };
        self.metrics.observe(status, started.elapsed().as_secs_f64());
        result
    }

    /// Prometheus text for GET /metrics.
    pub async fn metrics_text(&self) -> String {
        let up = if self.executor.all_alive().await { 1.0 } else { 0.0 };
        self.metrics.render(&[
            ("sluice_zygotes_up", "1 when every environment's zygote is running.", up),
            ("sluice_ready", "1 once the zygotes are warm.", if self.is_ready() { 1.0 } else { 0.0 }),
            (
                "sluice_queue_waiting",
                "Requests waiting for an execution slot.",
                self.admission.waiting() as f64,
            ),
        ])
    }

    /// The audit row is written before any work and completed with the
    /// outcome, whatever it is.
    async fn execute_audited(
        &self,
        caller: &Caller,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, ServiceError> {
        let id = Uuid::now_v7();
        let policy = self.policies.get(req.policy.as_deref().unwrap_or("default"));
        let start = NewExecution {
            execution_id: id,
            principal: caller.principal.label(),
            client_addr: caller.client_addr.clone(),
            policy: Some(crate::output::clip(req.policy.as_deref().unwrap_or("default"), 256)),
            environment: policy.map(|p| p.environment.clone()),
            sql_query: Some(req.sql_query.clone()),
            params: Some(crate::audit::params_excerpt(&req.params)),
            classifier_code: Some(req.classifier_code.clone()),
        };
        if !self.audited {
            return self.execute_recorded(id, caller, req).await;
        }
        self.audit.start(&start).await.map_err(|e| {
            tracing::error!("audit insert failed: {e}");
            ServiceError::AuditUnavailable("the audit database refused the insert".into())
        })?;
        let full_text = (req.sql_query.clone(), req.classifier_code.clone());
        let result = self.execute_recorded(id, caller, req).await;
        let finish = match &result {
            Ok(r) => Finish {
                output: r.output.clone(),
                // Long texts were kept as excerpts; a request that reached
                // the database keeps them whole.
                full_text: (r.timings_ms.sql.is_some() && r.status != Status::SqlRejected)
                    .then_some(full_text),
                status: r.status.as_str().into(),
                error: r.error.clone(),
                row_count: r.row_count.map(|n| n as i64),
                timings_ms: serde_json::to_value(&r.timings_ms).ok(),
                resources: serde_json::to_value(&r.resources).ok(),
                exit_signal: r.exit_signal.map(i64::from),
                blocked_syscall: r
                    .error
                    .as_ref()
                    .and_then(|e| e.get("syscall"))
                    .and_then(Value::as_str)
                    .map(String::from),
            },
            Err(e) => Finish {
                status: e.audit_status().into(),
                error: Some(json!({"category": e.audit_status(), "message": e.to_string()})),
                ..Default::default()
            },
        };
        if let Err(e) = self.audit.finish(id, &finish).await {
            // The verdict stands; the row stays `running` and says so.
            tracing::error!(execution_id = %id, "audit completion failed: {e}");
        }
        result
    }

    /// Record a request that could not even be parsed (HTTP 400).
    pub async fn record_rejected(&self, caller: &Caller, message: &str) {
        let id = Uuid::now_v7();
        let start = NewExecution {
            execution_id: id,
            principal: caller.principal.label(),
            client_addr: caller.client_addr.clone(),
            ..Default::default()
        };
        let finish = Finish {
            status: "bad_request".into(),
            error: Some(json!({"category": "bad_request", "message": message})),
            ..Default::default()
        };
        if let Err(e) = async {
            self.audit.start(&start).await?;
            self.audit.finish(id, &finish).await
        }
        .await
        {
            tracing::error!("auditing a rejected request failed: {e}");
        }
    }

    async fn execute_recorded(
        &self,
        id: Uuid,
        caller: &Caller,
        req: ExecuteRequest,
    ) -> Result<ExecuteResponse, ServiceError> {
        let started = Instant::now();
        let policy_name = req.policy.clone().unwrap_or_else(|| "default".into());
        let policy = self.policies.get(&policy_name).ok_or_else(|| ServiceError::BadRequest {
            field: "policy".into(),
            message: format!(
                "unknown policy `{}`; known policies: {}",
                crate::output::clip(&policy_name, 128),
                self.policies.names().collect::<Vec<_>>().join(", ")
            ),
        })?;
        if !caller.principal.may_use_policy(&policy.name) {
            return Err(ServiceError::Forbidden(format!(
                "this key may not use policy `{}`; it may use: {}",
                policy.name,
                caller.principal.policies.as_deref().unwrap_or_default().join(", ")
            )));
        }
        let limits = policy
            .request_limits(req.timeout, req.max_memory)
            .map_err(|e| ServiceError::BadRequest { field: e.field.into(), message: e.message })?;
        let params = convert_params(&req.params)?;
        let entrypoint = req.entrypoint.clone().unwrap_or_else(|| "classify".into());
        if !code::is_identifier(&entrypoint) {
            return Err(ServiceError::BadRequest {
                field: "entrypoint".into(),
                message: format!("`{entrypoint}` is not a Python function name"),
            });
        }
        if req.sql_query.trim().is_empty() {
            return Err(ServiceError::BadRequest { field: "sql_query".into(), message: "is empty".into() });
        }
        if !self.is_ready() {
            return Err(ServiceError::NotReady);
        }
        let _permit = self.admission.enter().await?;

        let mut resp = ExecuteResponse::new(id, policy);
        let code = code::extract(&req.classifier_code);

        let t_sql = Instant::now();
        let fetched = self
            .source
            .fetch(
                &req.sql_query,
                &params,
                Access { tables: &policy.tables, role: policy.database.role.as_deref() },
                FetchLimits {
                    max_rows: policy.limits.max_rows,
                    max_bytes: policy.limits.max_fetch_bytes,
                    timeout: Duration::from_secs_f64(policy.limits.sql_timeout_s),
                },
            )
            .await;
        resp.timings_ms.sql = Some(ms(t_sql));
        let rows = match fetched {
            Ok(rows) => rows,
            Err(SqlError::Unavailable { message }) => return Err(ServiceError::DatabaseUnavailable(message)),
            Err(SqlError::Database { message }) if message.to_lowercase().contains("column") => {
                // Name what exists, so the next attempt can use it.
                let hint = self.column_hint(&req.sql_query, policy).await;
                resp.set_sql_error(SqlError::Database { message: format!("{message}{hint}") });
                resp.timings_ms.total = ms(started);
                return Ok(resp);
            }
            Err(e) => {
                resp.set_sql_error(e);
                resp.timings_ms.total = ms(started);
                return Ok(resp);
            }
        };
        resp.row_count = Some(rows.row_count);
        resp.columns = Some(rows.columns.clone());

        let l = &policy.limits;
        let job = Job {
            id: resp.execution_id,
            code,
            entrypoint,
            arrow_ipc: rows.arrow_ipc,
            row_count: rows.row_count,
            limits: ChildLimits {
                timeout_s: limits.timeout_s,
                cpu_s: limits.cpu_s,
                memory_mb: limits.memory_mb,
                nproc: l.max_threads,
                nofile: l.max_open_files,
                fsize_bytes: l.max_file_size_mb * 1024 * 1024,
                scratch_bytes: l.max_scratch_mb * 1024 * 1024,
                stdout_bytes: l.max_stdout_bytes,
                stderr_bytes: l.max_stderr_bytes,
                output_bytes: l.max_output_bytes,
            },
        };
        let t_box = Instant::now();
        let outcome = self.executor.run(policy, job).await;
        resp.timings_ms.sandbox = Some(ms(t_box));
        match outcome {
            Ok(o) => {
                resp.set_outcome(o);
                resp.shape_output(policy);
            }
            Err(e) => {
                tracing::error!(execution_id = %resp.execution_id, "executor failed: {e}");
                resp.set_error(Status::InternalError, json!({
                    "message": "sluice failed to run the code (its sandbox process broke); this is not your code's fault, retry the request",
                }));
            }
        }
        resp.timings_ms.total = ms(started);
        Ok(resp)
    }
}

/// Bytes of a database's error message passed on to the caller.
const MAX_DB_MESSAGE: usize = 2048;

/// The audit database URL of a configuration.
pub fn audit_url(cfg: &AppConfig) -> String {
    cfg.audit_database.clone().unwrap_or_else(|| {
        format!("sqlite://{}", DataDir::new(&cfg.data_dir).root().join("audit.sqlite").display())
    })
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

fn create_private_dir(path: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::Io { what: format!("creating {}", path.display()), source })
}

fn convert_params(values: &[Value]) -> Result<Vec<Param>, ServiceError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(match v {
                Value::Null => Param::Null,
                Value::Bool(b) => Param::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Param::Int(i),
                    None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => Param::Text(s.clone()),
                Value::Array(_) | Value::Object(_) => {
                    return Err(ServiceError::BadRequest {
                        field: format!("params[{i}]"),
                        message: "arrays and objects cannot be bound; pass a string, number, boolean or null"
                            .into(),
                    });
                }
            })
        })
        .collect()
}

impl ExecuteResponse {
    fn new(id: Uuid, policy: &Policy) -> Self {
        Self {
            execution_id: id,
            status: Status::InternalError,
            row_count: None,
            columns: None,
            predictions: None,
            scores: None,
            label_counts: None,
            error: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            timings_ms: Timings { sql: None, sandbox: None, total: 0.0 },
            resources: Resources { cpu_ms: None, peak_memory_kb: None },
            policy: policy.name.clone(),
            environment: policy.environment.clone(),
            exit_signal: None,
            output: None,
        }
    }

    /// Set a non-success status; `error` gets its `category`.
    fn set_error(&mut self, status: Status, mut error: Value) {
        if let Value::Object(m) = &mut error {
            m.insert("category".into(), json!(status.as_str()));
        }
        self.status = status;
        self.error = Some(error);
        self.predictions = None;
        self.scores = None;
        self.label_counts = None;
    }

    fn set_sql_error(&mut self, e: SqlError) {
        let (status, detail) = match &e {
            SqlError::Rejected(r) => {
                (Status::SqlRejected, json!({"message": format!("query rejected: {r}"), "reason": r.0}))
            }
            SqlError::Params { .. } => {
                (Status::SqlError, json!({"message": e.to_string(), "db_message": e.to_string()}))
            }
            SqlError::Database { message } => {
                // The database may quote values in its message; keep it short.
                let message = crate::output::clip(message, MAX_DB_MESSAGE);
                (
                    Status::SqlError,
                    json!({"message": format!("the database refused the query: {message}"), "db_message": message}),
                )
            }
            SqlError::Timeout { seconds } => (
                Status::SqlTimeout,
                json!({"message": format!("{e}; add a WHERE clause or LIMIT, or avoid cross joins"), "limit_s": seconds}),
            ),
            SqlError::RowLimit { limit } => (
                Status::RowLimit,
                json!({"message": format!("{e}; add a WHERE clause or LIMIT {limit}, or aggregate in SQL"), "limit": limit}),
            ),
            SqlError::ByteLimit { limit } => (
                Status::RowLimit,
                json!({"message": format!("{e} (the policy's max_fetch_bytes); select fewer or shorter columns \
                    (substr/length of big text or blobs), fewer rows, or aggregate in SQL"), "limit_bytes": limit}),
            ),
            SqlError::Connect { .. }
            | SqlError::Encode(_)
            | SqlError::Unavailable { .. }
            | SqlError::Role(_) => {
                tracing::error!("sql stage failed: {e}");
                (
                    Status::InternalError,
                    json!({"message": "sluice could not read from the database; retry later"}),
                )
            }
        };
        self.set_error(status, detail);
    }

    /// Apply the policy's `[output]` bounds to what the child returned and
    /// note for the audit what leaves.
    fn shape_output(&mut self, policy: &Policy) {
        let o = &policy.output;
        let stdout_returned = o.stdout == crate::policy::StdoutMode::Return;
        // The labels move out for the checks and the summary, and back in
        // only if they are returned.
        let labels = self.predictions.take();
        let distinct = self.label_counts.as_ref().map_or(0, |c| c.len());
        let returned = match &labels {
            Some(l) if self.status == Status::Success => {
                match crate::output::check(o, &policy.name, l, distinct) {
                    Err(v) => {
                        self.set_error(Status::InvalidOutput, v.detail());
                        "nothing"
                    }
                    Ok(()) if o.counts_only => {
                        self.label_counts =
                            self.label_counts.take().map(|c| crate::output::suppress(c, o.min_group_size));
                        self.scores = None;
                        // The exact count would tell a one-row predicate's
                        // answer and the size of the groups left out.
                        self.row_count = None;
                        "counts"
                    }
                    Ok(()) => {
                        if !o.scores {
                            self.scores = None;
                        }
                        "labels"
                    }
                }
            }
            _ => "error",
        };
        self.output = Some(crate::output::summary(
            labels.as_deref(),
            distinct,
            returned,
            &self.stdout,
            &self.stderr,
            stdout_returned,
        ));
        if returned == "labels" {
            self.predictions = labels;
        }
        if !stdout_returned {
            self.stdout.clear();
            self.stderr.clear();
            self.stdout_truncated = false;
            self.stderr_truncated = false;
        }
    }

    fn set_outcome(&mut self, o: Outcome) {
        self.stdout = o.stdout;
        self.stderr = o.stderr;
        self.stdout_truncated = o.stdout_truncated;
        self.stderr_truncated = o.stderr_truncated;
        self.resources = Resources { cpu_ms: Some(o.cpu_ms), peak_memory_kb: Some(o.peak_memory_kb) };
        self.exit_signal = o.exit_signal;
        if o.status == Status::Success {
            let preds = o.predictions.unwrap_or_default();
            self.label_counts = Some(crate::output::counts(&preds));
            self.predictions = Some(preds);
            self.scores = o.scores;
            self.status = Status::Success;
            self.error = None;
        } else {
            self.set_error(o.status, o.error.unwrap_or_else(|| json!({"message": "no detail"})));
        }
    }
}

/// A bounded wait for a free execution slot.
struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn new(concurrency: usize, queue: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(concurrency)), waiting: AtomicUsize::new(0), queue }
    }

    async fn enter(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = Waiting(&self.waiting);
        if before >= self.queue {
            return Err(ServiceError::QueueFull { waiting: before });
        }
        Ok(self.slots.clone().acquire_owned().await.expect("semaphore never closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_counts_use_json_text() {
        let c =
            crate::output::counts(&[json!("a"), json!(1), json!(true), json!(null), json!(1), json!(0.5)]);
        assert_eq!(c["a"], 1);
        assert_eq!(c["1"], 2);
        assert_eq!(c["true"], 1);
        assert_eq!(c["null"], 1);
        assert_eq!(c["0.5"], 1);
    }

    #[test]
    fn params_reject_nested_values() {
        let e = convert_params(&[json!(1), json!([1])]).unwrap_err();
        assert!(matches!(e, ServiceError::BadRequest { ref field, .. } if field == "params[1]"));
        assert_eq!(
            convert_params(&[json!(1.5), json!("x")]).unwrap(),
            vec![Param::Float(1.5), Param::Text("x".into())]
        );
    }

    #[tokio::test]
    async fn admission_queues_then_refuses() {
        let a = Admission::new(1, 1);
        let p = a.enter().await.unwrap();
        let a = Arc::new(a);
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.enter().await.map(|_| ()) });
        tokio::task::yield_now().await;
        while a.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(a.enter().await, Err(ServiceError::QueueFull { .. })));
        drop(p);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.waiting.load(Ordering::SeqCst), 0);
    }
}
