//! The example server as a user runs it: the built program, started on an ephemeral loopback
//! port with its settings in the environment, driven over TCP: the seed chapter's three
//! tests, then every route and rule of the server.

#![cfg(all(feature = "password", feature = "jwks-rustls", feature = "redis"))]

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;
#[path = "support/node.rs"]
mod node;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/proof.rs"]
mod proof;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::{ffi::OsStr, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use tower_jwt_auth::TokenIssuer;

const SECRET: &str = "todo-server-test-secret-of-32-bytes!!";
/// The example's body limit.
const MAX_BODY: usize = 16 * 1024;

/// The settings of a test server: the test secret and this lockout, on a free port.
fn config(lockout: Duration) -> Vec<(String, String)> {
    let mut config = config_with(&[("JWT_SECRET", SECRET)]);
    config.push(("LOGIN_LOCKOUT_SECS".into(), lockout.as_secs().to_string()));
    config
}

fn config_with(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut config = vec![("TODO_ADDR".to_owned(), "127.0.0.1:0".to_owned())];
    config.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    config
}

/// A running server; stopped when dropped.
struct Server {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    process: example::Example,
}

/// Everything a client sees of a response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }
}

async fn start(config: Vec<(String, String)>) -> Server {
    let env: Vec<(&str, &str)> = config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Blocks this test's thread until the program listens: nothing else runs on it yet.
    let process = example::Example::start("todo_server", &env);
    Server {
        addr: process.addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
        process,
    }
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn login(&self, username: &str, password: &str) -> Reply {
        self.login_with(username, password, &[]).await
    }

    /// A login that a proxy forwarded for `client`.
    async fn login_via_proxy(&self, username: &str, password: &str, client: &str) -> Reply {
        self.login_with(username, password, &[("x-forwarded-for", client)])
            .await
    }

    /// The OAuth2 password form, with `extra` headers.
    async fn login_with(&self, username: &str, password: &str, extra: &[(&str, &str)]) -> Reply {
        let form =
            serde_urlencoded::to_string([("username", username), ("password", password)]).unwrap();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        self.send(Method::POST, "/login", &headers, form).await
    }

    /// The challenge a request without a token gets: RFC 6750's bare `Bearer`, pointing to
    /// the server's RFC 9728 metadata.
    fn bare_challenge(&self) -> String {
        format!(
            "Bearer realm=\"api\", resource_metadata=\"http://{}/.well-known/oauth-protected-resource\"",
            self.addr
        )
    }

    async fn token(&self, username: &str, password: &str) -> String {
        let res = self.login(username, password).await;
        assert_eq!(res.status, StatusCode::OK, "login failed: {:?}", res.body);
        res.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(Method::GET, path, &headers, Bytes::new()).await
    }

    async fn create(&self, token: &str, title: &str) -> Reply {
        let auth = format!("Bearer {token}");
        let body = json!({ "title": title }).to_string();
        self.send(
            Method::POST,
            "/secure-todos",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    async fn post(&self, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(
            Method::POST,
            path,
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
    }

    async fn delete(&self, token: &str, id: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(
            Method::DELETE,
            &format!("/secure-todos/{id}"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
    }
}

// ---- The seed chapter's tests ----

#[tokio::test]
async fn login_and_secure_access() {
    let server = start(config(Duration::from_secs(60))).await;
    let token = server.token("alice", "wonderland").await;
    let res = server.get("/secure-todos", Some(&token)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.json().is_array());
}

#[tokio::test]
async fn invalid_login() {
    let server = start(config(Duration::from_secs(60))).await;
    assert_eq!(
        server.login("alice", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn secure_route_without_token() {
    let server = start(config(Duration::from_secs(60))).await;
    let res = server.get("/secure-todos", None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers[header::WWW_AUTHENTICATE],
        server.bare_challenge()
    );
}

// ---- DPoP ----

#[tokio::test]
async fn a_login_with_a_dpop_proof_gets_a_bound_token_that_needs_proofs() {
    let server = start(config(Duration::from_secs(60))).await;
    let origin = format!("http://{}", server.addr);
    let key = proof::ProofKey::es256();
    // RFC 9449 section 5: the proof of the token request names POST and the login URL.
    let login_proof = key.proof_for("POST", &format!("{origin}/login"), None, |_, _| {});
    let res = server
        .login_with("alice", "wonderland", &[("dpop", &login_proof)])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.json()["token_type"], "DPoP");
    let token = res.json()["access_token"].as_str().unwrap().to_owned();
    // A bad login proof is the token endpoint's 400 invalid_dpop_proof.
    let res = server
        .login_with("alice", "wonderland", &[("dpop", &login_proof)])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json()["error"], "invalid_dpop_proof");
    // The bound token: with a proof for the request, accepted; as a bearer token, refused.
    let url = format!("{origin}/secure-todos");
    let auth = format!("DPoP {token}");
    let proof = key.proof_for("GET", &url, Some(&token), |_, _| {});
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    let res = server
        .send(Method::GET, "/secure-todos", &headers, Bytes::new())
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = server
        .send(Method::GET, "/secure-todos", &headers, Bytes::new())
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "a replayed proof");
    assert!(
        res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("DPoP ")
    );
    let res = server.get("/secure-todos", Some(&token)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["detail"],
        "the token is bound to a DPoP key: send it with the DPoP scheme and a proof"
    );
    // A login without a proof still gets a bearer token.
    let res = server.login("alice", "wonderland").await;
    assert_eq!(res.json()["token_type"], "bearer");
    // A bare request is offered both schemes.
    let res = server.get("/secure-todos", None).await;
    let challenges: Vec<_> = res
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(challenges.len(), 2);
    assert!(
        challenges[1]
            .to_str()
            .unwrap()
            .starts_with("DPoP realm=\"api\", algs=\"ES256")
    );
}

#[tokio::test]
async fn with_dpop_required_and_nonces_logins_and_requests_follow_the_nonce_dance() {
    let mut settings = config(Duration::from_secs(60));
    settings.push(("DPOP".into(), "required".into()));
    settings.push(("DPOP_NONCE".into(), "1".into()));
    settings.push((
        "DPOP_NONCE_SECRET".into(),
        "a nonce secret of at least 32 bytes!".into(),
    ));
    let server = start(settings).await;
    let origin = format!("http://{}", server.addr);
    let key = proof::ProofKey::es256();
    assert_eq!(
        server.login("alice", "wonderland").await.status,
        StatusCode::BAD_REQUEST
    );
    let login = format!("{origin}/login");
    let res = server
        .login_with(
            "alice",
            "wonderland",
            &[("dpop", &key.proof_for("POST", &login, None, |_, _| {}))],
        )
        .await;
    assert_eq!(
        (res.status, res.json()["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce"))
    );
    let nonce = res.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let with_nonce = |c: &mut serde_json::Map<String, Value>| {
        c.insert("nonce".into(), json!(nonce));
    };
    let proof = key.proof_for("POST", &login, None, |_, c| with_nonce(c));
    let res = server
        .login_with("alice", "wonderland", &[("dpop", &proof)])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let token = res.json()["access_token"].as_str().unwrap().to_owned();
    let url = format!("{origin}/secure-todos");
    let auth = format!("DPoP {token}");
    let proof = key.proof_for("GET", &url, Some(&token), |_, c| with_nonce(c));
    let res = server
        .send(
            Method::GET,
            "/secure-todos",
            &[("authorization", &auth), ("dpop", &proof)],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // Without the nonce: 401 use_dpop_nonce with one to use.
    let proof = key.proof_for("GET", &url, Some(&token), |_, _| {});
    let res = server
        .send(
            Method::GET,
            "/secure-todos",
            &[("authorization", &auth), ("dpop", &proof)],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.headers.contains_key("dpop-nonce"));
    assert!(
        res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("use_dpop_nonce")
    );
}

// ---- Login ----

#[tokio::test]
async fn login_response_is_an_oauth2_token_response() {
    let server = start(config(Duration::from_secs(60))).await;
    let res = server.login("alice", "wonderland").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.headers[header::CONTENT_TYPE], "application/json");
    let body = res.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["scope"], "todos:read todos:write");
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn login_accepts_json_too() {
    let server = start(config(Duration::from_secs(60))).await;
    let body = json!({"username": "bob", "password": "builder"}).to_string();
    let res = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["scope"], "todos:read");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let server = start(config(Duration::from_secs(60))).await;
    let wrong = server.login("alice", "not-wonderland").await;
    let unknown = server.login("mallory", "not-wonderland").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    let names = |h: &HeaderMap| {
        let mut v: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| *k != header::DATE)
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&wrong.headers), names(&unknown.headers));
    assert_eq!(
        wrong.json(),
        json!({"detail": "Invalid username or password"})
    );
}

#[tokio::test]
async fn malformed_logins_get_clear_4xx() {
    let server = start(config(Duration::from_secs(60))).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json_ct = [("content-type", "application/json")];
    let res = server
        .send(Method::POST, "/login", &form, "username=alice")
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json()["detail"], "username and password are required");
    let res = server
        .send(Method::POST, "/login", &json_ct, "{not json")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", "text/plain")],
            "alice:wonderland",
        )
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let long = "p".repeat(2000);
    let res = server.login("alice", &long).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let res = server.send(Method::GET, "/login", &[], Bytes::new()).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers[header::ALLOW], "POST");
    assert_eq!(res.json(), json!({"detail": "method not allowed"}));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = start(config(Duration::from_secs(60))).await;
    let big = format!("username=alice&password={}", "x".repeat(MAX_BODY));
    let res = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            big,
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The server's one error body shape, though tower-http's limit answered.
    assert_eq!(
        res.json(),
        json!({"detail": "the request body is too large"})
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled_then_expire() {
    let server = start(config(Duration::from_secs(2))).await;
    for _ in 0..10 {
        assert_eq!(
            server.login("alice", "nope").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password gets 429 now, with a Retry-After.
    let res = server.login("alice", "wonderland").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // Another user is not affected.
    assert_eq!(server.login("bob", "builder").await.status, StatusCode::OK);
    // The lock expires on its own.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        server.login("alice", "wonderland").await.status,
        StatusCode::OK
    );
}

/// `n` logins sent at once, `login(i)` giving the i-th username and password.
async fn concurrent_logins(
    server: &Arc<Server>,
    n: usize,
    login: impl Fn(usize) -> (String, &'static str),
) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let server = server.clone();
            let (username, password) = login(i);
            tokio::spawn(async move { server.login(&username, password).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// More logins than the password workers and their queue hold: the surplus is refused at
/// once with `503` and `Retry-After` instead of waiting without bound, and the server keeps
/// answering everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_past_the_queue_is_503_with_retry_after() {
    let server = Arc::new(start(config(Duration::from_secs(60))).await);
    let storm = concurrent_logins(&server, 100, |i| (format!("nobody-{i}"), "guess")).await;
    let (mut refused, mut busy) = (0, 0);
    for res in storm {
        match res.status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(res.headers[header::RETRY_AFTER], "1");
                assert_eq!(
                    res.json()["detail"],
                    "too many logins at once; try again shortly"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(refused + busy, 100);
    assert!(
        busy > 0 && refused > 0,
        "{refused} checked, {busy} refused as busy"
    );
    // The storm is over: logins are served again.
    assert_eq!(
        server.login("alice", "wonderland").await.status,
        StatusCode::OK
    );
}

/// Security review, finding 2: an attempt counts before its password is checked, so 39
/// concurrent wrong guesses from one address get exactly the budget of 10 verifications
/// (they all used to be verified), and the right password, guess 40, is no way around the
/// lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_gets_no_more_than_the_budget() {
    let server = Arc::new(start(config(Duration::from_secs(60))).await);
    let guesses = concurrent_logins(&server, 39, |_| ("alice".into(), "guess")).await;
    let (mut verified, mut throttled) = (0, 0);
    for guess in guesses {
        match guess.status {
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            StatusCode::UNAUTHORIZED => verified += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((verified, throttled), (10, 29));
    assert_eq!(
        server.login("alice", "wonderland").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Security review, finding 3: repeated lockouts of one (user, client) grow.
#[tokio::test]
async fn lockouts_of_the_same_client_back_off() {
    let server = start(config(Duration::from_secs(1))).await;
    let retry_after = |res: &Reply| -> u64 {
        res.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    for _ in 0..10 {
        server.login("alice", "nope").await;
    }
    let first = server.login("alice", "nope").await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&first), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        assert_eq!(
            server.login("alice", "nope").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let second = server.login("alice", "nope").await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        retry_after(&second),
        2,
        "the second lockout is twice the first"
    );
}

/// `X-Forwarded-For` names the client only when a configured proxy sent it: otherwise
/// anyone could pick a fresh address for every guess.
#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    // No trusted proxy: every guess counts against the peer, whatever the header says.
    let server = start(config(Duration::from_secs(60))).await;
    for i in 0..10 {
        let res = server
            .login_via_proxy("alice", "nope", &format!("203.0.113.{i}"))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = server
        .login_via_proxy("alice", "wonderland", "203.0.113.99")
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);

    // Behind a trusted proxy each client has its own budget, and a client's neighbours
    // in the same IPv6 /64 share it.
    let server = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ]))
    .await;
    for i in 0..10 {
        let client = format!("2001:db8::{i:x}");
        assert_eq!(
            server
                .login_via_proxy("alice", "nope", &client)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    let res = server
        .login_via_proxy("alice", "wonderland", "2001:db8::ffff")
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "same /64");
    let res = server
        .login_via_proxy("alice", "wonderland", "2001:db8:0:1::1")
        .await;
    assert_eq!(res.status, StatusCode::OK, "another /64");
    let res = server
        .login_via_proxy("alice", "wonderland", "198.51.100.1")
        .await;
    assert_eq!(res.status, StatusCode::OK, "another client");
}

/// Distributed guessing is bounded per account, but the owner's own address, where she
/// logged in before, is not locked out by strangers.
#[tokio::test]
async fn the_account_budget_bounds_distributed_guessing_but_spares_the_owner() {
    let server = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_ACCOUNT_MAX_FAILURES", "20"),
    ]))
    .await;
    let home = "198.51.100.7";
    assert_eq!(
        server
            .login_via_proxy("alice", "wonderland", home)
            .await
            .status,
        StatusCode::OK
    );
    // A botnet: 20 addresses, one guess each (far under each address's own budget).
    for i in 0..20 {
        let res = server
            .login_via_proxy("alice", "guess", &format!("203.0.113.{i}"))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password from a new address is refused now...
    let res = server
        .login_via_proxy("alice", "wonderland", "203.0.113.200")
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key(header::RETRY_AFTER));
    // ...but not from home, nor for another account.
    assert_eq!(
        server
            .login_via_proxy("alice", "wonderland", home)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .login_via_proxy("bob", "builder", "203.0.113.200")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_users_are_throttled_alike() {
    let server = start(config(Duration::from_secs(60))).await;
    for _ in 0..10 {
        assert_eq!(
            server.login("nobody", "nope").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let res = server.login("nobody", "nope").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key(header::RETRY_AFTER));
}

// ---- Public routes ----

#[tokio::test]
async fn public_routes_and_404() {
    let server = start(config(Duration::from_secs(60))).await;
    let res = server.get("/health", None).await;
    assert_eq!(
        (res.status, res.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let res = server.get("/todos", None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(!res.json().as_array().unwrap().is_empty());
    assert_eq!(
        server.get("/nope", None).await.status,
        StatusCode::NOT_FOUND
    );
    // HEAD is GET without the body; a method the path lacks is 405 with `Allow`.
    let res = server
        .send(Method::HEAD, "/health", &[], Bytes::new())
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.is_empty());
    let res = server.send(Method::PUT, "/todos", &[], Bytes::new()).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers[header::ALLOW], "GET, HEAD");
}

#[tokio::test]
async fn the_rfc_9728_metadata_tells_clients_where_to_get_tokens() {
    let server = start(config(Duration::from_secs(60))).await;
    let resource = format!("http://{}", server.addr);
    let url = format!("{resource}/.well-known/oauth-protected-resource");

    // The 401 and the 403 point to it (section 5.1); the 403 names the scope it lacks.
    let res = server.get("/secure-todos", None).await;
    assert_eq!(
        res.headers[header::WWW_AUTHENTICATE],
        server.bare_challenge()
    );
    let bob = server.token("bob", "builder").await;
    let res = server.create(&bob, "x").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let challenge = res.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains("scope=\"todos:write\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{url}\"")),
        "{challenge}"
    );

    // The document, public, for every client.
    let res = server
        .get("/.well-known/oauth-protected-resource", None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        res.json(),
        json!({
            "resource": resource,
            "authorization_servers": ["todo-server"],
            "scopes_supported": ["todos:read", "todos:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Todo API",
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"],
        })
    );
    let res = server
        .send(
            Method::POST,
            "/.well-known/oauth-protected-resource",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers[header::ALLOW], "GET, HEAD");

    // An independent client (npm oauth4webapi) finds it from the resource identifier alone
    // and accepts it (RFC 9728 sections 3.1 to 3.3).
    if node::ready(
        "the_rfc_9728_metadata_tells_clients_where_to_get_tokens",
        &["oauth4webapi"],
    ) {
        let out = std::process::Command::new("node")
            .arg("resource.mjs")
            .arg(&resource)
            .current_dir(node::dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "oauth4webapi refused the metadata: {stderr}"
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["url"], url.as_str(), "where it looked");
        assert_eq!(seen["metadata"]["resource"], resource.as_str());
        assert_eq!(
            seen["metadata"]["authorization_servers"],
            json!(["todo-server"])
        );

        // The same client refuses a document for another resource (section 3.3): started
        // with another PUBLIC_URL, the server's metadata names that one.
        let other = start(config_with(&[
            ("JWT_SECRET", SECRET),
            ("PUBLIC_URL", "http://localhost:1"),
        ]))
        .await;
        let out = std::process::Command::new("node")
            .arg("resource.mjs")
            .arg(format!("http://{}", other.addr))
            .current_dir(node::dir())
            .output()
            .unwrap();
        assert!(!out.status.success(), "a mismatched resource was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("does not match the expected value"),
            "{stderr}"
        );
    }

    // Required DPoP is advertised.
    let strict = start(config_with(&[("JWT_SECRET", SECRET), ("DPOP", "required")])).await;
    let res = strict
        .get("/.well-known/oauth-protected-resource", None)
        .await;
    assert_eq!(res.json()["dpop_bound_access_tokens_required"], true);
}

#[tokio::test]
async fn opaque_tokens_of_the_provider_are_introspected_and_read_like_jwts() {
    if !node::ready(
        "opaque_tokens_of_the_provider_are_introspected",
        &["oidc-provider"],
    ) {
        return;
    }
    const RESOURCE: &str = "http://127.0.0.1:9999/";
    let provider = node::Provider::start(&[
        ("RESOURCE", RESOURCE),
        ("AT_FORMAT", "opaque"),
        ("DPOP_BOUND", "0"),
        ("SCOPES", "todos:read todos:write"),
    ]);
    let server = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("JWT_AUDIENCE", RESOURCE),
        ("OIDC_ISSUER_URL", &provider.issuer),
        ("INTROSPECTION_CLIENT_ID", "rs-api"),
        ("INTROSPECTION_CLIENT_SECRET", "rs-api-secret"),
    ]))
    .await;
    let reader = provider.client(
        "http://127.0.0.1:9999/",
        "GET",
        "none",
        &[("RESOURCE", RESOURCE), ("SCOPE", "todos:read")],
    );
    let token = reader["token"].as_str().unwrap();
    assert!(!token.contains('.'), "not opaque: {token}");
    // `/me` shows the identity as for a JWT: the provider's issuer, the client as `sub`.
    let res = server.get("/me", Some(token)).await;
    assert_eq!(res.status, StatusCode::OK);
    let me = res.json();
    assert_eq!(me["iss"], provider.issuer.as_str());
    assert_eq!(me["sub"], "rs-test");
    assert_eq!(me["scope"], "todos:read");
    assert_eq!(
        server.get("/secure-todos", Some(token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.create(token, "x").await.status,
        StatusCode::FORBIDDEN
    );
    let writer = provider.client(
        "http://127.0.0.1:9999/",
        "GET",
        "none",
        &[("RESOURCE", RESOURCE), ("SCOPE", "todos:read todos:write")],
    );
    let writer = writer["token"].as_str().unwrap();
    assert_eq!(
        server.create(writer, "from a client").await.status,
        StatusCode::CREATED
    );
    let res = server.get("/secure-todos", Some(writer)).await;
    assert_eq!(res.json()[0]["title"], "from a client");
    // Something the provider never issued.
    let res = server.get("/secure-todos", Some("made-up")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["detail"], "the token is not active");
    // The metadata names the provider beside the server itself.
    let res = server
        .get("/.well-known/oauth-protected-resource", None)
        .await;
    assert_eq!(
        res.json()["authorization_servers"],
        json!(["todo-server", provider.issuer])
    );
}

// ---- Protected routes ----

#[tokio::test]
async fn alice_creates_lists_and_deletes_her_todos() {
    let server = start(config(Duration::from_secs(60))).await;
    let alice = server.token("alice", "wonderland").await;
    let res = server.create(&alice, "buy milk").await;
    assert_eq!(res.status, StatusCode::CREATED);
    let todo = res.json();
    assert_eq!(todo["title"], "buy milk");
    let id = todo["id"].to_string();
    assert_eq!(res.headers[header::LOCATION], format!("/secure-todos/{id}"));

    let list = server.get("/secure-todos", Some(&alice)).await.json();
    assert_eq!(list, json!([todo]));

    assert_eq!(
        server.delete(&alice, &id).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete(&alice, &id).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.delete(&alice, "not-a-number").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get("/secure-todos", Some(&alice)).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn invalid_titles_are_422() {
    let server = start(config(Duration::from_secs(60))).await;
    let alice = server.token("alice", "wonderland").await;
    assert_eq!(
        server.create(&alice, "   ").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        server.create(&alice, &"t".repeat(201)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn bob_reads_but_cannot_write() {
    let server = start(config(Duration::from_secs(60))).await;
    let bob = server.token("bob", "builder").await;
    assert_eq!(
        server.get("/secure-todos", Some(&bob)).await.status,
        StatusCode::OK
    );
    let res = server.create(&bob, "x").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let challenge = res.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"todos:write\""), "{challenge}");
    assert_eq!(server.delete(&bob, "1").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn todos_are_isolated_per_user() {
    let server = start(config(Duration::from_secs(60))).await;
    let alice = server.token("alice", "wonderland").await;
    let id = server.create(&alice, "alice's").await.json()["id"].to_string();
    let bob = server.token("bob", "builder").await;
    assert_eq!(
        server.get("/secure-todos", Some(&bob)).await.json(),
        json!([])
    );
    // carol has write access but does not own alice's todo.
    let issuer = TokenIssuer::builder()
        .hs256(SECRET.as_bytes())
        .issuer("todo-server")
        .audience("todo-api")
        .build()
        .unwrap();
    let carol = issuer
        .issue("carol", "todos:read todos:write")
        .unwrap()
        .access_token;
    assert_eq!(
        server.delete(&carol, &id).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .get("/secure-todos", Some(&alice))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn me_returns_the_injected_claims() {
    let server = start(config(Duration::from_secs(60))).await;
    let alice = server.token("alice", "wonderland").await;
    let me = server.get("/me", Some(&alice)).await.json();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["iss"], "todo-server");
    assert_eq!(me["aud"], "todo-api");
    assert_eq!(me["scope"], "todos:read todos:write");
    assert_eq!(me["jti"].as_str().unwrap().len(), 32);
}

fn forge(claims: Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_without_sub_or_for_others_are_401() {
    let server = start(config(Duration::from_secs(60))).await;
    let base =
        json!({"iss": "todo-server", "aud": "todo-api", "exp": get_current_timestamp() + 60});
    let res = server
        .get(
            "/secure-todos",
            Some(&forge(base.clone(), SECRET.as_bytes())),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["detail"],
        "the token lacks the required claim `sub`"
    );

    let mut other_aud = base.clone();
    other_aud["sub"] = json!("alice");
    other_aud["aud"] = json!("billing-api");
    let res = server
        .get("/secure-todos", Some(&forge(other_aud, SECRET.as_bytes())))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // The seed's hard-coded secret is worthless here.
    let mut ok = base;
    ok["sub"] = json!("alice");
    let res = server
        .get(
            "/secure-todos",
            Some(&forge(ok, b"super-secret-key-super-secret-key")),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

/// `--help` lists every setting with its environment variable and default, never the value
/// of a secret; a secret that is too short stops the server before it listens.
#[test]
fn configuration_defaults_and_refusals() {
    let secret = OsStr::new(SECRET);
    let (status, help) = example::run("todo_server", &["--help"], &[("JWT_SECRET", secret)]);
    assert!(status.success(), "{help}");
    for expected in [
        "[env: TODO_ADDR=] [default: 127.0.0.1:3000]",
        "[env: JWT_ISSUER=] [default: todo-server]",
        "[env: JWT_AUDIENCE=] [default: todo-api]",
        "[env: JWT_TTL_SECS=] [default: 1800]",
        "[env: JWT_SECRET]",
        "[env: REDIS_URL]",
        "LOGIN_MAX_FAILURES",
        "TRUSTED_PROXIES",
        "OIDC_ISSUER_URL",
        "JWT_CACHE_SIZE",
        "REVOCATIONS_REFUSE_AFTER_SECS",
    ] {
        assert!(
            help.contains(expected),
            "{expected} missing from --help:\n{help}"
        );
    }
    assert!(!help.contains(SECRET), "--help shows the secret");

    let (status, out) = example::run(
        "todo_server",
        &[],
        &[
            ("JWT_SECRET", OsStr::new("too-short")),
            ("TODO_ADDR", OsStr::new("127.0.0.1:0")),
        ],
    );
    assert!(!status.success());
    assert!(out.contains("needs at least 32"), "{out}");
    assert!(!out.contains("listening"), "{out}");
}

// ---- Nothing secret in the logs ----

#[tokio::test]
async fn no_token_or_password_in_logs_at_any_level() {
    let mut settings = config(Duration::from_secs(60));
    settings.push(("RUST_LOG".into(), "trace".into()));
    let server = start(settings).await;
    let token = server.token("alice", "wonderland").await;
    server.get("/secure-todos", Some(&token)).await;
    server
        .get("/secure-todos", Some(&format!("{token}x")))
        .await;
    server.login("alice", "hunter2-wrong").await;
    let logs = server.process.output();
    assert!(logs.contains("request rejected"), "rejections are logged");
    assert!(logs.contains("login succeeded"));
    for secret in [token.as_str(), "wonderland", "hunter2-wrong", SECRET] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    // Not even the signature part of the token.
    assert!(!logs.contains(token.rsplit('.').next().unwrap()));
}

// ---- Keys for real deployments ----

#[tokio::test]
async fn signing_key_tokens_are_published_and_trusted_by_another_server() {
    let pem = format!("{}/tests/fixtures/ed25519.pem", env!("CARGO_MANIFEST_DIR"));
    let a = start(config_with(&[
        ("JWT_SIGNING_KEY", pem.as_str()),
        ("JWT_ISSUER", "auth-a"),
    ]))
    .await;

    // A publishes its public key as a JWKS; there is no secret in it.
    let jwks = a.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let key = &jwks.json()["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("EdDSA"))
    );
    assert!(
        key.get("d").is_none(),
        "the private part is never published"
    );

    let token = a.token("alice", "wonderland").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    assert_eq!(
        a.get("/secure-todos", Some(&token)).await.status,
        StatusCode::OK
    );

    // B signs its own tokens with HS256 and trusts A through A's JWKS.
    let jwks_url = format!("http://{}/.well-known/jwks.json", a.addr);
    let b = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("JWT_ISSUER", "service-b"),
        ("JWKS_URL", jwks_url.as_str()),
        ("JWKS_ISSUER", "auth-a"),
    ]))
    .await;
    let res = b.get("/secure-todos", Some(&token)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(b.create(&token, "from A").await.status, StatusCode::CREATED);
    assert_eq!(b.get("/me", Some(&token)).await.json()["iss"], "auth-a");
    // B's own logins still work, and A does not trust B.
    let own = b.token("bob", "builder").await;
    assert_eq!(
        b.get("/secure-todos", Some(&own)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.get("/secure-todos", Some(&own)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // With an HMAC secret there is nothing to publish.
    assert_eq!(
        b.get("/.well-known/jwks.json", None).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Two servers: A signs with Ed25519 and publishes its JWKS; B signs its own tokens and also
/// trusts A. Returns (A, B).
async fn provider_and_relying_server() -> (Server, Server) {
    let pem = format!("{}/tests/fixtures/ed25519.pem", env!("CARGO_MANIFEST_DIR"));
    let a = start(config_with(&[
        ("JWT_SIGNING_KEY", pem.as_str()),
        ("JWT_ISSUER", "auth-a"),
    ]))
    .await;
    let jwks_url = format!("http://{}/.well-known/jwks.json", a.addr);
    let b = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("JWT_ISSUER", "service-b"),
        ("JWKS_URL", jwks_url.as_str()),
        ("JWKS_ISSUER", "auth-a"),
    ]))
    .await;
    (a, b)
}

/// Security review, finding 1: a user is (`iss`, `sub`). A's `alice` is not B's `alice`: she
/// neither sees nor deletes the todos of B's own alice, and the reverse.
#[tokio::test]
async fn the_same_sub_from_another_issuer_is_another_user() {
    let (a, b) = provider_and_relying_server().await;
    let local = b.token("alice", "wonderland").await;
    let foreign = a.token("alice", "wonderland").await;

    let created = b.create(&local, "local alice's").await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].to_string();

    let res = b.get("/secure-todos", Some(&foreign)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), json!([]), "A's alice sees nothing of B's alice");
    assert_eq!(b.delete(&foreign, &id).await.status, StatusCode::NOT_FOUND);

    assert_eq!(
        b.create(&foreign, "A's alice's").await.status,
        StatusCode::CREATED
    );
    let mine = b.get("/secure-todos", Some(&local)).await.json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["title"], "local alice's");
    assert_eq!(b.delete(&local, &id).await.status, StatusCode::NO_CONTENT);
}

/// Security review, finding 5: with an external provider trusted too, the server's own
/// tokens are still required to be `at+jwt` (as in single-issuer mode).
#[tokio::test]
async fn own_tokens_must_be_at_jwt_in_multi_issuer_mode_too() {
    let (_a, b) = provider_and_relying_server().await;
    let claims = json!({
        "sub": "alice", "iss": "service-b", "aud": "todo-api",
        "iat": get_current_timestamp(), "exp": get_current_timestamp() + 60,
        "scope": "todos:read",
    });
    let typed_jwt = encode(
        &Header::new(Algorithm::HS256), // `typ: JWT`
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let res = b.get("/secure-todos", Some(&typed_jwt)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["detail"], "the token's type is not accepted");
    let access_token = forge(claims, SECRET.as_bytes());
    assert_eq!(
        b.get("/secure-todos", Some(&access_token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn todos_per_user_are_capped() {
    let server = start(config(Duration::from_secs(60))).await;
    let token = server.token("alice", "wonderland").await;
    for i in 0..1000 {
        let res = server.create(&token, &format!("todo {i}")).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let res = server.create(&token, "one too many").await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(
        res.json()["detail"],
        "too many todos: delete some before adding more"
    );
}

/// Security review, finding 9: a client that sends half a request head, or idles on a
/// keep-alive connection, is disconnected after `HEADER_READ_TIMEOUT_SECS`.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("HEADER_READ_TIMEOUT_SECS", "1"),
    ]))
    .await;
    let closed_within = |mut stream: tokio::net::TcpStream, limit: Duration| async move {
        let mut buf = vec![0; 4096];
        tokio::time::timeout(limit, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    };
    // Half a header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(slow, Duration::from_secs(5)).await,
        "half-sent header kept open"
    );
    // One request, then an idle keep-alive connection.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(idle, Duration::from_secs(5)).await,
        "idle connection kept open"
    );
}

/// At most `MAX_CONNECTIONS` connections are served at once; the next waits for a slot.
#[tokio::test]
async fn open_connections_are_capped() {
    let server = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("MAX_CONNECTIONS", "2"),
    ]))
    .await;
    let held: Vec<_> = futures_open(server.addr, 2).await;
    let third = tokio::spawn({
        let url = format!("http://{}/health", server.addr);
        let client = server.client.clone();
        async move {
            let req = Request::get(url).body(Full::default()).unwrap();
            client.request(req).await.unwrap().status()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while two were open"
    );
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// Opens `n` HTTP/1.1 connections, each with one request served, and keeps them open.
async fn futures_open(
    addr: SocketAddr,
    n: usize,
) -> Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let mut held = Vec::new();
    for _ in 0..n {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/health")
            .header("host", "x")
            .body(Full::default())
            .unwrap();
        assert_eq!(
            sender.send_request(req).await.unwrap().status(),
            StatusCode::OK
        );
        held.push(sender);
    }
    held
}

/// HTTP/2 with prior knowledge (h2c) on the same port, token and all.
#[tokio::test]
async fn h2c_requests_with_a_token_are_served() {
    let server = start(config(Duration::from_secs(60))).await;
    let token = server.token("alice", "wonderland").await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/secure-todos", server.addr))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "[]");
    let req = Request::get(format!("http://{}/secure-todos", server.addr))
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Security review, finding 9: a `JWT_SECRET` that is not UTF-8 stops the server instead of
/// being replaced by a random secret.
#[test]
fn a_secret_that_is_not_utf8_refuses_to_start() {
    use std::os::unix::ffi::OsStringExt;
    let garbage = std::ffi::OsString::from_vec(vec![0xff; 40]);
    let addr = OsStr::new("127.0.0.1:0");
    let (status, out) = example::run(
        "todo_server",
        &[],
        &[("JWT_SECRET", &garbage), ("TODO_ADDR", addr)],
    );
    assert!(!status.success());
    assert!(out.contains("invalid UTF-8"), "{out}");
    assert!(!out.contains("listening"), "{out}");
}

/// 4000 mixed requests, 400 at a time, over TCP: valid tokens of 50 users, expired tokens,
/// forged signatures, no token. Every answer is the right one, and no response ever carries
/// another user's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_answers_everyone_correctly_and_never_crosses_users() {
    let server = Arc::new(start(config(Duration::from_secs(60))).await);
    let now = get_current_timestamp();
    let claims = |user: usize, exp: u64| {
        json!({
            "sub": format!("user-{user}"), "iss": "todo-server", "aud": "todo-api",
            "iat": now, "exp": exp, "scope": "todos:read todos:write",
        })
    };
    let valid: Vec<String> = (0..50)
        .map(|u| forge(claims(u, now + 600), SECRET.as_bytes()))
        .collect();
    for (u, token) in valid.iter().enumerate() {
        let res = server.create(token, &format!("secret of user-{u}")).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let expired: Vec<String> = (0..50)
        .map(|u| forge(claims(u, now - 3600), SECRET.as_bytes()))
        .collect();
    let forged: Vec<String> = (0..50)
        .map(|u| {
            forge(
                claims(u, now + 600),
                b"not-the-server-secret-not-the-server",
            )
        })
        .collect();

    let semaphore = Arc::new(tokio::sync::Semaphore::new(400));
    let tasks: Vec<_> = (0..4000usize)
        .map(|i| {
            let server = server.clone();
            let semaphore = semaphore.clone();
            let user = i % 50;
            let (kind, token) = match i % 4 {
                0 | 1 => ("valid", Some(valid[user].clone())),
                2 => ("expired", Some(expired[user].clone())),
                _ if i % 8 == 3 => ("forged", Some(forged[user].clone())),
                _ => ("none", None),
            };
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await.unwrap();
                let res = server.get("/secure-todos", token.as_deref()).await;
                (kind, user, res)
            })
        })
        .collect();
    let mut counts = std::collections::HashMap::new();
    for task in tasks {
        let (kind, user, res) = task.await.unwrap();
        *counts.entry(kind).or_insert(0) += 1;
        match kind {
            "valid" => {
                assert_eq!(res.status, StatusCode::OK);
                let todos = res.json();
                let titles: Vec<_> = todos
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["title"].clone())
                    .collect();
                assert_eq!(
                    titles,
                    [json!(format!("secret of user-{user}"))],
                    "user-{user} got {todos}"
                );
            }
            "expired" => {
                assert_eq!(res.status, StatusCode::UNAUTHORIZED);
                assert_eq!(res.json()["detail"], "the token has expired");
            }
            "forged" => {
                assert_eq!(res.status, StatusCode::UNAUTHORIZED);
                assert_eq!(res.json()["detail"], "the token's signature is invalid");
            }
            _ => {
                assert_eq!(res.status, StatusCode::UNAUTHORIZED);
                assert_eq!(
                    res.headers[header::WWW_AUTHENTICATE],
                    server.bare_challenge()
                );
            }
        }
        assert!(
            !String::from_utf8_lossy(&res.body).contains("secret of") || kind == "valid",
            "a {kind} request saw todos"
        );
    }
    assert_eq!(counts.values().sum::<i32>(), 4000);
    assert_eq!(counts["valid"], 2000);
}

/// An external provider by discovery or by JWKS; a JWKS without its issuer, or both kinds at
/// once, stop the server before it listens.
#[test]
fn external_provider_configuration() {
    for vars in [
        &[("OIDC_ISSUER_URL", "http://127.0.0.1:1/realms/x")][..],
        &[
            ("JWKS_URL", "http://127.0.0.1:1/jwks"),
            ("JWKS_ISSUER", "idp"),
        ][..],
    ] {
        let mut env = vec![("JWT_SECRET", SECRET), ("TODO_ADDR", "127.0.0.1:0")];
        env.extend_from_slice(vars);
        let server = example::Example::start("todo_server", &env);
        assert!(
            server
                .output()
                .contains("also trusting an external identity provider"),
            "{}",
            server.output()
        );
    }
    let refused = |vars: &[(&str, &str)]| {
        let env: Vec<(&str, &OsStr)> = vars.iter().map(|(k, v)| (*k, OsStr::new(*v))).collect();
        let (status, out) = example::run("todo_server", &[], &env);
        assert!(!status.success(), "{out}");
        out
    };
    let out = refused(&[("JWKS_URL", "http://x/jwks")]);
    assert!(out.contains("jwks-issuer"), "{out}");
    let out = refused(&[
        ("JWKS_URL", "http://x"),
        ("OIDC_ISSUER_URL", "http://y"),
        ("JWKS_ISSUER", "i"),
    ]);
    assert!(out.contains("cannot be used with"), "{out}");
}

/// SIGTERM: the server stops accepting, drains, and exits with success.
#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_returns() {
    let mut server = start(config(Duration::from_secs(60))).await;
    assert_eq!(server.get("/health", None).await.status, StatusCode::OK);
    let addr = server.addr;
    let status = server.process.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(server.process.output().contains("shutting down"));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

// ---- Logout, and many instances sharing one Redis ----

/// A refusal of a revoked token, as a client sees it: 401, the RFC 6750 challenge, and the
/// server's one error body shape.
fn assert_revoked(res: &Reply) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{:?}", res.body);
    let challenge = res.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("revoked"),
        "{challenge}"
    );
    assert_eq!(res.json(), json!({"detail": "the token has been revoked"}));
}

#[tokio::test]
async fn logout_revokes_the_token_and_logout_all_every_session() {
    let server = start(config(Duration::from_secs(60))).await;
    let first = server.token("alice", "wonderland").await;
    let second = server.token("alice", "wonderland").await;
    let bobs = server.token("bob", "builder").await;
    // Both need a valid token.
    assert_eq!(
        server
            .send(Method::POST, "/logout", &[], Bytes::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let res = server.get("/logout", Some(&first)).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers[header::ALLOW], "POST");
    let res = server.get("/secure-todos/1", Some(&first)).await;
    assert_eq!(res.headers[header::ALLOW], "DELETE");

    let res = server.post("/logout", &first).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());
    assert_revoked(&server.get("/secure-todos", Some(&first)).await);
    assert_revoked(&server.post("/logout", &first).await);
    // Only that token.
    assert_eq!(
        server.get("/secure-todos", Some(&second)).await.status,
        StatusCode::OK
    );

    assert_eq!(
        server.post("/logout/all", &second).await.status,
        StatusCode::NO_CONTENT
    );
    assert_revoked(&server.get("/me", Some(&second)).await);
    assert_eq!(server.get("/me", Some(&bobs)).await.status, StatusCode::OK);
    // A login after the answer gets a token that works.
    let fresh = server.token("alice", "wonderland").await;
    assert_eq!(server.get("/me", Some(&fresh)).await.status, StatusCode::OK);
}

/// `n` instances of the example server sharing `redis`.
async fn instances(redis: &redis_server::RedisServer, n: usize, lockout: Duration) -> Vec<Server> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let mut config = config(lockout);
        config.push(("REDIS_URL".into(), redis.url()));
        servers.push(start(config).await);
    }
    servers
}

/// Polls until `token` is refused on `server`; how long that took.
async fn until_revoked(server: &Server, token: &str, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let res = server.get("/me", Some(token)).await;
        if res.status == StatusCode::UNAUTHORIZED {
            assert_revoked(&res);
            return start.elapsed();
        }
        assert_eq!(res.status, StatusCode::OK);
        assert!(start.elapsed() < within, "still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocations_through_redis_and_survive_its_outage() {
    let Some(mut redis) = redis_server::RedisServer::start("two instances and redis") else {
        return;
    };
    let servers = instances(&redis, 2, Duration::from_secs(60)).await;
    let (a, b) = (&servers[0], &servers[1]);

    // Logged out on A: refused on B within 200 ms.
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let token = a.token("bob", "builder").await;
        assert_eq!(b.get("/me", Some(&token)).await.status, StatusCode::OK);
        assert_eq!(
            a.post("/logout", &token).await.status,
            StatusCode::NO_CONTENT
        );
        worst = worst.max(until_revoked(b, &token, Duration::from_millis(200)).await);
    }
    println!("logout on A refused on B after at most {worst:?} (of 5)");

    // Everything of alice's up to a logout/all on B is refused on A.
    let older = [
        a.token("alice", "wonderland").await,
        b.token("alice", "wonderland").await,
    ];
    let bobs = a.token("bob", "builder").await;
    assert_eq!(
        b.post("/logout/all", &older[1]).await.status,
        StatusCode::NO_CONTENT
    );
    for token in &older {
        until_revoked(a, token, Duration::from_millis(200)).await;
        assert_revoked(&b.get("/me", Some(token)).await);
    }
    assert_eq!(a.get("/me", Some(&bobs)).await.status, StatusCode::OK);
    let newer = a.token("alice", "wonderland").await;
    assert_eq!(b.get("/me", Some(&newer)).await.status, StatusCode::OK);

    // Redis dies: both keep serving, logins included.
    redis.kill();
    let during = b.token("bob", "builder").await;
    assert_eq!(a.get("/me", Some(&during)).await.status, StatusCode::OK);
    assert_eq!(b.get("/me", Some(&newer)).await.status, StatusCode::OK);
    assert_revoked(&a.get("/me", Some(&older[0])).await);
    // A logout on A meanwhile holds on A at once, but is no silent success: B cannot know
    // yet (security review 3, finding 1)...
    let res = a.post("/logout", &during).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers[header::RETRY_AFTER], "5");
    assert_eq!(
        res.json(),
        json!({"detail": "the logout could not be shared; try again"})
    );
    assert_revoked(&a.get("/me", Some(&during)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.get("/me", Some(&during)).await.status, StatusCode::OK);
    // ...and once Redis is back, A publishes it and B refuses it.
    redis.restart();
    let took = until_revoked(b, &during, Duration::from_secs(5)).await;
    println!("logout made while Redis was down reached B {took:?} after Redis came back");

    // A fresh instance started after all of this knows every revocation.
    let fresh = &instances(&redis, 1, Duration::from_secs(60)).await[0];
    for token in older.iter().chain([&during]) {
        assert_revoked(&fresh.get("/me", Some(token)).await);
    }
    assert_eq!(fresh.get("/me", Some(&newer)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_spread_over_instances_share_one_budget_and_fail_open_without_redis() {
    let Some(mut redis) = redis_server::RedisServer::start("shared login throttle") else {
        return;
    };
    let servers = instances(&redis, 2, Duration::from_secs(60)).await;
    // Ten failures (the budget), alternating between A and B...
    for i in 0..10 {
        let res = servers[i % 2].login("alice", "nope").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // ...lock the pair on both, with the same Retry-After as one instance gives.
    for server in &servers {
        let res = server.login("alice", "wonderland").await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.json(),
            json!({"detail": "too many failed logins; try again later"})
        );
        let retry: u64 = res.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((59..=60).contains(&retry), "Retry-After: {retry}");
    }
    // Another user is untouched; a success clears bob's failures everywhere.
    for i in 0..9 {
        assert_eq!(
            servers[i % 2].login("bob", "nope").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        servers[0].login("bob", "builder").await.status,
        StatusCode::OK
    );
    assert_eq!(
        servers[1].login("bob", "nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        servers[1].login("bob", "builder").await.status,
        StatusCode::OK
    );

    // Without Redis logins keep working, throttled per instance.
    redis.kill();
    assert_eq!(
        servers[0].login("bob", "builder").await.status,
        StatusCode::OK
    );
    for _ in 0..10 {
        assert_eq!(
            servers[0].login("carol", "nope").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        servers[0].login("carol", "nope").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        servers[1].login("carol", "nope").await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Security review 3, finding 9: an instance started while Redis is down serves every earlier
/// logout's token by default (`OutOfSync::Serve`, as the README says); with
/// `REVOCATIONS_REFUSE_AFTER_SECS` it answers `503` instead until it has loaded the set.
#[tokio::test]
async fn started_without_redis_it_serves_by_default_and_refuses_when_asked() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis_url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    for (refuse, expected) in [
        (None, StatusCode::OK),
        (Some("1"), StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let mut settings = config(Duration::from_secs(60));
        settings.push(("REDIS_URL".into(), redis_url.clone()));
        if let Some(secs) = refuse {
            settings.push(("REVOCATIONS_REFUSE_AFTER_SECS".into(), secs.into()));
        }
        let server = start(settings).await;
        // Logins still work: the throttle counts per instance while Redis is away.
        let token = server.token("alice", "wonderland").await;
        let res = server.get("/me", Some(&token)).await;
        assert_eq!(res.status, expected, "{refuse:?}: {:?}", res.body);
        if expected == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(res.headers[header::RETRY_AFTER], "5");
        }
    }
}

// ---- Certificate-bound tokens (RFC 8705 section 3) ----

/// A CA, the server's certificate for `localhost`, and two client certificates it issued,
/// as PEM files in a fresh directory (removed when dropped).
struct TlsFiles {
    dir: std::path::PathBuf,
    server_ca: rustls::pki_types::CertificateDer<'static>,
    clients: [(String, String, Vec<u8>); 2],
}

impl TlsFiles {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("todo-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = pki::Pki::localhost();
        let client = |name: &str| {
            let (cert, key) = pki.client(name);
            (cert.pem(), key.serialize_pem(), cert.der().to_vec())
        };
        std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), pki.server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), pki.server_key.serialize_pem()).unwrap();
        Self {
            server_ca: pki.ca.der().clone(),
            clients: [client("client-a"), client("client-b")],
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// An HTTPS client trusting the CA, presenting client certificate `i` if given.
    fn client(
        &self,
        i: Option<usize>,
    ) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match i {
            None => config.with_no_client_auth(),
            Some(i) => {
                let (cert, key, _) = &self.clients[i];
                let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                config.with_client_auth_cert(chain, key).unwrap()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(https)
    }

    /// `x5t#S256` of client certificate `i`, computed here: base64url(SHA-256(DER)).
    fn thumbprint(&self, i: usize) -> String {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(&self.clients[i].2))
    }

    /// RFC 9440 `Client-Cert` of client certificate `i`: `:base64(DER):`.
    fn client_cert_header(&self, i: usize) -> String {
        use base64::Engine;
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(&self.clients[i].2)
        )
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token of the server's issuer for alice, bound to `x5t` when given.
fn certificate_bound(x5t: Option<&str>) -> String {
    let mut claims = json!({
        "iss": "todo-server", "aud": "todo-api", "sub": "alice", "scope": "todos:read",
        "jti": format!("{:032x}", rand_jti()), "iat": get_current_timestamp(),
        "exp": get_current_timestamp() + 60,
    });
    if let Some(x5t) = x5t {
        claims["cnf"] = json!({"x5t#S256": x5t});
    }
    forge(claims, SECRET.as_bytes())
}

fn rand_jti() -> u128 {
    let mut bytes = [0; 16];
    getrandom::fill(&mut bytes).unwrap();
    u128::from_le_bytes(bytes)
}

async fn get_with<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> Result<(StatusCode, HeaderMap, Bytes), hyper_util::client::legacy::Error>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut req = Request::get(url).header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = client.request(req.body(Full::default()).unwrap()).await?;
    let (parts, body) = res.into_parts();
    Ok((
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    ))
}

const NOT_PRESENTED: &str =
    "the token is bound to a client certificate this connection did not present";

#[tokio::test]
async fn over_mutual_tls_a_certificate_bound_token_needs_the_certificate_it_names() {
    let pki = TlsFiles::new();
    let mut env = config(Duration::from_secs(60));
    for (k, v) in [
        ("TLS_CERT", "server.pem"),
        ("TLS_KEY", "server.key"),
        ("TLS_CLIENT_CA", "ca.pem"),
    ] {
        env.push((k.into(), pki.path(v)));
    }
    let server = start(env).await;
    let url = format!("https://localhost:{}/secure-todos", server.addr.port());
    let (a, b) = (pki.thumbprint(0), pki.thumbprint(1));
    let (bound_a, bound_b, plain) = (
        certificate_bound(Some(&a)),
        certificate_bound(Some(&b)),
        certificate_bound(None),
    );

    let with_a = pki.client(Some(0));
    let (status, _, body) = get_with(&with_a, &url, &bound_a, &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    // Bound to another certificate of the same CA.
    let (status, headers, body) = get_with(&with_a, &url, &bound_b, &[]).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["detail"],
        NOT_PRESENTED
    );
    // A plain bearer token works with or without a certificate: client certificates are
    // optional.
    let (status, _, _) = get_with(&with_a, &url, &plain, &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let without = pki.client(None);
    let (status, _, _) = get_with(&without, &url, &plain, &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get_with(&without, &url, &bound_a, &[]).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["detail"],
        NOT_PRESENTED
    );
    // A Client-Cert header from a client that is not a configured proxy changes nothing.
    let forged = pki.client_cert_header(0);
    let (status, _, _) = get_with(&without, &url, &bound_a, &[("client-cert", &forged)])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A certificate from a CA the server does not trust ends the handshake.
    let mut stranger = TlsFiles::new();
    stranger.server_ca = pki.server_ca.clone();
    assert!(
        get_with(&stranger.client(Some(0)), &url, &plain, &[])
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port is not served.
    assert!(
        get_with(
            &server.client,
            &format!("http://{}/secure-todos", server.addr),
            &plain,
            &[]
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_cert_header_names_the_certificate() {
    let pki = TlsFiles::new();
    let bound_a = certificate_bound(Some(&pki.thumbprint(0)));
    let header_a = pki.client_cert_header(0);
    let header_b = pki.client_cert_header(1);

    // The test's loopback client is the proxy.
    let mut env = config(Duration::from_secs(60));
    env.push(("CLIENT_CERT_PROXIES".into(), "127.0.0.1,::1".into()));
    let server = start(env).await;
    let url = format!("http://{}/secure-todos", server.addr);
    let send = |extra: Vec<(&'static str, String)>| {
        let (client, url, token) = (server.client.clone(), url.clone(), bound_a.clone());
        async move {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = get_with(&client, &url, &token, &extra).await.unwrap();
            (status, body)
        }
    };
    assert_eq!(
        send(vec![("client-cert", header_a.clone())]).await.0,
        StatusCode::OK
    );
    let (status, body) = send(vec![("client-cert", header_b.clone())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["detail"],
        NOT_PRESENTED
    );
    // Malformed (not a byte sequence) or missing: no certificate.
    let (status, _) = send(vec![("client-cert", header_a.trim_matches(':').to_owned())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(vec![]).await.0, StatusCode::UNAUTHORIZED);

    // Without CLIENT_CERT_PROXIES the same header is a client's claim, not believed.
    let server = start(config(Duration::from_secs(60))).await;
    let url = format!("http://{}/secure-todos", server.addr);
    let (status, _, body) = get_with(
        &server.client,
        &url,
        &bound_a,
        &[("client-cert", &header_a)],
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["detail"],
        NOT_PRESENTED
    );
}

// ---- Operations: readiness and metrics ----

/// `GET /ready` is `503` while a trusted provider's keys are missing, naming it, and `200`
/// once they are loaded; `GET /health` answers `200` throughout.
#[tokio::test]
async fn ready_names_the_part_that_cannot_serve_and_health_stays_live() {
    let server = start(config(Duration::from_secs(60))).await;
    let res = server.get("/ready", None).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.json()["ready"], true);
    let res = server.send(Method::PUT, "/ready", &[], Bytes::new()).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers[header::ALLOW], "GET, HEAD");

    // A provider whose JWKS nobody answers: a free port, closed again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let jwks_url = format!("http://{closed}/.well-known/jwks.json");
    let relying = start(config_with(&[
        ("JWT_SECRET", SECRET),
        ("JWKS_URL", jwks_url.as_str()),
        ("JWKS_ISSUER", "auth-a"),
    ]))
    .await;
    let res = relying.get("/ready", None).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = res.json();
    assert_eq!(body["ready"], false);
    let failing: Vec<&Value> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ready"] == false)
        .collect();
    assert_eq!(failing.len(), 1, "{body}");
    assert_eq!(
        (&failing[0]["part"], &failing[0]["issuer"]),
        (&json!("keys"), &json!("auth-a"))
    );
    assert!(failing[0]["detail"].is_string(), "{body}");
    let res = relying.get("/health", None).await;
    assert_eq!(res.status, StatusCode::OK);

    // With the provider up, the relying server becomes ready by itself.
    let (_, relying) = provider_and_relying_server().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = relying.get("/ready", None).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.json()["ready"], true);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {:?}",
            res.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let labelled = rest.is_empty() || rest.starts_with('{');
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (labelled && all).then(|| value.parse().ok()).flatten()
    })
}

/// `METRICS_ADDR` serves a Prometheus scrape on its own port: after a mixed run it counts
/// each decision by outcome and reason and the token cache, and holds nothing secret.
#[tokio::test]
async fn metrics_addr_serves_a_scrape_of_decisions_by_reason() {
    let mut vars = config(Duration::from_secs(60));
    // The exporter binds the address it is given: a port free now.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap();
    drop(free);
    vars.push(("METRICS_ADDR".into(), port.to_string()));
    let server = start(vars).await;
    let log = server.process.output();
    let metrics = log
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    // The API's port does not publish them.
    assert_eq!(
        server.get("/metrics", None).await.status,
        StatusCode::NOT_FOUND
    );

    let alice = server.token("alice", "wonderland").await;
    let bob = server.token("bob", "builder").await;
    for _ in 0..3 {
        assert_eq!(
            server.get("/secure-todos", Some(&alice)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        server.get("/secure-todos", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let garbage = server.get("/secure-todos", Some("not-a-jwt")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let expired = forge(
        json!({"iss": "todo-server", "aud": "todo-api", "sub": "alice",
               "iat": get_current_timestamp() - 1200, "exp": get_current_timestamp() - 600}),
        SECRET.as_bytes(),
    );
    assert_eq!(
        server.get("/me", Some(&expired)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.create(&bob, "mine").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.login("alice", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("http://{metrics}/metrics");
    let res = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let scrape = res.into_body().collect().await.unwrap().to_bytes();
    let scrape = String::from_utf8(scrape.to_vec()).unwrap();
    eprintln!("{scrape}");

    let requests = "tower_jwt_auth_requests_total";
    let count = |labels: &[(&str, &str)]| sample(&scrape, requests, labels);
    // Three reads and bob's write passed authentication; RequireScope refused the write.
    assert_eq!(
        count(&[("outcome", "accepted"), ("reason", "valid")]),
        Some(4.0)
    );
    for reason in [
        "missing_token",
        "malformed",
        "expired",
        "insufficient_scope",
    ] {
        assert_eq!(
            count(&[("outcome", "rejected"), ("reason", reason)]),
            Some(1.0),
            "{reason}"
        );
    }
    let cache = "tower_jwt_auth_token_cache_total";
    assert_eq!(sample(&scrape, cache, &[("result", "hit")]), Some(2.0));
    assert!(
        scrape.contains("# HELP tower_jwt_auth_requests_total"),
        "described"
    );
    for secret in [alice.as_str(), bob.as_str(), "wonderland", "alice", SECRET] {
        assert!(!scrape.contains(secret), "the scrape shows {secret}");
    }
}
