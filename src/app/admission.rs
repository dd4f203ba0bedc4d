//! Admission: a bounded wait for a free execution slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::types::AppError;

/// A bounded wait for a free execution slot.
pub(super) struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub(super) fn new(concurrency: usize, queue: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(concurrency)), waiting: AtomicUsize::new(0), queue }
    }

    pub(super) async fn enter(&self) -> Result<OwnedSemaphorePermit, AppError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = Waiting(&self.waiting);
        if before >= self.queue {
            return Err(AppError::QueueFull { waiting: before });
        }
        Ok(self.slots.clone().acquire_owned().await.expect("semaphore never closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admission_queues_then_refuses() {
        let a = Admission::new(1, 1);
        let p = a.enter().await.unwrap();
        let a = Arc::new(a);
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.enter().await.map(|_| ()) });
        tokio::task::yield_now().await;
        while a.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(a.enter().await, Err(AppError::QueueFull { .. })));
        drop(p);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.waiting.load(Ordering::SeqCst), 0);
    }
}
