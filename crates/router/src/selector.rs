//! Choosing a deployment by traffic weight: a pure function of the weights and a roll, so
//! tests drive it with a deterministic RNG.

use berth_core::spec::endpoint::TrafficSplit;

/// The deployment a roll in `0..100` lands on, or `None` when no deployment has traffic.
pub fn choose(split: &TrafficSplit, roll: u32) -> Option<&str> {
    let mut acc = 0;
    for (name, w) in split.weights() {
        acc += w;
        if roll < acc {
            return Some(name);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn splits_within_two_percent_over_10k_draws() {
        let split = TrafficSplit::parse_cli("blue=90 green=10").unwrap_or_default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let green = (0..10_000)
            .filter(|_| choose(&split, rng.random_range(0..100)) == Some("green"))
            .count();
        assert!((800..=1200).contains(&green), "green got {green} of 10000");
    }

    #[test]
    fn no_traffic_means_no_deployment() {
        assert_eq!(choose(&TrafficSplit::default(), 5), None);
        let split = TrafficSplit::parse_cli("blue=100").unwrap_or_default();
        assert_eq!(choose(&split, 99), Some("blue"));
    }
}
