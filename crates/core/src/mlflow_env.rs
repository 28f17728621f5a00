//! The Python environment an MLflow model declares beside its `MLmodel`: `conda.yaml` (what
//! Azure ML uses), else `python_env.yaml` with its requirements file, else `requirements.txt`.
//! MLflow itself is added when the model does not list it, since the scorer loads the model
//! with `mlflow.pyfunc`.

use serde::Deserialize;
use serde_json::Value;

use crate::conda::PythonEnv;
use crate::spec::job::scalar_text;
use crate::yaml::{Source, SpecError};

/// The files an MLflow model may carry, in the order they are tried.
pub const ENV_FILES: [&str; 3] = ["conda.yaml", "python_env.yaml", "requirements.txt"];

#[derive(Deserialize)]
struct RawPythonEnv {
    python: Option<Value>,
    #[serde(default, rename = "build_dependencies")]
    _build: Vec<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// The environment of a model folder, read through `read` (a file name in the folder → its
/// text); also says which file it came from.
pub fn model_environment(
    read: impl Fn(&str) -> Option<String>,
) -> Result<(PythonEnv, &'static str), SpecError> {
    let (mut env, from) = if let Some(text) = read("conda.yaml") {
        (
            PythonEnv::from_conda(&Source::new("conda.yaml", &text))?,
            "conda.yaml",
        )
    } else if let Some(text) = read("python_env.yaml") {
        let src = Source::new("python_env.yaml", &text);
        let raw: RawPythonEnv = src.parse()?;
        let mut env = PythonEnv {
            python: raw.python.as_ref().and_then(scalar_text),
            ..PythonEnv::default()
        };
        for dep in raw.dependencies {
            match dep.trim().strip_prefix("-r") {
                Some(file) => {
                    let file = file.trim();
                    let text = read(file).ok_or_else(|| {
                        SpecError::new(format!(
                            "python_env.yaml names {file}, which the model folder does not hold"
                        ))
                    })?;
                    env.requirements.extend(requirement_lines(&text));
                }
                None => env.requirements.push(dep.trim().to_string()),
            }
        }
        (env, "python_env.yaml")
    } else if let Some(text) = read("requirements.txt") {
        let env = PythonEnv {
            requirements: requirement_lines(&text),
            ..PythonEnv::default()
        };
        (env, "requirements.txt")
    } else {
        return Err(SpecError::new(format!(
            "the MLflow model holds none of {}",
            ENV_FILES.join(", ")
        ))
        .hint("save the model with mlflow.<flavor>.save_model (it writes them), or give the deployment an `environment`"));
    };
    if !env
        .requirements
        .iter()
        .any(|r| matches!(package_name(r).as_str(), "mlflow" | "mlflow-skinny"))
    {
        env.requirements.push("mlflow".into());
    }
    Ok((env, from))
}

/// The requirement lines of a requirements file: no blanks, comments or options.
fn requirement_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .map(str::to_string)
        .collect()
}

/// The normalised package name of a requirement (`MLflow[extras]==2.1` → `mlflow`).
fn package_name(requirement: &str) -> String {
    let end = requirement
        .find(|c: char| "=<>!~[;@ ".contains(c))
        .unwrap_or(requirement.len());
    requirement[..end].to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            list.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
        }
    }

    const CONDA: &str = "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - mlflow==3.17.2\n  - cloudpickle==3.1.3\n  - scikit-learn==1.9.1\nname: mlflow-env\n";

    #[test]
    fn conda_yaml_is_preferred_as_on_azure() {
        let (env, from) = model_environment(files(&[
            ("conda.yaml", CONDA),
            ("requirements.txt", "other==1\n"),
        ]))
        .expect("reads");
        assert_eq!(from, "conda.yaml");
        assert_eq!(env.python.as_deref(), Some("3.11.7"));
        assert!(env.requirements.contains(&"mlflow==3.17.2".to_string()));
        assert_eq!(
            env.requirements
                .iter()
                .filter(|r| r.starts_with("mlflow"))
                .count(),
            1
        );
    }

    #[test]
    fn python_env_yaml_reads_its_requirements_file() {
        let (env, from) = model_environment(files(&[
            (
                "python_env.yaml",
                "python: 3.10.12\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
            ),
            ("requirements.txt", "# pinned\nmlflow-skinny==3.1\n\npandas==2.2.3  # data\n"),
        ]))
        .expect("reads");
        assert_eq!(from, "python_env.yaml");
        assert_eq!(env.python.as_deref(), Some("3.10.12"));
        assert_eq!(
            env.requirements,
            vec!["mlflow-skinny==3.1", "pandas==2.2.3"]
        );
    }

    #[test]
    fn mlflow_is_added_when_the_model_does_not_list_it() {
        let (env, from) =
            model_environment(files(&[("requirements.txt", "scikit-learn\n")])).expect("reads");
        assert_eq!(from, "requirements.txt");
        assert_eq!(env.requirements, vec!["scikit-learn", "mlflow"]);
    }

    #[test]
    fn a_model_without_environment_files_is_refused() {
        let err = model_environment(files(&[])).unwrap_err().to_string();
        assert!(
            err.contains("conda.yaml, python_env.yaml, requirements.txt"),
            "{err}"
        );
    }
}
