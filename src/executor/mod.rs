//! The executor: one warm zygote per environment, one forked child per
//! request, and the classification of how the child ended.

pub mod cgroup;
mod frame;
pub mod jail;
mod outcome;
pub mod protocol;
mod running;
pub use protocol::ChildLimits;
pub mod scratch;
pub mod seccomp;
mod uids;
pub mod zygote;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use serde_json::json;
use uuid::Uuid;

use outcome::Frame;
pub use outcome::Outcome;
use running::{Running, read_result, wait_exit, wait_started, write_payload};
use zygote::Zygote;

use crate::environment::Environment;
use crate::executor::jail::Jail;
use crate::policy::{Policies, Policy};
use crate::runtime::RuntimeFiles;

/// Extra time, past the wall-clock limit, before the server stops waiting
/// for the zygote's report and declares the zygote broken.
const BACKSTOP: Duration = Duration::from_secs(10);
/// How long a stop waits for killed children to be reaped and cleaned up.
pub const CLEANUP_WAIT: Duration = Duration::from_secs(15);
/// Room for the JSON framing around predictions and captured output.
const RESULT_SLACK: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("starting the zygote failed: {0}")]
    Start(String),
    #[error("the zygote went away")]
    ZygoteGone,
    #[error("protocol error with the zygote: {0}")]
    Protocol(String),
    #[error("no environment `{0}` is configured")]
    UnknownEnvironment(String),
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Jail(#[from] crate::executor::jail::JailError),
}

/// One classifier run.
pub struct Job {
    pub id: Uuid,
    pub code: String,
    pub entrypoint: String,
    /// The rows: an Arrow IPC stream in a sealed memfd the child maps.
    pub rows: crate::sql::ArrowFile,
    pub row_count: usize,
    pub limits: ChildLimits,
}

struct Slot {
    env: Environment,
    current: tokio::sync::Mutex<Option<Arc<Zygote>>>,
    /// Consecutive failed starts and when the last one failed: starts are
    /// spaced out (exponential backoff) instead of hammering a broken setup.
    failures: std::sync::Mutex<(u32, Option<std::time::Instant>)>,
}

/// Wait before the n-th consecutive restart attempt.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(10))
}

pub struct Executor {
    files: RuntimeFiles,
    scratch_root: PathBuf,
    slots: HashMap<String, Slot>,
    /// Host uids for children, one per live child (when the server is root).
    uids: Option<Arc<uids::UidPool>>,
    pub jail: Jail,
    /// Cleanups of children whose request ended early (reap, uid, cgroup,
    /// scratch dir): a stop waits for them.
    cleanups: tokio_util::task::TaskTracker,
}

impl Executor {
    pub fn new(files: RuntimeFiles, scratch_root: PathBuf, envs: Vec<Environment>, jail: Jail) -> Self {
        let slots = envs
            .into_iter()
            .map(|env| {
                let slot = Slot {
                    env,
                    current: tokio::sync::Mutex::new(None),
                    failures: std::sync::Mutex::new((0, None)),
                };
                (slot.env.name.clone(), slot)
            })
            .collect();
        let uids =
            nix::unistd::geteuid().is_root().then(|| Arc::new(uids::UidPool::new(uids::BASE, uids::COUNT)));
        Self { files, scratch_root, slots, uids, jail, cleanups: Default::default() }
    }

    /// How the zygote is started: the uids its children get and the
    /// directories they must reach (as root, they own nothing on the host).
    fn zygote_options(&self) -> zygote::Options {
        zygote::Options {
            uids: self.uids.as_ref().map(|p| (p.base(), p.count())),
            // The harness, the cdylib and the compiled seccomp profiles.
            expose: vec![self.files.dir().parent().map(PathBuf::from).unwrap_or_default()],
            expose_rw: vec![self.scratch_root.clone()],
        }
    }

    /// Start `env`'s zygote and refuse policies whose layers are missing.
    pub async fn warm(&self, env: &str, policies: &Policies) -> Result<(), ExecError> {
        let z = self.zygote(env).await?;
        self.jail.check(policies, &z.ready)?;
        Ok(())
    }

