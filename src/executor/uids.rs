//! Host uids for sandboxed children when the server runs as root: each live
//! child gets one no other live child has, so the kernel itself keeps
//! children from signalling, tracing or limiting each other (and, being
//! unprivileged, the server and the zygote).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// First uid (and gid) of the range: far above the uids and subordinate
/// ranges (`/etc/subuid`, systemd's container ranges end at 1879048191) that
/// accounts use, and below 2^31 (some tools read uids as signed).
pub const BASE: u32 = 1_990_000_000;
/// Children that may live at once (far more than the admission queue lets
/// run).
pub const COUNT: u32 = 1024;

#[derive(Debug)]
pub struct UidPool {
    base: u32,
    count: u32,
    /// `base` itself owns what the zygote sets up for children (never
    /// given to a child); children get the rest.
    free: Mutex<BTreeSet<u32>>,
}

/// A uid held by one child until it has been reaped.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    pool: Arc<UidPool>,
}

impl UidPool {
    pub fn new(base: u32, count: u32) -> UidPool {
        UidPool { base, count, free: Mutex::new((base + 1..base + count).collect()) }
    }

    pub fn base(&self) -> u32 {
        self.base
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Children that may live at once.
    pub fn capacity(&self) -> u32 {
        self.count - 1
    }

    /// The lowest free uid, or `None` when every one is held.
    pub fn acquire(self: &Arc<Self>) -> Option<UidLease> {
        let uid = self.free.lock().unwrap().pop_first()?;
        Some(UidLease { uid, pool: self.clone() })
    }
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        self.pool.free.lock().unwrap().insert(self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_never_share_a_uid() {
        let pool = Arc::new(UidPool::new(100, 4));
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        let c = pool.acquire().unwrap();
        assert_eq!([a.uid(), b.uid(), c.uid()], [101, 102, 103]);
        assert!(pool.acquire().is_none());
        drop(b);
        assert_eq!(pool.acquire().unwrap().uid(), 102);
    }
}
