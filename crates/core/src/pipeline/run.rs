//! What a pipeline does next, as a pure function of its steps' states: which steps start,
//! which are skipped because a step they need failed, which running steps are canceled, and
//! when the pipeline ends and how (Azure ML's rules: a failed step fails the pipeline; with
//! `continue_on_step_failure` the steps that do not need it still run first).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::graph::Graph;

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    /// Its inputs do not exist yet.
    Waiting,
    /// Its child job is queued or running.
    Running,
    /// Its child job completed.
    Completed,
    /// An earlier run's outputs stand in for it.
    Reused,
    /// Its child job failed or was canceled.
    Failed,
    /// It will not run: a step it needs failed, or the pipeline stopped.
    Skipped,
}

impl StepState {
    /// Whether its outputs exist.
    pub fn done(self) -> bool {
        matches!(self, StepState::Completed | StepState::Reused)
    }
}

/// How a pipeline ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step completed or was reused.
    Completed,
    /// A step failed: the steps that failed.
    Failed(Vec<String>),
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Steps whose inputs all exist: start (or reuse) them.
    pub start: Vec<String>,
    /// Steps that will never run.
    pub skip: Vec<String>,
    /// Running steps to cancel.
    pub cancel: Vec<String>,
    /// The pipeline's end, once nothing runs and nothing more can start.
    pub end: Option<Outcome>,
}

/// The next moves of a pipeline whose steps are in `states`.
pub fn decide(
    graph: &Graph,
    states: &BTreeMap<String, StepState>,
    continue_on_step_failure: bool,
) -> Decision {
    let state = |s: &str| states.get(s).copied().unwrap_or(StepState::Waiting);
    let failed: Vec<String> = graph
        .steps
        .keys()
        .filter(|s| state(s) == StepState::Failed)
        .cloned()
        .collect();
    let mut d = Decision::default();
    let waiting = |s: &&String| state(s) == StepState::Waiting;
    if !failed.is_empty() && !continue_on_step_failure {
        d.cancel = graph
            .steps
            .keys()
            .filter(|s| state(s) == StepState::Running)
            .cloned()
            .collect();
        d.skip = graph.steps.keys().filter(waiting).cloned().collect();
        d.end = Some(Outcome::Failed(failed));
        return d;
    }
    let blocked: BTreeSet<String> = graph
        .steps
        .keys()
        .filter(|s| matches!(state(s), StepState::Failed | StepState::Skipped))
        .flat_map(|s| graph.dependants(s))
        .collect();
    for s in graph.steps.keys().filter(waiting) {
        if blocked.contains(s) {
            d.skip.push(s.clone());
        } else if graph.needs(s).iter().all(|n| state(n).done()) {
            d.start.push(s.clone());
        }
    }
    let running = graph.steps.keys().any(|s| state(s) == StepState::Running);
    let still_waiting = graph
        .steps
        .keys()
        .filter(waiting)
        .any(|s| !d.skip.contains(s));
    if !running && !still_waiting {
        d.end = Some(if failed.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Failed(failed)
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::graph::step_of;
    use serde_json::json;

    /// a → b → c, and d on its own.
    fn graph() -> Graph {
        let steps = [
            ("a", json!({"outputs": {"o": {}}})),
            (
                "b",
                json!({"inputs": {"x": "${{parent.jobs.a.outputs.o}}"}, "outputs": {"o": {}}}),
            ),
            (
                "c",
                json!({"inputs": {"x": "${{parent.jobs.b.outputs.o}}"}}),
            ),
            ("d", json!({})),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), step_of(&v).unwrap()))
        .collect();
        Graph {
            steps,
            ..Default::default()
        }
    }

    fn states(pairs: &[(&str, StepState)]) -> BTreeMap<String, StepState> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn steps_start_as_soon_as_what_they_need_is_done() {
        let g = graph();
        let d = decide(&g, &states(&[]), true);
        assert_eq!(d.start, ["a", "d"]);
        assert_eq!(d.end, None);
        let d = decide(
            &g,
            &states(&[("a", StepState::Reused), ("d", StepState::Running)]),
            true,
        );
        assert_eq!(d.start, ["b"]);
    }

    #[test]
    fn a_failure_skips_its_dependants_and_lets_the_rest_finish_when_continuing() {
        let g = graph();
        let d = decide(
            &g,
            &states(&[
                ("b", StepState::Failed),
                ("a", StepState::Completed),
                ("d", StepState::Running),
            ]),
            true,
        );
        assert_eq!(d.skip, ["c"]);
        assert!(d.cancel.is_empty());
        assert_eq!(d.end, None, "d still runs");
        let d = decide(
            &g,
            &states(&[
                ("a", StepState::Completed),
                ("b", StepState::Failed),
                ("c", StepState::Skipped),
                ("d", StepState::Completed),
            ]),
            true,
        );
        assert_eq!(d.end, Some(Outcome::Failed(vec!["b".into()])));
    }

    #[test]
    fn a_failure_without_continuing_cancels_what_runs_and_ends_the_pipeline() {
        let d = decide(
            &graph(),
            &states(&[("a", StepState::Failed), ("d", StepState::Running)]),
            false,
        );
        assert_eq!(d.cancel, ["d"]);
        assert_eq!(d.skip, ["b", "c"]);
        assert_eq!(d.end, Some(Outcome::Failed(vec!["a".into()])));
    }

    #[test]
    fn the_pipeline_completes_when_every_step_is_done() {
        let all = states(&[
            ("a", StepState::Completed),
            ("b", StepState::Reused),
            ("c", StepState::Completed),
            ("d", StepState::Completed),
        ]);
        let d = decide(&graph(), &all, false);
        assert_eq!(d.end, Some(Outcome::Completed));
        assert!(d.start.is_empty());
    }
}
