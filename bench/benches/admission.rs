//! Admission throughput of the in-memory scheduler with 100k jobs queued.
//!
//! Queues 100,000 jobs of three shapes on a pool that fits a handful at a time, then finishes
//! running jobs one by one; each finish admits the next. Prints jobs admitted per second.

use std::time::Instant;

use berth_core::spec::job::Priority;
use berth_core::{Quantity, Resources};
use berth_scheduler::reactor::{Reactor, Recorded};

const QUEUED: usize = 100_000;

fn main() {
    let gib = |n: i64| Quantity::from_units(n << 30);
    let shapes = [
        Resources::new(Quantity::from_units(1), gib(2), 0),
        Resources::new(Quantity::from_units(2), gib(4), 0),
        Resources::new(Quantity::from_millis(500), gib(1), 0),
    ];
    let mut r = Reactor::default();
    r.set_pool(
        "local",
        Resources::new(Quantity::from_units(4), gib(16), 0),
        vec![],
    );
    let mut fx = Recorded::default();
    let t = Instant::now();
    for i in 0..QUEUED {
        let prio = if i % 10 == 0 {
            Priority::High
        } else {
            Priority::Medium
        };
        r.on_submitted(
            &mut fx,
            &format!("job-{i}"),
            "local",
            shapes[i % 3],
            prio,
            i as u64,
        );
    }
    let submit = t.elapsed();
    println!(
        "submitted {QUEUED} jobs in {submit:?} ({:.0} submits/s); {} admitted at once, {} queued",
        QUEUED as f64 / submit.as_secs_f64(),
        fx.admitted.len(),
        r.queued_len()
    );
    let t = Instant::now();
    let mut next = 0;
    while next < fx.admitted.len() {
        let job = fx.admitted[next].0.clone();
        r.on_finished(&mut fx, &job);
        next += 1;
    }
    let drain = t.elapsed();
    assert_eq!(fx.admitted.len(), QUEUED, "every job admitted");
    println!(
        "admitted all {QUEUED} jobs through finish events in {drain:?}: {:.0} admissions/s with up to {QUEUED} queued",
        QUEUED as f64 / drain.as_secs_f64()
    );
}
