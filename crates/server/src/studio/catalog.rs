//! The models and environments page: every version, and the deployments and recent jobs
//! that use it.

use axum::extract::State;
use axum::response::Response;
use berth_core::job::JobRecord;
use berth_core::serving::DeploymentRecord;
use berth_store::Kind;
use berth_store::page::PageQuery;
use maud::html;

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

/// `GET /studio/assets-list`.
pub async fn list(State(s): State<AppState>, session: Session) -> Response {
    let models = crate::services::models::list(&s, None)
        .await
        .unwrap_or_default();
    let envs = crate::services::environments::list(&s, None)
        .await
        .unwrap_or_default();
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
    let dep_refs: Vec<(String, Option<String>, Option<String>)> = deployments
        .iter()
        .map(|d| {
            let spec = &d.value.spec;
            let model = reference(serde_json::to_value(&spec.model).ok());
            let env = reference(serde_json::to_value(&spec.environment).ok());
            (format!("{}/{}", spec.endpoint_name, spec.name), model, env)
        })
        .collect();
    let job_envs: Vec<(String, Option<String>)> = jobs
        .iter()
        .map(|j| {
            (
                j.value.name.clone(),
                reference(serde_json::to_value(&j.value.spec.environment).ok()),
            )
        })
        .collect();
    let latest_of = |name: &str, all: &[(String, String)]| {
        all.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let model_versions: Vec<(String, String)> = models
        .iter()
        .map(|m| (m.name.clone(), m.version.clone()))
        .collect();
    let env_versions: Vec<(String, String)> = envs
        .iter()
        .map(|e| (e.name.clone(), e.version.clone()))
        .collect();
    let body = html! {
        section aria-labelledby="models-h" {
            h2 id="models-h" { "Models" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Type" } th scope="col" { "Used by deployments" } } }
                tbody { @for m in &models {
                    @let latest = latest_of(&m.name, &model_versions).as_deref() == Some(m.version.as_str());
                    tr {
                        td { (m.name) } td { (m.version) } td { (format!("{:?}", m.model_type)) }
                        td { (dep_refs.iter().filter(|(_, r, _)| r.as_deref().is_some_and(|r| names(r, &m.name, &m.version, latest))).map(|(d, _, _)| d.as_str()).collect::<Vec<_>>().join(", ")) }
                    }
                } }
            }
        }
        section aria-labelledby="envs-h" {
            h2 id="envs-h" { "Environments" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Image" } th scope="col" { "Used by" } } }
                tbody { @for e in &envs {
                    @let latest = latest_of(&e.name, &env_versions).as_deref() == Some(e.version.as_str());
                    @let hit = |r: &Option<String>| r.as_deref().is_some_and(|r| names(r, &e.name, &e.version, latest));
                    tr {
                        td { (e.name) } td { (e.version) } td { (e.image.clone().unwrap_or_default()) }
                        td {
                            (dep_refs.iter().filter(|(_, _, r)| hit(r)).map(|(d, _, _)| d.clone())
                                .chain(job_envs.iter().filter(|(_, r)| hit(r)).map(|(j, _)| format!("job {j}")))
                                .collect::<Vec<_>>().join(", "))
                        }
                    }
                } }
            }
        }
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
