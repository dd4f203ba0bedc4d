//! Start-up wiring: policies, environments, the database and its guards,
//! the runtime files, the jail. Nothing here runs per request.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::App;
use super::admission::Admission;
use crate::audit::AuditStore;
use crate::config::DataDir;
use crate::environment::{EnvSpecs, Environments, Start};
use crate::executor::{ExecError, Executor};
use crate::policy::Policies;
use crate::sql::{DataSource, SqlError};
use crate::{demo, runtime};

/// What `App::build` needs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    /// `None`: the demo database.
    pub database: Option<String>,
    pub policies_dir: Option<PathBuf>,
    /// The operator's environments (one folder each); `None`: the built-in
    /// `default` only.
    pub environments_dir: Option<PathBuf>,
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
    /// Pre-forked children each policy keeps ready, already in the
    /// sandbox (0: fork each request's child on its path).
    pub prefork: usize,
    /// Skip the audit log. Only the benchmark sets this, to measure what
    /// auditing costs; no flag, variable or policy reaches it.
    #[doc(hidden)]
    pub benchmark_without_audit: bool,
}

/// Spares per policy by default: each costs a few MB (its own pages over
/// the zygote's shared image) and a sandbox uid.
pub const DEFAULT_PREFORK: usize = 2;

impl AppConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let cpus = crate::config::available_cpus();
        Self {
            data_dir: data_dir.into(),
            database: None,
            policies_dir: None,
            environments_dir: None,
            concurrency: cpus,
            queue: cpus * 16,
            progress: true,
            audit_database: None,
            db_connections: None,
            prefork: DEFAULT_PREFORK,
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
    Jail(#[from] crate::executor::jail::JailError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    WritableDatabase(String),
    #[error("{0}")]
    SqlGuard(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl App {
    /// Load policies, build missing environments and the demo database,
    /// connect to the database. Does not start zygotes (see `warm_up`).
    pub async fn build(cfg: AppConfig) -> Result<Arc<App>, StartError> {
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
        let specs = EnvSpecs::load(cfg.environments_dir.as_deref())?;
        check_read_paths(&specs, &cfg)?;
        for p in policies.iter() {
            if specs.get(&p.environment).is_err() {
                return Err(StartError::Policy(crate::policy::PolicyError::Invalid {
                    file: format!("policy `{}`", p.name),
                    key: "environment",
                    problem: format!("unknown environment `{}`; known: {}", p.environment, specs.known()),
                }));
            }
        }

        // Every environment a policy names is built now (the first use),
        // on-demand ones too: a broken pin stops the start, not a request.
        let mut wanted: Vec<String> = policies.iter().map(|p| p.environment.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let (data2, progress, demo) = (data.clone(), cfg.progress, cfg.database.is_none());
        let (built, demo_env) = tokio::task::spawn_blocking(move || {
            let mut e = Environments::new(data2, specs);
            e.progress = progress;
            let built = wanted.iter().map(|n| e.ensure(n, false)).collect::<Result<Vec<_>, _>>()?;
            // The demo database is made from scikit-learn's datasets, in
            // the built-in stack's environment.
            let demo_env = if demo { Some(e.ensure("default", false)?) } else { None };
            Ok::<_, crate::environment::EnvError>((built, demo_env))
        })
        .await
        .expect("environment build panicked")?;

        let url = match &cfg.database {
            Some(u) => u.clone(),
            None => {
                let default_env = demo_env.expect("built above when there is no database");
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
        let jail =
            crate::executor::jail::Jail::prepare(&policies, cfg.policies_dir.as_deref(), &data.runtime())?;
        let executor = Arc::new(Executor::new(files, scratch, built, jail, policies.clone(), cfg.prefork));
        Ok(Arc::new_cyclic(|me| App {
            policies,
            audit,
            metrics: Default::default(),
            audited: !cfg.benchmark_without_audit,
            source,
            sql_guards,
            executor,
            admission: Admission::new(cfg.concurrency.max(1), cfg.queue),
            ready: AtomicBool::new(false),
            stop: Default::default(),
            me: me.clone(),
        }))
    }

    /// Start every eager environment's zygote; the app is ready afterwards.
    /// (On-demand environments start with their first request.)
    pub async fn warm_up(&self) -> Result<(), StartError> {
        self.start_eager().await?;
        if !self.ready.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.executor.clone().supervise());
            tokio::spawn(self.executor.clone().keep_spares(self.policies.clone()));
        }
        Ok(())
    }

    async fn start_eager(&self) -> Result<(), StartError> {
        let mut envs: Vec<&str> = self.policies.iter().map(|p| p.environment.as_str()).collect();
        envs.sort();
        envs.dedup();
        envs.retain(|e| self.executor.start_mode(e) == Some(Start::Eager));
        for env in envs {
            self.executor.warm(env).await?;
        }
        Ok(())
    }

    /// For `sluice doctor`: each environment a policy names, every one of
    /// them started (on-demand ones too: their first request would be the
    /// first to find a broken one), with the error of one that fails.
    pub async fn environments_report(&self) -> serde_json::Value {
        let mut envs: Vec<&str> = self.policies.iter().map(|p| p.environment.as_str()).collect();
        envs.sort();
        envs.dedup();
        let mut errors = Vec::new();
        for env in envs {
            if let Err(e) = self.executor.warm(env).await {
                errors.push((env.to_string(), e.to_string()));
            }
        }
        let mut report = self.executor.describe();
        for (env, e) in errors {
            report[env.as_str()]["error"] = serde_json::json!(e);
        }
        report
    }

    /// The sandbox layers as a running zygote reports them (none is
    /// started for this).
    pub fn running_layers(&self) -> Option<Vec<crate::executor::jail::Layer>> {
        self.executor.running_layers()
    }

    /// Every sandbox layer on this host (from the default policy's
    /// environment), and whether every policy accepts the missing ones.
    pub async fn layers(
        &self,
    ) -> Result<(Vec<crate::executor::jail::Layer>, Result<(), crate::executor::jail::JailError>), StartError>
    {
        // The layers are the host's: a running zygote of any environment
        // tells them (else one is started for the report alone).
        let default =
            self.policies.get("default").map(|p| p.environment.clone()).unwrap_or_else(|| "default".into());
        let running = self.executor.running_environments();
        let env =
            if running.contains(&default) { default } else { running.into_iter().next().unwrap_or(default) };
        Ok(self.executor.layers(&env, &self.policies).await?)
    }
}

/// An environment's `read_paths` must not reach what sluice guards: its
/// data dir (audit log, keys, demo database, other environments), the
/// policies, a SQLite database or audit file (children would read the
/// rows around the SQL guard).
fn check_read_paths(specs: &EnvSpecs, cfg: &AppConfig) -> Result<(), StartError> {
    let mut guarded: Vec<(&str, PathBuf)> =
        vec![("sluice's data dir", DataDir::new(&cfg.data_dir).root().into())];
    guarded.extend(cfg.policies_dir.clone().map(|p| ("the policies", p)));
    for url in [&cfg.database, &cfg.audit_database].into_iter().flatten() {
        guarded.extend(url_paths(url).into_iter().map(|p| ("a file or socket of a database URL", p)));
    }
    // The database servers' own sockets, wherever the URL points.
    for dir in ["/run/postgresql", "/var/run/postgresql", "/run/mysqld", "/var/run/mysqld"] {
        guarded.push(("a database server's socket directory", dir.into()));
    }
    let guarded: Vec<(&str, PathBuf)> = guarded
        .into_iter()
        .map(|(what, p)| (what, std::path::absolute(&p).unwrap_or(p)))
        .map(|(what, p)| (what, p.canonicalize().unwrap_or(p)))
        .collect();
    for spec in specs.iter() {
        for rp in &spec.settings.read_paths {
            if let Some((what, p)) = guarded.iter().find(|(_, p)| p.starts_with(rp) || rp.starts_with(p)) {
                return Err(StartError::Environment(crate::environment::EnvError::Invalid {
                    file: format!("{}/environment.toml", spec.source),
                    key: "read_paths",
                    problem: format!(
                        "`{}` overlaps {what} ({}): its children could read it around sluice's guards",
                        rp.display(),
                        p.display()
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// Paths a database URL names: a SQLite file (`sqlite:PATH`,
/// `sqlite://PATH`, `sqlite:///ABS`), and any absolute path among its
/// query values or its (percent-encoded) host: a Unix socket directory,
/// TLS keys and certificates.
fn url_paths(url: &str) -> Vec<PathBuf> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out: Vec<PathBuf> = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| decode(v)))
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    if let Some(rest) = base.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        out.push(PathBuf::from(decode(path)));
    } else if let Some((_, rest)) = base.split_once("://") {
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = decode(host.split('/').next().unwrap_or(""));
        if host.starts_with('/') {
            out.push(PathBuf::from(host));
        }
    }
    out
}

/// The audit database URL of a configuration.
pub fn audit_url(cfg: &AppConfig) -> String {
    cfg.audit_database.clone().unwrap_or_else(|| {
        format!("sqlite://{}", DataDir::new(&cfg.data_dir).root().join("audit.sqlite").display())
    })
}

fn create_private_dir(path: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::Io { what: format!("creating {}", path.display()), source })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn database_urls_name_their_files_and_sockets() {
        let p = |u: &str| super::url_paths(u);
        assert_eq!(p("sqlite:///srv/db/x.db?mode=ro"), [PathBuf::from("/srv/db/x.db")]);
        assert_eq!(p("sqlite:/srv/db/x.db"), [PathBuf::from("/srv/db/x.db")]);
        assert_eq!(p("sqlite:rel.db"), [PathBuf::from("rel.db")]);
        assert_eq!(
            p("postgres://u@%2Frun%2Fpg/db?sslkey=/etc/k.pem&sslmode=require"),
            [PathBuf::from("/etc/k.pem"), PathBuf::from("/run/pg")]
        );
        assert_eq!(p("mysql://root@127.0.0.1:3306/test?socket=/run/m.sock"), [PathBuf::from("/run/m.sock")]);
        assert!(p("postgres://u@localhost/db").is_empty());
    }
}
