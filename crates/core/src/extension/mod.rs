//! The in-cluster install (`berth extension create|render`): its settings and the manifests
//! they become.

pub mod config;
pub mod render;
pub mod state;
