//! Conda environment files translated into what `uv` installs: the Python version, and a
//! requirements list of the conda packages that have a PyPI equivalent plus the `pip:` entries
//! as written. `name` and `channels` mean nothing without conda and are ignored.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::yaml::{Source, SpecError};

/// A Python environment as Berth builds it: an interpreter version and what to install.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonEnv {
    /// The `python=` pin as written (`3.10`, `3.10.4`); `None` takes the machine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// PEP 508 requirement lines, in the file's order.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// Conda packages left out because PyPI has no equivalent (`cudatoolkit`, `mkl`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct RawConda {
    #[serde(rename = "name")]
    _name: Option<IgnoredAny>,
    #[serde(rename = "channels")]
    _channels: Option<IgnoredAny>,
    #[serde(rename = "prefix")]
    _prefix: Option<IgnoredAny>,
    #[serde(rename = "variables")]
    _variables: Option<IgnoredAny>,
    dependencies: Option<Vec<Spanned<Value>>>,
}

/// Conda packages with no PyPI equivalent: system libraries, CUDA and BLAS runtimes, compilers.
/// Wheels on PyPI bring their own copies of these.
const CONDA_ONLY: &[&str] = &[
    "_libgcc_mutex",
    "_openmp_mutex",
    "blas",
    "boost",
    "ca-certificates",
    "cpuonly",
    "cuda-toolkit",
    "cudatoolkit",
    "cudnn",
    "curl",
    "ffmpeg",
    "gcc",
    "git",
    "gxx",
    "icu",
    "intel-openmp",
    "ld_impl_linux-64",
    "libblas",
    "libcurl",
    "libffi",
    "libgcc",
    "libgcc-ng",
    "libgomp",
    "libopencv",
    "libstdcxx-ng",
    "make",
    "mkl",
    "mkl-service",
    "mkl_fft",
    "mkl_random",
    "nccl",
    "ncurses",
    "nodejs",
    "nomkl",
    "openblas",
    "openssl",
    "pkg-config",
    "python_abi",
    "pytorch-cuda",
    "pytorch-mutex",
    "r-base",
    "readline",
    "sqlite",
    "tk",
    "xz",
    "zlib",
];

/// Conda names whose PyPI package is called something else.
const RENAMED: &[(&str, &str)] = &[
    ("matplotlib-base", "matplotlib"),
    ("msgpack-python", "msgpack"),
    ("opencv", "opencv-python"),
    ("py-opencv", "opencv-python"),
    ("py-xgboost", "xgboost"),
    ("py-xgboost-cpu", "xgboost"),
    ("py-xgboost-gpu", "xgboost"),
    ("pytables", "tables"),
    ("python-graphviz", "graphviz"),
    ("pytorch", "torch"),
    ("pytorch-cpu", "torch"),
    ("pytorch-gpu", "torch"),
    ("tensorflow-gpu", "tensorflow"),
];

/// What one conda dependency becomes.
#[derive(Debug, PartialEq, Eq)]
enum Translated {
    /// The interpreter version.
    Python(String),
    /// A PyPI requirement.
    Package(String),
    /// Nothing on PyPI; the conda name.
    Skip(String),
}

impl PythonEnv {
    /// Translates a conda environment file.
    pub fn from_conda(src: &Source<'_>) -> Result<PythonEnv, SpecError> {
        let raw: RawConda = src.parse()?;
        let mut env = PythonEnv::default();
        for dep in raw.dependencies.unwrap_or_default() {
            match &dep.value {
                Value::String(spec) => match translate(spec).map_err(|m| src.error_at(&dep, m))? {
                    Translated::Python(v) => env.python = Some(v),
                    Translated::Package(r) => env.requirements.push(r),
                    Translated::Skip(name) => env.skipped.push(name),
                },
                Value::Object(m) if m.len() == 1 && m.contains_key("pip") => {
                    let list = m["pip"].as_array().ok_or_else(|| {
                        src.error_at(&dep, "`pip:` must be a list of requirements")
                    })?;
                    for item in list {
                        let line = crate::spec::job::scalar_text(item).ok_or_else(|| {
                            src.error_at(&dep, "each `pip:` entry must be a string")
                        })?;
                        env.requirements.push(line.trim().to_string());
                    }
                }
                _ => {
                    return Err(src
                        .error_at(
                            &dep,
                            "a dependency must be a conda package (`numpy=1.26`) or a `pip:` list",
                        )
                        .hint("see https://docs.conda.io/projects/conda/en/latest/user-guide/tasks/manage-environments.html#create-env-file-manually"));
                }
            }
        }
        Ok(env)
    }

