//! One warm Python process (the zygote) and the control protocol with it.
//!
//! The zygote's stdin is one end of a `SOCK_DGRAM` Unix socketpair (message
//! boundaries kept, reliable and ordered between local peers). For each
//! child the server sends a JSON header plus two fds (`SCM_RIGHTS`): the
//! child's request channel (it receives its code and rows there, from the
//! server, so request data never passes through the zygote) and its result
//! pipe. The zygote answers with `started` (child pid) and `exited` (how it
//! ended, CPU, peak memory) events, one JSON object per packet; `arm` starts
//! a child's wall clock, `kill` ends it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::ExecError;
use super::protocol::{self, Exit, MAX_MESSAGE as MAX_EVENT, ReadyInfo, Wire};
use super::running::send_with_fds;
use crate::environment::Environment;
use crate::runtime::RuntimeFiles;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How the zygote sets up the sandbox its children share.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// First host uid and how many, when children get uids of their own.
    pub uids: Option<(u32, u32)>,
    /// Directories children must read / write besides the interpreter's.
    pub expose: Vec<std::path::PathBuf>,
    pub expose_rw: Vec<std::path::PathBuf>,
}

#[derive(Debug)]
pub enum Event {
    Started {
        pid: i32,
    },
    Exited(Exit),
    Error(String),
    /// The zygote itself went away.
    Gone,
}

type Pending = Arc<std::sync::Mutex<HashMap<Uuid, mpsc::UnboundedSender<Event>>>>;

pub struct Zygote {
    pub ready: ReadyInfo,
    ctl: Arc<UnixDatagram>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    kill: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Zygote {
    /// Start the environment's zygote and wait until its imports are done.
    pub async fn start(env: &Environment, files: &RuntimeFiles, opts: &Options) -> Result<Zygote, ExecError> {
        let (ours, theirs) = StdDatagram::pair().map_err(|e| ExecError::Start(format!("socketpair: {e}")))?;
        ours.set_nonblocking(true).map_err(|e| ExecError::Start(e.to_string()))?;

        let mut cmd = tokio::process::Command::new(&env.python);
        cmd.arg("-I")
            .arg("-B")
            .arg(&files.harness)
            .arg("--lib")
            .arg(&files.cdylib)
            .arg("--server-pid")
            .arg(std::process::id().to_string());
        if let Some((base, count)) = opts.uids {
            cmd.arg("--uid-base").arg(base.to_string()).arg("--uid-count").arg(count.to_string());
        }
        for p in &opts.expose {
            cmd.arg("--expose").arg(p);
        }
        for p in &opts.expose_rw {
            cmd.arg("--expose-rw").arg(p);
        }
        // The environment's own settings (environment.toml).
        let settings = &env.settings;
        for p in &settings.read_paths {
            cmd.arg("--read-path").arg(p);
        }
        if let Some(modules) = &settings.preload {
            cmd.arg(format!("--preload={}", modules.join(",")));
        }
        if !settings.warm {
            cmd.arg("--no-warm");
        }
        cmd.arg("--warm-rows").arg(&files.warm_rows).arg("--warm-child-rows").arg(&files.warm_child_rows);
        cmd.env_clear()
            .envs(zygote_env())
            .current_dir(Path::new("/"))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| ExecError::Start(format!("spawning {}: {e}", env.python.display())))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_log(stderr));
        }

        let ctl = Arc::new(UnixDatagram::from_std(ours).map_err(|e| ExecError::Start(e.to_string()))?);
        let ready = tokio::time::timeout(READY_TIMEOUT, recv_event(&ctl)).await.map_err(|_| {
            ExecError::Start(format!("the zygote did not get ready within {READY_TIMEOUT:?}"))
        })?;
        let ready = match ready {
            Some(Wire::Ready(r)) if r.protocol == protocol::VERSION => r,
            Some(Wire::Ready(r)) => {
                return Err(ExecError::Start(format!(
                    "the zygote speaks protocol {}, this server {}: the runtime files under the data dir \
                     are not this binary's",
                    r.protocol,
                    protocol::VERSION
                )));
            }
            Some(Wire::Failed { message }) => return Err(ExecError::Start(message)),
            Some(_) => {
                return Err(ExecError::Start("unexpected first message from the zygote".into()));
            }
            None => {
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                return Err(ExecError::Start(format!(
                    "the zygote exited during start-up ({status}); see the log above"
                )));
            }
        };

        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        // A datagram socket reports no EOF when the peer goes: the process
        // handle does. Whichever notices first fails the in-flight requests.
        let reader = tokio::spawn(read_events(ctl.clone(), pending.clone()));
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(watch(child, kill_rx, reader, pending.clone(), alive.clone()));
        Ok(Zygote { ready, ctl, pending, alive, kill: std::sync::Mutex::new(Some(kill_tx)) })
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Ask for a child. Events about it arrive on the returned receiver.
    pub async fn submit(
        &self,
        id: Uuid,
        header: protocol::Encoded,
        child_fds: [OwnedFd; 2],
    ) -> Result<mpsc::UnboundedReceiver<Event>, ExecError> {
        if !self.is_alive() {
            return Err(ExecError::ZygoteGone);
        }
        let bytes = header.0;
        // The zygote reads one datagram of at most MAX_EVENT bytes; a larger
        // request is this request's problem, not the zygote's.
        if bytes.len() > MAX_EVENT {
            return Err(ExecError::Start(format!(
                "the request header is {} bytes, over {MAX_EVENT}",
                bytes.len()
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending.lock().unwrap().insert(id, tx);
        let raw = child_fds.each_ref().map(|fd| fd.as_raw_fd());
        let sent = self.ctl.async_io(Interest::WRITABLE, || send_with_fds(&*self.ctl, &bytes, &raw)).await;
        // The zygote holds its own copies now (or never will).
        drop(child_fds);
        if let Err(e) = sent {
            self.pending.lock().unwrap().remove(&id);
            self.alive.store(false, Ordering::SeqCst);
            return Err(ExecError::Protocol(format!("sending to the zygote: {e}")));
        }
        Ok(rx)
    }

    /// The request `id` is over: have the zygote SIGKILL its child (the
    /// zygote reaps it, so the pid cannot have been reused). Never blocks.
    pub fn kill_child(&self, id: Uuid) {
        self.send_op(&protocol::Kill::new(id));
    }

    /// Child `id` has its request since `start` (CLOCK_MONOTONIC seconds),
    /// with `cpu0_ns` of CPU used before it: the zygote runs its wall clock
    /// from then. Never blocks.
    pub fn arm(&self, id: Uuid, start: f64, timeout_s: f64, cpu0_ns: u64) {
        self.send_op(&protocol::Arm { op: "arm", id, start, timeout_s, cpu0_ns });
    }

    fn send_op(&self, op: &impl serde::Serialize) {
        if !self.is_alive() {
            return;
        }
        let msg = serde_json::to_vec(op).expect("serializable");
        if let Err(e) = self.ctl.try_send(&msg) {
            let ctl = self.ctl.clone();
            tracing::debug!("control socket busy ({e}); sending asynchronously");
            tokio::spawn(async move {
                let _ = ctl.send(&msg).await;
            });
        }
    }

    /// Kill the zygote (its children die with it: parent-death signal).
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let Some(tx) = self.kill.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The zygote's whole environment: thread pools pinned to one thread (it
/// must stay single-threaded to fork safely) and the allocator settings
/// that keep pyarrow from reserving a 1 GiB arena or starting a thread.
/// (The benchmark gives its warm worker the same.)
pub fn zygote_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("OMP_NUM_THREADS", "1"),
        ("OPENBLAS_NUM_THREADS", "1"),
        ("MKL_NUM_THREADS", "1"),
        ("NUMEXPR_NUM_THREADS", "1"),
        ("VECLIB_MAXIMUM_THREADS", "1"),
        ("ARROW_DEFAULT_MEMORY_POOL", "system"),
        ("JE_ARROW_MALLOC_CONF", "background_thread:false"),
        // Each thread's malloc arena reserves 64 MiB of address space,
        // which RLIMIT_AS counts: cap the number of arenas.
        ("MALLOC_ARENA_MAX", "2"),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Host CPU quirks for OpenBLAS are configuration, not secrets; the
    // Landlock ABI cap runs the older-kernel path on a newer kernel.
    for k in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SLUICE_LANDLOCK_ABI_MAX"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.into(), v));
        }
    }
    env
}

async fn forward_log(stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(target: "sluice::zygote", "{line}");
    }
}

