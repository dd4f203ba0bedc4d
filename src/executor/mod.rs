//! The executor: one warm zygote per environment, one forked child per
//! request, and the classification of how the child ended.

pub mod cgroup;
mod frame;
pub mod jail;
mod lifecycle;
mod outcome;
mod pool;
pub mod protocol;
mod request;
mod running;
pub mod usage;
pub use protocol::ChildLimits;
pub mod scratch;
pub mod seccomp;
mod uids;
pub mod zygote;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use outcome::Outcome;
use pool::Pools;
pub use pool::Serving;
use zygote::Zygote;

use crate::environment::Environment;
use crate::executor::jail::Jail;
use crate::policy::Policies;
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
    #[error("{0}")]
    Capacity(String),
    /// The last start failed moments ago; the next is spaced out.
    #[error("{0}")]
    Backoff(String),
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
    /// Requests running in this environment, and when the last one began or
    /// ended (an on-demand environment is stopped after `idle_stop`).
    in_flight: std::sync::atomic::AtomicUsize,
    last_used: std::sync::Mutex<std::time::Instant>,
    /// What reports read (`current` is held while a zygote starts, which
    /// can take seconds): the last zygote started, and whether one is
    /// starting now.
    published: std::sync::Mutex<Option<Arc<Zygote>>>,
    starting: std::sync::atomic::AtomicBool,
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
    /// Pre-forked children waiting for a request, per policy.
    pools: Pools,
    /// Checked against each zygote that starts (`jail.check`).
    policies: Policies,
}

impl Executor {
    /// `spares`: pre-forked children each policy keeps ready (0: a child
    /// is forked for each request on its path).
    pub fn new(
        files: RuntimeFiles,
        scratch_root: PathBuf,
        envs: Vec<Environment>,
        jail: Jail,
        policies: Policies,
        spares: usize,
    ) -> Self {
        let slots = envs
            .into_iter()
            .map(|env| {
                let slot = Slot {
                    env,
                    current: tokio::sync::Mutex::new(None),
                    failures: std::sync::Mutex::new((0, None)),
                    in_flight: Default::default(),
                    last_used: std::sync::Mutex::new(std::time::Instant::now()),
                    published: Default::default(),
                    starting: Default::default(),
                };
                (slot.env.name.clone(), slot)
            })
            .collect();
        let uids =
            nix::unistd::geteuid().is_root().then(|| Arc::new(uids::UidPool::new(uids::BASE, uids::COUNT)));
        Self {
            files,
            scratch_root,
            slots,
            uids,
            jail,
            cleanups: Default::default(),
            pools: Pools::new(spares),
            policies,
        }
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

    /// Start `env`'s zygote (it refuses policies whose layers are missing).
    pub async fn warm(&self, env: &str) -> Result<(), ExecError> {
        self.zygote(env).await.map(drop)
    }

    /// The environment's live zygote, starting one if there is none.
    pub async fn zygote(&self, env: &str) -> Result<Arc<Zygote>, ExecError> {
        let slot = self.slots.get(env).ok_or_else(|| ExecError::UnknownEnvironment(env.into()))?;
        let mut cur = slot.current.lock().await;
        if let Some(z) = cur.as_ref().filter(|z| z.is_alive()) {
            return Ok(z.clone());
        }
        if let Some(old) = cur.take() {
            // Marked dead is not always gone (a broken control socket):
            // make sure, and stop reporting it.
            old.kill();
            slot.published.lock().unwrap().take();
            tracing::warn!(environment = env, "restarting the zygote");
        }
        let (failed, last) = *slot.failures.lock().unwrap();
        if let Some(last) = last
            && last.elapsed() < backoff(failed)
        {
            return Err(ExecError::Backoff(format!(
                "the zygote failed to start {failed} time(s) in a row; next attempt in {:.1} s",
                (backoff(failed) - last.elapsed()).as_secs_f64()
            )));
        }
        // Every policy that runs here must accept the layers this host
        // lacks: checked at each start, so an on-demand environment is
        // refused the same way as one started with the server.
        let starting = lifecycle::Starting::new(&slot.starting);
        let started = Zygote::start(&slot.env, &self.files, &self.zygote_options()).await.and_then(|z| {
            self.jail.check(self.policies.iter().filter(|p| p.environment == env), &z.ready)?;
            Ok(z)
        });
        drop(starting);
        let z = match started {
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
        *slot.published.lock().unwrap() = Some(z.clone());
        Ok(z)
    }

    /// The sandbox layers of `env`'s zygote, and whether `policies` accept
    /// the missing ones.
    pub async fn layers(
        &self,
        env: &str,
        policies: &Policies,
    ) -> Result<(Vec<crate::executor::jail::Layer>, Result<(), crate::executor::jail::JailError>), ExecError>
    {
        // A running zygote's report, else a zygote started for the report
        // alone (and stopped again): starting a registered one would stop
        // at the check this report is there to explain.
        let ready = match self.running_zygote(env) {
            Some(z) => z.ready.clone(),
            None => {
                let slot = self.slots.get(env).ok_or_else(|| ExecError::UnknownEnvironment(env.into()))?;
                Zygote::start(&slot.env, &self.files, &self.zygote_options()).await?.ready.clone()
            }
        };
        Ok((self.jail.layers(&ready), self.jail.check(policies.iter(), &ready)))
    }

    /// The layers a running zygote (of any environment) reports.
    pub fn running_layers(&self) -> Option<Vec<crate::executor::jail::Layer>> {
        self.slots.keys().find_map(|e| self.running_zygote(e)).map(|z| self.jail.layers(&z.ready))
    }

    /// Environments whose zygote runs now.
    pub fn running_environments(&self) -> Vec<String> {
        self.slots.keys().filter(|e| self.running_zygote(e).is_some()).cloned().collect()
    }

    /// Wait (up to `CLEANUP_WAIT`) for the cleanups of children whose
    /// request ended early.
    pub async fn cleaned_up(&self) {
        // Waiting spares go first: their cleanups are tracked too.
        self.pools.close();
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

    /// Pre-forked children: (ready now, target over all policies, requests
    /// that found none and forked their own).
    pub fn spare_stats(&self) -> (usize, usize, u64) {
        self.pools.stats()
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
