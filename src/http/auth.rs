//! Bearer-token authentication, off unless `[auth] tokens` (or `PRESQUE_TOKENS`) lists
//! at least one token. Each token has a role; [`RULES`] is the one table saying which
//! role every route and method needs, and [`authenticate`] (the outermost middleware)
//! enforces it before any other work is done for the request.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time; no token,
//! nor its digest, is ever logged, put in an error message or printed by `Debug`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::web;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::settings::{AuthSettings, TokenEntry};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Posts jobs.
    Producer,
    /// Fetches, acks, fails and extends jobs; registers as a worker.
    Consumer,
    /// Everything.
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "producer" => Some(Role::Producer),
            "consumer" => Some(Role::Consumer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a token of this role may make a request that needs `need`.
    fn allows(self, need: Need) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (_, Need::Read)
                | (_, Need::Open)
                | (Role::Producer, Need::Producer)
                | (Role::Consumer, Need::Consumer)
        )
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid token (or none, for a GET on a route group in `open_routes`).
    Read,
    Producer,
    Consumer,
    Admin,
    /// Nothing: answered to anyone, whatever `Authorization` holds (`/health/live`,
    /// so a liveness probe needs no token; it tells only that the process serves
    /// HTTP, and its version).
    Open,
}

impl Need {
    fn role_name(self) -> &'static str {
        match self {
            Need::Read => "any",
            Need::Open => "none",
            Need::Producer => "producer",
            Need::Consumer => "consumer",
            Need::Admin => "admin",
        }
    }
}

/// One row of [`RULES`]: a route pattern exactly as `http/mod.rs` spells it (the `/q`
/// scope's two shapes as `/q/{name}` and `/q/{name}/{id}`), a method (`*`: any), and
/// what it needs.
#[derive(Debug)]
pub struct Rule {
    pub pattern: &'static str,
    pub method: &'static str,
    pub need: Need,
}

const fn rule(pattern: &'static str, method: &'static str, need: Need) -> Rule {
    Rule {
        pattern,
        method,
        need,
    }
}

/// Every route and method the server answers, and what it needs. A method a route does
/// not list (answered 405) and a path no route knows (404) need [`Need::Read`]: any
/// valid token, so an anonymous client learns nothing about what exists.
pub const RULES: &[Rule] = &[
    // Jobs in: producers.
    rule("/q/{name}", "POST", Need::Producer),
    rule("/q/{name}", "PUT", Need::Producer),
    rule("/qb/{name:.*}", "POST", Need::Producer),
    rule("/qb/{name:.*}", "PUT", Need::Producer),
    // Jobs out, and their leases: consumers.
    rule("/q/{name}", "GET", Need::Consumer),
    rule("/qb/{name:.*}", "GET", Need::Consumer),
    rule("/q/{name}/{id}", "GET", Need::Consumer),
    rule("/q/{name}/{id}", "DELETE", Need::Consumer),
    rule("/q/{name}/{id}", "PUT", Need::Consumer),
    rule("/q/{name}/{id}", "POST", Need::Consumer),
    rule("/w", "POST", Need::Consumer),
    rule("/w", "DELETE", Need::Consumer),
    rule("/w/{name:.*}", "POST", Need::Consumer),
    rule("/w/{name:.*}", "DELETE", Need::Consumer),
    // Changing or destroying what others rely on, and dead letters (job bodies): admin.
    rule("/q/{name}", "DELETE", Need::Admin),
    rule("/qb/{name:.*}", "DELETE", Need::Admin),
    rule("/control/{name:.*}", "POST", Need::Admin),
    rule("/settings/{name}", "POST", Need::Admin),
    rule("/dead/{name}", "GET", Need::Admin),
    rule("/dead/{name}", "POST", Need::Admin),
    rule("/dead/{name}", "DELETE", Need::Admin),
    rule("/jobs/{name}", "GET", Need::Admin),
    rule("/schedules/{name}", "POST", Need::Admin),
    rule("/schedules/{name}", "DELETE", Need::Admin),
    // Reads: any valid token; anonymous too for a group listed in `open_routes`.
    rule("/j/{name:.*}", "GET", Need::Read),
    rule("/status", "GET", Need::Read),
    rule("/status/", "GET", Need::Read),
    rule("/status/{name:.*}", "GET", Need::Read),
    rule("/control/{name:.*}", "GET", Need::Read),
    rule("/settings/{name}", "GET", Need::Read),
    rule("/w", "GET", Need::Read),
    rule("/w/{name:.*}", "GET", Need::Read),
    rule("/workers", "GET", Need::Read),
    rule("/workers/", "GET", Need::Read),
    rule("/", "GET", Need::Read),
    rule("/health/ready", "GET", Need::Read),
    rule("/overview", "GET", Need::Read),
    rule("/info", "GET", Need::Read),
    rule("/openapi.json", "GET", Need::Read),
    rule("/metrics", "GET", Need::Read),
    rule("/schedules/", "GET", Need::Read),
    rule("/schedules/{name}", "GET", Need::Read),
    // Open to anyone, always: see `Need::Open`.
    rule("/health/live", "GET", Need::Open),
    // The dashboard's script and style sheet: the same bytes as in the public binary,
    // and no data (the script asks the JSON routes, which check tokens).
    rule("/dashboard/{file}", "GET", Need::Open),
    // Answered "queue name is missing" whatever the method.
    rule("/dead/", "*", Need::Read),
    rule("/settings/", "*", Need::Read),
    rule("/jobs/", "*", Need::Read),
];

