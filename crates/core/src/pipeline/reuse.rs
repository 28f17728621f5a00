//! Reuse keys: a deterministic step whose job file, code, environment and input contents are
//! unchanged gets the key of the earlier run, whose outputs then stand in for it. Names,
//! display names, tags, the experiment, the compute and where outputs go do not count; each data input counts
//! by the digest of its contents, not by its path, so a step that reads the outputs of a step
//! that ran again (to the same bytes) is still reused.

use std::collections::BTreeMap;

use serde_json::Value;

/// Fields of a job file that do not change what it computes.
const IGNORED: &[&str] = &[
    "name",
    "display_name",
    "description",
    "tags",
    "experiment_name",
    "compute",
    "queue_settings",
];

/// JSON with its keys sorted, whatever the map's order.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The reuse key of a materialized job file. `digests` holds the digest of the contents of
/// each local path it names: `input:<name>`, `code`, `conda_file`.
pub fn key(job: &Value, digests: &BTreeMap<String, String>) -> String {
    let mut j = job.clone();
    if let Value::Object(m) = &mut j {
        for f in IGNORED {
            m.remove(*f);
        }
        if let Some(Value::Object(inputs)) = m.get_mut("inputs") {
            for (name, v) in inputs.iter_mut() {
                if let (Some(obj), Some(d)) =
                    (v.as_object_mut(), digests.get(&format!("input:{name}")))
                {
                    obj.insert("path".into(), Value::String(d.clone()));
                }
            }
        }
        // Where outputs are written does not change what is computed (a default datastore
        // path names the job).
        if let Some(Value::Object(outputs)) = m.get_mut("outputs") {
            for v in outputs.values_mut() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        for f in ["code", "conda_file"] {
            if let Some(d) = digests.get(f) {
                m.insert(format!("{f}#digest"), Value::String(d.clone()));
                if f == "code" {
                    m.remove("code");
                }
            }
        }
    }
    let mut text = String::new();
    canonical(&j, &mut text);
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digests(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn job(name: &str, path: &str) -> Value {
        json!({"name": name, "command": "python train.py --data ${{inputs.d}}", "code": "/src",
               "inputs": {"d": {"type": "uri_folder", "path": path}, "lr": 0.1}})
    }

    #[test]
    fn the_same_contents_under_another_name_and_path_give_the_same_key() {
        let d = digests(&[("input:d", "abc"), ("code", "c1")]);
        assert_eq!(
            key(&job("p1_train", "/jobs/p1_prep/outputs/o"), &d),
            key(&job("p2_train", "/jobs/p2_prep/outputs/o"), &d)
        );
    }

    #[test]
    fn other_contents_other_code_or_another_literal_give_another_key() {
        let base = key(
            &job("a", "/x"),
            &digests(&[("input:d", "abc"), ("code", "c1")]),
        );
        assert_ne!(
            base,
            key(
                &job("a", "/x"),
                &digests(&[("input:d", "abd"), ("code", "c1")])
            )
        );
        assert_ne!(
            base,
            key(
                &job("a", "/x"),
                &digests(&[("input:d", "abc"), ("code", "c2")])
            )
        );
        let mut other = job("a", "/x");
        other["inputs"]["lr"] = json!(0.2);
        assert_ne!(
            base,
            key(&other, &digests(&[("input:d", "abc"), ("code", "c1")]))
        );
    }

    #[test]
    fn where_an_output_goes_does_not_count() {
        let mut a = job("a", "/x");
        a["outputs"] = json!({"o": {"type": "uri_folder", "path": "azureml://datastores/d/paths/azureml/p1_s/o/"}});
        let mut b = a.clone();
        b["outputs"]["o"]["path"] = json!("azureml://datastores/d/paths/azureml/p2_s/o/");
        let d = digests(&[("input:d", "abc")]);
        assert_eq!(key(&a, &d), key(&b, &d));
        b["outputs"]["o"]["type"] = json!("uri_file");
        assert_ne!(key(&a, &d), key(&b, &d), "its type does");
    }

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":1,"y":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"y":2,"x":1},"a":1}"#).unwrap();
        assert_eq!(key(&a, &BTreeMap::new()), key(&b, &BTreeMap::new()));
    }
}
