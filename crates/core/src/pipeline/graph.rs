//! A pipeline's steps and their wiring, checked as a whole, and the order they can run in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::binding::{self, Binding};

/// One step's declared inputs and outputs, as its job (or component) has them: each input's
/// binding or literal, each output's type and its binding to a pipeline output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Input name → what it is bound to (`None`: a literal or a path of its own).
    pub inputs: BTreeMap<String, Option<Binding>>,
    /// Input name → its declared type, when it declares one (`uri_folder`, `uri_file`, ...).
    pub input_types: BTreeMap<String, String>,
    /// Output name → its type (`uri_folder` unless declared).
    pub outputs: BTreeMap<String, String>,
    /// Output name → the pipeline output it is, when bound.
    pub output_bindings: BTreeMap<String, String>,
}

/// A pipeline's wiring.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The pipeline's inputs.
    pub inputs: BTreeSet<String>,
    /// The pipeline's declared outputs.
    pub outputs: BTreeSet<String>,
    /// Its steps, by name.
    pub steps: BTreeMap<String, Step>,
}

/// Every problem of a pipeline's wiring, said for a person (all of them, not the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct GraphError(pub Vec<String>);

fn text_of(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("path").and_then(Value::as_str))
}

/// A step's inputs and outputs from its inline job mapping (`inputs:`/`outputs:` with
/// bindings, literals or typed mappings).
pub fn step_of(job: &Value) -> Result<Step, GraphError> {
    let mut step = Step::default();
    let mut errors = Vec::new();
    for (name, v) in job
        .get("inputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            step.input_types.insert(name.clone(), t.to_string());
        }
        match text_of(v).map(binding::parse).transpose() {
            Ok(b) => {
                step.inputs.insert(name.clone(), b.flatten());
            }
            Err(e) => errors.push(format!("input `{name}`: {e}")),
        }
    }
    for (name, v) in job
        .get("outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("uri_folder");
        step.outputs.insert(name.clone(), kind.to_string());
        match text_of(v)
            .map(binding::parse)
            .transpose()
            .map(Option::flatten)
        {
            Ok(Some(Binding::ParentOutput(z))) => {
                step.output_bindings.insert(name.clone(), z);
            }
            Ok(None) => {}
            Ok(Some(_)) => errors.push(format!(
                "output `{name}` may be bound to ${{{{parent.outputs.<name>}}}} only"
            )),
            Err(e) => errors.push(format!("output `{name}`: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(step)
    } else {
        Err(GraphError(errors))
    }
}

impl Graph {
    /// Checks every binding, every type and the absence of cycles; all problems at once.
    pub fn check(&self) -> Result<(), GraphError> {
        let mut errors = Vec::new();
        let mut bound_outputs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, step) in &self.steps {
            for (input, b) in &step.inputs {
                match b {
                    Some(Binding::ParentInput(x)) if !self.inputs.contains(x) => errors.push(format!(
                        "step `{name}`, input `{input}`: the pipeline has no input `{x}`"
                    )),
                    Some(Binding::StepOutput { step: from, output }) => match self.steps.get(from) {
                        None => errors.push(format!("step `{name}`, input `{input}`: there is no step `{from}`")),
                        Some(s) => match s.outputs.get(output) {
                            None => errors.push(format!(
                                "step `{name}`, input `{input}`: step `{from}` has no output `{output}` (it has: {})",
                                s.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                            )),
                            Some(made) => {
                                if let Some(wanted) = step.input_types.get(input).filter(|w| *w != made) {
                                    errors.push(format!(
                                        "step `{name}`, input `{input}` is a {wanted} but step `{from}`'s output `{output}` is a {made}"
                                    ));
                                }
                            }
                        },
                    },
                    Some(Binding::ParentOutput(_)) => errors.push(format!(
                        "step `{name}`, input `{input}`: an input cannot read a pipeline output"
                    )),
                    _ => {}
                }
            }
            for (output, z) in &step.output_bindings {
                bound_outputs.entry(z).or_default().push(name);
                if !self.outputs.contains(z) {
                    errors.push(format!(
                        "step `{name}`, output `{output}`: the pipeline has no output `{z}`"
                    ));
                }
            }
        }
        for (z, steps) in &bound_outputs {
            if steps.len() > 1 {
                errors.push(format!(
                    "pipeline output `{z}` is bound by more than one step: {}",
                    steps.join(", ")
                ));
            }
        }
        if let Some(cycle) = self.cycle() {
            errors.push(format!(
                "the steps depend on each other in a circle: {}",
                cycle.join(" → ")
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GraphError(errors))
        }
    }

    /// The steps `step` waits for.
    pub fn needs(&self, step: &str) -> BTreeSet<&str> {
        self.steps
            .get(step)
            .into_iter()
            .flat_map(|s| s.inputs.values())
            .filter_map(|b| match b {
                Some(Binding::StepOutput { step, .. }) => Some(step.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The steps that can start now: not started, and everything they need is in `done`.
    pub fn ready<'a>(
        &'a self,
        done: &BTreeSet<String>,
        started: &BTreeSet<String>,
    ) -> Vec<&'a str> {
        self.steps
            .keys()
            .filter(|s| !started.contains(*s) && !done.contains(*s))
            .filter(|s| self.needs(s).iter().all(|n| done.contains(*n)))
            .map(String::as_str)
            .collect()
    }

    /// The steps that depend on `step`, directly or not (what its failure fails).
    pub fn dependants(&self, step: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut frontier = vec![step.to_string()];
        while let Some(s) = frontier.pop() {
            for (name, _) in self
                .steps
                .iter()
                .filter(|(n, _)| self.needs(n).contains(s.as_str()))
            {
                if out.insert(name.clone()) {
                    frontier.push(name.clone());
                }
            }
        }
        out
    }

    /// A circle of steps, if there is one (depth-first search).
    fn cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            g: &'a Graph,
            s: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| *p == s) {
                let mut c: Vec<String> = path[i..].iter().map(|p| p.to_string()).collect();
                c.push(s.to_string());
                return Some(c);
            }
            if done.contains(s) {
                return None;
            }
            path.push(s);
            for n in g.needs(s) {
                if g.steps.contains_key(n)
                    && let Some(c) = visit(g, n, path, done)
                {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(s);
            None
        }
        let mut done = BTreeSet::new();
        self.steps
            .keys()
            .find_map(|s| visit(self, s, &mut Vec::new(), &mut done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(steps: Value) -> Result<Graph, GraphError> {
        let steps = steps
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| Ok((k.clone(), step_of(v)?)))
            .collect::<Result<_, GraphError>>()?;
        Ok(Graph {
            inputs: ["raw".to_string()].into(),
            outputs: ["model".to_string()].into(),
            steps,
        })
    }

    fn chain() -> Graph {
        graph(json!({
            "prep": {"inputs": {"data": "${{parent.inputs.raw}}"}, "outputs": {"clean": {"type": "uri_folder"}}},
            "train": {"inputs": {"data": {"type": "uri_folder", "path": "${{parent.jobs.prep.outputs.clean}}"}}, "outputs": {"model": "${{parent.outputs.model}}"}},
            "score": {"inputs": {"model": "${{parent.jobs.train.outputs.model}}", "data": "${{parent.jobs.prep.outputs.clean}}"}},
        }))
        .unwrap()
    }

    #[test]
    fn a_chain_runs_in_order_and_a_failure_reaches_its_dependants() {
        let g = chain();
        g.check().unwrap();
        let none = BTreeSet::new();
        assert_eq!(g.ready(&none, &none), ["prep"]);
        let done: BTreeSet<String> = ["prep".to_string()].into();
        assert_eq!(g.ready(&done, &none), ["train"]);
        assert_eq!(
            g.dependants("prep"),
            ["score".to_string(), "train".to_string()].into()
        );
        assert!(g.dependants("score").is_empty());
    }

    #[test]
    fn every_wiring_problem_is_named_at_once() {
        let g = graph(json!({
            "a": {"inputs": {"x": "${{parent.inputs.nope}}", "y": "${{parent.jobs.ghost.outputs.o}}"}},
            "b": {"inputs": {"f": {"type": "uri_file", "path": "${{parent.jobs.c.outputs.folder}}"}, "z": "${{parent.jobs.c.outputs.missing}}"}},
            "c": {"outputs": {"folder": {"type": "uri_folder"}, "m": "${{parent.outputs.unknown}}"}},
        }))
        .unwrap();
        let e = g.check().unwrap_err().to_string();
        for says in [
            "the pipeline has no input `nope`",
            "there is no step `ghost`",
            "input `f` is a uri_file but step `c`'s output `folder` is a uri_folder",
            "step `c` has no output `missing` (it has: folder, m)",
            "the pipeline has no output `unknown`",
        ] {
            assert!(e.contains(says), "missing {says:?} in:\n{e}");
        }
    }

    #[test]
    fn a_cycle_is_named_step_by_step() {
        let g = graph(json!({
            "a": {"inputs": {"x": "${{parent.jobs.c.outputs.o}}"}, "outputs": {"o": {}}},
            "b": {"inputs": {"x": "${{parent.jobs.a.outputs.o}}"}, "outputs": {"o": {}}},
            "c": {"inputs": {"x": "${{parent.jobs.b.outputs.o}}"}, "outputs": {"o": {}}},
        }))
        .unwrap();
        let e = g.check().unwrap_err().to_string();
        assert!(e.contains("in a circle: a → c → b → a"), "{e}");
        assert!(g.ready(&BTreeSet::new(), &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_malformed_binding_in_a_step_names_the_input() {
        let e = step_of(&json!({"inputs": {"x": "${{jobs.a.outputs.o}}"}})).unwrap_err();
        assert!(e.to_string().starts_with("input `x`:"), "{e}");
    }
}
