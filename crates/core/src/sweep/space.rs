//! A sweep's `search_space`, as Azure ML writes it, checked: each parameter's distribution
//! and how to draw from it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rng::Rng;

/// One parameter's distribution.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    /// One of the values.
    Choice(Vec<Value>),
    /// A whole number in [0, upper).
    RandInt {
        /// Exclusive upper bound.
        upper: i64,
    },
    /// Uniform in [min, max], rounded to a multiple of `q` when given.
    Uniform {
        /// Low.
        min: f64,
        /// High.
        max: f64,
        /// Quantum.
        q: Option<f64>,
    },
    /// `exp(uniform(min, max))`: min and max are exponents, as in Azure ML.
    LogUniform {
        /// Low exponent.
        min: f64,
        /// High exponent.
        max: f64,
        /// Quantum.
        q: Option<f64>,
    },
    /// Normal, rounded to `q` when given.
    Normal {
        /// Mean.
        mu: f64,
        /// Standard deviation.
        sigma: f64,
        /// Quantum.
        q: Option<f64>,
    },
    /// `exp(normal(mu, sigma))`.
    LogNormal {
        /// Mean of the exponent.
        mu: f64,
        /// Standard deviation of the exponent.
        sigma: f64,
        /// Quantum.
        q: Option<f64>,
    },
}

/// Every parameter of a search space, by name.
pub type SearchSpace = BTreeMap<String, Distribution>;

/// What is wrong with a search space, said for a person.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("search_space: {0}")]
pub struct SpaceError(pub String);

fn num(spec: &Value, name: &str, field: &str) -> Result<f64, SpaceError> {
    spec.get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| SpaceError(format!("`{name}` needs a number `{field}`")))
}

fn quantum(spec: &Value, name: &str) -> Result<Option<f64>, SpaceError> {
    match spec.get("q") {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(q) if q > 0.0 => Ok(Some(q)),
            _ => Err(SpaceError(format!(
                "`{name}`: q must be a number above 0, not {v}"
            ))),
        },
    }
}

fn bounds(spec: &Value, name: &str) -> Result<(f64, f64), SpaceError> {
    let (min, max) = (num(spec, name, "min_value")?, num(spec, name, "max_value")?);
    if min > max {
        return Err(SpaceError(format!(
            "`{name}`: min_value {min} is above max_value {max}"
        )));
    }
    Ok((min, max))
}

fn spread(spec: &Value, name: &str) -> Result<(f64, f64), SpaceError> {
    let (mu, sigma) = (num(spec, name, "mu")?, num(spec, name, "sigma")?);
    if sigma <= 0.0 {
        return Err(SpaceError(format!(
            "`{name}`: sigma must be above 0, not {sigma}"
        )));
    }
    Ok((mu, sigma))
}

/// One parameter's distribution from its mapping.
pub fn distribution(name: &str, spec: &Value) -> Result<Distribution, SpaceError> {
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default();
    let q = || quantum(spec, name);
    let quantised = |k: &str, q: Option<f64>| -> Result<Option<f64>, SpaceError> {
        match (k.starts_with('q'), q) {
            (true, None) => Err(SpaceError(format!("`{name}`: {k} needs q"))),
            (_, q) => Ok(q),
        }
    };
    Ok(match kind {
        "choice" => {
            let values = spec
                .get("values")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if values.is_empty() {
                return Err(SpaceError(format!(
                    "`{name}`: choice needs a non-empty `values` list"
                )));
            }
            Distribution::Choice(values)
        }
        "randint" => {
            let upper = spec.get("upper").and_then(Value::as_i64).filter(|u| *u > 0);
            let upper = upper.ok_or_else(|| {
                SpaceError(format!("`{name}`: randint needs a whole `upper` above 0"))
            })?;
            Distribution::RandInt { upper }
        }
        "uniform" | "quniform" => {
            let (min, max) = bounds(spec, name)?;
            Distribution::Uniform {
                min,
                max,
                q: quantised(kind, q()?)?,
            }
        }
        "loguniform" | "qloguniform" => {
            let (min, max) = bounds(spec, name)?;
            Distribution::LogUniform {
                min,
                max,
                q: quantised(kind, q()?)?,
            }
        }
        "normal" | "qnormal" => {
            let (mu, sigma) = spread(spec, name)?;
            Distribution::Normal {
                mu,
                sigma,
                q: quantised(kind, q()?)?,
            }
        }
        "lognormal" | "qlognormal" => {
            let (mu, sigma) = spread(spec, name)?;
            Distribution::LogNormal {
                mu,
                sigma,
                q: quantised(kind, q()?)?,
            }
        }
        other => {
            return Err(SpaceError(format!(
                "`{name}` has type `{other}`; use choice, randint, uniform, quniform, loguniform, qloguniform, normal, qnormal, lognormal or qlognormal"
            )));
        }
    })
}

