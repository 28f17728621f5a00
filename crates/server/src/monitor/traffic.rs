//! Endpoint traffic over time, from what the router already counts: every 10 s, per
//! deployment, requests per second by status class and the replica's latency p50/p99 over the
//! window, read from two snapshots of the router's Prometheus exposition.

use std::collections::BTreeMap;

/// Endpoint and deployment.
pub type Key = (String, String);

/// What the router had counted at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Requests by deployment and status code.
    requests: BTreeMap<(Key, u16), f64>,
    /// The upstream-time histogram's cumulative buckets (upper bound in seconds, count).
    upstream: BTreeMap<Key, Vec<(f64, f64)>>,
}

fn labels(text: &str) -> BTreeMap<&str, &str> {
    text.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect()
}

/// Reads the router's samples out of the text exposition format.
pub fn parse(text: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((lab, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let l = labels(lab);
        let (Some(ep), Some(dep)) = (l.get("endpoint"), l.get("deployment")) else {
            continue;
        };
        let key = (ep.to_string(), dep.to_string());
        match name {
            "berth_router_requests_total" => {
                if let Some(code) = l.get("code").and_then(|c| c.parse().ok()) {
                    s.requests.insert((key, code), value);
                }
            }
            "berth_router_upstream_seconds_bucket" => {
                let le = match l.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(v) => v.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                s.upstream.entry(key).or_default().push((le, value));
            }
            _ => {}
        }
    }
    for b in s.upstream.values_mut() {
        b.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    s
}

/// One deployment's traffic over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Requests per second, all statuses.
    pub requests_per_second: f64,
    /// Per second answered 2xx, 4xx and 5xx.
    pub by_class: [f64; 3],
    /// The replica's time, p50 and p99 (ms), when there were requests.
    pub latency_ms: Option<(f64, f64)>,
}

/// The quantile `q` of the observations between two cumulative histograms: the upper bound
/// of the bucket it falls in (in ms).
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let count_before = |le: f64| before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| (*le, c - count_before(*le)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let (le, _) = delta.iter().find(|(_, c)| *c >= q * total)?;
    Some(if le.is_finite() {
        le * 1000.0
    } else {
        f64::INFINITY
    })
}

/// Each deployment's traffic between two snapshots `secs` apart.
pub fn windows(before: &Snapshot, after: &Snapshot, secs: f64) -> BTreeMap<Key, Window> {
    let mut out: BTreeMap<Key, Window> = BTreeMap::new();
    for ((key, code), n) in &after.requests {
        let was = before
            .requests
            .get(&(key.clone(), *code))
            .copied()
            .unwrap_or(0.0);
        let rate = (n - was).max(0.0) / secs;
        let w = out.entry(key.clone()).or_insert(Window {
            requests_per_second: 0.0,
            by_class: [0.0; 3],
            latency_ms: None,
        });
        w.requests_per_second += rate;
        match code / 100 {
            2 => w.by_class[0] += rate,
            4 => w.by_class[1] += rate,
            5 => w.by_class[2] += rate,
            _ => {}
        }
    }
    for (key, w) in out.iter_mut() {
        let after_b = after
            .upstream
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let before_b = before
            .upstream
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        w.latency_ms = quantile(before_b, after_b, 0.5).zip(quantile(before_b, after_b, 0.99));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE berth_router_requests counter
berth_router_requests_total{endpoint="ep",deployment="blue",code="200"} 100
berth_router_upstream_seconds_bucket{le="0.001",endpoint="ep",deployment="blue"} 50
berth_router_upstream_seconds_bucket{le="0.002",endpoint="ep",deployment="blue"} 100
berth_router_upstream_seconds_bucket{le="+Inf",endpoint="ep",deployment="blue"} 100
"#;
    const AFTER: &str = r#"berth_router_requests_total{endpoint="ep",deployment="blue",code="200"} 290
berth_router_requests_total{endpoint="ep",deployment="blue",code="503"} 10
berth_router_upstream_seconds_bucket{le="0.001",endpoint="ep",deployment="blue"} 150
berth_router_upstream_seconds_bucket{le="0.002",endpoint="ep",deployment="blue"} 298
berth_router_upstream_seconds_bucket{le="+Inf",endpoint="ep",deployment="blue"} 300
"#;

    #[test]
    fn a_window_has_rates_by_class_and_latency_quantiles() {
        let w = windows(&parse(BEFORE), &parse(AFTER), 10.0);
        let blue = &w[&("ep".to_string(), "blue".to_string())];
        assert_eq!(blue.requests_per_second, 20.0);
        assert_eq!(blue.by_class, [19.0, 0.0, 1.0]);
        // 100 of 200 new observations under 1 ms: p50 is 1 ms; 198 under 2 ms: p99 is 2 ms.
        assert_eq!(blue.latency_ms, Some((1.0, 2.0)));
    }

    #[test]
    fn no_requests_in_the_window_means_no_latency() {
        let w = windows(&parse(BEFORE), &parse(BEFORE), 10.0);
        let blue = &w[&("ep".to_string(), "blue".to_string())];
        assert_eq!((blue.requests_per_second, blue.latency_ms), (0.0, None));
    }
}
