//! Bearer-token authentication: off by default, roles, hashed tokens, PRESQUE_TOKENS,
//! start-up refusals, and tokens kept out of the logs.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::*;
use crate::helpers::*;
use presque::Settings;

const PRODUCER: &str = "producer-token-0123456789";
const CONSUMER: &str = "consumer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789abc";
/// `printf %s admin-token-0123456789abc | sha256sum`
const ADMIN_SHA256: &str = "64ea89f4c664da9b55c9adfa2e8658d38302625e88b69b4298f54e9f48266ef7";

/// `[auth]` with the three roles (the admin's token stored hashed) and `open`.
fn auth_toml(open: &str) -> String {
    format!(
        "[auth]\ntokens = [\n  {{ role = \"producer\", token = \"{PRODUCER}\" }},\n  \
         {{ role = \"consumer\", token = \"{CONSUMER}\" }},\n  \
         {{ role = \"admin\", sha256 = \"{ADMIN_SHA256}\" }},\n]\nopen_routes = [{open}]\n"
    )
}

async fn spawn_with_auth(open: &str) -> TestApp {
    let auth = Settings::from_toml(&auth_toml(open), std::path::Path::new("test.toml"))
        .unwrap()
        .auth;
    spawn_app_with(|s| s.auth = auth).await
}

/// `method path` with `token` (if any) and a JSON body (for POST and PUT).
async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == Method::POST || method == Method::PUT {
        request = request
            .header("Content-Type", "application/json")
            .body("{\"n\":1}");
    }
    request.send().await.unwrap()
}

async fn assert_refused(response: reqwest::Response, status: StatusCode, part: &str) {
    assert_eq!(response.status(), status);
    let challenge = response
        .headers()
        .get("WWW-Authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    if status == StatusCode::UNAUTHORIZED {
        assert!(challenge.unwrap_or_default().starts_with("Bearer"));
    } else {
        assert_eq!(challenge, None);
    }
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(part), "{message}");
}

#[actix_web::test]
async fn auth_off_by_default_everything_works_without_a_token() {
    let app = spawn_app().await;
    assert_eq!(call(&app, Method::POST, "/q/a", None).await.status(), 201);
    assert_eq!(call(&app, Method::GET, "/q/a", None).await.status(), 200);
    assert_eq!(
        call(&app, Method::POST, "/control/a", None).await.status(),
        400
    );
    assert_eq!(call(&app, Method::DELETE, "/q/a", None).await.status(), 204);
    assert_eq!(
        call(&app, Method::GET, "/status/", None).await.status(),
        200
    );
    // A token sent to a server without auth is ignored.
    assert_eq!(
        call(&app, Method::GET, "/", Some("anything"))
            .await
            .status(),
        200
    );
}

#[actix_web::test]
async fn no_or_wrong_token_is_401_with_a_bearer_challenge() {
    let app = spawn_with_auth("").await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/status/"),
        (Method::POST, "/q/a"),
        (Method::GET, "/q/a"),
        (Method::DELETE, "/q/a"),
        (Method::GET, "/no/such/route"),
    ] {
        let r = call(&app, method.clone(), path, None).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "authentication required").await;
        let r = call(&app, method.clone(), path, Some("not-a-token-we-know")).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "invalid bearer token").await;
        // The hash itself is not a token.
        let r = call(&app, method, path, Some(ADMIN_SHA256)).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "invalid bearer token").await;
    }
    let r = app
        .client
        .get(app.url("/status/"))
        .header("Authorization", format!("Basic {PRODUCER}"))
        .send()
        .await
        .unwrap();
    assert_refused(r, StatusCode::UNAUTHORIZED, "invalid bearer token").await;
}