    /// A one-line summary for logs: `python 3.10, 3 packages (numpy==1.26.*, ...)`.
    pub fn summary(&self) -> String {
        let python = self.python.as_deref().unwrap_or("default");
        let shown: Vec<&str> = self
            .requirements
            .iter()
            .take(4)
            .map(String::as_str)
            .collect();
        let more = self.requirements.len().saturating_sub(shown.len());
        let mut s = format!("python {python}, {} package(s)", self.requirements.len());
        if !shown.is_empty() {
            s.push_str(&format!(" ({}", shown.join(", ")));
            if more > 0 {
                s.push_str(&format!(", and {more} more"));
            }
            s.push(')');
        }
        s
    }
}

/// Translates one conda match spec (`numpy=1.21`, `conda-forge::pandas>=2`, `scipy 1.11.*`).
fn translate(spec: &str) -> Result<Translated, String> {
    let spec = spec.trim();
    let spec = spec.rsplit_once("::").map_or(spec, |(_, s)| s);
    if spec.contains('[') || spec.contains('|') {
        return Err(format!(
            "`{spec}`: conda match specs with `[...]` or `|` have no pip equivalent"
        ));
    }
    let end = spec
        .find(|c: char| "=<>!~ ".contains(c))
        .unwrap_or(spec.len());
    let name = spec[..end].to_ascii_lowercase();
    if name.is_empty() {
        return Err(format!("`{spec}` does not start with a package name"));
    }
    let version = constraint(spec[end..].trim()).map_err(|m| format!("`{spec}`: {m}"))?;
    if name == "python" {
        return Ok(Translated::Python(
            version
                .trim_start_matches("==")
                .trim_end_matches(".*")
                .to_string(),
        ));
    }
    if CONDA_ONLY.contains(&name.as_str()) {
        return Ok(Translated::Skip(name));
    }
    let pip_name = RENAMED
        .iter()
        .find(|(c, _)| *c == name)
        .map_or(name.as_str(), |(_, p)| p);
    Ok(Translated::Package(format!("{pip_name}{version}")))
}

