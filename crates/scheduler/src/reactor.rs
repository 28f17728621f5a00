//! Capacity-aware admission as a pure reactor: state plus an event gives effects.
//!
//! Queued jobs are grouped by the shape of their request, each shape a FIFO ordered by
//! (priority, submission order). Admission looks only at the head of each shape, so an event
//! costs O(shapes), not O(queued jobs): 100k queued jobs of a few instance types admit fast.
//! A head that does not fit never blocks a head of another shape that does (backfill), and
//! the job admitted that way is told it went ahead.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use berth_core::Resources;
use berth_core::spec::job::Priority;

/// What the reactor asks the world to do.
pub trait Effects {
    /// Start the job now with these GPUs; `note` says if it went ahead of an earlier job.
    fn admit(&mut self, job: &str, gpus: Vec<String>, note: Option<String>);
    /// Fail the job: it can never run on this pool.
    fn reject(&mut self, job: &str, reason: String);
}

/// An `Effects` that records, for tests and for callers that act after releasing a lock.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// `(job, gpus, note)` in order.
    pub admitted: Vec<(String, Vec<String>, Option<String>)>,
    /// `(job, reason)` in order.
    pub rejected: Vec<(String, String)>,
}

impl Effects for Recorded {
    fn admit(&mut self, job: &str, gpus: Vec<String>, note: Option<String>) {
        self.admitted.push((job.to_string(), gpus, note));
    }
    fn reject(&mut self, job: &str, reason: String) {
        self.rejected.push((job.to_string(), reason));
    }
}

type QueueKey = (Reverse<Priority>, u64);

#[derive(Debug)]
struct Pool {
    total: Resources,
    free: Resources,
    free_gpus: Vec<String>,
    queues: HashMap<Resources, BTreeMap<QueueKey, String>>,
}

#[derive(Debug, Clone)]
struct Queued {
    pool: String,
    request: Resources,
    key: QueueKey,
}

#[derive(Debug, Clone)]
struct Running {
    pool: String,
    request: Resources,
    gpus: Vec<String>,
}

/// The admission state of every pool.
#[derive(Debug, Default)]
pub struct Reactor {
    pools: HashMap<String, Pool>,
    queued: HashMap<String, Queued>,
    running: HashMap<String, Running>,
}

impl Reactor {
    /// Adds (or resizes) a pool with the given capacity and GPU ids.
    pub fn set_pool(&mut self, name: &str, total: Resources, gpu_ids: Vec<String>) {
        let used: Vec<&Running> = self.running.values().filter(|r| r.pool == name).collect();
        let reserved = used
            .iter()
            .fold(Resources::default(), |acc, r| acc.add(&r.request));
        let busy: Vec<&String> = used.iter().flat_map(|r| r.gpus.iter()).collect();
        let free_gpus: Vec<String> = gpu_ids.into_iter().filter(|g| !busy.contains(&g)).collect();
        let mut free = total.saturating_sub(&reserved);
        free.gpus = free_gpus.len() as u32;
        let queues = self
            .pools
            .remove(name)
            .map(|p| p.queues)
            .unwrap_or_default();
        self.pools.insert(
            name.to_string(),
            Pool {
                total,
                free,
                free_gpus,
                queues,
            },
        );
    }

    /// A job was submitted to `pool`; `seq` orders it among jobs of the same priority.
    pub fn on_submitted(
        &mut self,
        fx: &mut impl Effects,
        job: &str,
        pool: &str,
        request: Resources,
        priority: Priority,
        seq: u64,
    ) {
        let Some(p) = self.pools.get_mut(pool) else {
            fx.reject(
                job,
                format!("compute pool `{pool}` is not known to the scheduler"),
            );
            return;
        };
        if !request.fits_in(&p.total) {
            fx.reject(
                job,
                format!(
                    "needs {request}; `{pool}` has only {} in total, so it can never run there; pick an instance type that fits (`berth instance-type list`)",
                    p.total
                ),
            );
            return;
        }
        let key = (Reverse(priority), seq);
        p.queues
            .entry(request)
            .or_default()
            .insert(key, job.to_string());
        self.queued.insert(
            job.to_string(),
            Queued {
                pool: pool.to_string(),
                request,
                key,
            },
        );
        self.admit(fx, pool);
    }

