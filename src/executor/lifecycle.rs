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
    pub(super) async fn running_zygote(&self, env: &str) -> Option<Arc<Zygote>> {
        let slot = self.slots.get(env)?;
        slot.current.lock().await.as_ref().filter(|z| z.is_alive()).cloned()
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
        let mut cur = slot.current.lock().await;
        if cur.is_none()
            || slot.in_flight.load(Ordering::SeqCst) > 0
            || slot.last_used.lock().unwrap().elapsed() < after
        {
            return;
        }
        if let Some(z) = cur.take() {
            // Its spares first (they hold it), then the zygote itself.
            self.pools.drain_environment(name);
            z.kill();
            tracing::info!(
                environment = name,
                idle_s = after.as_secs(),
                "stopped the idle environment's zygote; the next request starts it again"
            );
        }
    }

    /// Is every eager environment's zygote up? (An on-demand one that is
    /// stopped is as it should be.)
    pub async fn all_alive(&self) -> bool {
        for slot in self.slots.values().filter(|s| s.env.settings.start == Start::Eager) {
            match slot.current.lock().await.as_ref() {
                Some(z) if z.is_alive() => {}
                _ => return false,
            }
        }
        true
    }

    /// Zygotes running now.
    pub async fn running_count(&self) -> usize {
        let mut n = 0;
        for slot in self.slots.values() {
            n += usize::from(slot.current.lock().await.as_ref().is_some_and(|z| z.is_alive()));
        }
        n
    }

    /// Each environment for /readyz: how it is served, whether its zygote
    /// runs (with its start-up facts and its RSS now) and its spares.
    pub async fn describe(&self) -> serde_json::Value {
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
            if let Some(z) = slot.current.lock().await.as_ref() {
                v["alive"] = json!(z.is_alive());
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

/// A process's resident memory now, from /proc.
fn rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
