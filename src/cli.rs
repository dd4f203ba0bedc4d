//! Command line (DESIGN §4): `serve`, `env`, `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::audit::AuditStore;
use crate::audit::keys::{Principal, Role};
use crate::config::DataDir;
use crate::environment::Environments;
use crate::service::{App, AppConfig, Caller, ExecuteRequest, audit_url};
use crate::verdict::Status;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Run LLM-written Python classifiers over read-only SQL results, in a sandbox"
)]
struct Cli {
    /// Data directory: demo database, built environments, runtime files.
    #[arg(long, global = true, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Build or list Python environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Execute one classifier and print the JSON verdict (no server).
    Run(RunArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Review the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Serve MCP on stdio as the local user (principal `stdio:<user>`; with
    /// SLUICE_API_KEY set, as that key).
    Mcp {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// List the sandbox layers this host provides, and whether the policies
    /// accept the missing ones.
    Doctor {
        /// Directory of policy files (*.toml). Default: the built-in policies.
        #[arg(long, env = "SLUICE_POLICIES")]
        policies: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct AuditDbArgs {
    /// Audit database URL (sqlite://PATH or postgres://…). Default:
    /// audit.sqlite in the data dir.
    #[arg(long, env = "SLUICE_AUDIT_DATABASE_URL")]
    audit_database: Option<String>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        /// Role(s): execute, audit, admin (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// Limit the key to these policies (repeatable). Default: all.
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        db: AuditDbArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Executions, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        code_sha256: Option<String>,
        /// RFC 3339, e.g. 2026-11-22T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// One execution as JSON.
    Show {
        id: String,
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// Walk the hash chain; exit 1 at the first broken link.
    Verify {
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// Every record, oldest first.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        #[command(flatten)]
        db: AuditDbArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

#[derive(Args)]
struct SourceArgs {
    /// Database URL (sqlite://PATH). Default: the demo database.
    #[arg(long, env = "SLUICE_DATABASE_URL", conflicts_with = "demo")]
    database: Option<String>,
    /// Use the demo database (iris, wine, breast_cancer), creating it once.
    #[arg(long)]
    demo: bool,
    /// Directory of policy files (*.toml). Default: the built-in policies.
    #[arg(long, env = "SLUICE_POLICIES")]
    policies: Option<PathBuf>,
    #[command(flatten)]
    db: AuditDbArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    #[command(flatten)]
    source: SourceArgs,
    /// Requests executed at once. Default: number of CPUs.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Requests that may wait for a free slot before new ones get 429.
    #[arg(long)]
    queue: Option<usize>,
    /// Connections in the database pool. Default: 2 × concurrency.
    #[arg(long, env = "SLUICE_DB_CONNECTIONS")]
    db_connections: Option<usize>,
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Build an environment (default: `default`), or rebuild it with --force.
    Setup {
        name: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// List known environments and whether they are built.
    List,
}

#[derive(Args)]
struct RunArgs {
    /// The SQL query.
    #[arg(long)]
    sql: String,
    /// File with the Python code (`-` for stdin).
    #[arg(long)]
    code_file: PathBuf,
    /// Policy name.
    #[arg(long)]
    policy: Option<String>,
    /// Bind parameter as JSON (repeatable, in order): --param 5 --param '"x"'.
    #[arg(long = "param")]
    params: Vec<String>,
    /// Function to call.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Wall-clock limit in seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Memory limit in MB.
    #[arg(long)]
    max_memory: Option<u64>,
    #[command(flatten)]
    source: SourceArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let data_dir = cli.data_dir.clone().unwrap_or_else(DataDir::default_path);
    let result = match cli.command {
        Command::Serve(a) => runtime().block_on(serve(data_dir, a)),
        Command::Env(c) => env(data_dir, c),
        Command::Run(a) => runtime().block_on(run(data_dir, a)),
        Command::Doctor { policies, json } => runtime().block_on(doctor(data_dir, policies, json)),
        Command::Keys(c) => runtime().block_on(keys(data_dir, c)),
        Command::Mcp { source } => runtime().block_on(mcp(data_dir, source)),
        Command::Audit(c) => runtime().block_on(audit(data_dir, c)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn app_config(data_dir: PathBuf, s: &SourceArgs) -> AppConfig {
    let mut cfg = AppConfig::new(data_dir);
    cfg.database = if s.demo { None } else { s.database.clone() };
    cfg.policies_dir = s.policies.clone();
    cfg.audit_database = s.db.audit_database.clone();
    cfg
}

async fn open_store(data_dir: PathBuf, db: &AuditDbArgs) -> anyhow::Result<AuditStore> {
    let mut cfg = AppConfig::new(data_dir);
    cfg.audit_database = db.audit_database.clone();
    std::fs::create_dir_all(DataDir::new(&cfg.data_dir).root()).ok();
    Ok(AuditStore::open(&audit_url(&cfg)).await?)
}

/// The local user, for principals of commands run without a key.
fn local_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}

async fn serve(data_dir: PathBuf, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = app_config(data_dir, &a.source);
    if let Some(c) = a.concurrency {
        cfg.concurrency = c.max(1);
    }
    if let Some(q) = a.queue {
        cfg.queue = q;
    }
    cfg.db_connections = a.db_connections;
    let app = Arc::new(App::build(cfg).await?);
    if app.audit.active_key_count().await? == 0 {
        let (key, secret) = app.audit.create_key("admin", &[Role::Admin], None).await?;
        println!(
            "sluice: no API key existed, so an admin key `{}` ({}) was created. It is shown only now:",
            key.name, key.id
        );
        println!("{secret}");
    }
    let listener =
        tokio::net::TcpListener::bind(&a.bind).await.with_context(|| format!("binding {}", a.bind))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(crate::server::serve(listener, app.clone()));
    // Requests get 503 until the zygotes are warm; then we say where we are.
    app.warm_up().await?;
    let (layers, _) = app.layers().await?;
    for l in layers.iter().filter(|l| !l.active) {
        eprintln!("sluice: warning: sandbox layer `{}` is not active on this host: {}", l.name, l.detail);
    }
    println!("sluice listening on http://{addr}");
    server.await??;
    Ok(ExitCode::SUCCESS)
}

fn env(data_dir: PathBuf, c: EnvCommand) -> anyhow::Result<ExitCode> {
    let envs = Environments::new(DataDir::new(data_dir));
    match c {
        EnvCommand::Setup { name, force } => {
            let name = name.as_deref().unwrap_or("default");
            let e = envs.ensure(name, force)?;
            println!("{}\t{}\t{}", e.name, e.hash, e.dir.display());
        }
        EnvCommand::List => {
            for s in envs.list()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    s.name,
                    s.hash,
                    if s.built { "built" } else { "not built" },
                    s.dir.display(),
                    s.packages.join(" ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(data_dir: PathBuf, a: RunArgs) -> anyhow::Result<ExitCode> {
    let code = if a.code_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading code from stdin")?
    } else {
        std::fs::read_to_string(&a.code_file).with_context(|| format!("reading {}", a.code_file.display()))?
    };
    let params = a
        .params
        .iter()
        .map(|p| {
            serde_json::from_str(p)
                .with_context(|| format!("--param {p}: not JSON (strings need quotes: '\"x\"')"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = app_config(data_dir, &a.source);
    cfg.concurrency = 1;
    let app = App::build(cfg).await?;
    app.warm_up().await?;
    let req = ExecuteRequest {
        sql_query: a.sql,
        params,
        classifier_code: code,
        entrypoint: a.entrypoint,
        timeout: a.timeout,
        max_memory: a.max_memory,
        policy: a.policy,
    };
    let caller = Caller { principal: cli_principal(), client_addr: None };
    let resp = match app.execute(&caller, req).await {
        Ok(r) => r,
        Err(e) => bail!("{e}"),
    };
    println!("{}", serde_json::to_string_pretty(&resp)?);
    Ok(if resp.status == Status::Success { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn doctor(data_dir: PathBuf, policies: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let mut cfg = AppConfig::new(data_dir);
    cfg.policies_dir = policies;
    cfg.concurrency = 1;
    let app = App::build(cfg).await?;
    let (layers, verdict) = app.layers().await?;
    if json {
        let v = serde_json::json!({
            "layers": layers,
            "ok": verdict.is_ok(),
            "error": verdict.as_ref().err().map(|e| e.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<18} {:<8} detail", "layer", "status");
        for l in &layers {
            println!("{:<18} {:<8} {}", l.name, if l.active { "active" } else { "MISSING" }, l.detail);
        }
        for p in app.policies.iter() {
            let accepted = p.sandbox.allow_degraded.join(", ");
            println!("policy {}: accepts missing [{}]", p.name, accepted);
        }
        match &verdict {
            Ok(()) => println!("ok: `sluice serve` will start with these layers"),
            Err(e) => println!("refused: {e}"),
        }
    }
    Ok(if verdict.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// `sluice run` acts as the local user, with every role.
fn cli_principal() -> Principal {
    let mut p = Principal::local(&local_user());
    p.name = format!("cli:{}", local_user());
    p
}

/// Text from the audit store, safe to print on a terminal: control
/// characters (escape sequences) are shown escaped, never sent.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

async fn keys(data_dir: PathBuf, c: KeysCommand) -> anyhow::Result<ExitCode> {
    match c {
        KeysCommand::Create { name, roles, policies, db } => {
            let store = open_store(data_dir, &db).await?;
            let policies = (!policies.is_empty()).then_some(policies);
            let (key, secret) = store.create_key(&name, &roles, policies.as_deref()).await?;
            let roles: Vec<String> = key.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
            println!(
                "created key `{}` ({}) with role(s) {} for {}; it is shown only now:",
                key.name,
                key.id,
                roles.join(", "),
                key.policies
                    .map(|p| format!("policies {}", p.join(", ")))
                    .unwrap_or_else(|| "every policy".into())
            );
            println!("{secret}");
        }
        KeysCommand::List { db } => {
            let store = open_store(data_dir, &db).await?;
            println!(
                "{:<16} {:<20} {:<22} {:<20} {:<25} revoked",
                "id", "name", "roles", "policies", "created"
            );
            for k in store.list_keys().await? {
                let roles: Vec<String> = k.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
                println!(
                    "{:<16} {:<20} {:<22} {:<20} {:<25} {}",
                    k.id,
                    printable(&k.name),
                    roles.join(","),
                    k.policies.map(|p| p.join(",")).unwrap_or_else(|| "*".into()),
                    k.created_at,
                    k.revoked_at.unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysCommand::Revoke { id, db } => {
            let store = open_store(data_dir, &db).await?;
            store.revoke_key(&id).await?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(data_dir: PathBuf, c: AuditCommand) -> anyhow::Result<ExitCode> {
    match c {
        AuditCommand::List { status, principal, policy, code_sha256, since, until, limit, db } => {
            let store = open_store(data_dir, &db).await?;
            let f = crate::audit::Filter {
                status,
                principal,
                policy,
                code_sha256,
                since,
                until,
                limit: Some(limit),
                cursor: None,
                scope: None,
            };
            let page = store.list(&f).await?;
            println!(
                "{:<25} {:<37} {:<19} {:<24} {:>6} {:>9}",
                "created", "execution", "status", "principal", "rows", "total_ms"
            );
            for r in page.records {
                let total = r.timings_ms.as_ref().and_then(|t| t.get("total")).and_then(|v| v.as_f64());
                println!(
                    "{:<25} {:<37} {:<19} {:<24} {:>6} {:>9}",
                    r.created_at,
                    r.execution_id,
                    r.status,
                    printable(&r.principal),
                    r.row_count.map(|n| n.to_string()).unwrap_or_default(),
                    total.map(|t| format!("{t:.1}")).unwrap_or_default()
                );
            }
        }
        AuditCommand::Show { id, db } => {
            let store = open_store(data_dir, &db).await?;
            println!("{}", serde_json::to_string_pretty(&store.get(&id).await?)?);
        }
        AuditCommand::Verify { db } => {
            let store = open_store(data_dir, &db).await?;
            let v = crate::audit::chain::verify(&store).await?;
            println!("{}", serde_json::to_string(&v)?);
            return Ok(if v.ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        AuditCommand::Export { format: ExportFormat::Jsonl, db } => {
            let store = open_store(data_dir, &db).await?;
            for r in store.all().await? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn mcp(data_dir: PathBuf, source: SourceArgs) -> anyhow::Result<ExitCode> {
    use rmcp::ServiceExt;
    let mut cfg = app_config(data_dir, &source);
    cfg.progress = false; // stdout is the protocol
    let app = Arc::new(App::build(cfg).await?);
    app.warm_up().await?;
    let principal = match std::env::var("SLUICE_API_KEY") {
        Ok(key) => app
            .audit
            .authenticate(key.trim())
            .await?
            .ok_or_else(|| anyhow::anyhow!("SLUICE_API_KEY is not a live key"))?,
        Err(_) => Principal::local(&local_user()),
    };
    let caller = Caller { principal, client_addr: Some("stdio".into()) };
    let service = crate::tools::SluiceTools::new(app, Some(caller)).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_the_store_prints_without_escape_sequences() {
        assert_eq!(super::printable("ok name"), "ok name");
        assert_eq!(super::printable("evil\u{1b}]0;x\u{7}\n"), "evil\\u{1b}]0;x\\u{7}\\n");
    }
}
