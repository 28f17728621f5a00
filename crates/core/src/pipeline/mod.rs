//! Pipeline jobs, as pure functions: the file read ([`spec`]), each step made the job file of
//! its child and the wiring checked all at once ([`plan`], [`steps`], [`graph`], [`binding`],
//! [`optional`]), what to do next given the steps' states ([`run`]), and when an earlier run
//! may stand in for a step ([`reuse`]). Running the steps as child jobs is the server's.

pub mod binding;
pub mod graph;
pub mod optional;
pub mod plan;
pub mod reuse;
pub mod run;
pub mod spec;
pub mod steps;

#[cfg(test)]
mod plan_tests;
