//! Amounts of CPU, memory and GPUs: what a workload requests and what a compute has free.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;

/// CPU (cores), memory (bytes) and whole GPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in cores (millicore precision).
    #[serde(serialize_with = "cpu_text")]
    pub cpu: Quantity,
    /// Memory in bytes.
    #[serde(serialize_with = "memory_text")]
    pub memory: Quantity,
    /// Whole `nvidia.com/gpu` devices.
    #[serde(default)]
    pub gpus: u32,
}

fn cpu_text<S: serde::Serializer>(q: &Quantity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&q.display_cpu())
}

/// Memory as people write it (`4Gi`); exact values only, so it reads back the same.
fn memory_text<S: serde::Serializer>(q: &Quantity, s: S) -> Result<S::Ok, S::Error> {
    let shown = q.display_bytes();
    if shown.contains('.') {
        s.collect_str(q)
    } else {
        s.serialize_str(&shown)
    }
}

impl Resources {
    /// Builds an amount.
    pub const fn new(cpu: Quantity, memory: Quantity, gpus: u32) -> Self {
        Resources { cpu, memory, gpus }
    }

    /// True when `self` fits inside `free` in every dimension.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu <= free.cpu && self.memory <= free.memory && self.gpus <= free.gpus
    }

    /// `self - other` per dimension, never below zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu: self.cpu.saturating_sub(other.cpu),
            memory: self.memory.saturating_sub(other.memory),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// `self + other` per dimension.
    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            cpu: Quantity::from_millis(self.cpu.millis() + other.cpu.millis()),
            memory: Quantity::from_millis(self.memory.millis() + other.memory.millis()),
            gpus: self.gpus + other.gpus,
        }
    }
}

impl fmt::Display for Resources {
    /// `4 CPU, 16Gi, 1 nvidia.com/gpu`: the form used in queue reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {}, {} nvidia.com/gpu",
            self.cpu.display_cpu(),
            self.memory.display_bytes(),
            self.gpus
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpu: &str, mem: &str, gpus: u32) -> Resources {
        Resources::new(
            cpu.parse().unwrap_or_default(),
            mem.parse().unwrap_or_default(),
            gpus,
        )
    }

    #[test]
    fn fits_checks_every_dimension() {
        let free = r("2", "4Gi", 0);
        assert!(r("2", "4Gi", 0).fits_in(&free));
        assert!(!r("2100m", "1Gi", 0).fits_in(&free));
        assert!(!r("1", "5Gi", 0).fits_in(&free));
        assert!(!r("1", "1Gi", 1).fits_in(&free));
    }

    #[test]
    fn serializes_as_people_write_it() {
        let json = serde_json::to_string(&r("1500m", "4Gi", 1)).unwrap_or_default();
        assert_eq!(json, r#"{"cpu":"1.5","memory":"4Gi","gpus":1}"#);
        let back: Resources = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, r("1500m", "4Gi", 1));
    }

    #[test]
    fn displays_like_the_queue_reason() {
        assert_eq!(
            r("4", "16Gi", 1).to_string(),
            "4 CPU, 16Gi, 1 nvidia.com/gpu"
        );
        assert_eq!(
            r("1500m", "512Mi", 0).to_string(),
            "1.5 CPU, 512Mi, 0 nvidia.com/gpu"
        );
    }
}
