//! Sweep jobs' decision-making, as pure functions: the `search_space` and its distributions,
//! how each trial's parameters are chosen (`random`, `grid`, `bayesian`), and which running
//! trials an `early_termination` policy stops. Running trials as child jobs is the server's.

pub mod rng;
pub mod sample;
pub mod space;
pub mod spec;
pub mod terminate;
