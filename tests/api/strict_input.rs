//! Strict input: bytes that are not UTF-8 in names, malformed percent-escapes, media
//! types, content codings, exact numeric bounds and one rule for worker ids whatever
//! carries them. Each refusal is a precise JSON error and changes nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn assert_nothing_queued(app: &TestApp) {
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status, json!({"queues": [], "size": 0}));
}

async fn assert_no_workers(app: &TestApp) {
    let (status, body) = app.get_json("/w/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
}

#[actix_web::test]
async fn queue_names_that_are_not_utf8_are_refused() {
    let app = spawn_app().await;
    for (raw, byte) in [("%ff", "FF"), ("%fe", "FE"), ("%80", "80"), ("ok%c3", "C3")] {
        let at = if raw.starts_with("ok") { 2 } else { 0 };
        let message = format!(
            "invalid queue name: is not valid UTF-8 after percent-decoding (byte 0x{byte} at decoded offset {at})"
        );
        for path in [
            format!("/q/{raw}"),
            format!("/qb/{raw}"),
            format!("/j/{raw}"),
            format!("/status/{raw}"),
            format!("/control/{raw}"),
            format!("/dead/{raw}"),
            format!("/settings/{raw}"),
        ] {
            assert_error(app.get(&path).await, StatusCode::BAD_REQUEST, &message).await;
        }
        for path in [format!("/q/{raw}"), format!("/qb/{raw}")] {
            let body = if path.starts_with("/qb") {
                r#"{"jobs":[{}]}"#
            } else {
                "{}"
            };
            assert_error(
                app.post_json(&path, body).await,
                StatusCode::BAD_REQUEST,
                &message,
            )
            .await;
        }
        assert_error(
            app.delete(&format!("/q/{raw}")).await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        let r = app
            .client
            .post(app.url(&format!("/w/{raw}")))
            .header("X-presque-workerid", "w")
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, &message).await;
        assert_error(
            app.get(&format!("/q/{raw}/1")).await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
    }
    // A valid multi-byte name still works, encoded or not.
    assert_eq!(app.post_json("/q/%C3%A9", "{}").await.status(), 201);
    let (status, body) = app.get_json("/j/%C3%A9").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = app.delete("/q/%C3%A9").await;
    assert_eq!(r.status(), 204);
    assert_nothing_queued(&app).await;
    assert_no_workers(&app).await;
}

#[actix_web::test]
async fn malformed_percent_escapes_in_a_path_are_refused() {
    let app = spawn_app().await;
    for (raw, escape, at) in [
        ("%zz", "%zz", 0),
        ("a%", "%", 1),
        ("a%4", "%4", 1),
        ("%4g", "%4g", 0),
    ] {
        let message = format!(
            "invalid queue name: {escape:?} at byte {at} is not a percent-escape (% must be followed by two hex digits; send a literal % as %25)"
        );
        assert_error(
            app.post_json(&format!("/q/{raw}"), "{}").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        assert_error(
            app.get(&format!("/q/{raw}")).await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
    }
    // A literal % is %25.
    assert_eq!(app.post_json("/q/100%25", "{}").await.status(), 201);
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status["queues"], json!(["100%"]));
}

#[actix_web::test]
async fn malformed_query_encoding_is_refused() {
    let app = spawn_app().await;
    let cases = [
        (
            "/q/x?uniq=%ff",
            "invalid query parameter \"uniq\": is not valid UTF-8 after percent-decoding (byte 0xFF at decoded offset 0)",
        ),
        (
            "/q/x?uniq=a%zz",
            "invalid query parameter \"uniq\": \"%zz\" at byte 1 is not a percent-escape (% must be followed by two hex digits; send a literal % as %25)",
        ),
        (
            "/q/x?uniq=5%",
            "invalid query parameter \"uniq\": \"%\" at byte 1 is not a percent-escape (% must be followed by two hex digits; send a literal % as %25)",
        ),
        (
            "/q/x?%ff=1",
            "invalid query string: a parameter name is not valid UTF-8 after percent-decoding (byte 0xFF at decoded offset 0)",
        ),
    ];
    for (path, message) in cases {
        assert_error(
            app.post_json(path, "{}").await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
    }
    // Strict query decoding reaches ?queue_name= and ?worker_id= too.
    assert_error(
        app.get("/w/?queue_name=%fe").await,
        StatusCode::BAD_REQUEST,
        "invalid query parameter \"queue_name\": is not valid UTF-8 after percent-decoding (byte 0xFE at decoded offset 0)",
    )
    .await;
    assert_error(
        app.delete("/w/x?worker_id=%80").await,
        StatusCode::BAD_REQUEST,
        "invalid query parameter \"worker_id\": is not valid UTF-8 after percent-decoding (byte 0x80 at decoded offset 0)",
    )
    .await;
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn content_type_is_a_parsed_media_type() {
    let app = spawn_app().await;
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "  application/json  ;  charset=utf-8 ",
    ] {
        for (path, body) in [("/q/ok", "{}"), ("/qb/ok", r#"{"jobs":[{}]}"#)] {
            let r = app
                .client
                .post(app.url(path))
                .header("Content-Type", accepted)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{accepted:?} on {path}");
        }
    }
    for refused in [
        "application/jsonx",
        "text/plain; application/json",
        "application/json-seq",
        "application/x-www-form-urlencoded",
        "text/application/json",
        "",
    ] {
        for (path, body) in [("/q/x", "{}"), ("/qb/x", r#"{"jobs":[{}]}"#)] {
            let r = app
                .client
                .post(app.url(path))
                .header("Content-Type", refused)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_error(
                r,
                StatusCode::BAD_REQUEST,
                "content-type must be set to application/json",
            )
            .await;
        }
        let r = app
            .client
            .put(app.url("/q/x"))
            .header("Content-Type", refused)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(
            r,
            StatusCode::BAD_REQUEST,
            "content-type must be set to application/json",
        )
        .await;
    }
    // Routes that never checked the Content-Type still do not.
    let r = app
        .client
        .post(app.url("/control/ok"))
        .header("Content-Type", "text/plain")
        .body(r#"{"status":"stop"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .post(app.url("/w/ok"))
        .header("Content-Type", "text/plain")
        .body(r#"{"worker_id":"w1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status["queues"], json!(["ok"]));
}

#[actix_web::test]
async fn content_encodings_other_than_identity_are_415() {
    let app = spawn_app().await;
    let message = |coding: &str| {
        format!("content-encoding {coding:?} is not supported: send the body uncompressed (no Content-Encoding, or identity)")
    };
    for coding in ["gzip", "br", "deflate, identity", "x-custom", ""] {
        for (method, path, body) in [
            ("POST", "/q/x", "{}"),
            ("PUT", "/q/x", "{}"),
            ("POST", "/qb/x", r#"{"jobs":[{}]}"#),
            ("POST", "/control/x", r#"{"status":"stop"}"#),
            ("POST", "/settings/x", r#"{"max_attempts":3}"#),
            ("POST", "/w/x", r#"{"worker_id":"w"}"#),
            ("PUT", "/q/x/1?delivery=1.1", ""),
        ] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", coding)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, &message(coding)).await;
        }
    }
    assert_nothing_queued(&app).await;
    assert_no_workers(&app).await;
    for coding in ["identity", "IDENTITY", " identity "] {
        let r = app
            .client
            .post(app.url("/q/x"))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{coding:?}");
    }
}

#[actix_web::test]
async fn numeric_bounds_are_exact() {
    let app = spawn_app().await;
    let lease = "lease must be a number of seconds from 0.001 to 86400, not";
    for bad in [
        "0.0005",
        "0.00099",
        "0",
        "-0.001",
        "86400.001",
        "86401",
        "NaN",
    ] {
        assert_error(
            app.get(&format!("/q/x?lease={bad}")).await,
            StatusCode::BAD_REQUEST,
            &format!("{lease} {bad:?}"),
        )
        .await;
    }
    for good in ["0.001", "86400"] {
        app.post_json("/q/x", "{}").await;
        let r = app.get(&format!("/q/x?lease={good}")).await;
        assert_eq!(r.status(), 200, "lease={good}");
    }
    for (path, message) in [
        (
            "/q/y?wait=30.001",
            "wait must be a number of seconds from 0 to 30, not \"30.001\"",
        ),
        (
            "/q/y?wait=-0.001",
            "wait must be a number of seconds from 0 to 30, not \"-0.001\"",
        ),
        (
            "/qb/y?batch_size=1001",
            "batch_size must be an integer from 1 to 1000, not \"1001\"",
        ),
        (
            "/qb/y?batch_size=0",
            "batch_size must be an integer from 1 to 1000, not \"0\"",
        ),
        (
            "/dead/y?limit=10001",
            "limit must be an integer from 1 to 10000, not \"10001\"",
        ),
        (
            "/dead/y?limit=0",
            "limit must be an integer from 1 to 10000, not \"0\"",
        ),
    ] {
        assert_error(app.get(path).await, StatusCode::BAD_REQUEST, message).await;
    }
    for (path, message) in [
        (
            "/q/y?delay=315360000.001",
            "delay must be a number of seconds from 0 to 315360000, not \"315360000.001\"",
        ),
        (
            "/q/y?delayed=-0.001",
            "delayed must be a non-negative number of epoch seconds, not \"-0.001\"",
        ),
    ] {
        assert_error(
            app.post_json(path, "{}").await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
    }
    for bad in ["0", "1001", "2.5", "-1", "\"3\""] {
        assert_error(
            app.post_json("/settings/y", &format!("{{\"max_attempts\":{bad}}}"))
                .await,
            StatusCode::BAD_REQUEST,
            &format!("max_attempts must be an integer from 1 to 1000 (or null), not {bad}"),
        )
        .await;
    }
    for good in ["1", "1000"] {
        let r = app
            .post_json("/settings/y", &format!("{{\"max_attempts\":{good}}}"))
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        app.post_json("/q/y?delay=315360000", "{}").await.status(),
        201
    );
    assert_eq!(app.get("/q/y?wait=0").await.status(), 404);
    assert_eq!(app.get("/qb/z?batch_size=1000").await.status(), 404);
    assert_eq!(app.get("/dead/z?limit=10000").await.status(), 200);
}

/// Worker ids no carrier may bring, with the message each gets.
const BAD_WORKER_IDS: [(&str, &str); 6] = [
    ("a/b", "invalid worker_id: must not contain '/'"),
    (
        "caf\u{e9}",
        "invalid worker_id: must contain only ASCII characters",
    ),
    (
        " w",
        "invalid worker_id: must not start or end with a space",
    ),
    (
        "w ",
        "invalid worker_id: must not start or end with a space",
    ),
    (
        "w\tx",
        "invalid worker_id: must not contain control characters",
    ),
    (
        "w\u{7f}",
        "invalid worker_id: must not contain control characters",
    ),
];

fn query_encode(raw: &str) -> String {
    raw.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[actix_web::test]
async fn one_rule_for_worker_ids_whatever_carries_them() {
    let app = spawn_app().await;
    for (id, message) in BAD_WORKER_IDS {
        // The body form.
        let body = serde_json::to_string(&json!({ "worker_id": id })).unwrap();
        assert_error(
            app.post_json("/w/q", &body).await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
        // The query forms.
        let encoded = query_encode(id);
        assert_error(
            app.delete(&format!("/w/q?worker_id={encoded}")).await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
        assert_error(
            app.get(&format!("/w/?worker_id={encoded}")).await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
        // The header, where it can carry the id at all (a header value loses its
        // outer spaces and cannot hold DEL; reqwest sends non-ASCII as raw bytes).
        let header = reqwest::header::HeaderValue::from_bytes(id.as_bytes());
        if let (Ok(value), true) = (header, id.trim() == id) {
            for (method, path) in [("POST", "/w/q"), ("GET", "/q/q"), ("GET", "/qb/q")] {
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let r = app
                    .client
                    .request(method, app.url(path))
                    .header("X-presque-workerid", value.clone())
                    .send()
                    .await
                    .unwrap();
                assert_error(r, StatusCode::BAD_REQUEST, message).await;
            }
        }
    }
    // Bytes beyond ASCII in the header that are not UTF-8 at all get the same answer.
    let r = app
        .client
        .post(app.url("/w/q"))
        .header(
            "X-presque-workerid",
            reqwest::header::HeaderValue::from_bytes(b"w\xff").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::BAD_REQUEST,
        "invalid worker_id: must contain only ASCII characters",
    )
    .await;
    assert_no_workers(&app).await;
    let (_, all) = app.get_json("/workers").await;
    assert_eq!(all, json!({"workers": [], "next": null}));

    // Ids every carrier can bring are accepted by each, including inner spaces and the
    // seed's numeric body form.
    assert_eq!(
        app.post_json("/w/q", r#"{"worker_id":5}"#).await.status(),
        201
    );
    assert_eq!(
        app.post_json("/w/q", r#"{"worker_id":"a b"}"#)
            .await
            .status(),
        201
    );
    let r = app
        .client
        .post(app.url("/w/q"))
        .header("X-presque-workerid", "c d")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, ids) = app.get_json("/w/").await;
    let mut ids: Vec<String> = serde_json::from_value(ids).unwrap();
    ids.sort();
    assert_eq!(ids, ["5", "a b", "c d"]);
    let (status, one) = app.get_json("/w/?worker_id=a+b").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["worker_id"], "a b");
    assert_eq!(app.delete("/w/q?worker_id=a%20b").await.status(), 204);
    assert_eq!(app.delete("/w/q?worker_id=5").await.status(), 204);
}
