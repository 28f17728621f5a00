//! Per-replica concurrency slots: `max_concurrent_requests_per_instance` permits per replica,
//! taken up front (least-busy replica first) and given back on drop; a request waits up to
//! `max_queue_wait` for one, then the caller answers 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One ready replica and its slots.
#[derive(Debug)]
pub struct Replica {
    /// Where it listens (`127.0.0.1:port`, `unix:/path`).
    pub addr: String,
    /// Where it is reached, parsed once (`None` for an address that is not one).
    pub target: Option<crate::upstream::Target>,
    slots: Arc<Semaphore>,
    busy: AtomicUsize,
}

/// A taken slot; dropping it frees the slot and wakes one waiter.
#[derive(Debug)]
pub struct Slot {
    /// The replica it belongs to.
    pub replica: Arc<Replica>,
    _permit: OwnedSemaphorePermit,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.replica.busy.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_one();
    }
}

/// The ready replicas of one deployment.
#[derive(Debug)]
pub struct ReplicaSet {
    replicas: Vec<Arc<Replica>>,
    freed: Arc<Notify>,
    waiting: AtomicUsize,
}

impl ReplicaSet {
    /// Replicas at these addresses with `slots` each.
    pub fn new(addrs: &[String], slots: u32) -> ReplicaSet {
        let replicas = addrs
            .iter()
            .map(|a| {
                Arc::new(Replica {
                    addr: a.clone(),
                    target: crate::upstream::Target::parse(a),
                    slots: Arc::new(Semaphore::new(slots as usize)),
                    busy: AtomicUsize::new(0),
                })
            })
            .collect();
        ReplicaSet {
            replicas,
            freed: Arc::new(Notify::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// How many replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// True when there is no ready replica.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// (busy + queued) requests, for utilisation.
    pub fn load(&self) -> usize {
        self.replicas
            .iter()
            .map(|r| r.busy.load(Ordering::Relaxed))
            .sum::<usize>()
            + self.waiting.load(Ordering::Relaxed)
    }

    /// Takes a free slot on the least-busy replica, now.
    pub fn try_take(&self, skip: Option<&str>) -> Option<Slot> {
        let mut order: Vec<&Arc<Replica>> = self
            .replicas
            .iter()
            .filter(|r| Some(r.addr.as_str()) != skip)
            .collect();
        order.sort_by_key(|r| r.busy.load(Ordering::Relaxed));
        order.into_iter().find_map(|r| {
            let permit = Arc::clone(&r.slots).try_acquire_owned().ok()?;
            r.busy.fetch_add(1, Ordering::Relaxed);
            Some(Slot {
                replica: Arc::clone(r),
                _permit: permit,
                freed: Arc::clone(&self.freed),
            })
        })
    }

    /// Takes a slot, waiting up to `wait` for one to free up.
    pub async fn take(&self, wait: Duration) -> Option<Slot> {
        if let Some(s) = self.try_take(None) {
            return Some(s);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + wait;
        let got = loop {
            let notified = self.freed.notified();
            if let Some(s) = self.try_take(None) {
                break Some(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.try_take(None);
            }
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_counted_and_the_least_busy_replica_wins() {
        let set = ReplicaSet::new(&["a".into(), "b".into()], 2);
        let s1 = set.try_take(None).map(|s| s.replica.addr.clone());
        let s2 = set.try_take(None).map(|s| s.replica.addr.clone());
        assert_eq!(s1.as_deref(), Some("a"));
        assert_eq!(
            s2.as_deref(),
            Some("a"),
            "the first slot was given back when s1's Slot dropped"
        );
        let held: Vec<Slot> = (0..4).filter_map(|_| set.try_take(None)).collect();
        assert_eq!(held.len(), 4);
        let spread: Vec<&str> = held.iter().map(|s| s.replica.addr.as_str()).collect();
        assert_eq!(spread.iter().filter(|a| **a == "a").count(), 2);
        assert!(set.try_take(None).is_none());
        assert_eq!(set.load(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_a_freed_slot_or_gives_up_after_the_wait() {
        let set = Arc::new(ReplicaSet::new(&["a".into()], 1));
        let held = set.try_take(None);
        assert!(
            set.take(Duration::from_millis(500)).await.is_none(),
            "no slot within the wait"
        );
        let waiter = {
            let set = Arc::clone(&set);
            tokio::spawn(async move { set.take(Duration::from_millis(500)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(set.load(), 2, "one busy, one queued");
        drop(held);
        assert!(waiter.await.unwrap_or(false));
    }
}
