//! `$[[...]]` in a component's command: a segment kept only when every input it refers to is
//! given (`$[[--lr ${{inputs.lr}}]]` disappears when `lr` is optional and left unbound).

use std::collections::BTreeSet;

use crate::interpolate::{Reference, references};

/// Why a command's optional segments cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionalError {
    /// `$[[` with no `]]`.
    #[error("`$[[` at byte {0} of the command is never closed with `]]`")]
    Unclosed(usize),
    /// `$[[` inside `$[[`.
    #[error("`$[[` at byte {0} of the command is inside another `$[[...]]`; they do not nest")]
    Nested(usize),
}

/// The command split into text outside segments and the segments' insides, in order.
fn split(command: &str) -> Result<Vec<(bool, &str)>, OptionalError> {
    let mut parts = Vec::new();
    let mut rest = command;
    let mut offset = 0;
    while let Some(start) = rest.find("$[[") {
        parts.push((false, &rest[..start]));
        let inner_from = start + 3;
        let end = rest[inner_from..]
            .find("]]")
            .ok_or(OptionalError::Unclosed(offset + start))?
            + inner_from;
        let inner = &rest[inner_from..end];
        if let Some(n) = inner.find("$[[") {
            return Err(OptionalError::Nested(offset + inner_from + n));
        }
        parts.push((true, inner));
        offset += end + 2;
        rest = &rest[end + 2..];
    }
    parts.push((false, rest));
    Ok(parts)
}

fn inputs_in(text: &str) -> BTreeSet<String> {
    references(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match r {
            Reference::Input(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The inputs the command uses outside any `$[[...]]`.
pub fn outside_segments(command: &str) -> Result<BTreeSet<String>, OptionalError> {
    Ok(split(command)?
        .into_iter()
        .filter(|(inside, _)| !inside)
        .flat_map(|(_, t)| inputs_in(t))
        .collect())
}

/// The command with each segment kept (without its brackets) when every input it uses is in
/// `given`, and removed otherwise.
pub fn resolve(command: &str, given: &BTreeSet<String>) -> Result<String, OptionalError> {
    let mut out = String::with_capacity(command.len());
    for (inside, text) in split(command)? {
        if !inside || inputs_in(text).iter().all(|n| given.contains(n)) {
            out.push_str(text);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const CMD: &str = "python train.py --data ${{inputs.data}} $[[--lr ${{inputs.lr}}]] $[[--seed ${{inputs.seed}} --deterministic]]";

    #[test]
    fn a_segment_stays_when_its_inputs_are_given_and_goes_when_not() {
        assert_eq!(
            resolve(CMD, &given(&["data", "lr"])).unwrap(),
            "python train.py --data ${{inputs.data}} --lr ${{inputs.lr}} "
        );
        assert_eq!(
            resolve(CMD, &given(&["data", "seed"])).unwrap(),
            "python train.py --data ${{inputs.data}}  --seed ${{inputs.seed}} --deterministic"
        );
    }

    #[test]
    fn only_inputs_outside_segments_count_as_always_used() {
        assert_eq!(outside_segments(CMD).unwrap(), given(&["data"]));
    }

    #[test]
    fn unclosed_and_nested_segments_are_refused() {
        assert_eq!(
            resolve("a $[[b", &given(&[])),
            Err(OptionalError::Unclosed(2))
        );
        assert!(matches!(
            resolve("$[[a $[[b]] ]]", &given(&[])),
            Err(OptionalError::Nested(_))
        ));
    }
}
