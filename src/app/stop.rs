//! Stopping (DESIGN §12): executions are owned by the server, not by the
//! connection that asked for them, and a stop lets them finish for a grace
//! period before it kills what is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The executions in flight, and whether the server is stopping.
#[derive(Default)]
pub(super) struct Stop {
    stopping: AtomicBool,
    /// Fired past the grace: what still runs is killed and recorded
    /// `interrupted`.
    kill: CancellationToken,
    /// Every started execution, until its audit record is complete.
    work: TaskTracker,
    /// Audit records of requests that ran nothing (a 400, a refusal while
    /// stopping): the grace does not wait for them, the end of a stop does.
    notes: TaskTracker,
}

/// How a stop went, for the log line the operator reads.
#[derive(Debug, Clone, Copy)]
pub struct StopReport {
    /// Executions in flight when the stop began.
    pub in_flight: usize,
    /// Of those, killed at the end of the grace.
    pub killed: usize,
    pub waited: Duration,
}

impl Stop {
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(super) fn tracker(&self) -> &TaskTracker {
        &self.work
    }

    pub(super) fn notes(&self) -> &TaskTracker {
        &self.notes
    }

    /// End the grace now (a second SIGTERM or SIGINT).
    pub(super) fn kill_now(&self) {
        self.begin();
        self.kill.cancel();
    }

    /// Resolves when the grace is over and what runs must end now.
    pub(super) async fn killed(&self) {
        self.kill.cancelled().await
    }

    /// Refuse new work from now on (idempotent).
    pub(super) fn begin(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Wait up to `grace` for the executions in flight, then kill the rest
    /// and wait for their records (bounded by `after_kill`).
    pub(super) async fn finish(&self, grace: Duration, after_kill: Duration) -> StopReport {
        self.begin();
        let started = Instant::now();
        let in_flight = self.work.len();
        self.work.close();
        let mut killed = 0;
        let graceful = tokio::select! {
            r = tokio::time::timeout(grace, self.work.wait()) => r.is_ok(),
            () = self.kill.cancelled() => self.work.is_empty(),
        };
        if !graceful {
            killed = self.work.len();
            self.kill.cancel();
            if tokio::time::timeout(after_kill, self.work.wait()).await.is_err() {
                tracing::error!(left = self.work.len(), "executions did not end after they were killed");
            }
        }
        StopReport { in_flight, killed, waited: started.elapsed() }
    }

    /// Wait (bounded) for the audit records of requests that ran nothing.
    pub(super) async fn settle(&self, limit: Duration) {
        self.notes.close();
        if tokio::time::timeout(limit, self.notes.wait()).await.is_err() {
            tracing::error!(left = self.notes.len(), "audit records of refused requests were not written");
        }
    }
}
