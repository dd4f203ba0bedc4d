//! Pre-forked children ("spares"). A spare is forked and enters every layer
//! that does not depend on a request — its own uid, scratch tmpfs and
//! cgroup, rlimits at its policy's ceilings, landlock, seccomp — and warms
//! its request path on rows of its own, all before any request exists;
//! then it waits on its own request channel. A request takes one, lowers
//! its limits to the request's (cgroup here, rlimits in the child, before
//! the code is sent) and hands it the code and the rows; the child runs
//! that one request and exits. A spare never serves a second request.
//!
//! Each policy keeps `target` spares, refilled off the request path
//! (`Executor::keep_spares`); a request that finds none forks one on the
//! spot, the same way. Forking and entering a spare costs about as much CPU
//! as the request it serves (README "Where the CPU goes"): done beside a
//! request on two cores, it made that request's time in the server half as
//! long again (p50 9.0 against 6.2 ms, requests paced 200 ms apart). So a
//! pool that holds a spare for each request being served refills once they
//! end, or after MAX_DEFER. (With one spare per policy there is nothing to
//! wait with: taking it empties the pool.)

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use nix::fcntl::OFlag;
use serde_json::json;
use tokio::sync::mpsc::error::TryRecvError;
use uuid::Uuid;

use super::running::{Running, wait_started};
use super::zygote::Event;
use super::{ChildLimits, ExecError, Executor, protocol};
use crate::policy::{Policies, Policy};

/// How long a fork may take to report `started` before it counts as failed.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the refill loop looks again without being woken.
const REFILL_TICK: Duration = Duration::from_millis(250);
/// The longest a pool waits for the requests being served before it
/// refills anyway (a long request must not leave the pool short for a
/// burst behind it).
const MAX_DEFER: Duration = Duration::from_secs(1);

/// One pre-forked child, inside its sandbox, waiting for its request.
pub(super) struct Spare {
    /// Kills and cleans up after it however it ends.
    pub(super) running: Running,
    /// The server's end of its request channel.
    pub(super) channel: tokio::net::UnixStream,
    /// The read end of its result pipe.
    pub(super) result: OwnedFd,
    pub(super) pid: i32,
    /// Its own pidfd, which it sent on the channel (`usage`).
    pub(super) pidfd: OwnedFd,
}

impl Spare {
    /// Did it die while it waited (a crash, a kill, its zygote gone)?
    fn is_dead(&mut self) -> bool {
        if !self.running.zygote.is_alive() {
            return true;
        }
        let Some(events) = self.running.events.as_mut() else { return true };
        match events.try_recv() {
            Err(TryRecvError::Empty) => false,
            Ok(Event::Exited(_)) => {
                self.running.reaped = true;
                true
            }
            Ok(_) | Err(TryRecvError::Disconnected) => true,
        }
    }
}

/// One policy's spares.
struct Pool {
    environment: String,
    spares: VecDeque<Spare>,
}

/// The spares of every policy.
pub(super) struct Pools {
    /// Spares each policy keeps ready (0: fork on each request).
    target: usize,
    by_policy: Mutex<HashMap<String, Pool>>,
    /// Wakes the refill loop: a spare was taken or a request was
    /// completed.
    wake: tokio::sync::Notify,
    /// Requests being served now (`Serving`).
    serving: AtomicUsize,
    closing: AtomicBool,
    /// Requests that found no live spare and forked their own.
    misses: AtomicU64,
}

impl Pools {
    pub(super) fn new(target: usize) -> Self {
        Pools {
            target,
            by_policy: Default::default(),
            wake: Default::default(),
            serving: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            misses: AtomicU64::new(0),
        }
    }

    /// A live spare of `policy`, if one is ready. Dead ones are dropped
    /// (their guard releases what they held).
    fn pop(&self, policy: &Policy) -> Option<Spare> {
        let mut pools = self.by_policy.lock().unwrap();
        let pool = pools.get_mut(&policy.name)?;
        while let Some(mut s) = pool.spares.pop_front() {
            if !s.is_dead() {
                return Some(s);
            }
        }
        None
    }

    /// How many live spares `policy` has; None while its environment is
    /// not `up`, which is asked under the lock an idle stop drains and
    /// unpublishes under: a stopped environment's pool is never recreated
    /// (it would be listed in /readyz and counted in the target).
    fn live(&self, policy: &Policy, up: impl Fn() -> bool) -> Option<usize> {
        let mut pools = self.by_policy.lock().unwrap();
        if !up() {
            return None;
        }
        let pool = pools
            .entry(policy.name.clone())
            .or_insert_with(|| Pool { environment: policy.environment.clone(), spares: VecDeque::new() });
        pool.spares.retain_mut(|s| !s.is_dead());
        Some(pool.spares.len())
    }

