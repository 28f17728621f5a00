//! Environments (`environment.schema.json`): an image and/or a conda file, registered as
//! immutable versions and named by jobs and deployments as `azureml:<name>:<version>` or
//! `azureml:<name>@latest`.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;
use time::OffsetDateTime;

use crate::conda::PythonEnv;
use crate::names::validate_name;
use crate::spec::job::scalar_text;
use crate::yaml::{Source, SpecError};

/// Where a conda file is: a path as written (relative to the YAML file), or inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CondaFile {
    /// A file beside the YAML.
    Path(String),
    /// The conda mapping itself.
    Inline(Value),
}

impl CondaFile {
    /// Reads the conda file's value from a YAML field.
    pub fn from_value(v: &Value) -> Result<CondaFile, String> {
        match v {
            Value::String(p) if !p.trim().is_empty() => Ok(CondaFile::Path(p.clone())),
            Value::Object(_) => Ok(CondaFile::Inline(v.clone())),
            _ => Err("`conda_file` must be a path to a conda YAML file, or its mapping".into()),
        }
    }
}

/// A parsed environment file, before its conda file is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    /// Name.
    pub name: String,
    /// Version; `None` takes the next number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Container image (used on Kubernetes; recorded on the local compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The conda file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_file: Option<CondaFile>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A registered environment version, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The conda file's text, as it was read at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_file: Option<String>,
    /// What Berth builds from the conda file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonEnv>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A job's or deployment's environment, resolved at submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedEnvironment {
    /// How it was named, for logs: `azureml:sklearn-env:2`, `conda_file conda.yml`, an image.
    pub source: String,
    /// Container image, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Python environment to build; `None` runs with the machine's interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonEnv>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Option<Spanned<String>>,
    version: Option<Spanned<Value>>,
    image: Option<Spanned<String>>,
    conda_file: Option<Spanned<Value>>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Spanned<Value>>,
    build: Option<Spanned<IgnoredAny>>,
    os_type: Option<Spanned<String>>,
    // Custom-container routes: accepted; Berth's runtime serves its own routes.
    #[serde(rename = "inference_config")]
    _inference_config: Option<IgnoredAny>,
    #[serde(rename = "type")]
    _kind: Option<IgnoredAny>,
}

impl EnvironmentSpec {
    /// Parses an environment file and applies `--set path=value` overrides (`name=`,
    /// `version=` come from `--name`/`--version`). `build:` (a Docker context) is refused: the
    /// local compute has no image builder.
    pub fn parse(src: &Source<'_>, sets: &[String]) -> Result<EnvironmentSpec, SpecError> {
        let raw: RawEnvironment = src.parse()?;
        let mut spec = raw.validate(src)?;
        for set in sets {
            spec.apply_set(set)?;
        }
        if spec.name.is_empty() {
            return Err(
                SpecError::new(format!("{}: the environment has no `name`", src.name))
                    .hint("add `name: my-env`, or pass --name"),
            );
        }
        if spec.image.is_none() && spec.conda_file.is_none() {
            return Err(SpecError::new(format!(
                "{}: the environment has neither `image` nor `conda_file`",
                src.name
            ))
            .hint(
                "add `conda_file: conda.yml` (built into a virtual environment) and/or `image:`",
            ));
        }
        Ok(spec)
    }

