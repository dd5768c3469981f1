//! The whole example server under load, over loopback, with no external tool:
//! `cargo bench --bench stack`.
//!
//! The servers are the example program itself, built in release mode and run as child
//! processes with their settings in the environment, so their peak memory is their own. The
//! load generator is a small hyper client: each connection sends its next request as soon as
//! the previous answer arrived, and every latency goes into an `hdrhistogram`.
//!
//! It prints one table (markdown) and, with `STACK_BENCH_JSON=path`, writes the same figures
//! as JSON for `docs/draw_chart.py`:
//!
//! - `public` (`GET /todos`), `protected` (`GET /secure-todos` with a valid HS256 token, token
//!   cache off) and `protected-cached` (cache on) at 1, 16 and 64 connections;
//! - `jwks-eddsa` vs `jwks-health`: a server trusting another one's JWKS, with an EdDSA token;
//! - `protected p99` on 4 connections, calm and while 16 connections storm `POST /login`, and
//!   the server's peak RSS during the storm;
//! - `dpop-local` vs `dpop-redis` on 1 and 4 connections: DPoP-bound tokens with a fresh
//!   Ed25519 proof per request (made before the clock starts), the replay store in the
//!   server's memory or shared through a real `redis-server` on loopback (in memory, no
//!   fsync): the p50/p99 that Redis adds.
//! - `opaque-cached` on 16 connections: an opaque token introspected (RFC 7662) at a
//!   loopback endpoint in this process once, then served from the results cache; against
//!   `opaque-server-jwt-cached`, the same server with one of its own JWTs, cached.
//!
//! `STACK_BENCH_SECS` sets the seconds per measurement (default 3). Figures from one run
//! compare with each other; the machine is shared and noisy.

#[path = "../tests/support/example.rs"]
#[allow(dead_code)]
mod example;
#[path = "../tests/support/proof.rs"]
mod proof;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

fn main() {
    // `cargo bench --no-run` builds this; `cargo test --benches` would run it: skip there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let secs = std::env::var("STACK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(secs)));
}

/// A server child process, killed when dropped.
struct Server {
    child: example::Example,
    addr: SocketAddr,
}

