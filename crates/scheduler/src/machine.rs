//! What this machine has: CPUs, memory and NVIDIA GPUs (found with `nvidia-smi`).

use berth_core::{Quantity, Resources};

/// One GPU as `nvidia-smi` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// Index.
    pub index: u32,
    /// UUID (`GPU-...`): what jobs get in `CUDA_VISIBLE_DEVICES`, stable across reboots.
    pub uuid: String,
    /// Model name.
    pub name: String,
}

/// The machine's CPUs, memory and GPUs.
pub fn detect() -> (Resources, Vec<Gpu>) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_meminfo(&m))
        .unwrap_or(0);
    let gpus = detect_gpus();
    (
        Resources::new(
            Quantity::from_units(cpus),
            Quantity::from_units(memory),
            gpus.len() as u32,
        ),
        gpus,
    )
}

fn parse_meminfo(text: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// GPUs from `nvidia-smi`; none when it is absent or fails.
pub fn detect_gpus() -> Vec<Gpu> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,uuid,name", "--format=csv,noheader"])
        .output();
    match out {
        Ok(o) if o.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

/// Parses `nvidia-smi --query-gpu=index,uuid,name --format=csv,noheader`.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let index = f.next()?.parse().ok()?;
            let uuid = f.next()?.to_string();
            let name = f.next().unwrap_or("").to_string();
            uuid.starts_with("GPU-")
                .then_some(Gpu { index, uuid, name })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_and_meminfo() {
        let g = parse_nvidia_smi("0, GPU-0b17e4f7-aaaa, NVIDIA H200\n1, GPU-1111, NVIDIA H200\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].uuid, "GPU-0b17e4f7-aaaa");
        assert_eq!(g[1].index, 1);
        assert!(parse_nvidia_smi("No devices were found\n").is_empty());
        assert_eq!(
            parse_meminfo("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
    }
}