/// The route groups `open_routes` may list: read-only routes, opened to anonymous GETs.
pub const OPENABLE: &[&str] = &[
    "/",
    "/status",
    "/j",
    "/w",
    "/workers",
    "/control",
    "/settings",
    "/health",
    "/overview",
    "/info",
    "/openapi.json",
    "/metrics",
    "/schedules",
];

/// The pattern of the route (as in [`RULES`]) actix will pick for `path`, the path it
/// routes on (`match_info().as_str()`: already percent-decoded except `/`, `%`, `+`).
/// Mirrors `http::configure`, in its order.
pub fn route_pattern(path: &str) -> Option<&'static str> {
    /// `rest` is one non-empty segment (what `{name}` matches).
    fn segment(rest: &str) -> bool {
        !rest.is_empty() && !rest.contains('/')
    }
    if let Some(rest) = path.strip_prefix("/q/") {
        return Some(if rest.contains('/') {
            "/q/{name}/{id}"
        } else {
            "/q/{name}"
        });
    }
    let fixed = [
        "/status",
        "/status/",
        "/w",
        "/dead/",
        "/settings/",
        "/workers",
        "/workers/",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/metrics",
        "/",
        "/overview",
        "/info",
        "/jobs/",
        "/schedules/",
    ];
    if let Some(exact) = fixed.into_iter().find(|p| *p == path) {
        return Some(exact);
    }
    let prefixed = [
        ("/qb/", "/qb/{name:.*}"),
        ("/j/", "/j/{name:.*}"),
        ("/status/", "/status/{name:.*}"),
        ("/control/", "/control/{name:.*}"),
        ("/w/", "/w/{name:.*}"),
    ];
    if let Some((_, pattern)) = prefixed.into_iter().find(|(p, _)| path.starts_with(p)) {
        return Some(pattern);
    }
    let one_segment = [
        ("/dead/", "/dead/{name}"),
        ("/settings/", "/settings/{name}"),
        ("/jobs/", "/jobs/{name}"),
        ("/schedules/", "/schedules/{name}"),
        ("/dashboard/", "/dashboard/{file}"),
    ];
    one_segment
        .into_iter()
        .find(|(p, _)| path.strip_prefix(p).is_some_and(segment))
        .map(|(_, pattern)| pattern)
}

/// What a request for `path` with `method` needs, and the route group it belongs to.
pub fn need_of(method: &Method, path: &str) -> (Need, &'static str) {
    let Some(pattern) = route_pattern(path) else {
        return (Need::Read, "");
    };
    let need = RULES
        .iter()
        .find(|r| r.pattern == pattern && (r.method == "*" || r.method == method.as_str()))
        .map_or(Need::Read, |r| r.need);
    (need, group_of(pattern))
}

/// `/status/{name:.*}` → `/status`; `/` → `/`.
pub fn group_of(pattern: &'static str) -> &'static str {
    let end = pattern[1..].find('/').map_or(pattern.len(), |i| i + 1);
    &pattern[..end]
}

/// The tokens the server accepts (as digests) and the route groups open to anonymous
/// reads. Shared by every HTTP worker.
pub struct Auth {
    keys: Vec<([u8; 32], Role)>,
    open: Vec<&'static str>,
}

/// Never prints a digest.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.keys.len())
            .field("open", &self.open)
            .finish()
    }
}

