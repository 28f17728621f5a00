//! Running `uv`: finding an installed interpreter (pyenv's too), making a virtual environment
//! and installing requirements into it, with the installer's output copied into a build log.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{BuildLog, EnvError};

/// The `uv` executable.
#[derive(Clone, Debug)]
pub struct Uv {
    program: PathBuf,
}

/// What a finished `uv` run printed and how it ended.
struct Finished {
    ok: bool,
    stdout: String,
    lines: Vec<String>,
}

impl Uv {
    /// `$BERTH_UV`, else `uv` on the PATH.
    pub fn find() -> Option<Uv> {
        if let Some(p) = std::env::var_os("BERTH_UV").filter(|p| !p.is_empty()) {
            return Some(Uv { program: p.into() });
        }
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("uv"))
            .find(|p| p.is_file())
            .map(|program| Uv { program })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        // Berth uses the interpreters this machine has; it never downloads one.
        c.env("UV_PYTHON_DOWNLOADS", "never")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// The interpreter for `version` (`3.10`, `3.10.4`), or the default one. A version that is
    /// not installed falls back to the default, and the log says so.
    pub async fn interpreter(
        &self,
        version: Option<&str>,
        log: &mut BuildLog,
    ) -> Result<PathBuf, EnvError> {
        if let Some(v) = version {
            let minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
            for want in [v, minor.as_str()] {
                if let Some(p) = self.python_find(Some(want)).await? {
                    return Ok(p);
                }
            }
            let default = self.default_python().await?;
            log.line(&format!(
                "[berth] Python {v} is not installed on this machine; using {} instead (install {v} with pyenv or `uv python install {v}` to get it)",
                default.display()
            ))
            .await;
            return Ok(default);
        }
        self.default_python().await
    }

    async fn default_python(&self) -> Result<PathBuf, EnvError> {
        self.python_find(None).await?.ok_or_else(|| {
            EnvError::NoPython("`uv python find` found none; install Python 3".into())
        })
    }

    /// `uv python find [version]`: first as the server's environment has it, then with pyenv's
    /// installed versions on the PATH instead of its shims (which only answer for the versions
    /// a `.python-version` selects).
    async fn python_find(&self, version: Option<&str>) -> Result<Option<PathBuf>, EnvError> {
        for path in [None, Some(search_path())] {
            let mut c = self.command();
            c.args(["python", "find"]);
            c.args(version);
            if let Some(p) = &path {
                c.env("PATH", p);
            }
            let done = run(c, None).await?;
            let found = done.stdout.trim();
            if done.ok && !found.is_empty() {
                return Ok(Some(PathBuf::from(found)));
            }
        }
        Ok(None)
    }

    /// Makes a relocatable virtual environment at `dest` with `python`.
    pub async fn venv(
        &self,
        python: &Path,
        dest: &Path,
        log: &mut BuildLog,
    ) -> Result<(), EnvError> {
        let mut c = self.command();
        c.args(["venv", "--relocatable", "--python"])
            .arg(python)
            .arg(dest);
        expect_ok(run(c, Some(log)).await?)
    }

    /// Installs a requirements file into the environment whose interpreter is `python`.
    pub async fn install(
        &self,
        python: &Path,
        requirements: &Path,
        log: &mut BuildLog,
    ) -> Result<(), EnvError> {
        let mut c = self.command();
        c.args(["pip", "install", "--python"])
            .arg(python)
            .arg("-r")
            .arg(requirements);
        expect_ok(run(c, Some(log)).await?)
    }
}

fn expect_ok(done: Finished) -> Result<(), EnvError> {
    if done.ok {
        Ok(())
    } else {
        Err(EnvError::Install(error_line(&done.lines)))
    }
}

/// The installer's own reason, from its output: the `error:` line with its causes on one line.
fn error_line(lines: &[String]) -> String {
    let Some(start) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("error:"))
    else {
        return lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(
                || "uv failed without saying why".into(),
                |l| l.trim().to_string(),
            );
    };
    let mut out = lines[start].trim().to_string();
    for l in &lines[start + 1..] {
        let t = l.trim();
        if let Some(cause) = t
            .strip_prefix("cause:")
            .or_else(|| t.strip_prefix("Caused by:"))
        {
            out.push_str(": ");
            out.push_str(cause.trim());
        }
    }
    out
}

/// The PATH with pyenv's shims replaced by the `bin` folder of each installed pyenv version.
fn search_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.ends_with("shims"))
        .collect();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv
        && let Ok(entries) = std::fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions);
    }
    std::env::join_paths(dirs).unwrap_or(path)
}

/// Runs `c` to the end, copying each line it prints to `log` when given.
async fn run(mut c: Command, mut log: Option<&mut BuildLog>) -> Result<Finished, EnvError> {
    let mut child = c.spawn().map_err(|source| EnvError::Io {
        path: PathBuf::from("uv"),
        source,
    })?;
    let (Some(stdout_pipe), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(EnvError::Io {
            path: PathBuf::from("uv"),
            source: std::io::Error::other("its output could not be read"),
        });
    };
    let mut out = BufReader::new(stdout_pipe).lines();
    let mut err = BufReader::new(stderr_pipe).lines();
    let (mut stdout, mut lines) = (String::new(), Vec::new());
    let (mut out_done, mut err_done) = (false, false);
    while !(out_done && err_done) {
        let line = tokio::select! {
            l = out.next_line(), if !out_done => match l {
                Ok(Some(l)) => { stdout.push_str(&l); stdout.push('\n'); l }
                _ => { out_done = true; continue }
            },
            l = err.next_line(), if !err_done => match l {
                Ok(Some(l)) => l,
                _ => { err_done = true; continue }
            },
        };
        if let Some(log) = log.as_deref_mut() {
            log.line(&line).await;
        }
        lines.push(line);
    }
    let ok = child.wait().await.is_ok_and(|s| s.success());
    Ok(Finished { ok, stdout, lines })
}

#[cfg(test)]
mod tests {
    use super::error_line;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn the_error_line_carries_its_cause() {
        let out = lines(
            "Using Python 3.10.13 environment at: b\nerror: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg was not found in the package registry and you require nonexistent-pkg==1.0, we can conclude that your requirements are unsatisfiable.\n",
        );
        assert_eq!(
            error_line(&out),
            "error: No solution found when resolving dependencies: Because nonexistent-pkg was not found in the package registry and you require nonexistent-pkg==1.0, we can conclude that your requirements are unsatisfiable."
        );
    }

    #[test]
    fn without_an_error_line_the_last_line_is_the_reason() {
        assert_eq!(
            error_line(&lines("a\nsomething broke\n\n")),
            "something broke"
        );
        assert_eq!(error_line(&[]), "uv failed without saying why");
    }
}
