//! `examples/forward_auth.rs` as a proxy uses it: the built program behind a real nginx
//! (Debian's `nginx-light`) running `examples/forward_auth/nginx.conf`, in front of an
//! upstream that records what reaches it; and the program alone, asked directly.
//!
//! Without nginx on the machine the nginx test prints why and passes; with `CI=true` (or
//! `TOWER_JWT_AUTH_REQUIRE_NGINX`) that is a failure. `.ci/run` installs nginx.

#![cfg(feature = "jwks")]

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;
#[path = "support/proof.rs"]
mod proof;

use std::{
    convert::Infallible,
    ffi::OsStr,
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use tower_jwt_auth::TokenIssuer;

const SECRET: &str = "forward-auth-test-secret-of-32-bytes!";
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/forward_auth/rules.txt"
);

fn issuer() -> TokenIssuer {
    TokenIssuer::builder()
        .hs256(SECRET)
        .issuer("todo-server")
        .audience("todo-api")
        .build()
        .unwrap()
}

fn token(scope: &str) -> String {
    issuer().issue("alice", scope).unwrap().access_token
}

/// A token of the todo server's shape that expired ten minutes ago.
fn expired_token() -> String {
    let now = get_current_timestamp();
    signed(json!({
        "iss": "todo-server", "aud": "todo-api", "sub": "alice", "scope": "todos:read",
        "iat": now - 1200, "exp": now - 600, "jti": "expired",
    }))
}

/// `claims` signed as the todo server signs (HS256, `typ` at+jwt).
fn signed(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

/// What reached the upstream: each request's method, path and headers.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

/// An upstream on a free loopback port that answers `200 upstream` and records requests.
async fn upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let entry = (
                    req.method().clone(),
                    req.uri().path().to_owned(),
                    req.headers().clone(),
                );
                record.lock().unwrap().push(entry);
                async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("upstream"))) }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    (addr, seen)
}

/// A real nginx running the shipped configuration, in a directory of its own; stopped
/// when dropped.
struct Nginx {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn binary() -> Option<PathBuf> {
        let runs = |path: &Path| {
            Command::new(path)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| runs(p))
    }

    /// `None` (with the reason printed) on a machine without nginx, outside CI.
    fn start(test: &str, auth: SocketAddr, app: SocketAddr) -> Option<Self> {
        let Some(nginx) = Self::binary() else {
            let required = std::env::var_os("TOWER_JWT_AUTH_REQUIRE_NGINX").is_some()
                || std::env::var("CI").is_ok_and(|ci| ci == "true");
            assert!(
                !required,
                "{test}: CI is set but there is no nginx (apt-get install nginx-light)"
            );
            eprintln!("{test}: SKIPPED: no nginx on PATH (apt-get install nginx-light)");
            return None;
        };
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/forward_auth/nginx.conf"
        ))
        .unwrap();
        for shipped_addr in ["127.0.0.1:3100", "127.0.0.1:8080", "listen 127.0.0.1:8000"] {
            assert!(
                shipped.contains(shipped_addr),
                "nginx.conf names {shipped_addr}"
            );
        }
        let conf = shipped
            .replace("127.0.0.1:3100", &auth.to_string())
            .replace("127.0.0.1:8080", &app.to_string())
            .replace("listen 127.0.0.1:8000", &format!("listen {addr}"));
        let dir = std::env::temp_dir().join(format!(
            "tower-jwt-auth-nginx-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            // Its log in a file: a worker must not hold the test's output open.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                panic!("{test}: nginx exited ({status}) before listening on {addr}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "{test}: nginx is not listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { addr, child, dir })
    }
}

impl Drop for Nginx {
    /// A fast shutdown (SIGTERM): the master stops its workers before it exits, which a
    /// SIGKILL would leave running.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
}

async fn send(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    body.collect().await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
    }
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn forward_auth(extra: &[(&str, &str)]) -> example::Example {
    let mut env = vec![
        ("AUTH_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", SECRET),
        ("RULES", RULES),
    ];
    env.extend_from_slice(extra);
    example::Example::start("forward_auth", &env)
}

