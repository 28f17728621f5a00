//! Registered assets: the references jobs and deployments write (`azureml:<name>:<version>`,
//! `azureml:<name>@latest`, registry paths), and the model and data files
//! (`model.schema.json`, `data.schema.json`) that register them.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;
use time::OffsetDateTime;

use crate::names::validate_name;
use crate::spec::data::{DataPath, DataType};
use crate::spec::job::scalar_text;
use crate::yaml::{Source, SpecError};

/// Which version of a named asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssetVersion {
    /// `:<version>`.
    Exact(String),
    /// `@latest`: the last one registered.
    Latest,
}

/// A reference to a registered asset: `azureml:<name>:<version>`, `azureml:<name>@latest`, or
/// an Azure registry path `azureml://registries/<r>/<kind>/<name>/versions/<v>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRef {
    /// The name.
    pub name: String,
    /// Which version.
    pub version: AssetVersion,
    /// True for an Azure registry path (or a curated `AzureML-` name): Berth cannot fetch
    /// those, so when no asset of that name is registered they are only recorded.
    pub from_azure: bool,
}

impl AssetRef {
    /// Parses a reference as written in a job or deployment file.
    pub fn parse(written: &str) -> Result<AssetRef, String> {
        let s = written.trim();
        if let Some(path) = s.strip_prefix("azureml://registries/") {
            // <registry>/<kind>/<name>/versions/<v> or .../labels/latest
            let parts: Vec<&str> = path.split('/').collect();
            return match parts.as_slice() {
                [_, _, name, "versions", v] => Ok(AssetRef {
                    name: name.to_string(),
                    version: AssetVersion::Exact(v.to_string()),
                    from_azure: true,
                }),
                [_, _, name, "labels", "latest"] | [_, _, name] => Ok(AssetRef {
                    name: name.to_string(),
                    version: AssetVersion::Latest,
                    from_azure: true,
                }),
                _ => Err(format!(
                    "`{written}` is not an Azure ML registry path (azureml://registries/<registry>/<kind>/<name>/versions/<version>)"
                )),
            };
        }
        let body = s.strip_prefix("azureml:").unwrap_or(s);
        let (name, version) = if let Some((n, label)) = body.split_once('@') {
            if label != "latest" {
                return Err(format!(
                    "`{written}`: `@{label}` is not a label Berth knows; use `@latest` or `:<version>`"
                ));
            }
            (n, AssetVersion::Latest)
        } else if let Some((n, v)) = body.split_once(':') {
            (n, AssetVersion::Exact(v.to_string()))
        } else {
            return Err(format!(
                "`{written}` names no version; write `azureml:{body}:<version>` or `azureml:{body}@latest`"
            ));
        };
        if name.is_empty() || matches!(&version, AssetVersion::Exact(v) if v.is_empty()) {
            return Err(format!(
                "`{written}` is not `azureml:<name>:<version>` or `azureml:<name>@latest`"
            ));
        }
        Ok(AssetRef {
            name: name.to_string(),
            from_azure: name.starts_with("AzureML-"),
            version,
        })
    }
}

impl std::fmt::Display for AssetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            AssetVersion::Exact(v) => write!(f, "azureml:{}:{v}", self.name),
            AssetVersion::Latest => write!(f, "azureml:{}@latest", self.name),
        }
    }
}

/// A model's storage format (`type:`), which decides how it deploys without code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    /// Any files; served by a scoring script (the default).
    #[default]
    CustomModel,
    /// An MLflow model folder (with `MLmodel`): deploys without code.
    MlflowModel,
    /// A Triton model repository: registered and served by a scoring script.
    TritonModel,
}

/// What a model or data file registers, with its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactType {
    /// A model version.
    Model(ModelType),
    /// A data asset version: `uri_file` or `uri_folder`.
    Data(DataType),
}

/// Which registry a file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// `berth model create`.
    Model,
    /// `berth data create`.
    Data,
}

