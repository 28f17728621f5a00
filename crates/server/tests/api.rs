//! The API in-process (axum `oneshot`): auth, bad input answered clearly, nothing stored half-way.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_server::config::{ConfigLayer, ServerConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;

use support::{Api, api, api_with};

impl Api {
    /// Makes job `name` an unfinished job with a pod token, as a job running on a cluster is
    /// (this server has no supervisor to run it); returns the token.
    async fn give_pod_token(&self, name: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // First let the manager finish with it (it cannot start here), so nothing overwrites
        // what is set below.
        loop {
            let (_, job) = self.call("GET", &format!("/api/jobs/{name}"), None).await;
            if matches!(
                job["status"].as_str(),
                Some("Failed" | "Completed" | "Canceled")
            ) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never ended: {job}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let store = &self.state.store;
        loop {
            let cur = store
                .get::<Value>(berth_store::Kind::Job, name)
                .await
                .unwrap()
                .unwrap();
            let mut record = cur.value;
            record["upload_token"] = json!("pod-token");
            record["state"] = json!({"status": "Queued"});
            let stored = store
                .update(
                    berth_store::Kind::Job,
                    name,
                    cur.resource_version,
                    Some("Queued"),
                    &record,
                )
                .await;
            // The manager may record its own change first: then read again.
            if stored.is_ok() {
                return "pod-token".into();
            }
            assert!(std::time::Instant::now() < deadline, "{stored:?}");
        }
    }

    async fn job_count(&self) -> usize {
        self.call("GET", "/api/jobs", None)
            .await
            .1
            .as_array()
            .map_or(0, Vec::len)
    }
}

#[tokio::test]
async fn token_is_required() {
    let a = api().await;
    let (s, body) = a.call_with("GET", "/api/jobs", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthorized");
    let (s, body) = a.call_with("GET", "/api/jobs", None, Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "the bearer token is wrong");
    assert_eq!(
        a.call_with("GET", "/api/health", None, None).await.0,
        StatusCode::OK
    );
    let (s, doc) = a.call_with("GET", "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/api/jobs"]["post"].is_object());
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let text =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    assert!(
        text.contains("# TYPE berth_jobs gauge") && text.ends_with("# EOF\n"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_specs_name_the_place_and_store_nothing() {
    let a = api().await;
    let cases = [
        ("command: x\nbogus: 1\n", "unknown field `bogus`", 2),
        (
            "command: x\nresources:\n  instance_type: huge\n",
            "instance type `huge` does not exist",
            3,
        ),
        (
            "command: x\ncompute: azureml:nowhere\n",
            "compute `nowhere` does not exist",
            2,
        ),
        (
            "command: x ${{inputs.d}}\ninputs:\n  d:\n    path: azureml://datastores/nope/paths/x\n",
            "datastore `nope` does not exist",
            4,
        ),
        (
            "command: x ${{inputs.d}}\ninputs:\n  d:\n    path: ./missing\n",
            "does not exist",
            4,
        ),
        (
            "command: x\ncode: ./no-such-code\n",
            "code path `./no-such-code` does not exist",
            2,
        ),
        (
            "command: python ${{inputs.nope}}\n",
            "`${{inputs.nope}}`",
            1,
        ),
    ];
    for (yaml, message, line) in cases {
        let (s, body) = a.submit(yaml).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{yaml}: {body}");
        assert_eq!(body["error"]["code"], "InvalidSpec");
        let m = body["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(message), "{yaml}: {m}");
        assert_eq!(body["error"]["position"]["line"], line, "{yaml}: {body}");
        assert_eq!(body["error"]["position"]["file"], "job.yaml");
        assert!(
            body["error"]["hint"].is_string() || line == 1 || message.contains("does not exist"),
            "{body}"
        );
    }
    assert_eq!(a.job_count().await, 0);
    let jobs_dir = a.home.path().join("jobs");
    assert_eq!(
        std::fs::read_dir(jobs_dir).unwrap().count(),
        0,
        "no job folder left behind"
    );
}

#[tokio::test]
async fn duplicate_names_conflict() {
    let a = api().await;
    assert_eq!(
        a.submit("name: same\ncommand: true\n").await.0,
        StatusCode::CREATED
    );
    let (s, body) = a.submit("name: same\ncommand: true\n").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "AlreadyExists");
    assert_eq!(a.job_count().await, 1);
}

#[tokio::test]
async fn instance_types_apply_all_or_nothing() {
    let a = api().await;
    let good = "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: ok}\nspec:\n  resources:\n    requests: {cpu: 1, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n";
    let bad = "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: bad}\nspec:\n  resources:\n    requests: {cpu: 0, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n";
    let (s, body) = a
        .call(
            "PUT",
            "/api/instance-types",
            Some(json!({"file": "it.yaml", "yaml": format!("{good}---\n{bad}")})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["position"]["line"], 14, "{body}");
    assert_eq!(
        a.call("GET", "/api/instance-types/ok", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, body) = a
        .call(
            "PUT",
            "/api/instance-types",
            Some(json!({"file": "it.yaml", "yaml": good})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body[0]["requests"]["memory"], "1Gi");
    let (_, list) = a.call("GET", "/api/instance-types", None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    // Applied types first, then the built-in Azure VM sizes.
    assert_eq!(names[..2], ["defaultinstancetype", "ok"]);
    assert!(
        names[2..].iter().all(|n| n.starts_with("Standard_")),
        "{names:?}"
    );
    assert!(names.contains(&"Standard_DS3_v2"));
    assert_eq!(
        a.call("DELETE", "/api/instance-types/defaultinstancetype", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn computes_and_datastores_are_checked() {
    let a = api().await;
    let (s, _) = a
        .call(
            "POST",
            "/api/computes",
            Some(json!({"name": "c1", "type": "local"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = a
        .call(
            "POST",
            "/api/computes",
            Some(json!({"name": "c1", "type": "local"})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
    let (s, _) = a.call("DELETE", "/api/computes/local", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, body) = a
        .call(
            "POST",
            "/api/datastores",
            Some(json!({"name": "d", "type": "local", "path": "/no/such/folder"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not an existing folder")
    );
    let (s, body) = a.call("GET", "/api/jobs/nope", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    let (s, _) = a.call("POST", "/api/jobs/nope/cancel", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let a = api_with(Some(1024)).await;
    let yaml = format!("command: echo {}\n", "x".repeat(4096));
    let (s, body) = a.submit(&yaml).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "PayloadTooLarge");
    let (s, body) = a.call("POST", "/api/jobs", Some(json!({"yaml": 1}))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
}

#[tokio::test]
async fn pod_files_open_only_with_their_own_token() {
    let a = api().await;
    let (s, job) = a.submit("command: echo hi\n").await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let name = job["name"].as_str().unwrap();
    // The API token is not a job's token, and a local job has none.
    let (s, body) = a
        .call("GET", &format!("/api/jobs/{name}/files"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("this is not job `{name}`'s token")
    );
    let (s, body) = a
        .call(
            "GET",
            "/api/endpoints/e/deployments/d/revisions/1/files/model/w.bin",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("this is not a token for revision 1 of `e/d`"),
        "{body}"
    );
}

#[tokio::test]
async fn a_new_home_and_its_database_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let home = parent.path().join("home");
    let config =
        ServerConfig::load(&home, ConfigLayer::default(), ConfigLayer::default(), None).unwrap();
    let _state = berth_server::build_state(&config, "http://127.0.0.1:9", "http://127.0.0.1:9")
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("berth.db")), 0o600);
}

#[tokio::test]
async fn pod_routes_do_not_tell_which_jobs_exist() {
    let a = api().await;
    let (s, body) = a
        .call_with("GET", "/api/jobs/no_such_job/files", None, Some("guess"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_nul_in_a_path_is_a_bad_request_that_names_no_server_path() {
    let a = api().await;
    let (s, job) = a.submit("command: echo hi\n").await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let name = job["name"].as_str().unwrap();
    let (s, body) = a
        .call(
            "GET",
            &format!("/api/jobs/{name}/outputs/default/files/outputs%2Fa%00b"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let home = a.home.path().display().to_string();
    assert!(!body.to_string().contains(&home), "{body}");
}

/// A job with a local folder input `data`.
async fn job_with_data(a: &Api, data: &std::path::Path) -> String {
    let yaml = format!(
        "command: echo hi\ninputs:\n  data:\n    type: uri_folder\n    path: {}\n",
        data.display()
    );
    let (s, job) = a.submit(&yaml).await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    job["name"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pod_file_routes_do_not_follow_links_out_of_their_folder() {
    let a = api().await;
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("rows.csv"), "a,b\n").unwrap();
    std::os::unix::fs::symlink(a.home.path().join("token"), data.join("token")).unwrap();
    let name = job_with_data(&a, &data).await;
    let token = a.give_pod_token(&name).await;
    let (s, listing) = a
        .call_with(
            "GET",
            &format!("/api/jobs/{name}/files"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{listing}");
    let listed: Vec<_> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&"inputs/data/rows.csv".to_string()),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|p| p.ends_with("token")), "{listed:?}");
    let (s, body) = a
        .call_with(
            "GET",
            &format!("/api/jobs/{name}/files/inputs/data/token"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn an_upload_does_not_follow_a_link_out_of_the_output() {
    let a = api().await;
    let t = tempfile::tempdir().unwrap();
    let (data, outside) = (t.path().join("data"), t.path().join("outside"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let name = job_with_data(&a, &data).await;
    let token = a.give_pod_token(&name).await;
    let code = a.home.path().join("jobs").join(&name).join("code");
    std::fs::create_dir_all(code.join("outputs")).unwrap();
    std::os::unix::fs::symlink(&outside, code.join("outputs/escape")).unwrap();
    let uri = format!("/api/jobs/{name}/uploads/default/outputs/escape/x.txt");
    let s = a.send_raw("PUT", &uri, &token, "written").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    let uri = format!("/api/jobs/{name}/uploads/default/outputs/model/w.bin");
    let s = a.send_raw("PUT", &uri, &token, "weights").await;
    assert!(s.is_success(), "{s}");
    assert_eq!(
        std::fs::read_to_string(code.join("outputs/model/w.bin")).unwrap(),
        "weights"
    );
}

#[tokio::test]
async fn a_restart_removes_job_folders_no_job_owns() {
    let a = api().await;
    let (s, job) = a.submit("command: echo hi\n").await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let jobs = a.home.path().join("jobs");
    let kept = jobs.join(job["name"].as_str().unwrap());
    std::fs::create_dir_all(jobs.join("ghost/code")).unwrap();
    std::fs::write(jobs.join("ghost/code/train.py"), "print(1)").unwrap();
    let config = ServerConfig::load(
        a.home.path(),
        ConfigLayer::default(),
        ConfigLayer::default(),
        None,
    )
    .unwrap();
    let _again = berth_server::build_state(&config, "http://127.0.0.1:9", "http://127.0.0.1:9")
        .await
        .unwrap();
    // Job folders are looked at in the background once the server is up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jobs.join("ghost").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan folder stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(kept.join("code").is_dir());
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_served() {
    let a = api().await;
    let (s, doc) = a.call_with("GET", "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, item) in paths {
        let uri = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            if !item[method].is_object() {
                continue;
            }
            ops += 1;
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let resp = a.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            // The router's own "no such route" is an empty 404 or a 405.
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && !(status == StatusCode::NOT_FOUND && body.is_empty()),
                "{method} {path} is documented but not served: {status}"
            );
        }
    }
    assert!(ops >= 45, "only {ops} operations documented");
    assert!(paths.contains_key("/api/endpoints/{name}/deployments/{deployment}/logs"));
    assert!(paths.contains_key("/api/models/{name}/versions/{version}"));
}

#[tokio::test]
async fn routers_get_a_key_for_each_token_endpoint_not_the_servers() {
    let a = api().await;
    let (s, ep) = a
        .call(
            "POST",
            "/api/endpoints",
            Some(json!({"file": "ep.yaml", "yaml": "name: tok\nauth_mode: aml_token\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ep}");
    let (s, routes) = a.call("GET", "/api/routes", None).await;
    assert_eq!(s, StatusCode::OK, "{routes}");
    let published = routes["endpoints"][0]["token_secret"].as_str().unwrap();
    let server_key = std::fs::read_to_string(a.home.path().join("token-signing-key")).unwrap();
    assert_ne!(published, server_key.trim());
    // What a router holds signs this endpoint's tokens, and no deployment's file tokens.
    let router_key = berth_router::token::TokenKey::new(published.as_bytes());
    let (s, token) = a.call("POST", "/api/endpoints/tok/token", None).await;
    assert_eq!(s, StatusCode::OK, "{token}");
    let t = token["accessToken"].as_str().unwrap();
    assert!(router_key.verify("tok", t, 0).is_ok());
    let forged = router_key.sign("files/tok/blue/1/", u64::MAX);
    let (s, _) = a
        .call_with(
            "GET",
            "/api/endpoints/tok/deployments/blue/revisions/1/files",
            None,
            Some(&forged),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_router_token_reads_the_routes_and_nothing_else() {
    let a = api().await;
    let router = berth_server::auth::router_token(&a.token);
    let (s, routes) = a.call_with("GET", "/api/routes", None, Some(&router)).await;
    assert_eq!(s, StatusCode::OK, "{routes}");
    for (method, uri) in [
        ("GET", "/api/jobs"),
        ("GET", "/api/endpoints"),
        ("POST", "/api/endpoints/x/listKeys"),
    ] {
        let (s, _) = a.call_with(method, uri, None, Some(&router)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
}
