//! A tracking request's fields, from the query string (GET, DELETE) or the JSON body, read
//! leniently as MLflow's client sends them: numbers may come as strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use serde_json::{Map, Value};

use super::error::MlflowError;

/// The fields of a request.
pub struct Req(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Req {
    type Rejection = MlflowError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if matches!(*req.method(), Method::GET | Method::DELETE) {
            let axum::extract::Query(pairs) =
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri()).map_err(
                    |e| MlflowError::Invalid(format!("the query string is not valid: {e}")),
                )?;
            let fields = pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            return Ok(Req(fields));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            MlflowError::Invalid(format!("the request body could not be read: {e}"))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Req(Map::new()));
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(Req(m)),
            Ok(_) => Err(MlflowError::Invalid(
                "the request body must be a JSON object".into(),
            )),
            Err(e) => Err(MlflowError::Invalid(format!(
                "the request body is not JSON: {e}"
            ))),
        }
    }
}

/// MLflow's message for a missing field.
fn missing(key: &str) -> MlflowError {
    MlflowError::Invalid(format!("Missing value for required parameter '{key}'"))
}

impl Req {
    /// A text field, if present.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// A text field that must be there and not be empty.
    pub fn need(&self, key: &str) -> Result<&str, MlflowError> {
        self.str(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(key))
    }

    /// An integer field (a number or a string of one).
    pub fn int(&self, key: &str) -> Result<Option<i64>, MlflowError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => int_of(v).map(Some).ok_or_else(|| {
                MlflowError::Invalid(format!("'{key}' must be an integer, not {v}"))
            }),
        }
    }

    /// A list field.
    pub fn list(&self, key: &str) -> &[Value] {
        self.0
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A list of integers (`experiment_ids`), each a number or a string of one.
    pub fn ints(&self, key: &str) -> Result<Vec<i64>, MlflowError> {
        self.list(key)
            .iter()
            .map(|v| {
                int_of(v).ok_or_else(|| MlflowError::Invalid(format!("{key}: {v} is not a number")))
            })
            .collect()
    }

    /// A list of `{key, value}` pairs (tags, params).
    pub fn pairs(&self, key: &str) -> Result<Vec<(String, String)>, MlflowError> {
        self.list(key).iter().map(pair).collect()
    }
}

/// A `{key, value}` object as a pair.
pub fn pair(v: &Value) -> Result<(String, String), MlflowError> {
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("key"))?;
    let value = match v.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Ok((key.to_string(), value))
}

/// An integer, or a string holding one.
pub fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A metric's value: a number, or `NaN`/`Infinity`/`-Infinity` as MLflow's client sends
/// them. Anything else is refused.
pub fn metric_value(key: &str, v: Option<&Value>) -> Result<f64, MlflowError> {
    let bad = |v: &dyn std::fmt::Display| {
        MlflowError::Invalid(format!(
            "metric `{key}` has the value {v}, which is not a number; log a float (NaN and ±Infinity are allowed)"
        ))
    };
    match v {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| bad(n)),
        Some(Value::String(s)) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse()
                .map_err(|_| bad(&format!("\"{other}\""))),
        },
        Some(other) => Err(bad(other)),
        None => Err(missing("value")),
    }
}