impl Server {
    fn start(vars: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("JWT_SECRET", "stack-bench-secret-of-at-least-32-bytes"),
            ("TODO_ADDR", "127.0.0.1:0"),
            // Warnings, and the `listening on` line the address is read from.
            ("RUST_LOG", "warn,todo_server=info"),
        ];
        env.extend_from_slice(vars);
        let child = example::Example::start("todo_server", &env);
        Self {
            addr: child.addr,
            child,
        }
    }

    /// Peak resident memory since the last [`reset_peak`](Self::reset_peak), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// Linux: writing 5 to `clear_refs` resets the peak-RSS mark to the current RSS.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.pid()), "5");
    }

    /// A login whose token is bound to `key` (RFC 9449 section 5).
    async fn dpop_login(&self, key: &proof::ProofKey) -> String {
        let mut conn = Conn::open(self.addr).await;
        let mut req = login_request("alice", "wonderland").request();
        let htu = format!("http://{}/login", self.addr);
        let proof = key.proof_for("POST", &htu, None, |_, _| {});
        req.headers_mut().insert("dpop", proof.parse().unwrap());
        let (status, body) = conn.send_request(req).await;
        assert_eq!(status, StatusCode::OK, "DPoP login");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["token_type"], "DPoP");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let mut conn = Conn::open(self.addr).await;
        let (status, body) = conn.send(&login_request(username, password)).await;
        assert_eq!(status, StatusCode::OK, "login of {username}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// What one request of a scenario looks like (rebuilt for every send).
#[derive(Clone)]
struct Shape {
    method: Method,
    path: &'static str,
    headers: Vec<(header::HeaderName, String)>,
    body: Bytes,
    /// A DPoP-bound token: each request gets a fresh proof for this URL.
    dpop: Option<Arc<(proof::ProofKey, String)>>,
}

impl Shape {
    fn get(path: &'static str, token: Option<&str>) -> Self {
        let headers = token
            .map(|t| (header::AUTHORIZATION, format!("Bearer {t}")))
            .into_iter()
            .collect();
        Self {
            method: Method::GET,
            path,
            headers,
            body: Bytes::new(),
            dpop: None,
        }
    }

    /// `GET path` with a token bound to `key`, on the server at `addr`.
    fn dpop(path: &'static str, token: &str, key: proof::ProofKey, addr: SocketAddr) -> Self {
        Self {
            headers: vec![(header::AUTHORIZATION, format!("DPoP {token}"))],
            dpop: Some(Arc::new((key, format!("http://{addr}{path}")))),
            ..Self::get(path, None)
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(header::HOST, "127.0.0.1");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(dpop) = &self.dpop {
            let (key, htu) = &**dpop;
            let token = self.headers[0].1.strip_prefix("DPoP ").unwrap();
            let proof = key.proof_for(self.method.as_str(), htu, Some(token), |_, _| {});
            req = req.header("dpop", proof);
        }
        req.body(Full::new(self.body.clone())).unwrap()
    }
}

fn login_request(username: &str, password: &str) -> Shape {
    Shape {
        method: Method::POST,
        path: "/login",
        headers: vec![(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".into(),
        )],
        body: Bytes::from(format!("username={username}&password={password}")),
        dpop: None,
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn send(&mut self, shape: &Shape) -> (StatusCode, Bytes) {
        self.send_request(shape.request()).await
    }

    async fn send_request(&mut self, req: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
        self.sender.ready().await.unwrap();
        let res = self.sender.send_request(req).await.unwrap();
        let status = res.status();
        (status, res.into_body().collect().await.unwrap().to_bytes())
    }
}

/// The figures of one scenario.
struct Load {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `connections` connections send `shape` back to back for `secs`; every answer must be
/// `expected`.
async fn load(
    addr: SocketAddr,
    shape: &Shape,
    expected: StatusCode,
    connections: usize,
    time: Duration,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let shape = shape.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // Built (a DPoP proof signed) before the clock starts.
                    let req = shape.request();
                    let begin = Instant::now();
                    let (status, _) = conn.send_request(req).await;
                    assert_eq!(status, expected, "{} {}", shape.method, shape.path);
                    hist.record(begin.elapsed().as_micros().max(1) as u64)
                        .unwrap();
                }
                hist
            })
        })
        .collect();
    let begin = Instant::now();
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        all.add(task.await.unwrap()).unwrap();
    }
    let elapsed = begin.elapsed().as_secs_f64();
    Load {
        requests: all.len(),
        rps: all.len() as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

/// Logins with the right password, back to back on `connections` connections, until `stop`.
fn storm(
    addr: SocketAddr,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(addr).await;
                    let shape = login_request("alice", "wonderland");
                    let mut done = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (status, _) = conn.send(&shape).await;
                        assert!(
                            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                            "login storm: {status}"
                        );
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w.await.unwrap();
        }
        total
    })
}

struct Row {
    scenario: String,
    connections: usize,
    load: Load,
}

