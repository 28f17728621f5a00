//! Choosing each trial's parameters: `random` (reproducible with a `seed`), `grid` (every
//! combination of discrete parameters, in order) and `bayesian`, a Tree-structured Parzen
//! Estimator (Bergstra et al., 2011): once a few trials have ended, the observations are split
//! into the best quarter and the rest, each parameter gets a density for each (a Parzen
//! mixture over the observed values plus the prior, or smoothed counts for discrete ones), and
//! of 24 candidates drawn from the good density the one with the highest good/rest ratio is
//! taken, parameter by parameter.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rng::Rng;
use super::space::{Distribution, SearchSpace, SpaceError};

/// A trial's parameters.
pub type Params = BTreeMap<String, Value>;

/// Which way the primary metric should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Higher is better.
    Maximize,
    /// Lower is better.
    Minimize,
}

impl Goal {
    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }
}

/// A finished trial: its parameters and its primary metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Parameters.
    pub params: Params,
    /// The primary metric (its best value, or last).
    pub objective: f64,
}

/// Random parameters.
pub fn random(space: &SearchSpace, rng: &mut Rng) -> Params {
    space
        .iter()
        .map(|(k, d)| (k.clone(), d.draw(rng)))
        .collect()
}

/// Every combination of a space's values, in a fixed order; refused when a parameter is
/// continuous.
pub fn grid(space: &SearchSpace) -> Result<Vec<Params>, SpaceError> {
    if let Some((name, _)) = space.iter().find(|(_, d)| !d.is_discrete()) {
        return Err(SpaceError(format!(
            "grid sampling takes choice and randint parameters only; `{name}` is continuous (use random or bayesian sampling, or a choice)"
        )));
    }
    let mut all = vec![Params::new()];
    for (name, d) in space {
        all = all
            .into_iter()
            .flat_map(|p| {
                (0..d.cardinality()).map(move |i| {
                    let mut q = p.clone();
                    q.insert(name.clone(), d.nth(i));
                    q
                })
            })
            .collect();
    }
    Ok(all)
}

/// Trials drawn at random before the model is used.
const STARTUP: usize = 5;
/// Candidates scored per parameter.
const CANDIDATES: usize = 24;

/// The next trial's parameters, from what the ended trials observed.
pub fn bayesian(space: &SearchSpace, history: &[Observation], goal: Goal, rng: &mut Rng) -> Params {
    if history.len() < STARTUP {
        return random(space, rng);
    }
    let mut sorted: Vec<&Observation> = history.iter().collect();
    sorted.sort_by(|a, b| {
        let o = a.objective.total_cmp(&b.objective);
        if goal == Goal::Maximize {
            o.reverse()
        } else {
            o
        }
    });
    let n_good = (sorted.len() as f64 * 0.25).ceil().max(1.0) as usize;
    let (good, bad) = sorted.split_at(n_good);
    space
        .iter()
        .map(|(name, d)| {
            let values = |set: &[&Observation]| -> Vec<f64> {
                set.iter()
                    .filter_map(|o| internal(d, o.params.get(name)?))
                    .collect()
            };
            let (g, b) = (values(good), values(bad));
            let v = if d.is_discrete() {
                pick_discrete(d, &g, &b, rng)
            } else {
                pick_continuous(d, &g, &b, rng)
            };
            (name.clone(), v)
        })
        .collect()
}

/// A value's coordinate in the model: the index of a discrete one, the exponent of a log one.
fn internal(d: &Distribution, v: &Value) -> Option<f64> {
    match d {
        Distribution::Choice(values) => values.iter().position(|x| x == v).map(|i| i as f64),
        Distribution::RandInt { .. } => v.as_f64(),
        Distribution::LogUniform { .. } | Distribution::LogNormal { .. } => {
            v.as_f64().filter(|x| *x > 0.0).map(f64::ln)
        }
        _ => v.as_f64(),
    }
}

/// A Parzen density over `points` with the prior (uniform over `lo..hi`) as one more part.
fn density(x: f64, points: &[f64], lo: f64, hi: f64) -> f64 {
    let width = (hi - lo).max(f64::EPSILON);
    let n = points.len() as f64;
    let sigma = (width * 0.25 * (n + 1.0).powf(-0.2)).max(width * 0.01);
    let kernel: f64 = points
        .iter()
        .map(|p| {
            (-0.5 * ((x - p) / sigma).powi(2)).exp() / (sigma * (std::f64::consts::TAU).sqrt())
        })
        .sum();
    (kernel + 1.0 / width) / (n + 1.0)
}