    /// A job left the queue before running (canceled); returns whether it was queued.
    pub fn on_dequeued(&mut self, job: &str) -> bool {
        let Some(q) = self.queued.remove(job) else {
            return false;
        };
        if let Some(p) = self.pools.get_mut(&q.pool)
            && let Some(queue) = p.queues.get_mut(&q.request)
        {
            queue.remove(&q.key);
            if queue.is_empty() {
                p.queues.remove(&q.request);
            }
        }
        true
    }

    /// A running job ended: its capacity returns and waiting jobs may start.
    pub fn on_finished(&mut self, fx: &mut impl Effects, job: &str) {
        let Some(r) = self.running.remove(job) else {
            return;
        };
        if let Some(p) = self.pools.get_mut(&r.pool) {
            p.free = p.free.add(&Resources {
                gpus: 0,
                ..r.request
            });
            p.free_gpus.extend(r.gpus);
            p.free.gpus = p.free_gpus.len() as u32;
        }
        self.admit(fx, &r.pool);
    }

    /// Records a job that is already running (found at restart), reserving its capacity.
    pub fn restore_running(
        &mut self,
        job: &str,
        pool: &str,
        request: Resources,
        gpus: Vec<String>,
    ) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.free = p.free.saturating_sub(&Resources { gpus: 0, ..request });
            p.free_gpus.retain(|g| !gpus.contains(g));
            p.free.gpus = p.free_gpus.len() as u32;
        }
        self.running.insert(
            job.to_string(),
            Running {
                pool: pool.to_string(),
                request,
                gpus,
            },
        );
    }

    /// Why a queued job is still waiting, or `None` if it is not queued.
    pub fn queue_reason(&self, job: &str) -> Option<String> {
        let q = self.queued.get(job)?;
        let p = self.pools.get(&q.pool)?;
        Some(format!(
            "needs {}; {} has {} free",
            q.request, q.pool, p.free
        ))
    }

    /// Total and free capacity of a pool.
    pub fn capacity(&self, pool: &str) -> Option<(Resources, Resources)> {
        self.pools.get(pool).map(|p| (p.total, p.free))
    }

    /// How many jobs are queued in all pools.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    fn admit(&mut self, fx: &mut impl Effects, pool: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        loop {
            let mut best: Option<(QueueKey, Resources)> = None;
            let mut earliest_blocked: Option<(QueueKey, String)> = None;
            for (shape, queue) in &p.queues {
                let Some((key, name)) = queue.first_key_value() else {
                    continue;
                };
                if shape.fits_in(&p.free) {
                    if best.as_ref().is_none_or(|(k, _)| key < k) {
                        best = Some((*key, *shape));
                    }
                } else if earliest_blocked.as_ref().is_none_or(|(k, _)| key < k) {
                    earliest_blocked = Some((*key, name.clone()));
                }
            }
            let Some((key, shape)) = best else { return };
            let Some(queue) = p.queues.get_mut(&shape) else {
                return;
            };
            let Some(job) = queue.remove(&key) else {
                return;
            };
            if queue.is_empty() {
                p.queues.remove(&shape);
            }
            self.queued.remove(&job);
            p.free = p.free.saturating_sub(&Resources { gpus: 0, ..shape });
            let gpus: Vec<String> = p.free_gpus.drain(..shape.gpus as usize).collect();
            p.free.gpus = p.free_gpus.len() as u32;
            let note = earliest_blocked
                .filter(|(k, _)| *k < key)
                .map(|(_, other)| format!("started ahead of earlier job `{other}`, which is waiting for more capacity than is free"));
            self.running.insert(
                job.clone(),
                Running {
                    pool: pool.to_string(),
                    request: shape,
                    gpus: gpus.clone(),
                },
            );
            fx.admit(&job, gpus, note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Quantity;

    fn r(cpu: i64, gib: i64, gpus: u32) -> Resources {
        Resources::new(
            Quantity::from_units(cpu),
            Quantity::from_units(gib << 30),
            gpus,
        )
    }

    fn reactor(cpu: i64, gib: i64, gpus: u32) -> Reactor {
        let mut re = Reactor::default();
        re.set_pool(
            "local",
            r(cpu, gib, gpus),
            (0..gpus).map(|i| format!("GPU-{i}")).collect(),
        );
        re
    }

    fn names(fx: &Recorded) -> Vec<&str> {
        fx.admitted.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    #[test]
    fn admits_what_fits_and_queues_the_rest_with_a_reason() {
        let mut re = reactor(4, 16, 0);
        let mut fx = Recorded::default();
        re.on_submitted(&mut fx, "a", "local", r(3, 4, 0), Priority::Medium, 1);
        re.on_submitted(&mut fx, "b", "local", r(3, 4, 0), Priority::Medium, 2);
        assert_eq!(names(&fx), ["a"]);
        assert_eq!(
            re.queue_reason("b").as_deref(),
            Some(
                "needs 3 CPU, 4Gi, 0 nvidia.com/gpu; local has 1 CPU, 12Gi, 0 nvidia.com/gpu free"
            )
        );
        re.on_finished(&mut fx, "a");
        assert_eq!(names(&fx), ["a", "b"]);
        assert_eq!(re.queue_reason("b"), None);
    }

    #[test]
    fn fifo_within_priority_and_high_priority_first() {
        let mut re = reactor(1, 16, 0);
        let mut fx = Recorded::default();
        re.on_submitted(&mut fx, "running", "local", r(1, 1, 0), Priority::Medium, 0);
        re.on_submitted(&mut fx, "m1", "local", r(1, 1, 0), Priority::Medium, 1);
        re.on_submitted(&mut fx, "m2", "local", r(1, 1, 0), Priority::Medium, 2);
        re.on_submitted(&mut fx, "h", "local", r(1, 1, 0), Priority::High, 3);
        re.on_submitted(&mut fx, "l", "local", r(1, 1, 0), Priority::Low, 4);
        for j in ["running", "h", "m1", "m2"] {
            re.on_finished(&mut fx, j);
        }
        assert_eq!(names(&fx), ["running", "h", "m1", "m2", "l"]);
    }

    #[test]
    fn small_job_passes_a_big_one_and_says_so() {
        let mut re = reactor(4, 16, 0);
        let mut fx = Recorded::default();
        re.on_submitted(&mut fx, "first", "local", r(2, 1, 0), Priority::Medium, 1);
        re.on_submitted(&mut fx, "big", "local", r(4, 1, 0), Priority::Medium, 2);
        re.on_submitted(&mut fx, "small", "local", r(1, 1, 0), Priority::Medium, 3);
        assert_eq!(names(&fx), ["first", "small"]);
        let note = fx.admitted[1].2.clone().unwrap_or_default();
        assert!(note.contains("ahead of earlier job `big`"), "{note}");
        assert!(fx.admitted[0].2.is_none());
    }

    #[test]
    fn never_fitting_job_is_rejected_at_once() {
        let mut re = reactor(2, 4, 0);
        let mut fx = Recorded::default();
        re.on_submitted(&mut fx, "gpu", "local", r(1, 1, 1), Priority::Medium, 1);
        assert_eq!(fx.rejected.len(), 1);
        assert!(
            fx.rejected[0].1.contains("can never run there"),
            "{}",
            fx.rejected[0].1
        );
        assert_eq!(re.queued_len(), 0);
    }

    #[test]
    fn gpus_are_assigned_by_id_and_returned() {
        let mut re = reactor(8, 32, 2);
        let mut fx = Recorded::default();
        re.on_submitted(&mut fx, "a", "local", r(1, 1, 1), Priority::Medium, 1);
        re.on_submitted(&mut fx, "b", "local", r(1, 1, 1), Priority::Medium, 2);
        re.on_submitted(&mut fx, "c", "local", r(1, 1, 1), Priority::Medium, 3);
        assert_eq!(fx.admitted[0].1, ["GPU-0"]);
        assert_eq!(fx.admitted[1].1, ["GPU-1"]);
        assert_eq!(names(&fx), ["a", "b"]);
        re.on_finished(&mut fx, "a");
        assert_eq!(
            fx.admitted[2],
            ("c".to_string(), vec!["GPU-0".to_string()], None)
        );
    }

    #[test]
    fn dequeue_and_restore() {
        let mut re = reactor(2, 4, 0);
        let mut fx = Recorded::default();
        re.restore_running("old", "local", r(2, 1, 0), vec![]);
        re.on_submitted(&mut fx, "q", "local", r(1, 1, 0), Priority::Medium, 1);
        assert!(fx.admitted.is_empty());
        assert!(re.on_dequeued("q"));
        assert!(!re.on_dequeued("q"));
        re.on_finished(&mut fx, "old");
        assert!(fx.admitted.is_empty());
        assert_eq!(re.capacity("local").map(|c| c.1), Some(r(2, 4, 0)));
    }
}