async fn run(time: Duration) {
    let mut rows = Vec::new();
    let ok = StatusCode::OK;

    // Public, protected and protected-cached, HS256 tokens.
    let uncached = Server::start(&[("JWT_CACHE_SIZE", "0")]);
    // The login storm's 16 concurrent logins of one user from one address are attempts in
    // flight, which the throttle counts before the password is checked: a budget above them.
    let cached = Server::start(&[("LOGIN_MAX_FAILURES", "1000")]);
    let token = uncached.login("alice", "wonderland").await;
    let cached_token = cached.login("alice", "wonderland").await;
    for connections in [1, 16, 64] {
        for (scenario, server, shape) in [
            ("public", &uncached, Shape::get("/todos", None)),
            (
                "protected",
                &uncached,
                Shape::get("/secure-todos", Some(&token)),
            ),
            (
                "protected-cached",
                &cached,
                Shape::get("/secure-todos", Some(&cached_token)),
            ),
        ] {
            let load = load(server.addr, &shape, ok, connections, time).await;
            rows.push(Row {
                scenario: scenario.into(),
                connections,
                load,
            });
        }
    }
    drop(uncached);

    // A server trusting another one's JWKS (EdDSA), with the token cache on.
    let key = format!("{}/tests/fixtures/ed25519.pem", env!("CARGO_MANIFEST_DIR"));
    let idp = Server::start(&[("JWT_SIGNING_KEY", &key), ("JWT_ISSUER", "bench-idp")]);
    let jwks_url = format!("http://{}/.well-known/jwks.json", idp.addr);
    let relying = Server::start(&[("JWKS_URL", &jwks_url), ("JWKS_ISSUER", "bench-idp")]);
    let eddsa = idp.login("alice", "wonderland").await;
    for (scenario, shape) in [
        ("jwks-health", Shape::get("/health", None)),
        ("jwks-eddsa", Shape::get("/secure-todos", Some(&eddsa))),
    ] {
        let load = load(relying.addr, &shape, ok, 16, time).await;
        rows.push(Row {
            scenario: scenario.into(),
            connections: 16,
            load,
        });
    }
    drop((idp, relying));

    // Protected p99 on 4 connections, calm, then while 16 connections storm /login.
    let shape = Shape::get("/secure-todos", Some(&cached_token));
    let calm = load(cached.addr, &shape, ok, 4, time).await;
    cached.reset_peak();
    let stop = Arc::new(AtomicBool::new(false));
    let storming = storm(cached.addr, 16, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await; // let the storm build up
    let stormy = load(cached.addr, &shape, ok, 4, time).await;
    stop.store(true, Ordering::Relaxed);
    let logins = storming.await.unwrap();
    let peak = cached.peak_rss_mib();
    rows.push(Row {
        scenario: "protected-calm".into(),
        connections: 4,
        load: calm,
    });
    rows.push(Row {
        scenario: "protected-login-storm".into(),
        connections: 4,
        load: stormy,
    });

    drop(cached);

    // An opaque token, introspected once, then from the cache.
    let provider = introspecting_provider().await;
    let server = Server::start(&[
        ("OIDC_ISSUER_URL", &provider),
        ("INTROSPECTION_CLIENT_ID", "bench"),
        ("INTROSPECTION_CLIENT_SECRET", "bench-secret"),
    ]);
    let jwt = server.login("alice", "wonderland").await;
    for (scenario, token) in [
        ("opaque-cached", OPAQUE),
        ("opaque-server-jwt-cached", &jwt),
    ] {
        let shape = Shape::get("/secure-todos", Some(token));
        rows.push(Row {
            scenario: scenario.into(),
            connections: 16,
            load: load(server.addr, &shape, ok, 16, time).await,
        });
    }
    drop(server);

    // DPoP: the replay store in memory, then shared through Redis.
    match redis_server::RedisServer::start_in_memory("stack bench: dpop-redis") {
        None => eprintln!("dpop-redis: skipped, no redis-server"),
        Some(redis) => {
            let url = redis.url();
            for (scenario, vars) in [
                ("dpop-local", vec![]),
                ("dpop-redis", vec![("REDIS_URL", url.as_str())]),
            ] {
                let server = Server::start(&vars);
                let key = proof::ProofKey::ed25519("EdDSA");
                let token = server.dpop_login(&key).await;
                let shape = Shape::dpop("/secure-todos", &token, key, server.addr);
                for connections in [1, 4] {
                    let load = load(server.addr, &shape, ok, connections, time).await;
                    rows.push(Row {
                        scenario: scenario.into(),
                        connections,
                        load,
                    });
                }
            }
        }
    }

    print_table(&rows, peak, logins, time);
    if let Ok(path) = std::env::var("STACK_BENCH_JSON") {
        let json = json!({
            "seconds_per_measurement": time.as_secs(),
            "peak_rss_mib_during_storm": peak,
            "logins_during_storm": logins,
            "rows": rows.iter().map(|r| json!({
                "scenario": r.scenario, "connections": r.connections,
                "requests": r.load.requests, "rps": r.load.rps,
                "p50_ms": r.load.p50_ms, "p99_ms": r.load.p99_ms,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        eprintln!("wrote {path}");
    }
}

const OPAQUE: &str = "2YotnFZFEjr1zMsPHEZBF1fYvN3H6S8JpWxN";

/// An authorization server on loopback, in this process: discovery, an empty JWKS, and an
/// introspection endpoint that says every token is active. Its issuer URL.
async fn introspecting_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = url.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let issuer = issuer.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let now = jsonwebtoken::get_current_timestamp();
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => json!({
                        "issuer": issuer,
                        "jwks_uri": format!("{issuer}/jwks"),
                        "introspection_endpoint": format!("{issuer}/introspect"),
                    }),
                    "/jwks" => json!({"keys": []}),
                    _ => json!({
                        "active": true, "sub": "alice", "aud": "todo-api",
                        "scope": "todos:read todos:write", "iat": now, "exp": now + 3600,
                    }),
                };
                async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    url
}

fn print_table(rows: &[Row], peak: f64, logins: u64, time: Duration) {
    let find = |scenario: &str, connections: usize| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.connections == connections)
            .map(|r| &r.load)
    };
    println!("\n| scenario | connections | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} |",
            r.scenario, r.connections, r.load.rps, r.load.p50_ms, r.load.p99_ms
        );
    }
    println!(
        "\nRatios from this run ({}s per measurement):",
        time.as_secs()
    );
    for connections in [1, 16, 64] {
        if let (Some(public), Some(p), Some(c)) = (
            find("public", connections),
            find("protected", connections),
            find("protected-cached", connections),
        ) {
            println!(
                "- {connections} connections: protected / public = {:.2}x, protected-cached / public = {:.2}x",
                p.rps / public.rps,
                c.rps / public.rps
            );
        }
    }
    if let (Some(health), Some(eddsa)) = (find("jwks-health", 16), find("jwks-eddsa", 16)) {
        println!(
            "- JWKS + EdDSA, cached: /secure-todos / /health = {:.2}x",
            eddsa.rps / health.rps
        );
    }
    if let (Some(calm), Some(storm)) = (find("protected-calm", 4), find("protected-login-storm", 4))
    {
        println!(
            "- p99 of /secure-todos during a login storm / calm = {:.3} / {:.3} ms = {:.2}x ({logins} logins served)",
            storm.p99_ms,
            calm.p99_ms,
            storm.p99_ms / calm.p99_ms
        );
    }
    println!("- server peak RSS during the storm: {peak:.1} MiB");
    if let (Some(jwt), Some(opaque)) = (
        find("opaque-server-jwt-cached", 16),
        find("opaque-cached", 16),
    ) {
        println!(
            "- 16 connections, one server: cached opaque / cached JWT = {:.2}x",
            opaque.rps / jwt.rps
        );
    }
    for connections in [1, 4] {
        if let (Some(local), Some(redis)) = (
            find("dpop-local", connections),
            find("dpop-redis", connections),
        ) {
            println!(
                "- DPoP, {connections} connection(s): Redis replay store adds p50 {:+.3} ms, p99 {:+.3} ms ({:.3}/{:.3} vs {:.3}/{:.3} ms)",
                redis.p50_ms - local.p50_ms,
                redis.p99_ms - local.p99_ms,
                redis.p50_ms,
                redis.p99_ms,
                local.p50_ms,
                local.p99_ms
            );
        }
    }
}