/// A conda version constraint as PEP 440: `=1.21` (fuzzy) is `==1.21.*`, `=1.21.2` is
/// `==1.21.2`, `==`, `>=`, `<`... stay as they are, a build string is dropped.
fn constraint(rest: &str) -> Result<String, String> {
    if rest.is_empty() {
        return Ok(String::new());
    }
    let (exact, v) = if let Some(v) = rest.strip_prefix("==") {
        (true, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (false, v)
    } else if rest.starts_with(['<', '>', '!', '~']) {
        // `>=1.2,<2` as it is; a build string after a space is dropped.
        return Ok(rest.split(' ').next().unwrap_or(rest).to_string());
    } else {
        // `name 1.21.*` or `name 1.21 build`.
        (false, rest)
    };
    let v = v.split(['=', ' ']).next().unwrap_or_default().trim();
    if v.is_empty() || v == "*" {
        return Ok(String::new());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".*+!_-".contains(c))
    {
        return Err(format!("`{v}` is not a version"));
    }
    if exact || v.contains('*') || v.split('.').count() >= 3 {
        Ok(format!("=={v}"))
    } else {
        Ok(format!("=={v}.*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Translated {
        translate(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pkg(s: &str) -> Translated {
        Translated::Package(s.into())
    }

    #[test]
    fn fuzzy_versions_become_prefix_matches() {
        assert_eq!(t("numpy=1.21"), pkg("numpy==1.21.*"));
        assert_eq!(t("numpy=1.21.2"), pkg("numpy==1.21.2"));
        assert_eq!(t("numpy 1.21.*"), pkg("numpy==1.21.*"));
        assert_eq!(t("numpy=1.21.2=py38h20f2e39_0"), pkg("numpy==1.21.2"));
    }

    #[test]
    fn operators_are_kept() {
        assert_eq!(t("numpy==1.2"), pkg("numpy==1.2"));
        assert_eq!(t("pandas>=2.0"), pkg("pandas>=2.0"));
        assert_eq!(t("pandas>=2.0,<3"), pkg("pandas>=2.0,<3"));
        assert_eq!(t("scipy<1.12"), pkg("scipy<1.12"));
        assert_eq!(t("scipy!=1.11.0"), pkg("scipy!=1.11.0"));
    }

    #[test]
    fn channels_are_dropped_and_names_lowercased() {
        assert_eq!(
            t("conda-forge::Scikit-Learn=1.3"),
            pkg("scikit-learn==1.3.*")
        );
        assert_eq!(t("pip"), pkg("pip"));
        assert_eq!(t("pip=23.*"), pkg("pip==23.*"));
    }

    #[test]
    fn conda_names_map_to_pypi_names() {
        assert_eq!(t("pytorch=2.1"), pkg("torch==2.1.*"));
        assert_eq!(t("py-xgboost"), pkg("xgboost"));
        assert_eq!(t("matplotlib-base>=3"), pkg("matplotlib>=3"));
    }

    #[test]
    fn conda_only_packages_are_skipped() {
        assert_eq!(
            t("cudatoolkit=11.3"),
            Translated::Skip("cudatoolkit".into())
        );
        assert_eq!(t("mkl"), Translated::Skip("mkl".into()));
    }

    #[test]
    fn python_is_the_interpreter() {
        assert_eq!(t("python=3.10"), Translated::Python("3.10".into()));
        assert_eq!(t("python=3.10.4"), Translated::Python("3.10.4".into()));
        assert_eq!(t("python==3.8"), Translated::Python("3.8".into()));
    }

    #[test]
    fn specs_pip_cannot_express_are_refused() {
        assert!(translate("numpy[version='>=1.2']").is_err());
        assert!(translate("numpy 1.2|1.3").is_err());
        assert!(translate("=1.2").is_err());
    }

    #[test]
    fn a_whole_file_translates_in_order() {
        let text = "name: sklearn-env\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.10\n  - numpy=1.26\n  - pip=23.3\n  - cudatoolkit\n  - pip:\n    - scikit-learn==1.5.0\n    - azureml-mlflow\n";
        let env = PythonEnv::from_conda(&Source::new("conda.yml", text)).expect("parses");
        assert_eq!(env.python.as_deref(), Some("3.10"));
        assert_eq!(
            env.requirements,
            [
                "numpy==1.26.*",
                "pip==23.3.*",
                "scikit-learn==1.5.0",
                "azureml-mlflow"
            ]
        );
        assert_eq!(env.skipped, ["cudatoolkit"]);
    }

    #[test]
    fn a_bad_dependency_names_its_line() {
        let text = "dependencies:\n  - python=3.10\n  - {conda: x}\n";
        let err = PythonEnv::from_conda(&Source::new("conda.yml", text))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("conda.yml:3:"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_yaml_is_refused_with_its_position() {
        let err =
            PythonEnv::from_conda(&Source::new("conda.yml", "dependencies: [python=3.10\n")).err();
        assert!(err.is_some_and(|e| e.position.is_some()));
    }
}