/// The issue's checks, through nginx: no token, a valid one, an expired one, a missing
/// scope, a client's own `X-Auth-Subject`, and a path that reads two ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_asks_the_forward_auth_server_about_every_request() {
    let (app, seen) = upstream().await;
    let auth = forward_auth(&[]);
    let Some(nginx) = Nginx::start(
        "nginx_asks_the_forward_auth_server_about_every_request",
        auth.addr,
        app,
    ) else {
        return;
    };
    let reached = || seen.lock().unwrap().len();

    // No token: the layer's 401 with its challenge, which nginx passes on; nothing reaches
    // the upstream.
    let res = send(nginx.addr, Method::GET, "/todos", &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        values(&res.headers, "www-authenticate"),
        [r#"Bearer realm="api""#]
    );
    assert_eq!(reached(), 0, "the upstream was reached without a token");

    // A valid token: through, with what it said and with the client's own copies gone.
    let read = format!("Bearer {}", token("todos:read"));
    let forged = [
        ("authorization", read.as_str()),
        ("x-auth-subject", "admin"),
        ("x-auth-scopes", "todos:write"),
    ];
    let res = send(nginx.addr, Method::GET, "/todos/7", &forged).await;
    assert_eq!(res.status, StatusCode::OK);
    let (method, path, headers) = seen
        .lock()
        .unwrap()
        .pop()
        .expect("the upstream was reached");
    assert_eq!((method, path.as_str()), (Method::GET, "/todos/7"));
    assert_eq!(values(&headers, "x-auth-subject"), ["alice"]);
    assert_eq!(values(&headers, "x-auth-issuer"), ["todo-server"]);
    assert_eq!(values(&headers, "x-auth-scopes"), ["todos:read"]);

    // Expired: 401 invalid_token, not reached.
    let expired = format!("Bearer {}", expired_token());
    let res = send(
        nginx.addr,
        Method::GET,
        "/todos",
        &[("authorization", &expired)],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let challenge = values(&res.headers, "www-authenticate").join(",");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(
        reached(),
        0,
        "the upstream was reached with an expired token"
    );

    // A write route needs todos:write: the original method reached the auth server.
    let res = send(
        nginx.addr,
        Method::POST,
        "/todos",
        &[("authorization", &read)],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(reached(), 0, "the upstream was reached without the scope");
    let write = format!("Bearer {}", token("todos:read todos:write"));
    let res = send(
        nginx.addr,
        Method::POST,
        "/todos",
        &[("authorization", &write)],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let (method, _, headers) = seen
        .lock()
        .unwrap()
        .pop()
        .expect("the upstream was reached");
    assert_eq!(method, Method::POST);
    assert_eq!(
        values(&headers, "x-auth-scopes"),
        ["todos:read todos:write"]
    );

    // A public route: through without a token, and a client's own subject does not pass.
    let res = send(
        nginx.addr,
        Method::GET,
        "/health",
        &[("x-auth-subject", "admin")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let (_, path, headers) = seen
        .lock()
        .unwrap()
        .pop()
        .expect("the upstream was reached");
    assert_eq!(path, "/health");
    assert!(
        headers.get("x-auth-subject").is_none(),
        "a client's X-Auth-Subject reached the upstream: {headers:?}"
    );

    // Through nginx a client's own X-Forwarded-* never names another request.
    let forged = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/health"),
    ];
    let res = send(nginx.addr, Method::DELETE, "/todos/7", &forged).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reached(),
        0,
        "a forged X-Forwarded-Uri reached the upstream"
    );

    // A path the upstream may read as another route is refused, not matched as public.
    for path in [
        "/health/../todos",
        "/health/%2e%2e/todos",
        "/health%2f..%2ftodos",
        "//todos",
    ] {
        let res = send(nginx.addr, Method::GET, path, &[]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(reached(), 0, "{path} reached the upstream");
    }
    drop(nginx);
}

/// Asked directly: the original request is believed only from a trusted proxy.
#[tokio::test]
async fn the_original_request_is_believed_only_from_trusted_proxies() {
    // A client's own X-Auth-Subject is never echoed, on a public route either.
    let public = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/health"),
        ("x-auth-subject", "admin"),
    ];
    // Loopback is trusted by default: the request judged is GET /health, which is public.
    let trusting = forward_auth(&[]);
    let res = send(trusting.addr, Method::GET, "/", &public).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.headers.get("x-auth-subject").is_none());
    // Traefik's and Caddy's names work the same way.
    let write = format!("Bearer {}", token("todos:read"));
    let traefik = [
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", "/todos/3"),
        ("authorization", &write),
    ];
    let res = send(trusting.addr, Method::GET, "/", &traefik).await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "DELETE /todos needs todos:write"
    );
    let challenge = values(&res.headers, "www-authenticate").join(",");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );

    // A proxy must name the request, in one kind of header, each once: the proxy's own
    // request is never judged instead, and a client's own names (passed on by Caddy or
    // Traefik beside theirs) are refused.
    let res = send(trusting.addr, Method::GET, "/health", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let both = [public[0], public[1], ("x-forwarded-method", "DELETE")];
    let res = send(trusting.addr, Method::GET, "/", &both).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Another rule's path in another case, and path parameters, are refused.
    let read = format!("Bearer {}", token("todos:read"));
    for uri in ["/Todos/7", "/todos;x/7"] {
        let headers = [
            ("authorization", read.as_str()),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", uri),
        ];
        let res = send(trusting.addr, Method::GET, "/", &headers).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(res.headers.get("x-auth-subject").is_none(), "{uri}");
    }

    // Anyone else naming a request is refused; without such headers, its own is judged.
    let wary = forward_auth(&[("TRUSTED_PROXIES", "192.0.2.1")]);
    let res = send(wary.addr, Method::GET, "/", &public).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = send(wary.addr, Method::GET, "/health", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let read = format!("Bearer {}", token("todos:read"));
    let res = send(
        wary.addr,
        Method::GET,
        "/todos",
        &[("authorization", &read)],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(values(&res.headers, "x-auth-subject"), ["alice"]);
    assert_eq!(values(&res.headers, "x-auth-issuer"), ["todo-server"]);
    assert_eq!(values(&res.headers, "x-auth-scopes"), ["todos:read"]);
}

/// A rules file with a mistake stops the server before it listens, naming the line.
#[test]
fn a_bad_rules_file_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("tower-jwt-auth-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (rules, expected) in [
        ("GET /health public\nPOST\n", "RULES line 2"),
        ("GET /todos not\"a-scope\n", "RULES line 1"),
        ("G(T /todos token\n", "RULES line 1: invalid HTTP method"),
        (
            "GET todos token\n",
            "RULES line 1: a path prefix starts with `/`",
        ),
        ("get /todos token\n", "RULES line 1: methods are upper case"),
    ] {
        let path = dir.join("rules.txt");
        std::fs::write(&path, rules).unwrap();
        let env = [
            ("AUTH_ADDR", OsStr::new("127.0.0.1:0")),
            ("JWT_SECRET", OsStr::new(SECRET)),
            ("RULES", path.as_os_str()),
        ];
        let (status, output) = example::run("forward_auth", &[], &env);
        assert!(!status.success(), "{rules:?} was accepted");
        assert!(output.contains(expected), "{rules:?}: {output}");
    }
    // No key at all: no token could be valid.
    let (status, output) = example::run(
        "forward_auth",
        &[],
        &[("AUTH_ADDR", OsStr::new("127.0.0.1:0"))],
    );
    assert!(!status.success());
    assert!(
        output.contains("set JWT_SECRET, OIDC_ISSUER_URL or JWKS_URL"),
        "{output}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// With `PUBLIC_URL`, a DPoP-bound token passes with a proof for the original request
/// (`htm` and `htu` from the proxy's headers), and not with a proof for another one or as a
/// bearer token.
#[tokio::test]
async fn dpop_proofs_name_the_original_request() {
    let origin = "https://todo.example";
    let auth = forward_auth(&[("PUBLIC_URL", origin)]);
    let key = proof::ProofKey::es256();
    let token = issuer()
        .issue_bound("alice", "todos:read todos:write", &key.jkt)
        .unwrap()
        .access_token;
    let scheme = format!("DPoP {token}");
    let ask = |proof: String, method: &'static str, uri: &'static str| {
        let scheme = scheme.clone();
        async move {
            let headers = [
                ("authorization", scheme.as_str()),
                ("dpop", proof.as_str()),
                ("x-original-method", method),
                ("x-original-uri", uri),
            ];
            send(auth.addr, Method::GET, "/", &headers).await
        }
    };
    let url = format!("{origin}/todos/7");
    let proof = key.proof_for("DELETE", &url, Some(&token), |_, _| {});
    let res = ask(proof, "DELETE", "/todos/7?force=1").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(values(&res.headers, "x-auth-subject"), ["alice"]);

    // A proof for another method or path than the original request's.
    let proof = key.proof_for("GET", &url, Some(&token), |_, _| {});
    let res = ask(proof, "DELETE", "/todos/7").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let challenge = values(&res.headers, "www-authenticate").join(",");
    assert!(
        challenge.contains(r#"error="invalid_dpop_proof""#),
        "{challenge}"
    );
    let proof = key.proof_for("DELETE", &url, Some(&token), |_, _| {});
    let res = ask(proof, "DELETE", "/todos/8").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // The bound token as a bearer token.
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-original-method", "GET"),
        ("x-original-uri", "/todos/7"),
    ];
    let res = send(auth.addr, Method::GET, "/", &headers).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

/// The todo server signing with a PEM key publishes its JWKS; the forward-auth server
/// trusts it through `JWKS_URL` and passes the tokens of its logins.
#[cfg(all(feature = "password", feature = "jwks-rustls", feature = "redis"))]
#[tokio::test]
async fn tokens_of_a_todo_server_are_trusted_through_its_jwks() {
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ed25519.pem");
    let todo = example::Example::start(
        "todo_server",
        &[("TODO_ADDR", "127.0.0.1:0"), ("JWT_SIGNING_KEY", pem)],
    );
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let login = Request::post(format!("http://{}/login", todo.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("username=bob&password=builder"))
        .unwrap();
    let res = client.request(login).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bobs = body["access_token"].as_str().unwrap();

    let jwks = format!("http://{}/.well-known/jwks.json", todo.addr);
    let auth = example::Example::start(
        "forward_auth",
        &[
            ("AUTH_ADDR", "127.0.0.1:0"),
            ("RULES", RULES),
            ("JWKS_URL", &jwks),
            ("JWKS_ISSUER", "todo-server"),
        ],
    );
    let bearer = format!("Bearer {bobs}");
    let read = [
        ("authorization", bearer.as_str()),
        ("x-original-method", "GET"),
        ("x-original-uri", "/todos"),
    ];
    let res = send(auth.addr, Method::GET, "/", &read).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(values(&res.headers, "x-auth-subject"), ["bob"]);
    assert_eq!(values(&res.headers, "x-auth-scopes"), ["todos:read"]);
    // Bob may not write; a token the JWKS did not sign is refused.
    let write = [
        ("authorization", bearer.as_str()),
        ("x-original-method", "POST"),
        ("x-original-uri", "/todos"),
    ];
    let res = send(auth.addr, Method::GET, "/", &write).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let other = format!("Bearer {}", token("todos:read"));
    let read = [
        ("authorization", other.as_str()),
        ("x-original-method", "GET"),
        ("x-original-uri", "/todos"),
    ];
    let res = send(auth.addr, Method::GET, "/", &read).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

/// A valid token whose scopes or subject cannot be header values is refused, and the server
/// goes on answering.
#[tokio::test]
async fn claims_that_cannot_be_headers_are_refused_not_mangled() {
    let auth = forward_auth(&[]);
    let now = get_current_timestamp();
    for (sub, scope) in [
        ("alice", "todos:read \u{1}x"),
        ("al\u{7f}ice", "todos:read"),
    ] {
        let token = signed(json!({
            "iss": "todo-server", "aud": "todo-api", "sub": sub, "scope": scope,
            "iat": now, "exp": now + 600,
        }));
        let bearer = format!("Bearer {token}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-original-method", "GET"),
            ("x-original-uri", "/todos"),
        ];
        let res = send(auth.addr, Method::GET, "/", &headers).await;
        assert!(
            res.status.is_client_error(),
            "{sub:?} {scope:?}: {}",
            res.status
        );
        assert!(res.headers.get("x-auth-subject").is_none());
    }
    let read = format!("Bearer {}", token("todos:read"));
    let headers = [
        ("authorization", read.as_str()),
        ("x-original-method", "GET"),
        ("x-original-uri", "/todos"),
    ];
    assert_eq!(
        send(auth.addr, Method::GET, "/", &headers).await.status,
        StatusCode::OK
    );
}