#[actix_web::test]
async fn producer_posts_but_cannot_fetch_or_purge() {
    let app = spawn_with_auth("").await;
    let p = Some(PRODUCER);
    assert_eq!(call(&app, Method::POST, "/q/a", p).await.status(), 201);
    assert_eq!(call(&app, Method::PUT, "/q/a", p).await.status(), 201);
    let r = app
        .client
        .post(app.url("/qb/a"))
        .bearer_auth(PRODUCER)
        .header("Content-Type", "application/json")
        .body("{\"jobs\":[{\"n\":1},{\"n\":2}]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Reads take any valid token.
    assert_eq!(call(&app, Method::GET, "/status/a", p).await.status(), 200);
    assert_eq!(call(&app, Method::GET, "/j/a", p).await.status(), 200);
    for (method, path, needs) in [
        (Method::GET, "/q/a", "consumer"),
        (Method::GET, "/qb/a", "consumer"),
        (Method::GET, "/q/a/1", "consumer"),
        (Method::DELETE, "/q/a/1", "consumer"),
        (Method::POST, "/w/a", "consumer"),
        (Method::DELETE, "/q/a", "admin"),
        (Method::POST, "/control/a", "admin"),
        (Method::GET, "/dead/a", "admin"),
        // Percent-encoding the route does not change what it needs.
        (Method::DELETE, "/%71/a", "admin"),
    ] {
        let r = call(&app, method.clone(), path, p).await;
        assert_refused(
            r,
            StatusCode::FORBIDDEN,
            &format!("needs a token with the {needs} role"),
        )
        .await;
    }
}

#[actix_web::test]
async fn consumer_fetches_leases_and_acks_but_cannot_post_or_purge() {
    let app = spawn_with_auth("").await;
    assert_eq!(
        call(&app, Method::POST, "/q/a", Some(PRODUCER))
            .await
            .status(),
        201
    );
    let c = Some(CONSUMER);
    let leased = call(&app, Method::GET, "/q/a?lease=60", c).await;
    assert_eq!(leased.status(), 200);
    let id = leased.headers()["X-presque-jobid"]
        .to_str()
        .unwrap()
        .to_owned();
    let lease = leased.headers()["X-presque-lease"]
        .to_str()
        .unwrap()
        .to_owned();
    let job = format!("/q/a/{id}");
    assert_eq!(call(&app, Method::GET, &job, c).await.status(), 200);
    let extend = format!("{job}?lease=60&delivery={lease}");
    assert_eq!(call(&app, Method::POST, &extend, c).await.status(), 200);
    let r = app
        .client
        .post(app.url("/w/a"))
        .bearer_auth(CONSUMER)
        .header("X-presque-workerid", "worker-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .client
        .delete(app.url(&job))
        .bearer_auth(CONSUMER)
        .header("X-presque-lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (method, path, needs) in [
        (Method::POST, "/q/a", "producer"),
        (Method::POST, "/qb/a", "producer"),
        (Method::DELETE, "/q/a", "admin"),
        (Method::POST, "/settings/a", "admin"),
        (Method::DELETE, "/dead/a", "admin"),
    ] {
        let r = call(&app, method.clone(), path, c).await;
        assert_refused(
            r,
            StatusCode::FORBIDDEN,
            &format!("needs a token with the {needs} role"),
        )
        .await;
    }
}

#[actix_web::test]
async fn admin_with_a_hashed_token_does_everything() {
    let app = spawn_with_auth("").await;
    let a = Some(ADMIN);
    assert_eq!(call(&app, Method::POST, "/q/a", a).await.status(), 201);
    assert_eq!(call(&app, Method::GET, "/q/a", a).await.status(), 200);
    assert_eq!(call(&app, Method::GET, "/dead/a", a).await.status(), 200);
    assert_eq!(call(&app, Method::GET, "/workers", a).await.status(), 200);
    assert_eq!(call(&app, Method::GET, "/", a).await.status(), 200);
    assert_eq!(call(&app, Method::DELETE, "/q/a", a).await.status(), 204);
    // A valid token reaches the routes' own answers (404, 405).
    assert_eq!(call(&app, Method::GET, "/nope", a).await.status(), 404);
    assert_eq!(call(&app, Method::PATCH, "/q/a", a).await.status(), 405);
}

#[actix_web::test]
async fn open_routes_let_anonymous_reads_through_and_nothing_else() {
    let app = spawn_with_auth("\"/\", \"/status\"").await;
    assert_eq!(call(&app, Method::GET, "/", None).await.status(), 200);
    assert_eq!(
        call(&app, Method::GET, "/status/", None).await.status(),
        200
    );
    assert_eq!(
        call(&app, Method::GET, "/status/a", None).await.status(),
        200
    );
    for (method, path) in [
        (Method::GET, "/j/a"),
        (Method::GET, "/workers"),
        (Method::POST, "/q/a"),
        (Method::POST, "/status/"),
    ] {
        let r = call(&app, method, path, None).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "authentication required").await;
    }
}

fn blocking_get(address: &str, path: &str, token: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new().get(format!("{address}{path}"));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        r.send().await.unwrap().status().as_u16()
    })
}