impl ArtifactKind {
    /// The word for it in messages.
    pub const fn noun(self) -> &'static str {
        match self {
            ArtifactKind::Model => "model",
            ArtifactKind::Data => "data asset",
        }
    }

    fn parse_type(self, s: Option<&str>) -> Result<ArtifactType, String> {
        Ok(match (self, s) {
            (ArtifactKind::Model, None | Some("custom_model")) => {
                ArtifactType::Model(ModelType::CustomModel)
            }
            (ArtifactKind::Model, Some("mlflow_model")) => {
                ArtifactType::Model(ModelType::MlflowModel)
            }
            (ArtifactKind::Model, Some("triton_model")) => {
                ArtifactType::Model(ModelType::TritonModel)
            }
            (ArtifactKind::Model, Some(other)) => {
                return Err(format!(
                    "`type: {other}` is not a model type; use custom_model, mlflow_model or triton_model"
                ));
            }
            (ArtifactKind::Data, None | Some("uri_folder")) => {
                ArtifactType::Data(DataType::UriFolder)
            }
            (ArtifactKind::Data, Some("uri_file")) => ArtifactType::Data(DataType::UriFile),
            (ArtifactKind::Data, Some("mltable")) => {
                return Err(
                    "`type: mltable` data assets are not supported yet; register the folder as uri_folder".into(),
                );
            }
            (ArtifactKind::Data, Some(other)) => {
                return Err(format!(
                    "`type: {other}` is not a data asset type; use uri_file or uri_folder"
                ));
            }
        })
    }
}

/// Where a model's or data asset's files come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactSource {
    /// A local path (relative to the file), a datastore path or an https URL.
    Data(DataPath),
    /// What a job wrote: `azureml://jobs/<job>/outputs/<output>[/paths/<path>]`, or its
    /// `./outputs` and `./logs` as `azureml://jobs/<job>/outputs/artifacts/paths/<path>`.
    JobOutput {
        /// The job's name.
        job: String,
        /// The output's name (`default` for the artifacts).
        output: String,
        /// A path inside the output (may be empty).
        path: String,
    },
}

impl ArtifactSource {
    /// Parses a `path:` as Azure ML writes it.
    pub fn parse(s: &str) -> Result<ArtifactSource, String> {
        let Some(rest) = s.strip_prefix("azureml://jobs/") else {
            return DataPath::parse(s).map(ArtifactSource::Data);
        };
        let bad = || {
            format!(
                "`{s}` is not a job output path; write azureml://jobs/<job>/outputs/<output> or azureml://jobs/<job>/outputs/artifacts/paths/<path>"
            )
        };
        let (job, rest) = rest.split_once("/outputs/").ok_or_else(bad)?;
        validate_name("job", job)?;
        let (output, path) = match rest.split_once('/') {
            Some(("artifacts", p)) => (
                crate::job::ARTIFACTS_OUTPUT,
                p.strip_prefix("paths").ok_or_else(bad)?,
            ),
            Some((o, p)) => (o, p.strip_prefix("paths").ok_or_else(bad)?),
            None => (rest, ""),
        };
        let path = path.trim_matches('/');
        if path.split('/').any(|seg| seg == "..") {
            return Err(format!("`{s}` leaves the job's output with `..`"));
        }
        if output.is_empty() || output == "artifacts" {
            return Err(bad());
        }
        Ok(ArtifactSource::JobOutput {
            job: job.to_string(),
            output: output.to_string(),
            path: path.to_string(),
        })
    }
}

/// A parsed model or data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactSpec {
    /// Name.
    pub name: String,
    /// Version; `None` takes the next number.
    pub version: Option<String>,
    /// `path:` as written.
    pub path: String,
    /// Where the files come from.
    pub source: ArtifactSource,
    /// The type.
    pub asset_type: ArtifactType,
    /// Free text.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// A model's stage (`Development`, `Production`, ...).
    pub stage: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Option<Spanned<String>>,
    version: Option<Spanned<Value>>,
    path: Option<Spanned<String>>,
    #[serde(rename = "type")]
    asset_type: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    properties: BTreeMap<String, Spanned<Value>>,
    // Model fields.
    stage: Option<Spanned<String>>,
    // Read from the model's own MLmodel file instead.
    flavors: Option<Spanned<IgnoredAny>>,
}

impl ArtifactSpec {
    /// Parses a model or data file with `--set path=value` overrides (`--name`, `--version`,
    /// `--path` and `--type` arrive as overrides too).
    pub fn parse(
        kind: ArtifactKind,
        src: &Source<'_>,
        sets: &[String],
    ) -> Result<ArtifactSpec, SpecError> {
        let noun = kind.noun();
        let spec = crate::overrides::parse_with_sets(src, sets, |s| {
            s.parse::<RawArtifact>()?.validate(kind, s)
        })?;
        if spec.name.is_empty() {
            return Err(
                SpecError::new(format!("{}: the {noun} has no `name`", src.name))
                    .hint("add `name:` to the file, or pass --name"),
            );
        }
        if spec.path.is_empty() {
            return Err(
                SpecError::new(format!("{}: the {noun} has no `path`", src.name))
                    .hint("add `path:` (a file or folder) to the file, or pass --path"),
            );
        }
        Ok(spec)
    }
}