    /// The environment's live zygote, starting one if there is none.
    pub async fn zygote(&self, env: &str) -> Result<Arc<Zygote>, ExecError> {
        let slot = self.slots.get(env).ok_or_else(|| ExecError::UnknownEnvironment(env.into()))?;
        let mut cur = slot.current.lock().await;
        if let Some(z) = cur.as_ref().filter(|z| z.is_alive()) {
            return Ok(z.clone());
        }
        if cur.take().is_some() {
            tracing::warn!(environment = env, "restarting the zygote");
        }
        let (failed, last) = *slot.failures.lock().unwrap();
        if let Some(last) = last
            && last.elapsed() < backoff(failed)
        {
            return Err(ExecError::Start(format!(
                "the zygote failed to start {failed} time(s) in a row; next attempt in {:.1} s",
                (backoff(failed) - last.elapsed()).as_secs_f64()
            )));
        }
        let z = match Zygote::start(&slot.env, &self.files, &self.zygote_options()).await {
            Ok(z) => Arc::new(z),
            Err(e) => {
                *slot.failures.lock().unwrap() = (failed + 1, Some(std::time::Instant::now()));
                return Err(e);
            }
        };
        *slot.failures.lock().unwrap() = (0, None);
        tracing::info!(
            environment = env,
            pid = z.ready.pid,
            import_ms = z.ready.import_ms as u64,
            rss_mb = z.ready.rss_kb / 1024,
            user_namespace = z.ready.isolation.user_namespace,
            landlock_abi = z.ready.isolation.landlock_abi,
            "zygote ready"
        );
        *cur = Some(z.clone());
        Ok(z)
    }

