//! The models and environments page: every version, and the deployments and recent jobs
//! that use it.

use axum::extract::State;
use axum::response::Response;
use berth_core::job::JobRecord;
use berth_core::serving::{DeploymentRecord, ModelRecord};
use berth_core::spec::environment::EnvironmentRecord;
use berth_store::Kind;
use berth_store::page::PageQuery;
use maud::{Markup, html};

use super::layout::shell;
use super::session::Session;
use crate::AppState;

/// Whether a reference (`azureml:name:version`, `azureml:name@latest`, `name:version`) names
/// version `version` of `name`, the latest being `latest`.
pub fn names(reference: &str, name: &str, version: &str, latest: bool) -> bool {
    let r = reference.trim_start_matches("azureml:");
    r == format!("{name}:{version}") || (latest && (r == format!("{name}@latest") || r == name))
}

fn reference(v: Option<serde_json::Value>) -> Option<String> {
    v.and_then(|v| v.as_str().map(str::to_string))
}

/// Who refers to what: each deployment's model and environment, each recent job's
/// environment.
struct Users {
    deployments: Vec<(String, Option<String>, Option<String>)>,
    jobs: Vec<(String, Option<String>)>,
}

impl Users {
    async fn read(s: &AppState) -> Users {
        let deployments = s
            .store
            .list::<DeploymentRecord>(Kind::Deployment)
            .await
            .unwrap_or_default();
        let recent = PageQuery {
            limit: 500,
            ..Default::default()
        };
        let jobs = s
            .store
            .page::<JobRecord>(Kind::Job, &recent)
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        Users {
            deployments: deployments
                .iter()
                .map(|d| {
                    let spec = &d.value.spec;
                    let model = reference(serde_json::to_value(&spec.model).ok());
                    let env = reference(serde_json::to_value(&spec.environment).ok());
                    (format!("{}/{}", spec.endpoint_name, spec.name), model, env)
                })
                .collect(),
            jobs: jobs
                .iter()
                .map(|j| {
                    (
                        j.value.name.clone(),
                        reference(serde_json::to_value(&j.value.spec.environment).ok()),
                    )
                })
                .collect(),
        }
    }

    fn of_model(&self, name: &str, version: &str, latest: bool) -> String {
        let hit = |r: &Option<String>| {
            r.as_deref()
                .is_some_and(|r| names(r, name, version, latest))
        };
        let users: Vec<&str> = self
            .deployments
            .iter()
            .filter(|(_, m, _)| hit(m))
            .map(|(d, _, _)| d.as_str())
            .collect();
        users.join(", ")
    }

    fn of_environment(&self, name: &str, version: &str, latest: bool) -> String {
        let hit = |r: &Option<String>| {
            r.as_deref()
                .is_some_and(|r| names(r, name, version, latest))
        };
        let deployments = self
            .deployments
            .iter()
            .filter(|(_, _, e)| hit(e))
            .map(|(d, _, _)| d.clone());
        let jobs = self
            .jobs
            .iter()
            .filter(|(_, e)| hit(e))
            .map(|(j, _)| format!("job {j}"));
        deployments.chain(jobs).collect::<Vec<_>>().join(", ")
    }
}

/// Whether `version` is the last registered version of `name` among `all`.
fn is_latest(all: &[(&str, &str)], name: &str, version: &str) -> bool {
    all.iter()
        .rev()
        .find(|(n, _)| *n == name)
        .is_some_and(|(_, v)| *v == version)
}

fn models_table(models: &[ModelRecord], users: &Users) -> Markup {
    let all: Vec<(&str, &str)> = models
        .iter()
        .map(|m| (m.name.as_str(), m.version.as_str()))
        .collect();
    html! {
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Type" } th scope="col" { "Used by deployments" } } }
            tbody { @for m in models { tr {
                td { (m.name) } td { (m.version) } td { (format!("{:?}", m.model_type)) }
                td { (users.of_model(&m.name, &m.version, is_latest(&all, &m.name, &m.version))) }
            } } }
        }
    }
}

fn environments_table(envs: &[EnvironmentRecord], users: &Users) -> Markup {
    let all: Vec<(&str, &str)> = envs
        .iter()
        .map(|e| (e.name.as_str(), e.version.as_str()))
        .collect();
    html! {
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Image" } th scope="col" { "Used by" } } }
            tbody { @for e in envs { tr {
                td { (e.name) } td { (e.version) } td { (e.image.clone().unwrap_or_default()) }
                td { (users.of_environment(&e.name, &e.version, is_latest(&all, &e.name, &e.version))) }
            } } }
        }
    }
}

/// `GET /studio/assets-list`.
pub async fn list(State(s): State<AppState>, session: Session) -> Response {
    let models = crate::services::models::list(&s, None)
        .await
        .unwrap_or_default();
    let envs = crate::services::environments::list(&s, None)
        .await
        .unwrap_or_default();
    let users = Users::read(&s).await;
    let body = html! {
        section aria-labelledby="models-h" { h2 id="models-h" { "Models" } (models_table(&models, &users)) }
        section aria-labelledby="envs-h" { h2 id="envs-h" { "Environments" } (environments_table(&envs, &users)) }
    };
    super::page(shell(
        "Models and environments",
        "/studio/assets-list",
        &session.csrf(&s),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn references_name_a_version_or_the_latest() {
        assert!(names("azureml:iris:2", "iris", "2", false));
        assert!(names("azureml:iris@latest", "iris", "3", true));
        assert!(!names("azureml:iris@latest", "iris", "2", false));
        assert!(!names("azureml:iris-big:2", "iris", "2", true));
    }
}
