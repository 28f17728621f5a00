//! `${{inputs.x}}` and `${{outputs.y}}` in a job's command: finding and replacing them.

use std::collections::BTreeMap;

/// One `${{...}}` reference in a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `${{inputs.<name>}}`
    Input(String),
    /// `${{outputs.<name>}}`
    Output(String),
    /// Anything else (`${{search_space.lr}}`, a typo): never valid in a command job.
    Other(String),
}

impl Reference {
    /// The text as written inside the braces.
    pub fn text(&self) -> String {
        match self {
            Reference::Input(n) => format!("inputs.{n}"),
            Reference::Output(n) => format!("outputs.{n}"),
            Reference::Other(t) => t.clone(),
        }
    }
}

/// Why a command cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${{` with no closing `}}`.
    #[error("`${{{{` at byte {0} of the command is never closed with `}}}}`")]
    Unclosed(usize),
    /// A reference to nothing the job defines.
    #[error("the command refers to `${{{{{0}}}}}`, which the job does not define")]
    Unknown(String),
}

/// Splits a command into literal text and references.
fn scan(command: &str) -> Result<Vec<(usize, usize, Reference)>, InterpolateError> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = command[from..].find("${{") {
        let start = from + rel;
        let body_start = start + 3;
        let end = command[body_start..]
            .find("}}")
            .ok_or(InterpolateError::Unclosed(start))?
            + body_start;
        let body = command[body_start..end].trim();
        let reference = match body.split_once('.') {
            Some(("inputs", n)) if !n.is_empty() => Reference::Input(n.to_string()),
            Some(("outputs", n)) if !n.is_empty() => Reference::Output(n.to_string()),
            _ => Reference::Other(body.to_string()),
        };
        out.push((start, end + 2, reference));
        from = end + 2;
    }
    Ok(out)
}

/// Every reference in the command, in order.
pub fn references(command: &str) -> Result<Vec<Reference>, InterpolateError> {
    Ok(scan(command)?.into_iter().map(|(_, _, r)| r).collect())
}

/// Replaces every reference with its value; an unknown reference is an error that names it.
pub fn interpolate(
    command: &str,
    inputs: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(command.len());
    let mut last = 0;
    for (start, end, reference) in scan(command)? {
        out.push_str(&command[last..start]);
        let value = match &reference {
            Reference::Input(n) => inputs.get(n),
            Reference::Output(n) => outputs.get(n),
            Reference::Other(_) => None,
        };
        out.push_str(value.ok_or_else(|| InterpolateError::Unknown(reference.text()))?);
        last = end;
    }
    out.push_str(&command[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_inputs_and_outputs() {
        let got = interpolate(
            "python train.py --data ${{inputs.d}} --out ${{ outputs.model }} --n ${{inputs.n}}",
            &map(&[("d", "/data"), ("n", "5")]),
            &map(&[("model", "/out/model")]),
        );
        assert_eq!(
            got.as_deref(),
            Ok("python train.py --data /data --out /out/model --n 5")
        );
    }

    #[test]
    fn names_unknown_references() {
        let err = interpolate("x ${{inputs.nope}}", &map(&[]), &map(&[]));
        assert_eq!(err, Err(InterpolateError::Unknown("inputs.nope".into())));
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("the command refers to `${{inputs.nope}}`, which the job does not define")
        );
        let err = interpolate("x ${{search_space.lr}}", &map(&[]), &map(&[]));
        assert_eq!(
            err,
            Err(InterpolateError::Unknown("search_space.lr".into()))
        );
    }

    #[test]
    fn reports_unclosed() {
        assert_eq!(
            interpolate("a ${{inputs.x", &map(&[]), &map(&[])),
            Err(InterpolateError::Unclosed(2))
        );
    }

    #[test]
    fn leaves_plain_text_alone() {
        assert_eq!(
            interpolate("echo ${HOME} {{x}}", &map(&[]), &map(&[])).as_deref(),
            Ok("echo ${HOME} {{x}}")
        );
    }
}