async fn recv_event(ctl: &UnixDatagram) -> Option<Wire> {
    let mut buf = vec![0u8; MAX_EVENT];
    loop {
        let n = ctl.recv(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        match serde_json::from_slice::<Wire>(&buf[..n]) {
            Ok(w) => return Some(w),
            Err(e) => tracing::error!("bad message from the zygote: {e}"),
        }
    }
}

async fn read_events(ctl: Arc<UnixDatagram>, pending: Pending) {
    while let Some(w) = recv_event(&ctl).await {
        let (id, ev, done) = match w {
            Wire::Started { id, pid } => (id, Event::Started { pid }, false),
            Wire::Exited { id, exit } => (id, Event::Exited(exit), true),
            Wire::Error { id: Some(id), message } => (id, Event::Error(message), true),
            Wire::Error { id: None, message } => {
                tracing::error!("zygote: {message}");
                continue;
            }
            Wire::Ready(_) | Wire::Failed { .. } => continue,
        };
        let mut p = pending.lock().unwrap();
        if let Some(tx) = p.get(&id) {
            let _ = tx.send(ev);
        }
        if done {
            p.remove(&id);
        }
    }
}

/// Owns the zygote process: kills it on request, and when it ends (for any
/// reason) marks it dead and fails every request still waiting on it.
async fn watch(
    mut child: tokio::process::Child,
    kill: tokio::sync::oneshot::Receiver<()>,
    reader: tokio::task::JoinHandle<()>,
    pending: Pending,
    alive: Arc<AtomicBool>,
) {
    let status = tokio::select! {
        s = child.wait() => s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
        _ = kill => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            "killed by the server".to_string()
        }
    };
    alive.store(false, Ordering::SeqCst);
    // Let the reader deliver the last events the zygote sent before dying.
    tokio::time::sleep(Duration::from_millis(50)).await;
    reader.abort();
    if !status.contains("killed by the server") {
        tracing::error!("the zygote exited ({status}); in-flight requests fail and it restarts on next use");
    }
    for (_, tx) in pending.lock().unwrap().drain() {
        let _ = tx.send(Event::Gone);
    }
}
