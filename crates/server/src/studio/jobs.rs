//! The jobs pages: a paged, filterable list (plain HTML, no script needed), and a job's page
//! with its live log, params, metric and system charts, outputs and a cancel button.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::api::JobView;
use berth_core::job::{JobRecord, JobStatus};
use berth_store::Kind;
use berth_store::page::PageQuery;
use futures_util::StreamExt;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{duration, shell, status};
use super::session::Session;
use crate::AppState;
use crate::services::jobs as svc;

/// Jobs a list page shows.
const PAGE: i64 = 50;
const STATUSES: [&str; 8] = [
    "NotStarted",
    "Queued",
    "Preparing",
    "Running",
    "Finalizing",
    "Completed",
    "Failed",
    "Canceled",
];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: i64,
}

fn seconds(job: &JobRecord) -> Option<i64> {
    let start = job.state.started_at()?;
    let end = job
        .state
        .ended_at()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    Some((end - start).whole_seconds())
}

fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&f).unwrap_or_default()
}

/// `GET /studio/jobs`.
pub async fn list(
    State(s): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let statuses: Vec<&str> = STATUSES
        .iter()
        .copied()
        .filter(|st| *st == q.status)
        .collect();
    let page = q.page.max(0);
    let query = PageQuery {
        statuses: &statuses,
        name_like: q.q.trim(),
        offset: page * PAGE,
        limit: PAGE,
    };
    let found = match s.store.page::<JobRecord>(Kind::Job, &query).await {
        Ok(p) => p,
        Err(e) => return super::failed(&e.to_string()),
    };
    let last = (found.total - 1).max(0) / PAGE;
    let link = |p: i64| {
        format!(
            "/studio/jobs?status={}&q={}&page={p}",
            q.status,
            super::enc(&q.q)
        )
    };
    let body = html! {
        form method="get" action="/studio/jobs" class="filters" role="search" {
            label for="status" { "Status" }
            select id="status" name="status" {
                option value="" { "Any" }
                @for st in STATUSES { option value=(st) selected[st == q.status] { (st) } }
            }
            label for="q" { "Name contains" }
            input id="q" name="q" type="search" value=(q.q);
            button type="submit" { "Filter" }
        }
        p class="count" { (found.total) " jobs" @if found.total > PAGE { ", page " (page + 1) " of " (last + 1) } }
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Compute" }
                th scope="col" { "Instance type" } th scope="col" { "Created" } th scope="col" { "Duration" } th scope="col" { "Why" }
            } }
            tbody {
                @for j in &found.items {
                    @let job = &j.value;
                    @let st = job.state.status();
                    tr {
                        td { a href={"/studio/jobs/" (super::enc(&job.name))} { (job.name) } }
                        td { (status(st.as_str())) }
                        td { (job.compute) }
                        td { (job.instance_type.name) }
                        td { (when(job.created_at)) }
                        td { @if let Some(d) = seconds(job) { (duration(d)) } }
                        td { @if st == JobStatus::Queued { (s.jobs.queue_reason(&job.name).unwrap_or_default()) } }
                    }
                }
            }
        }
        nav aria-label="Pages" class="pages" {
            @if page > 0 { a href=(link(page - 1)) rel="prev" { "Newer" } }
            @if page < last { a href=(link(page + 1)) rel="next" { "Older" } }
        }
    };
    super::page(shell("Jobs", "/studio/jobs", &session.csrf(&s), body))
}

fn kv_table(caption: &str, rows: &[(String, String)]) -> Markup {
    html! {
        @if !rows.is_empty() {
            table class="kv" {
                caption { (caption) }
                tbody { @for (k, v) in rows { tr { th scope="row" { (k) } td { (v) } } } }
            }
        }
    }
}

fn summary(view: &JobView, job: &JobRecord) -> Markup {
    let mut rows = vec![
        ("Status".to_string(), view.status.as_str().to_string()),
        ("Experiment".to_string(), view.experiment_name.clone()),
        ("Compute".to_string(), job.compute.clone()),
        ("Instance type".to_string(), job.instance_type.name.clone()),
        ("Created".to_string(), when(job.created_at)),
    ];
    if let Some(t) = job.state.started_at() {
        rows.push(("Started".into(), when(t)));
    }
    if let Some(t) = job.state.ended_at() {
        rows.push(("Ended".into(), when(t)));
    }
    if let Some(d) = seconds(job) {
        rows.push(("Duration".into(), duration(d)));
    }
    if let Some(m) = &view.status_message {
        rows.push(("Why".into(), m.clone()));
    }
    rows.push(("Command".into(), view.command.clone()));
    kv_table("Job", &rows)
}

/// A sweep's trials with their parameters, and the best one.
fn trials(sweep: &serde_json::Value) -> Markup {
    let best = sweep["best"]["trial"].as_str().unwrap_or_default();
    let empty = Vec::new();
    html! {
        section aria-labelledby="trials-h" {
            h2 id="trials-h" { "Trials" }
            @if !best.is_empty() {
                p { "Best: " a href={"/studio/jobs/" (super::enc(best))} { (best) } " with " (sweep["best"]["value"]) " and " (sweep["best"]["params"]) }
            }
            table {
                thead { tr { th scope="col" { "Trial" } th scope="col" { "Parameters" } th scope="col" { "Stopped early" } } }
                tbody { @for t in sweep["trials"].as_array().unwrap_or(&empty) {
                    @let name = t["name"].as_str().unwrap_or_default();
                    tr {
                        td { a href={"/studio/jobs/" (super::enc(name))} { (name) } }
                        td { (t["params"]) }
                        td { @if sweep["stopped_early"].as_array().is_some_and(|s| s.iter().any(|x| x == name)) { "yes" } }
                    }
                } }
            }
        }
    }
}