    fn put(&self, policy: &Policy, spare: Spare) {
        let mut pools = self.by_policy.lock().unwrap();
        // Checked under the lock `close` drains under; otherwise dropped:
        // killed and cleaned up.
        if !self.closing.load(Ordering::SeqCst)
            && let Some(pool) = pools.get_mut(&policy.name)
        {
            pool.spares.push_back(spare);
        }
    }

    /// No more spares: those waiting are killed (their cleanup is tracked
    /// like any child's).
    pub(super) fn close(&self) {
        let drained: Vec<_> = {
            let mut pools = self.by_policy.lock().unwrap();
            self.closing.store(true, Ordering::SeqCst);
            pools.drain().collect()
        };
        self.wake.notify_one();
        drop(drained);
    }

    /// Kill the spares of environment `env` (its zygote is being stopped)
    /// and forget its pools until it runs again (they count towards no
    /// target meanwhile).
    /// Only if `idle()` still holds under the pools' lock; false otherwise.
    /// `then` runs under the same lock (the refill loop asks whether the
    /// environment is up under it too: `live`).
    pub(super) fn drain_environment_if(
        &self,
        env: &str,
        idle: impl Fn() -> bool,
        then: impl FnOnce(),
    ) -> bool {
        let drained: Vec<Pool> = {
            let mut pools = self.by_policy.lock().unwrap();
            if !idle() {
                return false;
            }
            then();
            let names: Vec<String> =
                pools.iter().filter(|(_, p)| p.environment == env).map(|(n, _)| n.clone()).collect();
            names.iter().filter_map(|n| pools.remove(n)).collect()
        };
        drop(drained);
        true
    }

    /// For /metrics: spares ready now, the target over all pools, and
    /// requests that forked their own.
    pub(super) fn stats(&self) -> (usize, usize, u64) {
        let pools = self.by_policy.lock().unwrap();
        let ready = pools.values().map(|p| p.spares.len()).sum();
        (ready, self.target * pools.len(), self.misses.load(Ordering::Relaxed))
    }

    /// For /readyz: the pools of environment `env`, by policy, with the
    /// pids of their spares.
    pub(super) fn describe(&self, env: &str) -> serde_json::Value {
        let pools = self.by_policy.lock().unwrap();
        let mut out = serde_json::Map::new();
        for (policy, pool) in pools.iter().filter(|(_, p)| p.environment == env) {
            let pids: Vec<i32> = pool.spares.iter().map(|s| s.pid).collect();
            out.insert(policy.clone(), json!({"ready": pids.len(), "target": self.target, "pids": pids}));
        }
        serde_json::Value::Object(out)
    }
}

/// A request being served (its execution task, from its start to its
/// end, under any policy): while one is, a pool that holds a spare for
/// each waits to refill (`keep_spares`). Its end wakes the refill loop.
pub struct Serving<'a>(&'a Pools);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

/// The limits a spare of `policy` enters with: the most any request under
/// it may get. Only the wall clock (armed on arrival) and memory are
/// lowered per request; everything else is the policy's own.
fn ceiling(policy: &Policy) -> ChildLimits {
    let l = &policy.limits;
    ChildLimits::new(l, l.max_timeout_s, l.cpu_s, l.max_memory_mb)
}

