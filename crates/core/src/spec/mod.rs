//! Specs: the YAML resources a user writes, validated into typed values.

pub mod asset;
pub mod azure_sizes;
pub mod component;
pub mod compute;
pub mod data;
pub mod datastore;
pub mod deployment;
pub mod endpoint;
pub mod environment;
pub mod instance_type;
pub mod job;
