//! `GET /openapi.json` over HTTP: an OpenAPI 3.1 document whose every example the
//! server accepts, and whose response schemas the real answers to those examples fit
//! key for key (most answers are built with `json!` apart from the schema types, so
//! this is what keeps the two together). Which routes it covers is checked against
//! the server's route table by the unit tests in `src/http/openapi.rs`.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use presque::Settings;

/// The document as served.
async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

/// `(path, METHOD, operation)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, Method, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                out.push((path.clone(), method, operation.clone()));
            }
        }
    }
    out
}

/// `$ref` resolved against the document (one level: components never nest refs).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Why `value` does not fit `schema`, if it does not: types, required keys, and
/// (stricter than JSON Schema, to catch drift) no key an object's schema with
/// `properties` does not list.
fn misfit(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if schema["$ref"].is_string() {
        return misfit(doc, resolve(doc, schema), value, at);
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let fits = choices
            .iter()
            .filter(|c| misfit(doc, c, value, at).is_none())
            .count();
        return (fits != 1).then(|| format!("{at}: {value} fits {fits} of oneOf {schema}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Some(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.contains(&type_of) || (type_of == "integer" && types.contains(&"number"));
    if !fits {
        return Some(format!("{at}: {value} is {type_of}, not {types:?}"));
    }
    match value {
        Value::Object(object) => {
            let properties = schema["properties"].as_object();
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if !object.contains_key(key) {
                    return Some(format!(
                        "{at}: required key {key:?} is missing from {value}"
                    ));
                }
            }
            // A free-form object (`{"type": "object"}` alone) takes any key.
            let properties = properties?;
            for (key, item) in object {
                let Some(property) = properties.get(key) else {
                    return Some(format!("{at}: key {key:?} is not in the schema {schema}"));
                };
                if let Some(why) = misfit(doc, property, item, &format!("{at}.{key}")) {
                    return Some(why);
                }
            }
            None
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| misfit(doc, &schema["items"], item, &format!("{at}[{i}]"))),
        _ => None,
    }
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_with_responses_everywhere() {
    let app = spawn_app_with(|s| s.server.max_wait_secs = 7).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi {version:?}");
    assert_eq!(doc["info"]["title"], "presque");
    let operations = operations(&doc);
    assert!(operations.len() > 30, "{} operations", operations.len());
    for (path, method, operation) in &operations {
        let responses = operation["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{method} {path} has no response"
        );
        // Every `$ref` points at a schema the document has.
        let text = operation.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            let name = name.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{method} {path}: dangling $ref {name}"
            );
        }
    }
    // The longest wait is this server's.
    for path in ["/q/{name}", "/qb/{name}"] {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let wait = parameters.iter().find(|p| p["name"] == "wait").unwrap();
        assert_eq!(wait["schema"]["maximum"], 7.0, "{path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // No query parameters taken; GET only.
    let r = app.get("/openapi.json?x=1").await;
    assert_error_contains(r, StatusCode::BAD_REQUEST, "unknown query parameter").await;
    let r = app.post_json("/openapi.json", "{}").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// What an example request runs against: a queue of its own holding a ready job and
/// a job leased (by `worker-1`, registered on it) with its id and token, and a
/// schedule of the same name.
struct Stage {
    queue: String,
    id: String,
    token: String,
}

async fn stage(app: &TestApp, queue: &str) -> Stage {
    for job in ["{\"n\":1}", "{\"n\":2}"] {
        let r = app.post_json(&format!("/q/{queue}"), job).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app
        .client
        .post(app.url(&format!("/w/{queue}")))
        .header("X-presque-workerid", "worker-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .post_json(
            &format!("/schedules/{queue}"),
            &format!(r#"{{"cron": "0 0 0 1 1 *", "queue": "{queue}", "job": 1}}"#),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .get_as(&format!("/q/{queue}?lease=60"), "worker-1")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Stage {
        queue: queue.to_owned(),
        id: header("X-presque-jobid"),
        token: header("X-presque-lease"),
    }
}

/// A parameter example as it goes in a URL or a header.
fn as_text(example: &Value) -> String {
    match example {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every operation that can succeed is sent, with the examples the document gives
/// (of its body, query and headers) and its path filled in from a staged queue, and
/// must succeed with an answer that fits its schema.
#[actix_web::test]
async fn every_example_in_the_document_is_accepted() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut tried = BTreeSet::new();
    for (n, (path, method, operation)) in operations(&doc).into_iter().enumerate() {
        let parameters: Vec<&Value> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let body = operation["requestBody"]["content"]
            .as_object()
            .and_then(|content| content.iter().next())
            .and_then(|(content_type, media)| {
                let example = media
                    .get("example")
                    .or_else(|| resolve(&doc, &media["schema"]).get("examples")?.get(0))?;
                Some((content_type.clone(), example.to_string()))
            });
        assert!(
            operation.get("requestBody").is_none() || body.is_some(),
            "{method} {path} takes a body but the document gives no example of it"
        );
        // Sent unless the route only ever refuses (PUT /qb, POST /w, ...).
        let succeeds = operation["responses"]
            .as_object()
            .is_some_and(|r| r.keys().any(|status| status.starts_with('2')));
        if !succeeds {
            continue;
        }
        let stage = stage(&app, &format!("openapi-{n}")).await;
        let mut url = path
            .replace("{name}", &stage.queue)
            .replace("{id}", &stage.id);
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for parameter in &parameters {
            let name = parameter["name"].as_str().unwrap_or_default();
            let Some(example) = parameter.get("example") else {
                continue;
            };
            // A token cannot be an example: it is the staged lease's.
            let value = if name == "X-presque-lease" {
                stage.token.clone()
            } else {
                as_text(example)
            };
            match parameter["in"].as_str() {
                Some("query") => query.push(format!("{name}={value}")),
                Some("header") => headers.push((name.to_owned(), value)),
                Some("path") => url = url.replace(&format!("{{{name}}}"), &value),
                _ => {}
            }
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut request = app.client.request(method.clone(), app.url(&url));
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some((content_type, body)) = &body {
            request = request
                .header("Content-Type", content_type)
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let text = response.text().await.unwrap();
        let what = format!("{method} {url} (the example of {method} {path}, body {body:?})");
        assert!(status.is_success(), "{what}: {status} {text}");
        let schema =
            &operation["responses"][status.as_str()]["content"]["application/json"]["schema"];
        if is_json && schema.is_object() {
            let value: Value = serde_json::from_str(&text).unwrap();
            if let Some(why) = misfit(&doc, schema, &value, "answer") {
                panic!("{what}: the answer does not fit its schema: {why}");
            }
        }
        tried.insert(format!("{method} {path}"));
    }
    // Each with an example of every parameter that changes what it does.
    for expected in [
        "POST /q/{name}",
        "PUT /q/{name}",
        "GET /q/{name}",
        "POST /qb/{name}",
        "GET /qb/{name}",
        "GET /q/{name}/{id}",
        "DELETE /q/{name}/{id}",
        "PUT /q/{name}/{id}",
        "POST /q/{name}/{id}",
        "POST /w/{name}",
        "DELETE /w/{name}",
        "POST /control/{name}",
        "POST /settings/{name}",
        "GET /status/{name}",
        "GET /dead/{name}",
        "GET /workers",
        "GET /overview",
        "GET /jobs/{name}",
        "GET /info",
        "GET /dashboard/{file}",
        "GET /metrics",
        "GET /schedules/",
        "GET /schedules/{name}",
        "POST /schedules/{name}",
        "DELETE /schedules/{name}",
    ] {
        assert!(
            tried.contains(expected),
            "no example tried for {expected}: {tried:?}"
        );
    }
}

#[actix_web::test]
async fn the_document_follows_the_auth_rules() {
    let tokens = |open: &str| {
        Settings::from_toml(
            &format!(
                "[auth]\ntokens = [{{ role = \"producer\", token = \"producer-token-0123456789\" }}]\nopen_routes = [{open}]\n"
            ),
            std::path::Path::new("test.toml"),
        )
        .unwrap()
        .auth
    };
    let closed = tokens("");
    let app = spawn_app_with(|s| s.auth = closed).await;
    assert_eq!(
        app.get("/openapi.json").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .bearer_auth("producer-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let open = tokens("\"/openapi.json\"");
    let app = spawn_app_with(|s| s.auth = open).await;
    let doc = document(&app).await;
    // What each operation needs comes from the table the server enforces.
    assert_eq!(
        doc["paths"]["/q/{name}"]["delete"]["x-presque-role"],
        "admin"
    );
    assert_eq!(
        doc["paths"]["/health/live"]["get"]["security"],
        serde_json::json!([{}])
    );
}
