//! The commands that run sluice: `serve`, `run`, `doctor`, `mcp`, `env`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{EnvCommand, RunArgs, ServeArgs, SourceArgs, app_config, cli_caller, local_user};
use crate::app::{App, AppConfig, Caller, ExecuteRequest, act, grant};
use crate::audit::keys::{Principal, Role};
use crate::config::DataDir;
use crate::environment::{EnvSpecs, Environments};
use crate::status::Status;

pub async fn serve(data_dir: PathBuf, envs: Option<PathBuf>, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let grace = std::time::Duration::try_from_secs_f64(a.shutdown_grace).with_context(|| {
        format!("--shutdown-grace {}: give a number of seconds, 0 or more", a.shutdown_grace)
    })?;
    let mut cfg = app_config(data_dir, envs, &a.source);
    if let Some(c) = a.concurrency {
        cfg.concurrency = c.max(1);
    }
    if let Some(q) = a.queue {
        cfg.queue = q;
    }
    cfg.db_connections = a.db_connections;
    cfg.prefork = a.prefork;
    let app = App::build(cfg).await?;
    let keys = app.keys(&grant::<act::ManageKeys>(&cli_caller())?);
    if keys.active_key_count().await? == 0 {
        let (key, secret) = keys.create_key("admin", &[Role::Admin], None).await?;
        println!(
            "sluice: no API key existed, so an admin key `{}` ({}) was created. It is shown only now:",
            key.name, key.id
        );
        println!("{secret}");
    }
    let listener =
        tokio::net::TcpListener::bind(&a.bind).await.with_context(|| format!("binding {}", a.bind))?;
    let addr = listener.local_addr()?;
    // The listener serves until the stop is complete: in-flight answers go
    // out, and new work is told 503 rather than refused a connection.
    let stopped = tokio_util::sync::CancellationToken::new();
    let mut server =
        tokio::spawn(crate::http::serve_until(listener, app.clone(), stopped.clone().cancelled_owned()));
    let mut signal = std::pin::pin!(stop_signal());
    // Requests get 503 until the zygotes are warm; then we say where we are.
    let signalled = tokio::select! {
        r = app.warm_up() => { r?; false }
        () = &mut signal => true,
    };
    if !signalled {
        // From a running zygote (every environment on demand: none yet;
        // each is checked against its policies when it starts).
        for l in app.running_layers().iter().flatten().filter(|l| !l.active) {
            eprintln!("sluice: warning: sandbox layer `{}` is not active on this host: {}", l.name, l.detail);
        }
        println!("sluice listening on http://{addr}");
        tokio::select! {
            () = &mut signal => {}
            r = &mut server => return Err(match r? {
                Ok(()) => anyhow::anyhow!("the HTTP server ended"),
                Err(e) => e.into(),
            }),
        }
    }
    app.begin_stop();
    // A second SIGTERM or SIGINT ends the grace at once.
    let second = tokio::spawn({
        let app = app.clone();
        async move {
            stop_signal().await;
            eprintln!("sluice: second stop signal: killing what still runs");
            app.kill_now();
        }
    });
    eprintln!(
        "sluice: stopping: new executions get 503; waiting up to {:.0} s for those in flight",
        grace.as_secs_f64()
    );
    let report = app.stop(grace).await;
    // The last answers go out before the process ends (bounded by the
    // server's drain timeout).
    stopped.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!("the HTTP server ended with an error while draining: {e}");
    }
    app.settle().await;
    second.abort();
    eprintln!(
        "sluice: stopped after {:.1} s: {} execution(s) were in flight, {} killed at the end of the grace",
        report.waited.as_secs_f64(),
        report.in_flight,
        report.killed
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub fn env(data_dir: PathBuf, dir: Option<PathBuf>, c: EnvCommand) -> anyhow::Result<ExitCode> {
    let envs = Environments::new(DataDir::new(data_dir), EnvSpecs::load(dir.as_deref())?);
    match c {
        EnvCommand::Setup { name, force } => {
            let name = name.as_deref().unwrap_or("default");
            let e = envs.ensure(name, force)?;
            println!("{}\t{}\t{}", e.name, e.hash, e.dir.display());
        }
        EnvCommand::List { json: true } => println!("{}", serde_json::to_string_pretty(&envs.list()?)?),
        EnvCommand::List { json: false } => {
            for s in envs.list()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    s.name,
                    s.hash,
                    if s.built { "built" } else { "not built" },
                    s.dir.display(),
                    s.requirements.join(" ")
                );
            }
        }
        EnvCommand::Info { name, json: true } => {
            println!("{}", serde_json::to_string_pretty(&envs.info(&name)?)?)
        }
        EnvCommand::Info { name, json: false } => print_info(&envs.info(&name)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_info(s: &crate::environment::EnvStatus) {
    let st = &s.settings;
    println!("environment {} (defined in {})", s.name, s.source);
    println!("  hash        {}", s.hash);
    println!("  directory   {} ({})", s.dir.display(), if s.built { "built" } else { "not built" });
    println!(
        "  python      {}",
        s.python_version.as_deref().or(st.python.as_deref()).unwrap_or("the host's")
    );
    println!("  start       {}", serde_json::to_value(st.start).unwrap_or_default().as_str().unwrap_or("?"));
    if let Some(d) = st.idle_stop {
        println!("  idle stop   after {} s", d.as_secs());
    }
    match &st.preload {
        Some(m) => println!("  preload     {}", m.join(", ")),
        None => println!("  preload     the default stack's modules it has"),
    }
    println!("  warm        {}", if st.warm { "yes" } else { "no" });
    for p in &st.read_paths {
        println!("  read path   {}", p.display());
    }
    println!("  pinned      {}", s.requirements.join(" "));
    match &s.installed {
        Some(pkgs) => {
            println!("  installed ({}):", pkgs.len());
            for p in pkgs {
                println!("    {p}");
            }
        }
        None => println!("  not built yet: `sluice env setup {}` builds it", s.name),
    }
}

pub async fn run(data_dir: PathBuf, envs: Option<PathBuf>, a: RunArgs) -> anyhow::Result<ExitCode> {
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
    let mut cfg = app_config(data_dir, envs, &a.source);
    cfg.concurrency = 1;
    // One request: its child is forked on its path, none is kept waiting.
    cfg.prefork = 0;
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
    let resp = match app.execute(&grant::<act::RunCode>(&cli_caller())?, req).await {
        Ok(r) => r,
        Err(e) => bail!("{e}"),
    };
    println!("{}", serde_json::to_string_pretty(&resp)?);
    Ok(if resp.status == Status::Success { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn doctor(
    data_dir: PathBuf,
    envs: Option<PathBuf>,
    policies: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut cfg = AppConfig::new(data_dir);
    cfg.policies_dir = policies;
    cfg.environments_dir = envs;
    cfg.concurrency = 1;
    let app = App::build(cfg).await?;
    // Environments first: the layer report then reads a running zygote.
    let environments = app.environments_report().await;
    let broken: Vec<&String> = environments
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, e)| !e["error"].is_null())
        .map(|(name, _)| name)
        .collect();
    // The layers need one zygote that starts; without one, that is the error.
    let (layers, verdict) = match app.layers().await {
        Ok((layers, verdict)) => (layers, verdict.map_err(|e| e.to_string())),
        Err(e) => {
            (Vec::new(), Err(format!("no environment's zygote starts, so the layers are unknown: {e}")))
        }
    };
    let ok = verdict.is_ok() && broken.is_empty();
    if json {
        let v = serde_json::json!({
            "environments": environments,
            "layers": layers,
            "ok": ok,
            "error": verdict.as_ref().err(),
            "broken_environments": broken,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<18} {:<8} detail", "layer", "status");
        for l in &layers {
            println!("{:<18} {:<8} {}", l.name, if l.active { "active" } else { "MISSING" }, l.detail);
        }
        for (name, e) in environments.as_object().into_iter().flatten() {
            let versions: Vec<String> = e["zygote"]["versions"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect();
            let state = match (e["rss_kb"].as_u64(), e["error"].as_str()) {
                (_, Some(err)) => format!("FAILED TO START: {err}"),
                (Some(kb), None) if e["alive"] == true => format!("zygote up, {} MB", kb / 1024),
                _ => "zygote not running".into(),
            };
            println!(
                "environment {name}: python {}, hash {}, start {}, {state}{}{}",
                e["python"].as_str().unwrap_or("?"),
                e["hash"].as_str().unwrap_or("?"),
                e["start"].as_str().unwrap_or("?"),
                if versions.is_empty() { "" } else { "; " },
                versions.join(", ")
            );
        }
        for p in app.policies.iter() {
            let accepted = p.sandbox.allow_degraded.join(", ");
            println!("policy {}: accepts missing [{}]", p.name, accepted);
        }
        match &verdict {
            Ok(()) if ok => println!("ok: `sluice serve` will start with these layers"),
            Ok(()) => {}
            Err(e) => println!("refused: {e}"),
        }
        for name in &broken {
            println!(
                "broken: environment `{name}` does not start (see above); requests under its policies fail"
            );
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

pub async fn mcp(data_dir: PathBuf, envs: Option<PathBuf>, source: SourceArgs) -> anyhow::Result<ExitCode> {
    use rmcp::ServiceExt;
    let mut cfg = app_config(data_dir, envs, &source);
    cfg.progress = false; // stdout is the protocol
    let app = App::build(cfg).await?;
    app.warm_up().await?;
    let principal = match std::env::var("SLUICE_API_KEY") {
        Ok(key) => app
            .authenticate(key.trim())
            .await?
            .ok_or_else(|| anyhow::anyhow!("SLUICE_API_KEY is not a live key"))?,
        Err(_) => Principal::local(&local_user()),
    };
    let caller = Caller { principal, client_addr: Some("stdio".into()) };
    let service = crate::mcp::SluiceTools::new(app, Some(caller)).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(ExitCode::SUCCESS)
}
