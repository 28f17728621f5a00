//! Job inputs and outputs: data types, paths (`azureml://datastores/...`, local, URLs) and modes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::job::scalar_text;

/// What an input or output holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// One file.
    UriFile,
    /// A folder (the default).
    UriFolder,
    /// A model folder.
    CustomModel,
    /// An MLflow model folder.
    MlflowModel,
}

impl DataType {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "uri_file" => DataType::UriFile,
            "uri_folder" => DataType::UriFolder,
            "custom_model" => DataType::CustomModel,
            "mlflow_model" => DataType::MlflowModel,
            "mltable" | "triton_model" => {
                return Err(format!(
                    "`type: {s}` is not supported yet; use uri_file or uri_folder"
                ));
            }
            other => {
                return Err(format!(
                    "`type: {other}` is not a data type; use uri_file, uri_folder, custom_model or mlflow_model"
                ));
            }
        })
    }
}

/// Where data lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataPath {
    /// `azureml://datastores/<datastore>/paths/<path>`
    Datastore {
        /// Datastore name.
        datastore: String,
        /// Path inside it (may be empty).
        path: String,
    },
    /// A path on the submitting machine, as written (relative to the YAML file).
    Local {
        /// The path.
        path: String,
    },
    /// An `http(s)://` URL.
    Url {
        /// The URL.
        url: String,
    },
    /// A registered data asset or model: `azureml:<name>:<version>` or `azureml:<name>@latest`.
    Asset {
        /// The reference as written.
        reference: String,
    },
}

impl DataPath {
    /// Parses a path as Azure ML writes it.
    pub fn parse(s: &str) -> Result<DataPath, String> {
        if let Some(rest) = s.strip_prefix("azureml://datastores/") {
            let (ds, p) = rest.split_once("/paths/").or_else(|| rest.strip_suffix("/paths").map(|d| (d, ""))).ok_or_else(|| {
                format!("`{s}` is not a datastore path; write azureml://datastores/<name>/paths/<path>")
            })?;
            crate::names::validate_name("datastore", ds)?;
            if p.split('/').any(|seg| seg == "..") {
                return Err(format!("`{s}` leaves its datastore with `..`"));
            }
            return Ok(DataPath::Datastore {
                datastore: ds.to_string(),
                path: p.trim_matches('/').to_string(),
            });
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return Ok(DataPath::Url { url: s.to_string() });
        }
        if s.starts_with("azureml:") && !s.starts_with("azureml://") {
            crate::spec::asset::AssetRef::parse(s)?;
            return Ok(DataPath::Asset {
                reference: s.to_string(),
            });
        }
        for scheme in [
            "azureml://",
            "wasbs://",
            "wasb://",
            "abfss://",
            "adl://",
            "s3://",
            "gs://",
        ] {
            if s.starts_with(scheme) {
                return Err(format!(
                    "`{s}`: `{scheme}` paths are not supported yet; use a datastore path, a local path or an https URL"
                ));
            }
        }
        let local = s
            .strip_prefix("file://")
            .or_else(|| s.strip_prefix("file:"))
            .unwrap_or(s);
        if local.is_empty() {
            return Err("a path cannot be empty".into());
        }
        Ok(DataPath::Local {
            path: local.to_string(),
        })
    }
}

/// How a job sees an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputMode {
    /// Read-only mount (the default); on the local compute, the path itself.
    #[default]
    RoMount,
    /// Copied into the job's folder before it starts.
    Download,
    /// The path or URL is passed as is.
    Direct,
}

impl InputMode {
    /// Parses a mode as Azure ML writes it.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ro_mount" => Ok(InputMode::RoMount),
            "download" => Ok(InputMode::Download),
            "direct" => Ok(InputMode::Direct),
            "eval_mount" | "eval_download" => Err(format!(
                "`mode: {s}` is for mltable inputs, which are not supported yet"
            )),
            other => Err(format!(
                "`mode: {other}` is not an input mode; use ro_mount, download or direct"
            )),
        }
    }
}

/// How a job writes an output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Written in place (the default).
    #[default]
    RwMount,
    /// Written locally and copied at the end.
    Upload,
}

/// A job input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobInput {
    /// A number, string or boolean.
    Literal {
        /// The value as the command sees it.
        value: String,
    },
    /// A file or folder.
    Data {
        /// What it holds.
        #[serde(rename = "type")]
        data_type: DataType,
        /// Where it is.
        path: DataPath,
        /// How the job sees it.
        mode: InputMode,
    },
}

/// A job output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    /// What it holds.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Where to write it; by default the job's own outputs folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<DataPath>,
    /// How it is written.
    pub mode: OutputMode,
}

