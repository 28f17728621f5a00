//! Azure VM sizes as built-in instance types, so files that name one (`instance_type:
//! Standard_DS3_v2`, as 73 of Microsoft's 76 sample deployments do) run unchanged. Limits are
//! Azure's published vCPUs, memory and GPUs; requests are small (500m CPU, 1Gi) so the file
//! also runs on a smaller machine. GPUs are requested as published: a GPU size needs GPUs.

use std::collections::BTreeMap;

use crate::quantity::Quantity;
use crate::resources::Resources;
use crate::spec::instance_type::InstanceType;

/// One published size: name, vCPUs, memory in MiB, GPUs.
type Size = (&'static str, u32, u32, u32);

const GIB: u32 = 1024;

/// The sizes Berth knows, by family.
pub const SIZES: &[Size] = &[
    // General purpose.
    ("Standard_DS1_v2", 1, 3 * GIB + GIB / 2, 0),
    ("Standard_DS2_v2", 2, 7 * GIB, 0),
    ("Standard_DS3_v2", 4, 14 * GIB, 0),
    ("Standard_DS4_v2", 8, 28 * GIB, 0),
    ("Standard_DS5_v2", 16, 56 * GIB, 0),
    ("Standard_D2_v2", 2, 7 * GIB, 0),
    ("Standard_D3_v2", 4, 14 * GIB, 0),
    ("Standard_D4_v2", 8, 28 * GIB, 0),
    ("Standard_D2_v3", 2, 8 * GIB, 0),
    ("Standard_D4_v3", 4, 16 * GIB, 0),
    ("Standard_D8_v3", 8, 32 * GIB, 0),
    ("Standard_D2s_v3", 2, 8 * GIB, 0),
    ("Standard_D4s_v3", 4, 16 * GIB, 0),
    ("Standard_D8s_v3", 8, 32 * GIB, 0),
    ("Standard_D16s_v3", 16, 64 * GIB, 0),
    ("Standard_D2as_v4", 2, 8 * GIB, 0),
    ("Standard_D4as_v4", 4, 16 * GIB, 0),
    ("Standard_D2s_v5", 2, 8 * GIB, 0),
    ("Standard_D4s_v5", 4, 16 * GIB, 0),
    ("Standard_D8s_v5", 8, 32 * GIB, 0),
    // Compute optimised.
    ("Standard_F2s_v2", 2, 4 * GIB, 0),
    ("Standard_F4s_v2", 4, 8 * GIB, 0),
    ("Standard_F8s_v2", 8, 16 * GIB, 0),
    ("Standard_F16s_v2", 16, 32 * GIB, 0),
    // Memory optimised.
    ("Standard_DS11_v2", 2, 14 * GIB, 0),
    ("Standard_DS12_v2", 4, 28 * GIB, 0),
    ("Standard_DS13_v2", 8, 56 * GIB, 0),
    ("Standard_E2s_v3", 2, 16 * GIB, 0),
    ("Standard_E4s_v3", 4, 32 * GIB, 0),
    ("Standard_E8s_v3", 8, 64 * GIB, 0),
    ("Standard_E16s_v3", 16, 128 * GIB, 0),
    // GPU.
    ("Standard_NC6", 6, 56 * GIB, 1),
    ("Standard_NC12", 12, 112 * GIB, 2),
    ("Standard_NC24", 24, 224 * GIB, 4),
    ("Standard_NC6s_v3", 6, 112 * GIB, 1),
    ("Standard_NC12s_v3", 12, 224 * GIB, 2),
    ("Standard_NC24s_v3", 24, 448 * GIB, 4),
    ("Standard_NC4as_T4_v3", 4, 28 * GIB, 1),
    ("Standard_NC8as_T4_v3", 8, 56 * GIB, 1),
    ("Standard_NC16as_T4_v3", 16, 110 * GIB, 1),
    ("Standard_NC64as_T4_v3", 64, 440 * GIB, 4),
    ("Standard_NC24ads_A100_v4", 24, 220 * GIB, 1),
    ("Standard_NC48ads_A100_v4", 48, 440 * GIB, 2),
    ("Standard_NC96ads_A100_v4", 96, 880 * GIB, 4),
    ("Standard_ND40rs_v2", 40, 672 * GIB, 8),
    ("Standard_NV6", 6, 56 * GIB, 1),
    ("Standard_NV12s_v3", 12, 112 * GIB, 1),
];

fn instance_type(&(name, vcpus, memory_mib, gpus): &Size) -> InstanceType {
    let mib = |n: u32| Quantity::from_units(i64::from(n) << 20);
    InstanceType {
        name: name.into(),
        node_selector: BTreeMap::new(),
        requests: Resources::new(Quantity::from_millis(500), mib(GIB), gpus),
        limits: Resources::new(
            Quantity::from_units(i64::from(vcpus)),
            mib(memory_mib),
            gpus,
        ),
    }
}

/// The built-in instance type for an Azure VM size, by name, case-insensitively.
pub fn azure_size(name: &str) -> Option<InstanceType> {
    SIZES
        .iter()
        .find(|s| s.0.eq_ignore_ascii_case(name))
        .map(instance_type)
}

/// Every built-in Azure size.
pub fn azure_sizes() -> impl Iterator<Item = InstanceType> {
    SIZES.iter().map(instance_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_found_whatever_the_case() {
        let t = azure_size("standard_ds3_v2").expect("known");
        assert_eq!(t.name, "Standard_DS3_v2");
        assert_eq!(t.limits.cpu, Quantity::from_units(4));
        assert_eq!(t.limits.memory, Quantity::from_units(14 << 30));
        assert_eq!(t.requests.cpu, Quantity::from_millis(500));
        assert!(azure_size("Standard_XYZ").is_none());
    }

    #[test]
    fn gpu_sizes_request_their_gpus() {
        let t = azure_size("Standard_NC6s_v3").expect("known");
        assert_eq!((t.requests.gpus, t.limits.gpus), (1, 1));
    }

    #[test]
    fn requests_never_exceed_limits_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for t in azure_sizes() {
            assert!(
                t.requests.cpu <= t.limits.cpu && t.requests.memory <= t.limits.memory,
                "{}",
                t.name
            );
            assert!(
                names.insert(t.name.to_ascii_lowercase()),
                "{} twice",
                t.name
            );
        }
    }
}
