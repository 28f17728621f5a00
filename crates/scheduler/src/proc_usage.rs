//! What a process group uses, read from `/proc`: for a machine where a job has no cgroup of
//! its own (no controllers Berth may use), its CPU time and memory are the sum over the
//! processes of its process group. Processes that already exited are not counted.

use crate::cgroup::Usage;

/// One `/proc/<pid>/stat` line: its process group, CPU ticks (user + system) and resident
/// pages.
fn parse_stat(line: &str) -> Option<(i32, u64, u64)> {
    // The command name (field 2) may hold spaces and parentheses: fields count from its end.
    let rest = &line[line.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) ... rss(21).
    let pgrp = f.get(2)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let rss = f.get(21)?.parse().ok()?;
    Some((pgrp, ticks, rss))
}

/// The sum over the live processes of process group `pgid`.
pub fn process_group_usage(pgid: i32) -> Usage {
    let ticks_per_s = rustix::param::clock_ticks_per_second().max(1);
    let page = rustix::param::page_size() as u64;
    let (mut ticks, mut pages, mut any) = (0u64, 0u64, false);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((g, t, r)) = parse_stat(&stat)
            && g == pgid
        {
            (ticks, pages, any) = (ticks + t, pages + r, true);
        }
    }
    if !any {
        return Usage::default();
    }
    Usage {
        cpu_usec: Some(ticks * 1_000_000 / ticks_per_s),
        memory_bytes: Some(pages * page),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_is_read_from_its_end() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000000 512 18446744073709551615";
        assert_eq!(parse_stat(line), Some((4242, 300, 512)));
    }

    #[test]
    fn this_process_group_uses_some_memory() {
        let me = rustix::process::getpgrp().as_raw_nonzero().get();
        let u = process_group_usage(me);
        assert!(u.memory_bytes.is_some_and(|m| m > 0), "{u:?}");
        assert!(u.cpu_usec.is_some());
    }
}
