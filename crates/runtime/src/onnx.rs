//! Native ONNX scoring with tract (pure Rust, no Python): a model folder holding a `.onnx` file
//! deploys with no scoring script. Requests are `{"data": [[...], ...]}` (the first input) or
//! `{"inputs": {"<input name>": [...]}}`; answers are `{"<output name>": [...]}`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tract_onnx::prelude::*;

/// A loaded, optimised model.
pub struct OnnxModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    inputs: Vec<(String, DatumType)>,
    outputs: Vec<String>,
}

/// The `.onnx` file in a model folder (or the path itself, if it is one).
pub fn find_model(dir: &Path) -> Option<PathBuf> {
    if dir.is_file() {
        return dir
            .extension()
            .is_some_and(|e| e == "onnx")
            .then(|| dir.to_path_buf());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    // At the top, or in a folder registered beneath AZUREML_MODEL_DIR.
    let onnx = |p: &PathBuf| p.extension().is_some_and(|e| e == "onnx");
    entries.iter().find(|p| onnx(p)).cloned().or_else(|| {
        entries
            .iter()
            .filter(|p| p.is_dir())
            .find_map(|sub| find_model(sub).filter(|f| f.parent() == Some(sub.as_path())))
    })
}

fn shape_and_values(
    v: &Value,
    shape: &mut Vec<usize>,
    depth: usize,
    out: &mut Vec<f64>,
) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            } else if shape[depth] != items.len() {
                return Err(
                    "the input array is ragged: every row must have the same length".into(),
                );
            }
            for item in items {
                shape_and_values(item, shape, depth + 1, out)?;
            }
            Ok(())
        }
        Value::Number(n) => {
            if depth != shape.len() {
                return Err(
                    "the input array is ragged: numbers and arrays are mixed at one level".into(),
                );
            }
            out.push(n.as_f64().ok_or("a number is out of range")?);
            Ok(())
        }
        other => Err(format!("the input must hold only numbers, not {other}")),
    }
}

fn to_tensor(v: &Value, dt: DatumType) -> Result<Tensor, String> {
    let mut shape = Vec::new();
    let mut values = Vec::new();
    shape_and_values(v, &mut shape, 0, &mut values)?;
    let arr = |vals: Vec<f64>| {
        tract_ndarray::ArrayD::from_shape_vec(shape.clone(), vals).map_err(|e| e.to_string())
    };
    Ok(match dt {
        DatumType::F64 => arr(values)?.into(),
        DatumType::I64 => arr(values)?.mapv(|x| x as i64).into(),
        DatumType::I32 => arr(values)?.mapv(|x| x as i32).into(),
        _ => arr(values)?.mapv(|x| x as f32).into(),
    })
}

fn to_json(t: &Tensor) -> Result<Value, String> {
    let t = t.cast_to::<f64>().map_err(|e| e.to_string())?;
    let view = t.to_plain_array_view::<f64>().map_err(|e| e.to_string())?;
    fn nest(view: &tract_ndarray::ArrayViewD<'_, f64>) -> Value {
        if view.ndim() == 0 {
            return view
                .iter()
                .next()
                .copied()
                .map(Value::from)
                .unwrap_or(Value::Null);
        }
        Value::Array(view.outer_iter().map(|sub| nest(&sub)).collect())
    }
    Ok(nest(&view))
}

impl OnnxModel {
    /// Loads and optimises a model (batch dimensions may stay symbolic).
    pub fn load(path: &Path) -> Result<OnnxModel, String> {
        let fail = |e: TractError| format!("cannot load ONNX model {}: {e}", path.display());
        let model = tract_onnx::onnx().model_for_path(path).map_err(fail)?;
        let typed = model.into_optimized().map_err(fail)?;
        let inputs = typed
            .input_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| {
                Ok((
                    typed.node(o.node).name.clone(),
                    typed.outlet_fact(*o)?.datum_type,
                ))
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(fail)?;
        let outputs = typed
            .output_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| typed.node(o.node).name.clone())
            .collect();
        let plan = typed.into_runnable().map_err(fail)?;
        Ok(OnnxModel {
            plan,
            inputs,
            outputs,
        })
    }

    /// Scores one request body.
    pub fn score(&self, body: &Value) -> Result<Value, String> {
        let provided: Map<String, Value> = match (body.get("inputs"), body.get("data")) {
            (Some(Value::Object(m)), _) => m.clone(),
            (_, Some(d)) => {
                let first = self
                    .inputs
                    .first()
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                Map::from_iter([(first, d.clone())])
            }
            _ => {
                return Err(format!(
                    "send {{\"data\": [...]}} or {{\"inputs\": {{{}}}}}",
                    self.inputs
                        .iter()
                        .map(|(n, _)| format!("\"{n}\": [...]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        let mut tensors = TVec::new();
        for (name, dt) in &self.inputs {
            let v = provided
                .get(name)
                .ok_or_else(|| format!("the model needs input `{name}`"))?;
            tensors.push(
                to_tensor(v, *dt)
                    .map_err(|e| format!("input `{name}`: {e}"))?
                    .into(),
            );
        }
        let results = self
            .plan
            .run(tensors)
            .map_err(|e| format!("the model could not run on this input: {e}"))?;
        let mut out = Map::new();
        for (name, t) in self.outputs.iter().zip(results.iter()) {
            out.insert(name.clone(), to_json(t)?);
        }
        Ok(Value::Object(out))
    }
}