/// The shortest plain token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl Auth {
    /// Checks `[auth]` and keeps the digests. The error names the bad entry by its
    /// position and role, never by its token.
    pub fn new(settings: &AuthSettings) -> Result<Auth, String> {
        let mut keys: Vec<([u8; 32], Role)> = Vec::with_capacity(settings.tokens.len());
        for (i, entry) in settings.tokens.iter().enumerate() {
            let at = format!("[auth] tokens[{i}]");
            let (digest, role) = key_of(entry).map_err(|e| format!("{at}: {e}"))?;
            if keys.iter().any(|(k, _)| k == &digest) {
                return Err(format!(
                    "{at}: the same token is listed twice (each token has one role)"
                ));
            }
            keys.push((digest, role));
        }
        let mut open = Vec::with_capacity(settings.open_routes.len());
        for group in &settings.open_routes {
            match OPENABLE.iter().find(|g| **g == group.as_str()) {
                Some(g) => open.push(*g),
                None => {
                    return Err(format!(
                        "[auth] open_routes: {group:?} cannot be opened; only these read-only route groups can: {}",
                        OPENABLE.join(", ")
                    ))
                }
            }
        }
        Ok(Auth { keys, open })
    }

    /// Whether any token is configured (otherwise every request passes).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The role of `token`, if it is one of ours. Every digest is compared, in
    /// constant time.
    fn role_of(&self, token: &str) -> Option<Role> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (key, role) in &self.keys {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(*role);
            }
        }
        found
    }

    /// Allows the request, or says why not.
    fn check(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        if !self.enabled() {
            return Ok(());
        }
        let (need, group) = need_of(method, path);
        if need == Need::Open {
            return Ok(());
        }
        let Some(raw) = authorization else {
            let open = need == Need::Read
                && (method == Method::GET || method == Method::HEAD)
                && self.open.contains(&group);
            return if open {
                Ok(())
            } else {
                Err(ApiError::AuthRequired)
            };
        };
        let token = bearer_token(raw).ok_or(ApiError::BadToken)?;
        let role = self.role_of(token).ok_or(ApiError::BadToken)?;
        if role.allows(need) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needs: need.role_name(),
            })
        }
    }
}

/// The token of `Bearer TOKEN` (scheme in any case).
fn bearer_token(raw: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The digest and role of one configured token.
fn key_of(entry: &TokenEntry) -> Result<([u8; 32], Role), String> {
    let role = Role::parse(&entry.role).ok_or_else(|| {
        format!(
            "unknown role {:?}; roles are producer, consumer and admin",
            entry.role
        )
    })?;
    let digest = match (&entry.token, &entry.sha256) {
        (Some(token), None) => {
            check_plain_token(token)?;
            Sha256::digest(token.as_bytes()).into()
        }
        (None, Some(hex)) => parse_digest(hex)?,
        (Some(_), Some(_)) => return Err("give token or sha256, not both".into()),
        (None, None) => return Err("give token (the token) or sha256 (its SHA-256 in hex)".into()),
    };
    Ok((digest, role))
}

fn check_plain_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token may hold only visible ASCII characters (no spaces)".into());
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is shorter than {MIN_TOKEN_LEN} characters"
        ));
    }
    Ok(())
}

/// 64 hex digits (either case).
fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let bad = || "sha256 must be 64 hexadecimal digits (the token's SHA-256)".to_owned();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

/// The name of the environment variable listing tokens (replacing `[auth] tokens`).
pub const TOKENS_ENV: &str = "PRESQUE_TOKENS";

/// Parses `PRESQUE_TOKENS`: `ROLE:TOKEN` or `ROLE:sha256:HEX`, comma-separated.
pub fn tokens_from_env(raw: &str) -> Result<Vec<TokenEntry>, String> {
    let mut tokens = Vec::new();
    for (i, item) in raw.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let Some((role, secret)) = item.split_once(':') else {
            return Err(format!(
                "{TOKENS_ENV} entry {}: expected ROLE:TOKEN or ROLE:sha256:HEX",
                i + 1
            ));
        };
        let (token, sha256) = match secret.strip_prefix("sha256:") {
            Some(hex) => (None, Some(hex.to_owned())),
            None => (Some(secret.to_owned()), None),
        };
        let entry = TokenEntry {
            role: role.trim().to_owned(),
            token,
            sha256,
        };
        key_of(&entry).map_err(|e| format!("{TOKENS_ENV} entry {}: {e}", i + 1))?;
        tokens.push(entry);
    }
    if tokens.is_empty() {
        return Err(format!(
            "{TOKENS_ENV} is set but lists no token; unset it to run without authentication"
        ));
    }
    Ok(tokens)
}

