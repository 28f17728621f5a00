//! The OpenAPI document served at `/api/openapi.json`, made from the routes themselves
//! (`api::documented`): every route the server serves is in it.

use serde_json::{Map, Value, json};

use crate::api::documented::{Access, Op};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn operation(op: &Op) -> Value {
    let mut o = json!({
        "summary": op.summary,
        "responses": {
            "2XX": {"description": "done"},
            "4XX": error_response("the request cannot be done; the body says why and what to do")
        }
    });
    match op.access {
        Access::Open => {}
        Access::Token => {
            o["security"] = json!([{"bearer": []}]);
            o["responses"]["401"] = error_response("missing or wrong API token");
        }
        Access::PodToken => {
            o["security"] = json!([{"podToken": []}]);
            o["responses"]["401"] = error_response("not this job's or revision's token");
        }
        Access::RouterToken => {
            o["security"] = json!([{"routerToken": []}, {"bearer": []}]);
            o["responses"]["401"] = error_response("neither the router token nor the API token");
        }
        Access::TrackingToken => {
            o["security"] = json!([{"bearer": []}, {"jobTrackingToken": []}]);
            o["responses"]["401"] =
                error_response("neither the API token nor a job's MLFLOW_TRACKING_TOKEN");
            o["responses"]["403"] = error_response("a job's token on another job's run");
        }
    }
    if let Some(b) = op.body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    o
}

/// `/api/jobs/{name}/files/{*path}` as OpenAPI writes it, and its path parameters.
fn openapi_path(path: &str) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                params.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
                format!("{{{name}}}")
            }
            None => seg.to_string(),
        })
        .collect();
    (segments.join("/"), params)
}

fn string_fields(fields: &[&str]) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|f| (f.to_string(), json!({"type": "string"})))
        .collect();
    Value::Object(props)
}

fn schemas() -> Value {
    let mut file_request = json!({"type": "object", "required": ["file", "yaml"], "properties": string_fields(&["file", "yaml", "base_dir"])});
    file_request["properties"]["set"] = json!({"type": "array", "items": {"type": "string"}});
    let mut deployment = file_request.clone();
    deployment["properties"]["all_traffic"] = json!({"type": "boolean"});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": ["Unauthorized", "NotFound", "AlreadyExists", "InvalidSpec", "Conflict", "BadRequest", "PayloadTooLarge", "NotSupported", "Upstream", "Internal"]},
            "message": {"type": "string"}, "hint": {"type": "string"},
            "position": {"type": "object", "properties": {"file": {"type": "string"}, "line": {"type": "integer"}, "column": {"type": "integer"}}}}}}},
        "JobCreate": file_request,
        "EndpointCreate": file_request,
        "DeploymentCreate": deployment,
        "EndpointUpdate": {"type": "object", "properties": string_fields(&["traffic", "mirror_traffic"])},
        "Regenerate": {"type": "object", "required": ["keyType"], "properties": {"keyType": {"type": "string", "enum": ["primary", "secondary"]}}},
        "Apply": {"type": "object", "required": ["file", "yaml"], "properties": string_fields(&["file", "yaml"])},
        "PruneRequest": {"type": "object", "required": ["retain_days"], "properties": {"retain_days": {"type": "integer", "minimum": 1}, "experiment_name": {"type": "string"}, "dry_run": {"type": "boolean"}}},
        "Compute": {"type": "object", "required": ["name", "type"], "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["local", "kubernetes"]}, "description": {"type": "string"}}},
        "Datastore": {"type": "object", "required": ["name", "type", "path"], "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["local"]}, "path": {"type": "string"}, "description": {"type": "string"}}}
    })
}

/// The document for `ops`.
pub fn document(ops: &[Op]) -> Value {
    let mut paths = Map::new();
    for op in ops {
        let (path, params) = openapi_path(op.path);
        let item = paths.entry(path).or_insert_with(|| json!({}));
        if !params.is_empty() {
            item["parameters"] = Value::Array(params);
        }
        item[op.method] = operation(op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Berth control plane", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the API token ($BERTH_HOME/token)"},
                "podToken": {"type": "http", "scheme": "bearer", "description": "a job's or revision's own token, given to its pods"},
                "routerToken": {"type": "http", "scheme": "bearer", "description": "the router token: reads the routes and nothing else"},
                "jobTrackingToken": {"type": "http", "scheme": "bearer", "description": "a job's MLFLOW_TRACKING_TOKEN: its own MLflow runs and nothing else"}
            },
            "schemas": schemas()
        },
        "paths": paths
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axum_paths_become_openapi_paths() {
        let (path, params) = openapi_path("/api/jobs/{name}/files/{*path}");
        assert_eq!(path, "/api/jobs/{name}/files/{path}");
        let names: Vec<_> = params.iter().map(|p| p["name"].clone()).collect();
        assert_eq!(names, [json!("name"), json!("path")]);
    }
}