#[test]
fn presque_tokens_env_turns_auth_on_and_tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = format!("producer:{PRODUCER}, consumer:{CONSUMER},admin:sha256:{ADMIN_SHA256}");
    let server = start_binary_with(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "d"],
        &[("PRESQUE_TOKENS", &tokens)],
        |c| {
            c.env("RUST_LOG", "debug");
        },
    );
    assert_eq!(blocking_get(&server.address, "/status/", None), 401);
    assert_eq!(
        blocking_get(&server.address, "/status/", Some("wrong-token-0123456789")),
        401
    );
    assert_eq!(blocking_get(&server.address, "/q/a", Some(PRODUCER)), 403);
    assert_eq!(blocking_get(&server.address, "/q/a", Some(CONSUMER)), 404);
    assert_eq!(blocking_get(&server.address, "/dead/a", Some(ADMIN)), 200);
    let mut said = server.startup_lines.clone();
    said.extend(server.stop());
    let said = said.join("\n");
    assert!(
        said.contains("request refused"),
        "debug logging is on:\n{said}"
    );
    for secret in [PRODUCER, CONSUMER, ADMIN, ADMIN_SHA256] {
        assert!(!said.contains(secret), "the log shows a token:\n{said}");
    }
}

#[test]
fn a_bad_auth_config_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--config",
        "presque.toml",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        "d",
    ];
    for (toml, expected) in [
        (
            format!("[auth]\ntokens = [{{ role = \"boss\", token = \"{ADMIN}\" }}]\n"),
            "[auth] tokens[0]: unknown role \"boss\"",
        ),
        (
            "[auth]\ntokens = [{ role = \"admin\", token = \"\" }]\n".to_owned(),
            "[auth] tokens[0]: the token is empty",
        ),
        (
            "[auth]\ntokens = [{ role = \"admin\", sha256 = \"xyz\" }]\n".to_owned(),
            "sha256 must be 64 hexadecimal digits",
        ),
        (
            format!("[auth]\ntokens = [{{ role = \"admin\", tokn = \"{ADMIN}\" }}]\n"),
            "tokn",
        ),
        (
            "[auth]\nopen_routes = [\"/q\"]\n".to_owned(),
            "\"/q\" cannot be opened",
        ),
    ] {
        std::fs::write(dir.path().join("presque.toml"), &toml).unwrap();
        let (code, said) = run_binary_expect_exit(dir.path(), &args);
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(expected), "{expected}:\n{said}");
        assert!(
            !said.contains(ADMIN),
            "the message shows the token:\n{said}"
        );
    }
    std::fs::write(dir.path().join("presque.toml"), "").unwrap();
    let refused = try_start_binary(
        dir.path(),
        &args,
        &[("PRESQUE_TOKENS", "admin:short")],
        |_| {},
    );
    let (code, said) = refused.err().expect("refused");
    assert_eq!(code, Some(1));
    assert!(
        said.contains("PRESQUE_TOKENS entry 1: the token is shorter than 16"),
        "{said}"
    );
}

#[test]
fn listening_beyond_loopback_without_auth_warns() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(dir.path(), &["--bind", "0.0.0.0:0", "--data-dir", "d"], &[]);
    let said = server.startup_lines.join("\n");
    assert!(said.contains("without authentication"), "{said}");
    server.stop();
    let server = start_binary(
        dir.path(),
        &["--bind", "0.0.0.0:0", "--data-dir", "d"],
        &[("PRESQUE_TOKENS", &format!("admin:{ADMIN}"))],
    );
    let said = server.startup_lines.join("\n");
    assert!(!said.contains("without authentication"), "{said}");
    server.stop();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "d"],
        &[],
    );
    assert!(!server
        .startup_lines
        .join("\n")
        .contains("without authentication"));
    server.stop();
}