impl RawArtifact {
    /// `stage` and `flavors` belong to models.
    fn refuse_model_fields(&self, src: &Source<'_>) -> Result<(), SpecError> {
        for (field, at) in [
            ("stage", self.stage.as_ref().map(|s| &s.referenced)),
            ("flavors", self.flavors.as_ref().map(|s| &s.referenced)),
        ] {
            if let Some(loc) = at {
                return Err(SpecError {
                    position: src.position(loc),
                    message: format!("`{field}` is a model field; a data asset has none"),
                    hint: Some("remove it, or register the files with `berth model create`".into()),
                });
            }
        }
        Ok(())
    }

    fn validate(self, kind: ArtifactKind, src: &Source<'_>) -> Result<ArtifactSpec, SpecError> {
        let noun = kind.noun();
        if kind == ArtifactKind::Data {
            self.refuse_model_fields(src)?;
        }
        let name = match self.name {
            Some(n) => {
                validate_name(noun, &n.value).map_err(|m| src.error_at(&n, m))?;
                n.value
            }
            None => String::new(),
        };
        let version = match self.version {
            Some(v) => {
                let text = scalar_text(&v.value)
                    .ok_or_else(|| src.error_at(&v, "`version` must be a string or number"))?;
                validate_name(&format!("{noun} version"), &text)
                    .map_err(|m| src.error_at(&v, m))?;
                Some(text)
            }
            None => None,
        };
        let asset_type = match &self.asset_type {
            Some(t) => kind
                .parse_type(Some(&t.value))
                .map_err(|m| src.error_at(t, m))?,
            None => kind.parse_type(None).map_err(SpecError::new)?,
        };
        let (path, source) = match self.path {
            Some(p) => {
                let source = ArtifactSource::parse(&p.value).map_err(|m| src.error_at(&p, m))?;
                if kind == ArtifactKind::Model
                    && let ArtifactSource::Data(DataPath::Url { .. }) = source
                {
                    return Err(src
                        .error_at(&p, "a model cannot be registered from a URL")
                        .hint("download the files and register the local folder"));
                }
                (p.value, source)
            }
            None => (
                String::new(),
                ArtifactSource::Data(DataPath::Local {
                    path: String::new(),
                }),
            ),
        };
        let text_map = |m: BTreeMap<String, Spanned<Value>>| {
            m.into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        scalar_text(&v.value).unwrap_or_else(|| v.value.to_string()),
                    )
                })
                .collect()
        };
        Ok(ArtifactSpec {
            name,
            version,
            path,
            source,
            asset_type,
            description: self.description,
            tags: text_map(self.tags),
            properties: text_map(self.properties),
            stage: self.stage.map(|s| s.value),
        })
    }
}