/// A whole search space from its mapping; an empty one is refused.
pub fn parse(space: &Value) -> Result<SearchSpace, SpaceError> {
    let map = space.as_object().ok_or_else(|| {
        SpaceError("it must be a mapping of parameter names to distributions".into())
    })?;
    if map.is_empty() {
        return Err(SpaceError(
            "it is empty: name at least one parameter".into(),
        ));
    }
    map.iter()
        .map(|(k, v)| Ok((k.clone(), distribution(k, v)?)))
        .collect()
}

fn round_to(x: f64, q: Option<f64>) -> f64 {
    match q {
        Some(q) => (x / q).round() * q,
        None => x,
    }
}

impl Distribution {
    /// Whether it has finitely many values (what grid sampling can enumerate).
    pub fn is_discrete(&self) -> bool {
        matches!(self, Distribution::Choice(_) | Distribution::RandInt { .. })
    }

    /// A value drawn from it.
    pub fn draw(&self, rng: &mut Rng) -> Value {
        match self {
            Distribution::Choice(v) => v[rng.below(v.len())].clone(),
            Distribution::RandInt { upper } => Value::from(rng.below(*upper as usize) as i64),
            _ => self.from_internal(self.draw_internal(rng)),
        }
    }

    /// A continuous draw in the space the model works in (the exponent for log ones).
    pub fn draw_internal(&self, rng: &mut Rng) -> f64 {
        match self {
            Distribution::Uniform { min, max, .. } | Distribution::LogUniform { min, max, .. } => {
                rng.uniform(*min, *max)
            }
            Distribution::Normal { mu, sigma, .. } | Distribution::LogNormal { mu, sigma, .. } => {
                mu + sigma * rng.normal()
            }
            Distribution::Choice(_) | Distribution::RandInt { .. } => 0.0,
        }
    }

    /// The value of an internal coordinate: exponentiated for log ones, rounded to `q`.
    pub fn from_internal(&self, x: f64) -> Value {
        let v = match self {
            Distribution::Uniform { q, .. } | Distribution::Normal { q, .. } => round_to(x, *q),
            Distribution::LogUniform { q, .. } | Distribution::LogNormal { q, .. } => {
                round_to(x.exp(), *q)
            }
            Distribution::Choice(_) | Distribution::RandInt { .. } => x,
        };
        Value::from(v)
    }

    /// Where the model's prior lies, in internal coordinates.
    pub fn internal_range(&self) -> (f64, f64) {
        match self {
            Distribution::Uniform { min, max, .. } | Distribution::LogUniform { min, max, .. } => {
                (*min, *max)
            }
            Distribution::Normal { mu, sigma, .. } | Distribution::LogNormal { mu, sigma, .. } => {
                (mu - 3.0 * sigma, mu + 3.0 * sigma)
            }
            Distribution::Choice(_) | Distribution::RandInt { .. } => (0.0, 0.0),
        }
    }

    /// How many values a discrete one has.
    pub fn cardinality(&self) -> usize {
        match self {
            Distribution::Choice(v) => v.len(),
            Distribution::RandInt { upper } => *upper as usize,
            _ => 0,
        }
    }

    /// The `i`-th value of a discrete one.
    pub fn nth(&self, i: usize) -> Value {
        match self {
            Distribution::Choice(v) => v[i].clone(),
            _ => Value::from(i as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn azure_shaped_spaces_parse() {
        let s = parse(&json!({
            "lr": {"type": "loguniform", "min_value": -6, "max_value": -1},
            "boosting": {"type": "choice", "values": ["gbdt", "dart"]},
            "leaves": {"type": "quniform", "min_value": 8, "max_value": 64, "q": 8},
            "depth": {"type": "randint", "upper": 10},
            "noise": {"type": "qlognormal", "mu": 0, "sigma": 1, "q": 0.5},
        }))
        .expect("parses");
        assert_eq!(s.len(), 5);
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let lr = s["lr"].draw(&mut rng).as_f64().unwrap();
            assert!(lr >= (-6f64).exp() && lr <= (-1f64).exp(), "{lr}");
            let leaves = s["leaves"].draw(&mut rng).as_f64().unwrap();
            assert_eq!(leaves % 8.0, 0.0);
            assert!(s["depth"].draw(&mut rng).as_i64().unwrap() < 10);
        }
    }

    #[test]
    fn bad_spaces_say_what_is_wrong() {
        let cases = [
            (json!({}), "empty"),
            (
                json!({"x": {"type": "uniform", "min_value": 2, "max_value": 1}}),
                "above max_value",
            ),
            (
                json!({"x": {"type": "quniform", "min_value": 0, "max_value": 1, "q": 0}}),
                "q must be",
            ),
            (
                json!({"x": {"type": "quniform", "min_value": 0, "max_value": 1}}),
                "needs q",
            ),
            (
                json!({"x": {"type": "normal", "mu": 0, "sigma": -1}}),
                "sigma",
            ),
            (json!({"x": {"type": "choice", "values": []}}), "non-empty"),
            (json!({"x": {"type": "gamma"}}), "use choice"),
        ];
        for (space, says) in cases {
            let e = parse(&space).expect_err(&space.to_string());
            assert!(e.to_string().contains(says), "{space}: {e}");
        }
    }
}