/// A pipeline's steps: each one's job, status, component, and the job it reused.
fn steps(pipeline: &serde_json::Value) -> Markup {
    let empty = serde_json::Map::new();
    html! {
        section aria-labelledby="steps-h" {
            h2 id="steps-h" { "Steps" }
            table {
                thead { tr { th scope="col" { "Step" } th scope="col" { "Status" } th scope="col" { "Job" } th scope="col" { "Component" } } }
                tbody { @for (step, s) in pipeline["jobs"].as_object().unwrap_or(&empty) {
                    tr {
                        td { (step) }
                        td { (status(s["status"].as_str().unwrap_or_default())) }
                        td {
                            @if let Some(j) = s["job"].as_str() { a href={"/studio/jobs/" (super::enc(j))} { (j) } }
                            @if let Some(r) = s["reused_from"].as_str() { "reused " a href={"/studio/jobs/" (super::enc(r))} { (r) } }
                            @if let Some(m) = s["message"].as_str() { " " (m) }
                        }
                        td { (s["component"].as_str().unwrap_or_default()) }
                    }
                } }
            }
        }
    }
}

/// `GET /studio/jobs/{name}`.
pub async fn show(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Response {
    let stored = match svc::get(&s, &name).await {
        Ok(j) => j,
        Err(e) => return super::failed(&e.to_string()),
    };
    let mut view = svc::view(&s, &stored);
    let _ = crate::mlflow::jobs::add_run(&s, &mut view).await;
    crate::services::pipelines::add_live_status(&s, &mut view).await;
    let job = &stored.value;
    let (system, user): (Vec<&String>, Vec<&String>) =
        view.metrics.keys().partition(|k| k.starts_with("system/"));
    let outputs = super::outputs::files(&s, &name).await;
    let csrf = session.csrf(&s);
    let enc = super::enc(&name);
    let body = html! {
        p { (status(view.status.as_str())) " " (view.display_name) }
        @if !view.status.is_terminal() {
            form method="post" action={"/studio/jobs/" (enc) "/cancel"} class="inline" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" class="danger" { "Cancel job" }
            }
        }
        (summary(&view, job))
        (kv_table("Params", &view.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()))
        @if let Some(sweep) = &view.sweep { (trials(sweep)) }
        @if let Some(pipeline) = &view.pipeline { (steps(pipeline)) }
        (kv_table("Latest metrics", &view.metrics.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<Vec<_>>()))
        @if !user.is_empty() {
            section aria-labelledby="metrics-h" {
                h2 id="metrics-h" { "Metrics" }
                p class="help" { "Drag across a chart to zoom; double-click to zoom out." }
                @for key in &user {
                    figure class="chart" data-run=(name) data-keys=(key) data-x="step" { figcaption { (key) } }
                }
            }
        }
        @if !system.is_empty() {
            section aria-labelledby="system-h" {
                h2 id="system-h" { "Resource use" }
                @for key in &system {
                    figure class="chart" data-run=(name) data-keys=(key) data-x="time" { figcaption { (key) } }
                }
            }
        }
        section aria-labelledby="outputs-h" {
            h2 id="outputs-h" { "Outputs" }
            @if outputs.is_empty() { p { "No output files yet." } }
            ul { @for (output, path, size) in &outputs {
                li { a href={"/studio/jobs/" (enc) "/outputs/" (super::enc(output)) "/" (path)} download { (output) ": " (path) } " (" (size) " bytes)" }
            } }
        }
        section aria-labelledby="log-h" {
            h2 id="log-h" { "Log" }
            pre id="log" class="log" tabindex="0" aria-live="polite" data-src={"/studio/jobs/" (enc) "/log"} data-live=(if view.status.is_terminal() { "0" } else { "1" }) {}
            noscript { p { a href={"/studio/jobs/" (enc) "/log.txt"} { "The log as text" } } }
        }
    };
    super::page(shell(&format!("Job {name}"), "/studio/jobs", &csrf, body))
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
}

/// `POST /studio/jobs/{name}/cancel`.
pub async fn cancel(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CancelForm>,
) -> Response {
    if !session.form_ok(&s, &headers, &f.csrf) {
        return super::session::stale_form();
    }
    if let Err(e) = svc::cancel(&s, &name).await {
        return super::failed(&e.to_string());
    }
    Redirect::to(&format!("/studio/jobs/{}", super::enc(&name))).into_response()
}

/// `GET /studio/jobs/{name}/log`: the log as server-sent events, one `data` line per line,
/// until the job ends (then an `end` event).
pub async fn log_events(
    State(s): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
) -> Response {
    let stream = match crate::api::log_stream(s, name, 0, true).await {
        Ok(st) => st,
        Err(e) => return super::failed(&e.to_string()),
    };
    let events = stream
        .map(|chunk| {
            let text = chunk
                .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(Event::default().data(text))
        })
        .chain(futures_util::stream::once(async {
            Ok(Event::default().event("end").data("end"))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /studio/jobs/{name}/log.txt`: the log so far, for a browser without script.
pub async fn log_text(
    State(s): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
) -> Response {
    match crate::api::log_stream(s, name, 0, false).await {
        Ok(st) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            axum::body::Body::from_stream(st),
        )
            .into_response(),
        Err(e) => super::failed(&e.to_string()),
    }
}