/// A registered data asset version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `uri_file` or `uri_folder`.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// `path:` as written.
    pub path: String,
    /// Where jobs read it: a copy under `$BERTH_HOME/data` (local files are copied at
    /// registration, so the version never changes), a datastore path, or a URL.
    pub location: DataPath,
    /// Files copied (0 for datastore paths and URLs).
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: ArtifactKind, text: &str) -> Result<ArtifactSpec, String> {
        ArtifactSpec::parse(kind, &Source::new("asset.yml", text), &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn azure_shaped_model_files_parse() {
        let m = parse(ArtifactKind::Model, "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\nname: local-mlflow-example\nversion: 3\npath: mlflow-model\ntype: mlflow_model\ndescription: Model created from local MLflow model directory.\ntags:\n  framework: sklearn\nstage: Production\nflavors:\n  python_function: {}\n").expect("parses");
        assert_eq!(m.asset_type, ArtifactType::Model(ModelType::MlflowModel));
        assert_eq!(m.version.as_deref(), Some("3"));
        assert_eq!(m.stage.as_deref(), Some("Production"));
        assert_eq!(m.tags["framework"], "sklearn");
        let m = parse(ArtifactKind::Model, "name: f\npath: model/model.pkl\n").expect("parses");
        assert_eq!(m.asset_type, ArtifactType::Model(ModelType::CustomModel));
    }

    #[test]
    fn azure_shaped_data_files_parse() {
        let d = parse(ArtifactKind::Data, "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\nname: titanic\nversion: 1\ntype: uri_file\npath: https://example.com/titanic.csv\n").expect("parses");
        assert_eq!(d.asset_type, ArtifactType::Data(DataType::UriFile));
        assert!(matches!(
            d.source,
            ArtifactSource::Data(DataPath::Url { .. })
        ));
        let d = parse(
            ArtifactKind::Data,
            "name: d\npath: azureml://datastores/workspaceblobstore/paths/iris/\n",
        )
        .expect("parses");
        assert_eq!(d.asset_type, ArtifactType::Data(DataType::UriFolder));
    }

    #[test]
    fn wrong_types_and_fields_are_refused_with_their_line() {
        let err = parse(ArtifactKind::Model, "name: m\npath: p\ntype: uri_file\n").unwrap_err();
        assert!(err.starts_with("asset.yml:3:"), "{err}");
        assert!(err.contains("not a model type"), "{err}");
        let err = parse(ArtifactKind::Data, "name: d\npath: p\ntype: mltable\n").unwrap_err();
        assert!(err.contains("not supported yet"), "{err}");
        let err = parse(ArtifactKind::Data, "name: d\npath: p\nstage: Production\n").unwrap_err();
        assert!(err.contains("model field"), "{err}");
        let err = parse(ArtifactKind::Model, "name: m\npath: https://x/m.pkl\n").unwrap_err();
        assert!(err.contains("from a URL"), "{err}");
        assert!(
            parse(ArtifactKind::Model, "name: m\n")
                .unwrap_err()
                .contains("no `path`")
        );
        assert!(
            parse(ArtifactKind::Data, "path: p\n")
                .unwrap_err()
                .contains("no `name`")
        );
    }

    #[test]
    fn flags_fill_a_file_or_replace_it() {
        let sets: Vec<String> = ["name=m", "version=2", "path=./model", "type=mlflow_model"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = ArtifactSpec::parse(ArtifactKind::Model, &Source::new("(flags)", ""), &sets)
            .expect("parses");
        assert_eq!(
            (m.name.as_str(), m.version.as_deref(), m.path.as_str()),
            ("m", Some("2"), "./model")
        );
        assert_eq!(m.asset_type, ArtifactType::Model(ModelType::MlflowModel));
    }

    #[test]
    fn job_output_paths_parse() {
        assert_eq!(
            ArtifactSource::parse(
                "azureml://jobs/brave_fox_1/outputs/artifacts/paths/outputs/model/"
            ),
            Ok(ArtifactSource::JobOutput {
                job: "brave_fox_1".into(),
                output: "default".into(),
                path: "outputs/model".into()
            })
        );
        assert_eq!(
            ArtifactSource::parse("azureml://jobs/j/outputs/model_output"),
            Ok(ArtifactSource::JobOutput {
                job: "j".into(),
                output: "model_output".into(),
                path: String::new()
            })
        );
        assert!(ArtifactSource::parse("azureml://jobs/j/outputs/o/paths/../../x").is_err());
        assert!(ArtifactSource::parse("azureml://jobs/j").is_err());
    }

    #[test]
    fn references_parse() {
        let r = AssetRef::parse("azureml:my-env:3").expect("parses");
        assert_eq!(
            (r.name.as_str(), r.version),
            ("my-env", AssetVersion::Exact("3".into()))
        );
        let r = AssetRef::parse("azureml:my-env@latest").expect("parses");
        assert_eq!(r.version, AssetVersion::Latest);
        let r = AssetRef::parse("azureml://registries/azureml/environments/sklearn-1.5/versions/7")
            .expect("parses");
        assert!(r.from_azure);
        assert_eq!(r.name, "sklearn-1.5");
        assert!(
            AssetRef::parse("azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:1")
                .is_ok_and(|r| r.from_azure)
        );
    }

    #[test]
    fn references_without_a_version_or_with_an_unknown_label_are_refused() {
        assert!(
            AssetRef::parse("azureml:my-env")
                .unwrap_err()
                .contains("@latest")
        );
        assert!(
            AssetRef::parse("azureml:my-env@stable")
                .unwrap_err()
                .contains("label")
        );
        assert!(AssetRef::parse("azureml::3").is_err());
    }
}