    /// Keep every zygote up: restart one that died (a crash, an OOM kill of
    /// the zygote itself) without waiting for the next request.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            for name in self.slots.keys() {
                if let Err(e) = self.zygote(name).await {
                    tracing::error!(environment = %name, "zygote restart failed: {e}");
                }
            }
        }
    }

    /// The sandbox layers of `env`'s zygote, and whether `policies` accept
    /// the missing ones.
    pub async fn layers(
        &self,
        env: &str,
        policies: &Policies,
    ) -> Result<(Vec<crate::executor::jail::Layer>, Result<(), crate::executor::jail::JailError>), ExecError>
    {
        let z = self.zygote(env).await?;
        Ok((self.jail.layers(&z.ready), self.jail.check(policies, &z.ready)))
    }

    /// Wait (up to `CLEANUP_WAIT`) for the cleanups of children whose
    /// request ended early.
    pub async fn cleaned_up(&self) {
        self.cleanups.close();
        if tokio::time::timeout(CLEANUP_WAIT, self.cleanups.wait()).await.is_err() {
            tracing::warn!(left = self.cleanups.len(), "child cleanups did not finish");
            return;
        }
        // This server's own scratch dir, empty by now.
        if let Err(e) = std::fs::remove_dir(&self.scratch_root) {
            tracing::warn!("removing {}: {e}", self.scratch_root.display());
        }
    }

    /// Is every environment's zygote up?
    pub async fn all_alive(&self) -> bool {
        for slot in self.slots.values() {
            match slot.current.lock().await.as_ref() {
                Some(z) if z.is_alive() => {}
                _ => return false,
            }
        }
        true
    }

    /// Start-up facts about each running zygote (for /readyz).
    pub async fn describe(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, slot) in &self.slots {
            let v = match slot.current.lock().await.as_ref() {
                Some(z) => {
                    json!({"alive": z.is_alive(), "zygote": z.ready, "layers": self.jail.layers(&z.ready)})
                }
                None => json!({"alive": false}),
            };
            out.insert(name.clone(), v);
        }
        serde_json::Value::Object(out)
    }

    /// Run one job to an outcome. `Err` only for sluice's own failures.
    /// However the request ends (a result, an error, the caller going
    /// away), its child is killed and reaped before its uid is reused.
    pub async fn run(&self, policy: &Policy, job: Job) -> Result<Outcome, ExecError> {
        let zygote = self.zygote(&policy.environment).await?;
        let uid = match &self.uids {
            Some(pool) => Some(pool.acquire().ok_or_else(|| {
                ExecError::Start(format!("all {} sandbox uids are in use", pool.capacity()))
            })?),
            None => None,
        };
        // Only a mount point: the child mounts its own tmpfs on it.
        let scratch = self.scratch_root.join(job.id.to_string());
        std::fs::create_dir_all(&scratch)
            .map_err(|source| ExecError::Io { what: "creating the scratch dir", source })?;
        let sandbox = self.jail.child_sandbox(policy, &zygote.ready);
        let cgroup = match &self.jail.cgroups {
            Ok(c) => {
                Some(c.create(&job.id.to_string(), job.limits.memory_mb, job.limits.max_threads).map_err(
                    |source| {
                        let _ = std::fs::remove_dir(&scratch);
                        ExecError::Io { what: "creating the request's cgroup", source }
                    },
                )?)
            }
            Err(_) => None,
        };
        let running = Running {
            zygote: zygote.clone(),
            id: job.id,
            events: None,
            uid,
            cgroup,
            scratch: Some(scratch.clone()),
            reaped: false,
            cleanups: self.cleanups.clone(),
        };
        let header = protocol::Run {
            op: "run",
            id: job.id,
            limits: &job.limits,
            entrypoint: &job.entrypoint,
            scratch: &scratch,
            seccomp: sandbox.seccomp.as_deref(),
            sandbox: protocol::SandboxSpec { landlock: sandbox.landlock, seccomp: sandbox.seccomp.is_some() },
            uid: running.uid.as_ref().map(|u| u.uid()),
        };
        let header = header.encode();
        let result = self.run_in(&zygote, header, job, running).await;
        if matches!(result, Err(ExecError::ZygoteGone | ExecError::Protocol(_))) {
            zygote.kill();
        }
        result
    }

    async fn run_in(
        &self,
        zygote: &Zygote,
        header: protocol::Encoded,
        job: Job,
        mut running: Running,
    ) -> Result<Outcome, ExecError> {
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Io { what: "pipe", source: e.into() })
        };
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let l = job.limits;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(l.timeout_s) + BACKSTOP;
        let backstop = || {
            ExecError::Protocol(format!(
                "no report from the zygote {:.0} s after the wall-clock limit",
                BACKSTOP.as_secs_f64()
            ))
        };
        let t0 = std::time::Instant::now();
        let rows = job.rows.into_fd();
        let events = running.events.insert(zygote.submit(job.id, header, [in_r, out_w, rows]).await?);

        // The child waits for its code; it joins the request's cgroup
        // before it gets it (the server moves it: the cgroup files are
        // not the child's to write).
        let pid = match tokio::time::timeout_at(deadline, wait_started(events)).await {
            Ok(r) => r?,
            Err(_) => return Err(backstop()),
        };
        let t_started = t0.elapsed();
        if let Some(c) = &running.cgroup {
            c.join(pid)
                .await
                .map_err(|source| ExecError::Io { what: "moving the child into its cgroup", source })?;
        }
        let t_joined = t0.elapsed();

        // The code; closing the pipe tells the child to go on.
        let payload = job.code.into_bytes();

        let cap = l.max_output_bytes + l.max_stdout_bytes + l.max_stderr_bytes + RESULT_SLACK;
        let io = async { tokio::join!(write_payload(in_w, payload), read_result(out_r, cap)).1 };
        let frame = match tokio::time::timeout_at(deadline, io).await {
            Ok(read) => Frame::parse(
                read.map_err(|source| ExecError::Io { what: "reading the child's result", source })?,
            ),
            Err(_) => return Err(backstop()),
        };
        // A complete frame decides the outcome, but the request is not over
        // while its process lives: code that wrote a result and kept running
        // is killed now. CPU and memory come from the kernel (the zygote's
        // wait4), never from the child's own report.
        let t_frame = t0.elapsed();
        if let Frame::Complete(r) = &frame {
            tracing::debug!(execution_id = %job.id, timings = ?r.timings, "child steps");
            zygote.kill_child(job.id);
        }
        let exit = match tokio::time::timeout_at(deadline, wait_exit(events)).await {
            Ok(exit) => exit?,
            Err(_) => return Err(backstop()),
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            execution_id = %job.id,
            started_ms = ms(t_started),
            cgroup_ms = ms(t_joined - t_started),
            run_ms = ms(t_frame - t_joined),
            exit_ms = ms(t0.elapsed() - t_frame),
            "sandbox steps"
        );
        running.reaped = true;
        let oom = running.cgroup.as_ref().map(|c| c.oom_killed());
        // wait4's peak RSS misses pages the child no longer maps (tmpfs,
        // memfd); the cgroup was charged for them.
        let mut exit = exit;
        if let Some(peak) = running.cgroup.as_ref().and_then(|c| c.peak_kb()) {
            exit.maxrss_kb = exit.maxrss_kb.max(peak);
        }
        Ok(outcome::classify(&job.limits, job.row_count, exit, frame, oom))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(super::backoff(0).as_millis(), 100);
        assert_eq!(super::backoff(3).as_millis(), 800);
        assert_eq!(super::backoff(30).as_secs(), 10);
    }
}
