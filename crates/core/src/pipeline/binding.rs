//! `${{parent.inputs.x}}`, `${{parent.jobs.<step>.outputs.<y>}}` and `${{parent.outputs.z}}`:
//! what a pipeline step's input or output is bound to.

/// What a value in a step's `inputs` or `outputs` refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// A pipeline input.
    ParentInput(String),
    /// Another step's output.
    StepOutput {
        /// The step.
        step: String,
        /// Its output.
        output: String,
    },
    /// A pipeline output (on a step's output: the step's output becomes the pipeline's).
    ParentOutput(String),
}

/// What is wrong with a binding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a binding Berth knows: {why}; write ${{{{parent.inputs.<name>}}}}, ${{{{parent.jobs.<step>.outputs.<name>}}}} or ${{{{parent.outputs.<name>}}}}"
)]
pub struct BindingError {
    /// The text.
    pub text: String,
    /// Why.
    pub why: String,
}

/// The binding a value holds: `None` for a literal (no `${{`), an error for a binding that is
/// not one of the three forms.
pub fn parse(text: &str) -> Result<Option<Binding>, BindingError> {
    let t = text.trim();
    let Some(inner) = t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) else {
        if t.contains("${{") {
            return Err(BindingError {
                text: text.into(),
                why: "a binding must be the whole value".into(),
            });
        }
        return Ok(None);
    };
    let parts: Vec<&str> = inner.trim().split('.').collect();
    let bad = |why: &str| BindingError {
        text: text.into(),
        why: why.into(),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match parts.as_slice() {
        ["parent", "inputs", x] if name_ok(x) => Ok(Some(Binding::ParentInput(x.to_string()))),
        ["parent", "outputs", z] if name_ok(z) => Ok(Some(Binding::ParentOutput(z.to_string()))),
        ["parent", "jobs", step, "outputs", y] if name_ok(step) && name_ok(y) => {
            Ok(Some(Binding::StepOutput {
                step: step.to_string(),
                output: y.to_string(),
            }))
        }
        ["parent", ..] => Err(bad(
            "after `parent.` comes `inputs.<name>`, `outputs.<name>` or `jobs.<step>.outputs.<name>`",
        )),
        _ => Err(bad("it must start with `parent.`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_literals() {
        assert_eq!(
            parse("${{parent.inputs.data}}"),
            Ok(Some(Binding::ParentInput("data".into())))
        );
        assert_eq!(
            parse(" ${{ parent.jobs.prep.outputs.clean }} "),
            Ok(Some(Binding::StepOutput {
                step: "prep".into(),
                output: "clean".into()
            }))
        );
        assert_eq!(
            parse("${{parent.outputs.model}}"),
            Ok(Some(Binding::ParentOutput("model".into())))
        );
        assert_eq!(parse("0.01"), Ok(None));
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_it_could_be() {
        for text in [
            "${{inputs.x}}",
            "${{parent.jobs.a.inputs.x}}",
            "prefix ${{parent.inputs.x}}",
            "${{parent.inputs.}}",
        ] {
            let e = parse(text).expect_err(text);
            assert!(
                e.to_string().contains("parent.jobs.<step>.outputs.<name>"),
                "{e}"
            );
        }
    }
}