fn pick_continuous(d: &Distribution, good: &[f64], bad: &[f64], rng: &mut Rng) -> Value {
    let (lo, hi) = d.internal_range();
    let width = (hi - lo).max(f64::EPSILON);
    let sigma = (width * 0.25 * (good.len() as f64 + 1.0).powf(-0.2)).max(width * 0.01);
    let mut best = (f64::NEG_INFINITY, lo);
    for _ in 0..CANDIDATES {
        let x = if good.is_empty() || rng.below(good.len() + 1) == good.len() {
            d.draw_internal(rng)
        } else {
            good[rng.below(good.len())] + sigma * rng.normal()
        };
        let x = x.clamp(lo, hi);
        let score = density(x, good, lo, hi).ln() - density(x, bad, lo, hi).ln();
        if score > best.0 {
            best = (score, x);
        }
    }
    d.from_internal(best.1)
}

fn pick_discrete(d: &Distribution, good: &[f64], bad: &[f64], rng: &mut Rng) -> Value {
    let k = d.cardinality();
    let weights = |set: &[f64]| -> Vec<f64> {
        let mut w = vec![1.0; k];
        for x in set {
            if let Some(slot) = w.get_mut(*x as usize) {
                *slot += 1.0;
            }
        }
        let total: f64 = w.iter().sum();
        w.iter().map(|c| c / total).collect()
    };
    let (pg, pb) = (weights(good), weights(bad));
    let mut best = (f64::NEG_INFINITY, 0);
    for _ in 0..CANDIDATES {
        let mut u = rng.unit();
        let i = pg
            .iter()
            .position(|p| {
                u -= p;
                u < 0.0
            })
            .unwrap_or(k - 1);
        let score = pg[i].ln() - pb[i].ln();
        if score > best.0 {
            best = (score, i);
        }
    }
    d.nth(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::space::parse;
    use serde_json::json;

    fn quadratic() -> SearchSpace {
        parse(&json!({
            "x": {"type": "uniform", "min_value": -1, "max_value": 1},
            "y": {"type": "uniform", "min_value": -1, "max_value": 1},
        }))
        .expect("parses")
    }

    fn loss(p: &Params) -> f64 {
        let (x, y) = (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
        (x - 0.3).powi(2) + (y + 0.2).powi(2)
    }

    #[test]
    fn random_is_reproducible_with_a_seed() {
        let space = quadratic();
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..5).map(|_| random(&space, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn grid_is_every_combination_once_and_refuses_continuous() {
        let space = parse(&json!({
            "a": {"type": "choice", "values": [1, 2, 3]},
            "b": {"type": "randint", "upper": 2},
        }))
        .expect("parses");
        let all = grid(&space).expect("discrete");
        assert_eq!(all.len(), 6);
        let unique: std::collections::BTreeSet<String> = all
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        assert_eq!(unique.len(), 6);
        let e = grid(&quadratic()).expect_err("continuous");
        assert!(e.to_string().contains("`x` is continuous"), "{e}");
    }

    #[test]
    fn bayesian_beats_random_on_a_quadratic_in_a_fixed_budget() {
        let space = quadratic();
        let (budget, seeds) = (25, 30);
        let mut totals = (0.0, 0.0);
        for seed in 0..seeds {
            let mut r = Rng::new(seed);
            let best_random = (0..budget)
                .map(|_| loss(&random(&space, &mut r)))
                .fold(f64::INFINITY, f64::min);
            let mut r = Rng::new(seed);
            let mut history = Vec::new();
            for _ in 0..budget {
                let p = bayesian(&space, &history, Goal::Minimize, &mut r);
                history.push(Observation {
                    objective: loss(&p),
                    params: p,
                });
            }
            let best_bayes = history
                .iter()
                .map(|o| o.objective)
                .fold(f64::INFINITY, f64::min);
            totals = (totals.0 + best_random, totals.1 + best_bayes);
        }
        let (random_mean, bayes_mean) = (totals.0 / seeds as f64, totals.1 / seeds as f64);
        assert!(
            bayes_mean < random_mean * 0.8,
            "bayesian {bayes_mean} vs random {random_mean}"
        );
    }

    #[test]
    fn bayesian_favours_the_choice_that_did_well() {
        let space = parse(&json!({"c": {"type": "choice", "values": ["good", "bad", "worse"]}}))
            .expect("parses");
        let history: Vec<Observation> = (0..12)
            .map(|i| {
                let c = ["good", "bad", "worse"][i % 3];
                Observation {
                    params: [("c".to_string(), json!(c))].into(),
                    objective: if c == "good" { 0.9 } else { 0.1 },
                }
            })
            .collect();
        let mut r = Rng::new(5);
        let picks: Vec<Value> = (0..20)
            .map(|_| bayesian(&space, &history, Goal::Maximize, &mut r)["c"].clone())
            .collect();
        assert!(
            picks.iter().filter(|v| **v == json!("good")).count() >= 15,
            "{picks:?}"
        );
    }
}
