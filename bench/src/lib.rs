//! Shared helpers for Berth benchmarks (none yet).
