//! Berth's job scheduling: the admission reactor, the job manager that drives it, and the
//! backends that run work (the local backend runs processes on this machine).

pub mod autoscale;
pub mod backend;
pub mod cgroup;
pub mod envs;
pub mod machine;
pub mod manager;
pub mod pod_env;
pub mod proc_usage;
pub mod reactor;
pub mod replicas;
pub mod sandbox;
pub mod serving;
pub mod supervisor;
pub mod tree;
pub mod users;
pub mod workdir;

#[cfg(test)]
mod testing;
