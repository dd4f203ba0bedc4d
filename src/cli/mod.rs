//! Command line (DESIGN §4): `serve`, `env`, `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::audit::AuditStore;
use crate::audit::keys::{Principal, Role};

mod run;
mod store;

use crate::app::{AppConfig, Caller, audit_url};
use crate::config::DataDir;
use run::{doctor, env, mcp, run, serve};
use store::{audit, keys};

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
    /// Directory of operator-defined environments: one folder each, with a
    /// pinned requirements.txt and an optional environment.toml. Default:
    /// the built-in `default` only (which stays unless a folder replaces it).
    #[arg(long, global = true, env = "SLUICE_ENVIRONMENTS", value_name = "DIR")]
    environments: Option<PathBuf>,
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
        /// Directory of policy files the names are checked against. Default:
        /// the built-in policies.
        #[arg(long = "policies", env = "SLUICE_POLICIES")]
        policies_dir: Option<PathBuf>,
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
        /// A key's name, its id (k_…) or the whole label.
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
        /// The next page: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Only records whose SQL or code contains this text.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        db: AuditDbArgs,
    },
    /// One execution as JSON.
    Show {
        /// Its id, or the first 8 or more characters of it.
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
    /// Database URL: sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB (MariaDB too).
    /// Default: the demo database.
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
    /// Children each policy keeps forked and already sandboxed, waiting
    /// for a request (0: fork each request's child on its path).
    #[arg(long, env = "SLUICE_PREFORK", default_value_t = crate::app::DEFAULT_PREFORK, value_name = "N")]
    prefork: usize,
    /// On SIGTERM or SIGINT, seconds the executions in flight get to finish
    /// before they are killed (and recorded `interrupted`).
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", default_value_t = 30.0, value_name = "S")]
    shutdown_grace: f64,
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
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one environment: where it is defined, its settings, and (once
    /// built) the Python and every package version it resolved to.
    Info {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
    use std::io::IsTerminal;
    // Colours only on a terminal (a log file or journald gets plain text);
    // rmcp's per-session chatter only when asked for.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,rmcp=warn".into()),
        )
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
    let data_dir = cli.data_dir.clone().unwrap_or_else(DataDir::default_path);
    let envs = cli.environments.clone();
    let result = match cli.command {
        Command::Serve(a) => runtime().block_on(serve(data_dir, envs, a)),
        Command::Env(c) => env(data_dir, envs, c),
        Command::Run(a) => runtime().block_on(run(data_dir, envs, a)),
        Command::Doctor { policies, json } => runtime().block_on(doctor(data_dir, envs, policies, json)),
        Command::Keys(c) => runtime().block_on(keys(data_dir, c)),
        Command::Mcp { source } => runtime().block_on(mcp(data_dir, envs, source)),
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

fn app_config(data_dir: PathBuf, environments: Option<PathBuf>, s: &SourceArgs) -> AppConfig {
    let mut cfg = AppConfig::new(data_dir);
    cfg.environments_dir = environments;
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

/// The caller of the CLI's own commands: the local user, with every role
/// (whoever can run sluice here can read its data dir).
fn cli_caller() -> Caller {
    Caller { principal: cli_principal(), client_addr: None }
}

/// `sluice run` acts as the local user, with every role.
fn cli_principal() -> Principal {
    let mut p = Principal::local(&local_user());
    p.name = format!("cli:{}", local_user());
    p
}

/// The local user, for principals of commands run without a key.
fn local_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}
