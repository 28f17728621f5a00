//! Pipeline jobs' wiring, as pure functions: the bindings between a pipeline's inputs, its
//! steps' outputs and inputs and its own outputs, checked all at once (unknown steps, inputs
//! and outputs, type mismatches, cycles), and the order steps can run in. Running the steps as
//! child jobs is the server's.

pub mod binding;
pub mod graph;
