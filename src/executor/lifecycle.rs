//! Each environment's zygote over time: eager ones are kept up (restarted
//! when they die); on-demand ones start with the first request that needs
//! them and stop again after `idle_stop` without one, their spares with
//! them. What /readyz and /metrics say about them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::zygote::Zygote;
use super::{Executor, Slot};
use crate::environment::Start;

/// How often the supervisor looks at the zygotes.
const TICK: Duration = Duration::from_millis(250);

/// A request running in an environment: while one lives, the environment
/// is not idle.
pub(super) struct InUse<'a>(&'a Slot);

impl InUse<'_> {
    fn touch(slot: &Slot) {
        *slot.last_used.lock().unwrap() = Instant::now();
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        InUse::touch(self.0);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A zygote start in progress (cleared however the start ends, a
/// cancelled one too).
pub(super) struct Starting<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Starting<'a> {
    pub(super) fn new(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Starting(flag)
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Executor {
    /// Mark a request in `env` (None: no such environment; the request
    /// then fails where it asks for the zygote).
    pub(super) fn in_use(&self, env: &str) -> Option<InUse<'_>> {
        let slot = self.slots.get(env)?;
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        InUse::touch(slot);
        Some(InUse(slot))
    }

    /// When `env`'s zygote runs (None: no such environment).
    pub fn start_mode(&self, env: &str) -> Option<Start> {
        self.slots.get(env).map(|s| s.env.settings.start)
    }

    /// `env`'s zygote if it is running now (none is started).
    pub(super) fn running_zygote(&self, env: &str) -> Option<Arc<Zygote>> {
        running(self.slots.get(env)?)
    }

    /// Keep eager zygotes up: restart one that died (a crash, an OOM kill
    /// of the zygote itself) without waiting for the next request. Stop
    /// on-demand ones that have been idle for their `idle_stop`.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            tokio::time::sleep(TICK).await;
            for (name, slot) in &self.slots {
                match slot.env.settings.start {
                    Start::Eager => {
                        if let Err(e) = self.zygote(name).await {
                            tracing::error!(environment = %name, "zygote restart failed: {e}");
                        }
                    }
                    Start::OnDemand => self.stop_if_idle(name, slot).await,
                }
            }
        }
    }

    async fn stop_if_idle(&self, name: &str, slot: &Slot) {
        let Some(after) = slot.env.settings.idle_stop else { return };
        // Busy (a request is starting it): not idle.
        let Ok(mut cur) = slot.current.try_lock() else { return };
        let idle = || {
            slot.in_flight.load(Ordering::SeqCst) == 0 && slot.last_used.lock().unwrap().elapsed() >= after
        };
        // Its spares first (they hold the zygote), idleness checked again
        // under the pools' lock: a request counts itself in before it takes
        // a spare, so it either kept the environment up or finds no spare
        // and waits on `current` for a fresh zygote.
        let unpublish = || drop(slot.published.lock().unwrap().take());
        if cur.is_none() || !idle() || !self.pools.drain_environment_if(name, idle, unpublish) {
            return;
        }
        if let Some(z) = cur.take() {
            z.kill();
            tracing::info!(
                environment = name,
                idle_s = after.as_secs(),
                "stopped the idle environment's zygote; the next request starts it again"
            );
        }
    }

    /// Is every eager environment's zygote up? (An on-demand one that is
    /// stopped is as it should be; one that is starting counts as down:
    /// reports never wait for a start.)
    pub fn all_alive(&self) -> bool {
        self.slots.values().filter(|s| s.env.settings.start == Start::Eager).all(|s| running(s).is_some())
    }

    /// Per environment: (name, its zygote runs, its RSS in bytes now).
    pub fn environment_stats(&self) -> Vec<(String, bool, u64)> {
        let mut out: Vec<_> = self
            .slots
            .iter()
            .map(|(name, slot)| {
                let z = running(slot);
                (name.clone(), z.is_some(), z.and_then(|z| rss_kb(z.ready.pid)).unwrap_or(0) * 1024)
            })
            .collect();
        out.sort();
        out
    }

    /// Zygotes running now.
    pub fn running_count(&self) -> usize {
        self.slots.values().filter(|s| running(s).is_some()).count()
    }

    /// Each environment for /readyz: how it is served, whether its zygote
    /// runs (with its start-up facts and its RSS now) and its spares.
    pub fn describe(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, slot) in &self.slots {
            let env = &slot.env;
            let mut v = json!({
                "alive": false,
                "hash": env.hash,
                "python": env.python_version,
                "start": env.settings.start,
                "idle_stop_s": env.settings.idle_stop.map(|d| d.as_secs()),
                "idle_s": slot.last_used.lock().unwrap().elapsed().as_secs(),
                "in_flight": slot.in_flight.load(Ordering::SeqCst),
            });
            if slot.starting.load(Ordering::SeqCst) {
                v["state"] = json!("starting");
            } else if let Some(z) = running(slot) {
                v["alive"] = json!(true);
                v["rss_kb"] = json!(rss_kb(z.ready.pid));
                v["zygote"] = json!(z.ready);
                v["layers"] = json!(self.jail.layers(&z.ready));
                v["prefork"] = self.pools.describe(name);
            } else if env.settings.start == Start::OnDemand {
                v["state"] = json!("stopped: starts on the first request under a policy that names it");
            }
            out.insert(name.clone(), v);
        }
        serde_json::Value::Object(out)
    }
}

/// The slot's zygote if it runs.
fn running(slot: &Slot) -> Option<Arc<Zygote>> {
    slot.published.lock().unwrap().as_ref().filter(|z| z.is_alive()).cloned()
}

/// A process's resident memory now.
fn rss_kb(pid: i32) -> Option<u64> {
    super::usage::status_kb(pid, "VmRSS")
}