    /// Applies one `--set path=value`.
    pub fn apply_set(&mut self, assignment: &str) -> Result<(), SpecError> {
        let (path, value) = assignment.split_once('=').ok_or_else(|| {
            SpecError::new(format!("--set `{assignment}` has no `=`"))
                .hint("write --set path=value, e.g. --set version=2")
        })?;
        let bad = |m: String| SpecError::new(format!("--set {path}: {m}"));
        let value = value.to_string();
        match path.split('.').collect::<Vec<_>>().as_slice() {
            ["name"] => {
                validate_name("environment", &value).map_err(bad)?;
                self.name = value;
            }
            ["version"] => {
                validate_name("environment version", &value).map_err(bad)?;
                self.version = Some(value);
            }
            ["image"] => self.image = Some(value),
            ["conda_file"] => self.conda_file = Some(CondaFile::Path(value)),
            ["description"] => self.description = Some(value),
            ["tags", k] => {
                self.tags.insert(k.to_string(), value);
            }
            _ => {
                return Err(bad("an environment has no such field".into())
                    .hint("settable: name, version, image, conda_file, description, tags.<key>"));
            }
        }
        Ok(())
    }
}

impl RawEnvironment {
    fn validate(self, src: &Source<'_>) -> Result<EnvironmentSpec, SpecError> {
        let raw = self;
        if raw.build.is_some() {
            return Err(src
                .error_near("build", None, "`build:` environments (a Docker build context) are not supported on the local compute")
                .hint("give an `image` and/or a `conda_file` instead; Berth builds conda files into a virtual environment"));
        }
        if let Some(os) = &raw.os_type
            && !os.value.eq_ignore_ascii_case("linux")
        {
            return Err(src.error_at(
                os,
                format!("`os_type: {}` is not supported; Berth runs Linux", os.value),
            ));
        }
        let name = match raw.name {
            Some(n) => {
                validate_name("environment", &n.value).map_err(|m| src.error_at(&n, m))?;
                n.value
            }
            None => String::new(),
        };
        let version = match raw.version {
            Some(v) => {
                let text = scalar_text(&v.value)
                    .ok_or_else(|| src.error_at(&v, "`version` must be a string or number"))?;
                validate_name("environment version", &text).map_err(|m| src.error_at(&v, m))?;
                Some(text)
            }
            None => None,
        };
        let conda_file = raw
            .conda_file
            .map(|c| CondaFile::from_value(&c.value).map_err(|m| src.error_at(&c, m)))
            .transpose()?;
        let mut tags = BTreeMap::new();
        for (k, v) in raw.tags {
            tags.insert(k, scalar_text(&v.value).unwrap_or_default());
        }
        Ok(EnvironmentSpec {
            name,
            version,
            image: raw.image.map(|i| i.value),
            conda_file,
            description: raw.description,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvironmentSpec, String> {
        EnvironmentSpec::parse(&Source::new("env.yml", text), &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn azure_shaped_environment_parses() {
        let env = parse("$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: sklearn-env\nversion: 2\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\nconda_file: conda.yml\ndescription: d\ntags:\n  team: ml\nos_type: linux\n")
            .expect("parses");
        assert_eq!(env.version.as_deref(), Some("2"));
        assert_eq!(env.conda_file, Some(CondaFile::Path("conda.yml".into())));
        assert_eq!(env.tags["team"], "ml");
    }

    #[test]
    fn build_contexts_are_refused_with_their_line() {
        let err = parse("name: e\nbuild:\n  path: docker-context\n").unwrap_err();
        assert!(err.starts_with("env.yml:2:"), "{err}");
        assert!(err.contains("not supported on the local compute"), "{err}");
    }

    #[test]
    fn an_environment_needs_an_image_or_a_conda_file() {
        assert!(
            parse("name: e\nversion: 1\n")
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn set_overrides_the_file_and_can_supply_the_name() {
        let env = EnvironmentSpec::parse(
            &Source::new("env.yml", "conda_file: conda.yml\n"),
            &["name=e".into(), "version=4".into(), "tags.a=b".into()],
        )
        .expect("parses");
        assert_eq!(
            (env.name.as_str(), env.version.as_deref()),
            ("e", Some("4"))
        );
        assert!(
            EnvironmentSpec::parse(
                &Source::new("env.yml", "name: e\nimage: i\n"),
                &["build.path=x".into()]
            )
            .is_err_and(|e| e.to_string().contains("no such field"))
        );
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