/// Runs before everything else on every request: refuses it (401, 403) unless its
/// token's role may use the route. Passes everything when auth is off.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(auth) = req.app_data::<web::Data<Auth>>() {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if let Err(e) = auth.check(req.method(), req.match_info().as_str(), authorization) {
            tracing::debug!(method = %req.method(), path = req.path(), error = %e, "request refused");
            return Err(e.into());
        }
    }
    next.call(req).await
}

/// Warns when the server listens beyond loopback with no token configured.
pub fn warn_if_open(address: std::net::SocketAddr, auth: &AuthSettings) {
    if !address.ip().is_loopback() && auth.tokens.is_empty() {
        tracing::warn!(
            %address,
            "listening beyond loopback without authentication: anyone who can reach this address can read, post and delete jobs; list tokens in [auth] tokens or {TOKENS_ENV}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (pattern, method) `http/mod.rs` routes, read from its source: each
    /// `web::resource(...)` with its `.route(web::METHOD()` lines (`.to(` alone: `*`),
    /// and the `/q` scope's `(has_id, Method::X)` arms.
    fn routes_in_mod_rs() -> Vec<(String, String)> {
        let source = include_str!("mod.rs");
        let configure = source
            .split("pub fn configure")
            .nth(1)
            .and_then(|s| s.split("\n}\n").next())
            .unwrap_or("");
        let mut routes = Vec::new();
        for block in configure.split("web::resource(").skip(1) {
            let args = block.split(')').next().unwrap_or("");
            let patterns: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
            let methods: Vec<String> = block
                .split(".route(web::")
                .skip(1)
                .filter_map(|m| m.split("()").next())
                .map(str::to_ascii_uppercase)
                .collect();
            let methods = if methods.is_empty() && block.contains(".to(") {
                vec!["*".to_owned()]
            } else {
                methods
            };
            for pattern in &patterns {
                for method in &methods {
                    routes.push(((*pattern).to_owned(), method.clone()));
                }
            }
        }
        let queue_route = source.split("async fn queue_route").nth(1).unwrap_or("");
        for (has_id, pattern) in [("false", "/q/{name}"), ("true", "/q/{name}/{id}")] {
            let arm = format!("({has_id}, Method::");
            for part in queue_route.split(arm.as_str()).skip(1) {
                let method = part.split(')').next().unwrap_or("");
                routes.push((pattern.to_owned(), method.to_owned()));
            }
        }
        routes
    }

    /// A path actix routes to `pattern`.
    fn sample_path(pattern: &str) -> String {
        pattern
            .replace("{name:.*}", "some/name")
            .replace("{name}", "name")
            .replace("{id}", "17")
    }

    #[test]
    fn every_route_in_mod_rs_has_exactly_one_rule_and_every_rule_a_route() {
        let routes = routes_in_mod_rs();
        assert!(routes.len() > 30, "parsed too few routes: {routes:?}");
        for (pattern, method) in &routes {
            let rows = RULES
                .iter()
                .filter(|r| r.pattern == pattern && r.method == method)
                .count();
            assert_eq!(rows, 1, "{method} {pattern}: {rows} rules");
        }
        for rule in RULES {
            assert!(
                routes
                    .iter()
                    .any(|(p, m)| p == rule.pattern && m == rule.method),
                "stale rule {rule:?}"
            );
        }
    }

    #[test]
    fn every_route_is_classified_as_its_own_pattern() {
        for (pattern, method) in routes_in_mod_rs() {
            let path = sample_path(&pattern);
            assert_eq!(route_pattern(&path), Some(pattern.as_str()), "{path}");
            let method = if method == "*" {
                "PATCH".to_owned()
            } else {
                method
            };
            let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
            let expected = RULES
                .iter()
                .find(|r| r.pattern == pattern && (r.method == "*" || r.method == method.as_str()))
                .map(|r| r.need);
            assert_eq!(Some(need_of(&method, &path).0), expected, "{method} {path}");
        }
    }

    #[test]
    fn the_issue_s_role_split() {
        let need = |m: Method, p: &str| need_of(&m, p).0;
        assert_eq!(need(Method::POST, "/q/a"), Need::Producer);
        assert_eq!(need(Method::PUT, "/q/a"), Need::Producer);
        assert_eq!(need(Method::POST, "/qb/a"), Need::Producer);
        assert_eq!(need(Method::GET, "/q/a"), Need::Consumer);
        assert_eq!(need(Method::GET, "/qb/a"), Need::Consumer);
        for m in [Method::GET, Method::DELETE, Method::PUT, Method::POST] {
            assert_eq!(need(m, "/q/a/1"), Need::Consumer);
        }
        assert_eq!(need(Method::POST, "/w/a"), Need::Consumer);
        assert_eq!(need(Method::DELETE, "/w"), Need::Consumer);
        assert_eq!(need(Method::DELETE, "/q/a"), Need::Admin);
        assert_eq!(need(Method::POST, "/control/a"), Need::Admin);
        assert_eq!(need(Method::POST, "/settings/a"), Need::Admin);
        assert_eq!(need(Method::GET, "/dead/a"), Need::Admin);
        for p in [
            "/",
            "/status",
            "/status/",
            "/status/a",
            "/j/a",
            "/w",
            "/w/a",
            "/workers",
        ] {
            assert_eq!(need(Method::GET, p), Need::Read, "{p}");
        }
        assert_eq!(need(Method::GET, "/health/ready"), Need::Read);
        assert_eq!(need(Method::GET, "/health/live"), Need::Open);
        assert_eq!(need(Method::POST, "/health/live"), Need::Read);
        // Unknown paths and methods: any token.
        assert_eq!(need(Method::PATCH, "/q/a"), Need::Read);
        assert_eq!(need(Method::GET, "/nope"), Need::Read);
        assert_eq!(route_pattern("/q"), None);
        assert_eq!(route_pattern("/dead/a/b"), None);
        assert_eq!(route_pattern("/qb"), None);
    }

    #[test]
    fn roles() {
        use Need::*;
        for role in [Role::Producer, Role::Consumer, Role::Admin] {
            assert!(role.allows(Open));
        }
        for need in [Read, Producer, Consumer, Admin] {
            assert!(Role::Admin.allows(need));
        }
        assert!(Role::Producer.allows(Read) && Role::Producer.allows(Producer));
        assert!(!Role::Producer.allows(Consumer) && !Role::Producer.allows(Admin));
        assert!(Role::Consumer.allows(Read) && Role::Consumer.allows(Consumer));
        assert!(!Role::Consumer.allows(Producer) && !Role::Consumer.allows(Admin));
    }

    fn entry(role: &str, token: Option<&str>, sha256: Option<&str>) -> TokenEntry {
        TokenEntry {
            role: role.into(),
            token: token.map(Into::into),
            sha256: sha256.map(Into::into),
        }
    }

    fn auth_with(tokens: Vec<TokenEntry>) -> Result<Auth, String> {
        Auth::new(&AuthSettings {
            tokens,
            open_routes: vec![],
        })
    }

    const SECRET: &str = "s3cret-s3cret-s3cret";
    /// `printf %s s3cret-s3cret-s3cret | sha256sum`
    fn secret_sha256() -> String {
        Sha256::digest(SECRET.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn bad_entries_are_refused_without_showing_the_token() {
        let hex = secret_sha256();
        let cases = [
            (entry("admin", Some(""), None), "empty"),
            (entry("root", Some(SECRET), None), "unknown role"),
            (entry("admin", Some("short"), None), "shorter"),
            (
                entry("admin", Some("has space in it, long"), None),
                "visible ASCII",
            ),
            (entry("admin", None, Some("abc")), "64 hexadecimal"),
            (
                entry("admin", None, Some(&"zz".repeat(32))),
                "64 hexadecimal",
            ),
            (entry("admin", Some(SECRET), Some(&hex)), "not both"),
            (entry("admin", None, None), "give token"),
        ];
        for (e, expected) in cases {
            let err = auth_with(vec![e]).err().unwrap_or_default();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("[auth] tokens[0]"), "{err}");
            assert!(!err.contains(SECRET), "{err}");
        }
        let dup = auth_with(vec![
            entry("admin", Some(SECRET), None),
            entry("producer", None, Some(&hex.to_uppercase())),
        ]);
        assert!(dup.err().unwrap_or_default().contains("twice"));
        let open = Auth::new(&AuthSettings {
            tokens: vec![],
            open_routes: vec!["/q".into()],
        });
        assert!(open.err().unwrap_or_default().contains("cannot be opened"));
    }

    #[test]
    fn checks() {
        let hex = secret_sha256();
        let auth = Auth::new(&AuthSettings {
            tokens: vec![
                entry("producer", Some("producer-token-0001"), None),
                entry("consumer", None, Some(&hex)),
            ],
            open_routes: vec!["/status".into()],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let check = |m: Method, p: &str, h: Option<&str>| auth.check(&m, p, h.map(str::as_bytes));
        assert!(matches!(
            check(Method::GET, "/j/a", None),
            Err(ApiError::AuthRequired)
        ));
        assert!(check(Method::GET, "/status/a", None).is_ok());
        assert!(matches!(
            check(Method::POST, "/status/a", None),
            Err(ApiError::AuthRequired)
        ));
        assert!(check(Method::POST, "/q/a", Some("Bearer producer-token-0001")).is_ok());
        assert!(check(Method::POST, "/q/a", Some("bearer  producer-token-0001 ")).is_ok());
        assert!(matches!(
            check(Method::GET, "/q/a", Some("Bearer producer-token-0001")),
            Err(ApiError::Forbidden { needs: "consumer" })
        ));
        let consumer = format!("Bearer {SECRET}");
        assert!(check(Method::GET, "/q/a", Some(&consumer)).is_ok());
        assert!(matches!(
            check(Method::GET, "/q/a", Some("Bearer wrong")),
            Err(ApiError::BadToken)
        ));
        assert!(matches!(
            check(Method::GET, "/q/a", Some("Basic producer-token-0001")),
            Err(ApiError::BadToken)
        ));
        assert!(matches!(
            check(Method::GET, "/q/a", Some("Bearer")),
            Err(ApiError::BadToken)
        ));
        // Liveness: anyone, whatever the header; readiness: a token, or open_routes.
        for h in [
            None,
            Some("Bearer wrong"),
            Some("Bearer producer-token-0001"),
        ] {
            assert!(check(Method::GET, "/health/live", h).is_ok(), "{h:?}");
        }
        assert!(matches!(
            check(Method::GET, "/health/ready", None),
            Err(ApiError::AuthRequired)
        ));
        assert!(check(
            Method::GET,
            "/health/ready",
            Some("Bearer producer-token-0001")
        )
        .is_ok());
        let health_open = Auth::new(&AuthSettings {
            tokens: vec![entry("admin", Some("admin-token-000001"), None)],
            open_routes: vec!["/health".into()],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(health_open
            .check(&Method::GET, "/health/ready", None)
            .is_ok());
        let off = auth_with(vec![]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!off.enabled());
        assert!(off.check(&Method::DELETE, "/q/a", None).is_ok());
        assert!(!format!("{auth:?}").contains(&hex));
    }

    #[test]
    fn env_tokens() {
        let hex = secret_sha256();
        let parsed = tokens_from_env(&format!(
            " producer:producer-token-0001 , admin:sha256:{hex},"
        ))
        .unwrap_or_default();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].token.as_deref(), Some("producer-token-0001"));
        assert_eq!(parsed[1].sha256.as_deref(), Some(hex.as_str()));
        for (raw, expected) in [
            ("", "lists no token"),
            (" , ", "lists no token"),
            ("producer", "entry 1: expected ROLE:TOKEN"),
            (
                "producer:producer-token-0001,boss:s3cret-s3cret-s3cret",
                "entry 2: unknown role",
            ),
            ("admin:", "entry 1: the token is empty"),
            ("admin:sha256:12", "entry 1: sha256 must be"),
        ] {
            let err = tokens_from_env(raw).err().unwrap_or_default();
            assert!(err.contains(expected), "{raw}: {err}");
            assert!(!err.contains(SECRET), "{err}");
        }
        let debug = format!("{parsed:?}");
        assert!(
            !debug.contains("producer-token-0001") && !debug.contains(&hex),
            "{debug}"
        );
    }
}