/// Parses one entry of `inputs:`.
pub fn parse_input(name: &str, v: &Value) -> Result<JobInput, String> {
    if let Some(text) = scalar_text(v) {
        return Ok(JobInput::Literal { value: text });
    }
    let Value::Object(m) = v else {
        return Err(format!(
            "input `{name}` must be a literal value or a mapping with `type` and `path`"
        ));
    };
    let mut data_type = DataType::UriFolder;
    let mut path = None;
    let mut mode = InputMode::default();
    for (k, val) in m {
        let text =
            || scalar_text(val).ok_or_else(|| format!("`inputs.{name}.{k}` must be a string"));
        match k.as_str() {
            "type" => {
                data_type = DataType::parse(&text()?).map_err(|e| format!("input `{name}`: {e}"))?
            }
            "path" => {
                path = Some(DataPath::parse(&text()?).map_err(|e| format!("input `{name}`: {e}"))?)
            }
            "mode" => {
                mode = InputMode::parse(&text()?).map_err(|e| format!("input `{name}`: {e}"))?
            }
            "description" | "optional" => {}
            "default" | "value" => return Ok(JobInput::Literal { value: text()? }),
            other => {
                return Err(format!(
                    "unknown field `{other}` in input `{name}`; use type, path, mode or description"
                ));
            }
        }
    }
    let path = path.ok_or_else(|| format!("input `{name}` has no `path`"))?;
    Ok(JobInput::Data {
        data_type,
        path,
        mode,
    })
}

/// Parses one entry of `outputs:` (an empty entry means a folder in the job's outputs).
pub fn parse_output(name: &str, v: Option<&Value>) -> Result<JobOutput, String> {
    let mut out = JobOutput {
        data_type: DataType::UriFolder,
        path: None,
        mode: OutputMode::default(),
    };
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Value::Object(m) = v else {
        return Err(format!(
            "output `{name}` must be a mapping with `type`, `path` and/or `mode`"
        ));
    };
    for (k, val) in m {
        let text =
            || scalar_text(val).ok_or_else(|| format!("`outputs.{name}.{k}` must be a string"));
        match k.as_str() {
            "type" => {
                out.data_type =
                    DataType::parse(&text()?).map_err(|e| format!("output `{name}`: {e}"))?
            }
            "path" => {
                match DataPath::parse(&text()?).map_err(|e| format!("output `{name}`: {e}"))? {
                    p @ DataPath::Datastore { .. } => out.path = Some(p),
                    _ => {
                        return Err(format!(
                            "output `{name}`: an output path must be azureml://datastores/<name>/paths/<path>"
                        ));
                    }
                }
            }
            "mode" => {
                out.mode = match text()?.as_str() {
                    "rw_mount" => OutputMode::RwMount,
                    "upload" => OutputMode::Upload,
                    other => {
                        return Err(format!(
                            "output `{name}`: `mode: {other}` is not an output mode; use rw_mount or upload"
                        ));
                    }
                }
            }
            "description" => {}
            other => {
                return Err(format!(
                    "unknown field `{other}` in output `{name}`; use type, path, mode or description"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(
            DataPath::parse("azureml://datastores/mydata/paths/training/"),
            Ok(DataPath::Datastore {
                datastore: "mydata".into(),
                path: "training".into()
            })
        );
        assert_eq!(
            DataPath::parse("./data"),
            Ok(DataPath::Local {
                path: "./data".into()
            })
        );
        assert_eq!(
            DataPath::parse("file:/tmp/x"),
            Ok(DataPath::Local {
                path: "/tmp/x".into()
            })
        );
        assert!(matches!(
            DataPath::parse("https://example.com/a.csv"),
            Ok(DataPath::Url { .. })
        ));
        assert!(DataPath::parse("azureml://datastores/x").is_err());
        assert!(DataPath::parse("azureml://datastores/x/paths/../../etc").is_err());
        assert!(
            DataPath::parse("wasbs://c@a.blob.core.windows.net/x")
                .unwrap_err()
                .contains("not supported yet")
        );
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(
            parse_input("n", &Value::from(5)),
            Ok(JobInput::Literal { value: "5".into() })
        );
        let v: Value =
            serde_json::from_str(r#"{"type":"uri_file","path":"a.csv","mode":"download"}"#)
                .unwrap_or_default();
        assert!(matches!(
            parse_input("d", &v),
            Ok(JobInput::Data {
                data_type: DataType::UriFile,
                mode: InputMode::Download,
                ..
            })
        ));
        let v: Value = serde_json::from_str(r#"{"type":"uri_folder"}"#).unwrap_or_default();
        assert_eq!(parse_input("d", &v), Err("input `d` has no `path`".into()));
        let v: Value = serde_json::from_str(r#"{"path":"a","mode":"rw"}"#).unwrap_or_default();
        assert!(
            parse_input("d", &v)
                .unwrap_err()
                .contains("`mode: rw` is not an input mode")
        );
    }

    #[test]
    fn parses_outputs() {
        assert_eq!(parse_output("m", None).map(|o| o.path), Ok(None));
        let v: Value = serde_json::from_str(r#"{"path":"./local"}"#).unwrap_or_default();
        assert!(parse_output("m", Some(&v)).is_err());
    }
}
