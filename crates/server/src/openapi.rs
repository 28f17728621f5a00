//! The OpenAPI document served at `/api/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, body: Option<&str>, response: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": response},
            "401": {"description": "missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "4XX": {"description": "the request cannot be done; the body says why and what to do", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    });
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    o
}

fn name_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Berth control plane", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "enum": ["Unauthorized", "NotFound", "AlreadyExists", "InvalidSpec", "Conflict", "BadRequest", "PayloadTooLarge", "NotSupported", "Internal"]},
                    "message": {"type": "string"}, "hint": {"type": "string"},
                    "position": {"type": "object", "properties": {"file": {"type": "string"}, "line": {"type": "integer"}, "column": {"type": "integer"}}}}}}},
                "JobCreate": {"type": "object", "required": ["file", "yaml", "base_dir"], "properties": {
                    "file": {"type": "string"}, "yaml": {"type": "string"}, "base_dir": {"type": "string"}, "set": {"type": "array", "items": {"type": "string"}}}},
                "Apply": {"type": "object", "required": ["file", "yaml"], "properties": {"file": {"type": "string"}, "yaml": {"type": "string"}}},
                "Compute": {"type": "object", "required": ["name", "type"], "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["local", "kubernetes"]}, "description": {"type": "string"}}},
                "Datastore": {"type": "object", "required": ["name", "type", "path"], "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["local"]}, "path": {"type": "string"}, "description": {"type": "string"}}}
            }
        },
        "paths": {
            "/api/health": {"get": {"summary": "liveness; no token needed", "responses": {"200": {"description": "ok"}}}},
            "/api/jobs": {"post": op("submit a command job file", Some("JobCreate"), "the created job"), "get": op("list jobs, newest first", None, "jobs")},
            "/api/jobs/{name}": {"parameters": [name_param("name")], "get": op("show a job", None, "the job")},
            "/api/jobs/{name}/cancel": {"parameters": [name_param("name")], "post": op("cancel a job", None, "the job")},
            "/api/jobs/{name}/logs": {"parameters": [name_param("name"),
                {"name": "follow", "in": "query", "schema": {"type": "boolean"}}, {"name": "offset", "in": "query", "schema": {"type": "integer"}}],
                "get": op("the job's std_log.txt; follow=true streams until the job ends", None, "text")},
            "/api/jobs/{name}/outputs/{output}/files": {"parameters": [name_param("name"), name_param("output")], "get": op("list an output's files", None, "files")},
            "/api/jobs/{name}/outputs/{output}/files/{path}": {"parameters": [name_param("name"), name_param("output"), name_param("path")], "get": op("one output file", None, "bytes")},
            "/api/jobs/{name}/uploads/{output}/{path}": {"parameters": [name_param("name"), name_param("output"), name_param("path")], "put": op("a Kubernetes job's pod uploads one output file (bearer: the job's upload token, not the API token)", None, "stored")},
            "/api/jobs/{name}/files": {"parameters": [name_param("name")], "get": op("a Kubernetes job's pod lists its code and inputs too large for a ConfigMap (bearer: the job's token)", None, "files")},
            "/api/jobs/{name}/files/{path}": {"parameters": [name_param("name"), name_param("path")], "get": op("one of those files (bearer: the job's token)", None, "bytes")},
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files": {"parameters": [name_param("name"), name_param("deployment"), name_param("revision")], "get": op("a Kubernetes replica lists its code and model too large for a ConfigMap (bearer: the revision's token)", None, "files")},
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files/{path}": {"parameters": [name_param("name"), name_param("deployment"), name_param("revision"), name_param("path")], "get": op("one of those files (bearer: the revision's token)", None, "bytes")},
            "/api/instance-types": {"put": op("apply InstanceType documents (all or nothing)", Some("Apply"), "the applied types"), "get": op("list instance types", None, "types")},
            "/api/instance-types/{name}": {"parameters": [name_param("name")], "get": op("show an instance type", None, "the type"), "delete": op("delete an instance type", None, "deleted")},
            "/api/computes": {"post": op("attach a compute", Some("Compute"), "the compute"), "get": op("list computes", None, "computes")},
            "/api/computes/{name}": {"parameters": [name_param("name")], "get": op("show a compute", None, "the compute"),
                "delete": op("detach a compute (?force=true cancels its jobs)", None, "detached")},
            "/api/datastores": {"post": op("create a datastore", Some("Datastore"), "the datastore"), "get": op("list datastores", None, "datastores")},
            "/api/datastores/{name}": {"parameters": [name_param("name")], "get": op("show a datastore", None, "the datastore")}
        }
    })
}
