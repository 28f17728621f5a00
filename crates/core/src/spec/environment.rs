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
pub use crate::spec::asset::{AssetRef, AssetVersion};
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
    /// Parses an environment file with `--set path=value` overrides (`name=`, `version=` come
    /// from `--name`/`--version`). `build:` (a Docker context) is refused: the local compute
    /// has no image builder.
    pub fn parse(src: &Source<'_>, sets: &[String]) -> Result<EnvironmentSpec, SpecError> {
        let spec = crate::overrides::parse_with_sets(src, sets, |s| {
            s.parse::<RawEnvironment>()?.validate(s)
        })?;
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
            .is_err_and(|e| e.to_string().contains("not supported on the local compute"))
        );
    }
}
