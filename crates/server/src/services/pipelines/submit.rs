//! Accepting a pipeline file: every step's component resolved, the plan built and checked,
//! each step's job file parsed, the computes found; then the record stored and its driver
//! started.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use berth_core::api::{JobCreateRequest, JobView};
use berth_core::job::{PipelineRun, StepRun};
use berth_core::pipeline::plan::{Plan, Resolved};
use berth_core::pipeline::run::StepState;
use berth_core::pipeline::spec::{PipelineSpec, StepKind};
use berth_core::spec::job::JobSpec;
use berth_core::sweep::spec::SweepSpec;
use berth_core::yaml::{Source, SpecError};
use serde_json::json;

use super::{compute_of, start};
use crate::AppState;
use crate::error::ApiError;
use crate::services::components;
use crate::services::driven;

/// Resolves every step's component and builds the plan; a step that is itself a pipeline is
/// planned too, so its problems are found now.
fn plan_of<'a>(
    state: &'a AppState,
    src: &'a Source<'a>,
    spec: &'a PipelineSpec,
    base_dir: &'a Path,
) -> Pin<Box<dyn Future<Output = Result<Plan, ApiError>> + Send + 'a>> {
    Box::pin(async move {
        let mut resolved: BTreeMap<String, Resolved> = BTreeMap::new();
        for (name, step) in &spec.steps {
            if let Some(r) = &step.component {
                resolved.insert(
                    name.clone(),
                    components::resolve(state, src, name, r, base_dir).await?,
                );
            }
        }
        let plan = Plan::build(spec, &base_dir.to_string_lossy(), &resolved).map_err(|e| {
            ApiError::spec(
                src.error_near(
                    "jobs",
                    None,
                    format!("the pipeline's steps do not fit together:\n{e}"),
                )
                .hint("fix every problem listed; nothing was stored"),
            )
        })?;
        check_steps(state, src, &plan).await?;
        Ok(plan)
    })
}

/// Each step's job file as it will be submitted parses, and its compute exists.
async fn check_steps(state: &AppState, src: &Source<'_>, plan: &Plan) -> Result<(), ApiError> {
    let graph = plan
        .graph()
        .map_err(|e| ApiError::spec(SpecError::new(e.to_string())))?;
    let pending: BTreeMap<(String, String), (String, String)> = graph
        .steps
        .iter()
        .flat_map(|(s, w)| {
            w.outputs.iter().map(move |(o, t)| {
                (
                    (s.clone(), o.clone()),
                    (t.clone(), format!("/pending/{s}/{o}")),
                )
            })
        })
        .collect();
    if let Some(ds) = &plan.settings.default_datastore
        && crate::services::resources::datastore_root(state, ds)
            .await?
            .is_none()
    {
        return Err(ApiError::spec(
            src.error_near("default_datastore", None, format!("datastore `{ds}` does not exist"))
                .hint(format!("create it with `berth datastore create --name {ds} --path <folder>`, or leave `default_datastore` out to keep outputs in each step's folder")),
        ));
    }
    for (name, step) in &plan.steps {
        let near = |m: String| src.error_near(name, None, format!("step `{name}`: {m}"));
        let at = |m: String| ApiError::spec(near(m));
        let job = plan.materialize(name, &pending).map_err(at)?;
        let text = job.to_string();
        let file = format!("{} (step {name})", src.name);
        let step_src = Source::new(&file, &text);
        match step.kind {
            StepKind::Command => {
                let spec = JobSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
                spec.check_references().map_err(at)?;
            }
            StepKind::Sweep => {
                SweepSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
            }
            StepKind::Pipeline => {
                let inner = PipelineSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
                plan_of(state, &step_src, &inner, Path::new(&step.base_dir)).await?;
                continue;
            }
        }
        let compute = compute_of(&job, plan);
        if crate::services::resources::find_compute(state, &compute)
            .await?
            .is_none()
        {
            return Err(ApiError::spec(near(format!("compute `{compute}` does not exist")).hint(format!(
                "attach it with `berth compute attach --type local --name {compute}`, or see `berth compute list`"
            ))));
        }
    }
    Ok(())
}

/// The placeholder command job a pipeline's record holds: what `job show` says of it.
fn parent_spec(spec: &PipelineSpec, name: &str, plan: &Plan) -> JobSpec {
    JobSpec {
        name: Some(name.to_string()),
        display_name: spec.display_name.clone(),
        experiment_name: spec.experiment_name.clone(),
        description: spec.description.clone(),
        tags: spec.tags.clone(),
        command: String::new(),
        code: None,
        environment: None,
        environment_variables: BTreeMap::new(),
        compute: plan.settings.default_compute.clone(),
        instance_type: None,
        timeout_seconds: None,
        priority: Default::default(),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
    }
}

/// Accepts a pipeline file: every step made ready and checked, then stored, and its driver
/// started.
pub async fn create(state: &AppState, req: JobCreateRequest) -> Result<JobView, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let spec = berth_core::overrides::parse_with_sets(&src, &req.set, PipelineSpec::parse)
        .map_err(ApiError::spec)?;
    let base_dir = PathBuf::from(&req.base_dir);
    if !base_dir.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "base_dir `{}` must be an absolute path",
            req.base_dir
        )));
    }
    let plan = plan_of(state, &src, &spec, &base_dir).await?;
    let name = crate::services::jobs::free_name(state, spec.name.clone()).await?;
    let steps = plan
        .steps
        .keys()
        .map(|s| {
            (
                s.clone(),
                StepRun {
                    state: StepState::Waiting,
                    job: None,
                    status: None,
                    reused_from: None,
                    reuse_key: None,
                    message: None,
                    outputs: None,
                },
            )
        })
        .collect();
    let mut record = driven::parent_record(
        state,
        &req,
        &name,
        parent_spec(&spec, &name, &plan),
        compute_of(&json!({}), &plan),
    );
    record.pipeline = Some(PipelineRun {
        file: req.file.clone(),
        plan,
        steps,
    });
    driven::accept(state, record, start).await
}