impl Executor {
    /// Count a request as being served until the guard drops (a pool that
    /// holds a spare for each request being served waits for them to end
    /// before it refills, MAX_DEFER at most).
    pub fn serving(&self) -> Serving<'_> {
        self.pools.serving.fetch_add(1, Ordering::SeqCst);
        Serving(&self.pools)
    }

    /// A spare for a request under `policy`: a ready one, or one forked now.
    pub(super) async fn take_spare(&self, policy: &Policy) -> Result<Spare, ExecError> {
        let spare = self.pools.pop(policy);
        self.pools.wake.notify_one();
        match spare {
            Some(s) => Ok(s),
            None => {
                self.pools.misses.fetch_add(1, Ordering::Relaxed);
                self.spawn_spare(policy, true).await
            }
        }
    }

    /// Fork a child for `policy` and wait until it is in its cgroup.
    /// `may_start`: start the environment's zygote if it is not running (a
    /// request); the refill loop never does: an on-demand environment that
    /// was stopped stays stopped until a request needs it, an eager one is
    /// restarted by `supervise` (a start can take seconds, which would hold
    /// up every other policy's refill).
    pub(super) async fn spawn_spare(&self, policy: &Policy, may_start: bool) -> Result<Spare, ExecError> {
        let zygote = match may_start {
            true => self.zygote(&policy.environment).await?,
            false => self.running_zygote(&policy.environment).ok_or(ExecError::ZygoteGone)?,
        };
        let id = Uuid::now_v7();
        let limits = ceiling(policy);
        let uid = match &self.uids {
            Some(pool) => Some(pool.acquire().ok_or_else(|| {
                ExecError::Capacity(format!("all {} sandbox uids are in use", pool.capacity()))
            })?),
            None => None,
        };
        // Only a mount point: the child mounts its own tmpfs on it.
        let scratch = self.scratch_root.join(id.to_string());
        std::fs::create_dir_all(&scratch)
            .map_err(|source| ExecError::Io { what: "creating the scratch dir", source })?;
        let mut running = Running {
            zygote: zygote.clone(),
            id,
            events: None,
            uid,
            cgroup: None,
            scratch: Some(scratch.clone()),
            reaped: false,
            killed: false,
            cleanups: self.cleanups.clone(),
        };
        if let Ok(c) = &self.jail.cgroups {
            running.cgroup = Some(
                c.create(&id.to_string(), limits.memory_mb, limits.max_threads)
                    .map_err(|source| ExecError::Io { what: "creating the child's cgroup", source })?,
            );
        }
        let sandbox = self.jail.child_sandbox(policy, &zygote.ready);
        let header = protocol::Spawn {
            op: "spawn",
            id,
            limits: &limits,
            scratch: &scratch,
            seccomp: sandbox.seccomp.as_deref(),
            sandbox: protocol::SandboxSpec { landlock: sandbox.landlock, seccomp: sandbox.seccomp.is_some() },
            uid: running.uid.as_ref().map(|u| u.uid()),
        }
        .encode();
        let io = |what| move |source| ExecError::Io { what, source };
        let (channel, theirs) = UnixStream::pair().map_err(io("the request channel"))?;
        channel.set_nonblocking(true).map_err(io("the request channel"))?;
        let channel = tokio::net::UnixStream::from_std(channel).map_err(io("the request channel"))?;
        let (result, result_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| ExecError::Io { what: "pipe", source: e.into() })?;
        let events = running.events.insert(zygote.submit(id, header, [theirs.into(), result_w]).await?);
        let pid = match tokio::time::timeout(SPAWN_TIMEOUT, wait_started(events)).await {
            Ok(r) => r?,
            Err(_) => return Err(ExecError::Protocol(format!("no `started` within {SPAWN_TIMEOUT:?}"))),
        };
        let pidfd = match tokio::time::timeout(SPAWN_TIMEOUT, super::usage::recv_pidfd(&channel)).await {
            Ok(r) => r.map_err(io("receiving the child's pidfd"))?,
            Err(_) => {
                return Err(ExecError::Protocol(format!("no pidfd from the child within {SPAWN_TIMEOUT:?}")));
            }
        };
        // The cgroup files are not the child's to write: the server moves
        // it (on cgroup v1 this can wait for an RCU grace period, which is
        // why it happens here and not on a request's path).
        if let Some(c) = &running.cgroup {
            c.join(pid).await.map_err(io("moving the child into its cgroup"))?;
        }
        Ok(Spare { running, channel, result, pid, pidfd })
    }

    /// Keep each policy's spares at the target until the server stops.
    /// Started once the zygotes are warm.
    pub async fn keep_spares(self: std::sync::Arc<Self>, policies: Policies) {
        if self.pools.target == 0 {
            return;
        }
        let mut failing = false;
        // Since when each policy's refill has been waiting for requests.
        let mut deferred: HashMap<String, std::time::Instant> = HashMap::new();
        while !self.pools.closing.load(Ordering::SeqCst) {
            for policy in policies.iter() {
                // No spares while the zygote is not running (stopped when
                // idle, or being restarted by `supervise`).
                let up = || self.running_zygote(&policy.environment).is_some();
                let Some(ready) = self.pools.live(policy, up) else { continue };
                // A pool with a spare for each request being served (all
                // policies': they share the cores) waits for them to end
                // (their end wakes this loop), for MAX_DEFER at most. Under
                // more load than that the cores are contended anyway, and
                // a request that finds no spare forks one on its own path.
                let missing = self.pools.target.saturating_sub(ready);
                let serving = self.pools.serving.load(Ordering::SeqCst);
                if missing > 0 && serving > 0 && ready >= serving {
                    let since = *deferred.entry(policy.name.clone()).or_insert_with(std::time::Instant::now);
                    if since.elapsed() < MAX_DEFER {
                        continue;
                    }
                }
                deferred.remove(&policy.name);
                // All that are missing at once: most of a spawn is waiting
                // (the fork, the child's entry, a cgroup v1 move), not CPU.
                let spawned =
                    futures_util::future::join_all((0..missing).map(|_| self.spawn_spare(policy, false)))
                        .await;
                for spawned in spawned {
                    match spawned {
                        Ok(s) => {
                            failing = false;
                            self.pools.put(policy, s);
                        }
                        // Once per run of failures: the zygote's own
                        // restarts are logged by `supervise`, its idle
                        // stop (which a spawn in flight can meet) by
                        // `stop_if_idle`.
                        Err(e) if !failing && self.running_zygote(&policy.environment).is_some() => {
                            tracing::warn!(policy = %policy.name, "forking a spare failed: {e}");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            }
            let _ = tokio::time::timeout(REFILL_TICK, self.pools.wake.notified()).await;
        }
    }
}
