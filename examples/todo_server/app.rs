//! The todo server's configuration, state and routes.
//!
//! Every route, and who may call it, is in one table: [`route`]. Public: `POST /login`,
//! `GET /health`, `GET /todos`, `GET /.well-known/jwks.json` (when signing with a private
//! key). Behind `JwtAuthLayer`: `GET /me`, `GET /secure-todos`, `POST /logout`,
//! `POST /logout/all`, and (behind `RequireScope::all(["todos:write"])` as well)
//! `POST /secure-todos` and `DELETE /secure-todos/{id}`.

use std::{
    collections::HashMap,
    convert::Infallible,
    ffi::OsString,
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
use tower_http::{
    limit::RequestBodyLimitLayer, sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};
use tower_jwt_auth::{
    Algorithm, AuthError, AuthorizeLayer, Claims, JwtAuthLayer, RequireScope, Revocations,
    StandardClaims, TokenIssuer, TrustedIssuer,
    jwks::JwksSource,
    password::{PasswordError, Passwords},
};

use crate::throttle::{self, Throttle, client_address};

/// Who owns a todo: the token's (`iss`, `sub`).
type Owner = (String, String);

/// The most todos one user may keep.
pub const MAX_TODOS_PER_USER: usize = 1000;

/// The largest request body accepted (login forms and todos are tiny).
pub const MAX_BODY: usize = 16 * 1024;
/// The longest todo title accepted, in characters.
pub const MAX_TITLE: usize = 200;

/// Server configuration, read from the environment with safe defaults.
pub struct Config {
    pub addr: SocketAddr,
    /// `None`: a random per-process secret.
    pub secret: Option<Vec<u8>>,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    /// Login throttling: budgets per (user, client) and per account, lockouts with backoff.
    pub throttle: throttle::Policy,
    /// Peers whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`; none by default).
    pub trusted_proxies: Vec<IpAddr>,
    /// Connection limits (`HEADER_READ_TIMEOUT_SECS`, `MAX_CONNECTIONS`).
    pub limits: Limits,
    /// A PEM private key (Ed25519, P-256 or RSA) to sign with instead of the HMAC secret;
    /// its public half is published at `/.well-known/jwks.json`.
    pub signing_key: Option<PathBuf>,
    /// An external identity provider whose tokens are trusted too.
    pub external: Option<External>,
    /// How many validated tokens the layer remembers (0: none).
    pub token_cache: usize,
    /// The `typ` required of the external provider's tokens (`EXTERNAL_TOKEN_TYP`), if any.
    pub external_typ: Option<String>,
    /// `REDIS_URL`: revocations and the login throttle shared by every instance using it.
    pub redis_url: Option<String>,
}

/// An identity provider trusted besides this server's own logins.
#[derive(Debug, Clone)]
pub enum External {
    /// `OIDC_ISSUER_URL`: keys found through OpenID Connect discovery.
    Discovery { issuer: String },
    /// `JWKS_URL` and `JWKS_ISSUER`.
    Jwks { url: String, issuer: String },
}

impl Config {
    /// Reads the process environment. A setting that is not valid UTF-8 stops the server: a
    /// `JWT_SECRET` that cannot be read must never be replaced by a random one in silence.
    pub fn from_env() -> Result<Self, String> {
        Self::from_os_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_lookup`](Self::from_lookup), with raw environment values.
    pub fn from_os_lookup(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, String> {
        let unreadable = std::cell::Cell::new(None);
        let config = Self::from_lookup(|name| {
            let value = var(name)?;
            value
                .into_string()
                .map_err(|_| unreadable.set(Some(name.to_owned())))
                .ok()
        });
        match unreadable.take() {
            Some(name) => Err(format!("{name} is not valid UTF-8; refusing to start")),
            None => config,
        }
    }

    /// Reads `TODO_ADDR`, `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_TTL_SECS`,
    /// `LOGIN_MAX_FAILURES`, `LOGIN_LOCKOUT_SECS`, `LOGIN_MAX_LOCKOUT_SECS`,
    /// `LOGIN_ACCOUNT_MAX_FAILURES`, `LOGIN_ACCOUNT_WINDOW_SECS`, `TRUSTED_PROXIES`,
    /// `HEADER_READ_TIMEOUT_SECS`, `MAX_CONNECTIONS`, `JWT_SIGNING_KEY`, `OIDC_ISSUER_URL`,
    /// `JWKS_URL`, `JWKS_ISSUER`, `EXTERNAL_TOKEN_TYP` and `JWT_CACHE_SIZE` through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let parse = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name} must be a whole number, got {v:?}"))
            })
        };
        let addr = var("TODO_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let addr = addr.parse().map_err(|_| {
            format!("TODO_ADDR must be an address like 127.0.0.1:3000, got {addr:?}")
        })?;
        let secret = match var("JWT_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(format!(
                    "JWT_SECRET must be at least 32 bytes long (it is {} bytes); refusing to start",
                    s.len()
                ));
            }
            Some(s) => Some(s.into_bytes()),
            None => None,
        };
        let ttl = parse("JWT_TTL_SECS", 1800)?;
        if ttl == 0 || ttl > tower_jwt_auth::MAX_TTL.as_secs() {
            return Err(format!(
                "JWT_TTL_SECS must be between 1 and {} (24 hours), got {ttl}",
                tower_jwt_auth::MAX_TTL.as_secs()
            ));
        }
        let lockout = Duration::from_secs(parse("LOGIN_LOCKOUT_SECS", 60)?.clamp(1, 86_400));
        let throttle = throttle::Policy {
            max_failures: parse("LOGIN_MAX_FAILURES", 10)?.clamp(1, 10) as u32,
            lockout,
            max_lockout: Duration::from_secs(
                parse("LOGIN_MAX_LOCKOUT_SECS", 3600)?.clamp(1, 86_400),
            )
            .max(lockout),
            account_max_failures: parse("LOGIN_ACCOUNT_MAX_FAILURES", 100)?.clamp(1, 100_000)
                as u32,
            account_window: Duration::from_secs(
                parse("LOGIN_ACCOUNT_WINDOW_SECS", 3600)?.clamp(1, 86_400),
            ),
        };
        let trusted_proxies = match var("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("TRUSTED_PROXIES must list IP addresses, got {s:?}"))
                })
                .collect::<Result<_, _>>()?,
        };
        let external = match (var("OIDC_ISSUER_URL"), var("JWKS_URL"), var("JWKS_ISSUER")) {
            (Some(_), Some(_), _) => return Err("set OIDC_ISSUER_URL or JWKS_URL, not both".into()),
            (Some(issuer), None, _) => Some(External::Discovery { issuer }),
            (None, Some(url), Some(issuer)) => Some(External::Jwks { url, issuer }),
            (None, Some(_), None) => {
                return Err("JWKS_URL needs JWKS_ISSUER, the `iss` its tokens carry".into());
            }
            (None, None, _) => None,
        };
        Ok(Self {
            addr,
            secret,
            issuer: var("JWT_ISSUER").unwrap_or_else(|| "todo-server".into()),
            audience: var("JWT_AUDIENCE").unwrap_or_else(|| "todo-api".into()),
            ttl: Duration::from_secs(ttl),
            throttle,
            trusted_proxies,
            limits: Limits {
                header_read_timeout: Duration::from_secs(
                    parse("HEADER_READ_TIMEOUT_SECS", 10)?.clamp(1, 300),
                ),
                max_connections: parse("MAX_CONNECTIONS", 1024)?.clamp(1, 1_000_000) as usize,
            },
            signing_key: var("JWT_SIGNING_KEY").map(PathBuf::from),
            external,
            token_cache: parse("JWT_CACHE_SIZE", 10_000)? as usize,
            external_typ: var("EXTERNAL_TOKEN_TYP"),
            redis_url: var("REDIS_URL"),
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field(
                "secret",
                &self
                    .secret
                    .as_ref()
                    .map_or("<random per process>", |_| "<set>"),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("throttle", &self.throttle)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limits", &self.limits)
            .field("signing_key", &self.signing_key)
            .field("external", &self.external)
            .field("token_cache", &self.token_cache)
            .field("external_typ", &self.external_typ)
            // The URL may carry a password.
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

struct User {
    phc: String,
    scope: &'static str,
}

#[derive(Clone, Serialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

struct State {
    issuer: TokenIssuer,
    /// Checks this server's tokens, and the external provider's when one is configured.
    auth: JwtAuthLayer<StandardClaims>,
    passwords: Passwords,
    users: HashMap<&'static str, User>,
    /// Each user's todos. A user is the pair (`iss`, `sub`): `sub` is unique only within its
    /// issuer (OpenID Connect Core 5.7), and this server trusts more than one issuer.
    todos: Mutex<HashMap<Owner, Vec<Todo>>>,
    next_id: AtomicU64,
    throttle: Throttle,
    /// Tokens logged out before they expire; shared through Redis when `REDIS_URL` is set.
    revocations: Revocations,
    /// What the write routes need on top of authentication.
    require_write: AuthorizeLayer<RequireScope>,
    trusted_proxies: Vec<IpAddr>,
    limits: Limits,
}

/// What one client may hold of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to send a request head, and the longest a keep-alive connection may idle.
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

type Body = BoxBody<Bytes, Infallible>;
/// The whole application as one cloneable service; the request body is already limited.
pub type App = BoxCloneSyncService<
    Request<tower_http::body::Limited<hyper::body::Incoming>>,
    Response<Body>,
    Infallible,
>;

/// Builds the state (hashing the demo users' passwords) and the routes.
pub async fn build(config: &Config) -> Result<AppState, String> {
    let issuer = match &config.signing_key {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read JWT_SIGNING_KEY {}: {e}", path.display()))?;
            // The PEM says which family it is; try each in turn.
            [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
                .into_iter()
                .find_map(|alg| TokenIssuer::from_pem(alg, &pem).ok())
                .ok_or_else(|| format!("JWT_SIGNING_KEY {} is not an Ed25519, P-256 or RSA private key", path.display()))?
        }
        None => {
            let secret = match &config.secret {
                Some(secret) => secret.clone(),
                None => {
                    tracing::warn!("JWT_SECRET is not set: using a random per-process secret; tokens die with the process");
                    let mut secret = vec![0; 32];
                    getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a secret: {e}"))?;
                    secret
                }
            };
            TokenIssuer::hs256(&secret).map_err(|e| e.to_string())?
        }
    }
    .issuer(config.issuer.clone())
    .audience(config.audience.clone())
    .ttl(config.ttl)
    .map_err(|e| e.to_string())?;
    // With Redis, revocations and the login throttle are shared by every instance.
    let redis = match &config.redis_url {
        Some(url) => {
            Some(redis::Client::open(url.as_str()).map_err(|e| format!("REDIS_URL: {e}"))?)
        }
        None => None,
    };
    // A "log out everywhere" must outlive every token it covers: ours live `ttl`; an
    // external provider's are assumed to live at most a day (`MAX_TTL`).
    let lifetime = match config.external {
        None => config.ttl,
        Some(_) => config.ttl.max(tower_jwt_auth::MAX_TTL),
    };
    let revocations = Revocations::builder().max_token_lifetime(lifetime);
    let (revocations, throttle) = match redis {
        Some(redis) => {
            tracing::info!("sharing revocations and the login throttle through Redis");
            (
                revocations
                    .key_prefix("todo-server:revocations")
                    .redis(redis.clone())
                    .await
                    .map_err(|e| e.to_string())?,
                Throttle::shared(config.throttle.clone(), redis, "todo-server:throttle")?,
            )
        }
        None => (
            revocations.in_memory(),
            Throttle::new(config.throttle.clone()),
        ),
    };
    let auth = match &config.external {
        None => issuer.layer().cache(config.token_cache),
        Some(external) => {
            let (jwks, external_issuer) = match external {
                External::Discovery { issuer } => (JwksSource::discover(issuer), issuer.clone()),
                External::Jwks { url, issuer } => (JwksSource::builder(url), issuer.clone()),
            };
            let jwks = jwks.build().map_err(|e| e.to_string())?;
            tracing::info!(issuer = %external_issuer, "also trusting an external identity provider");
            // Our own tokens keep every check of `issuer.layer()` (`typ` = `at+jwt` too); the
            // provider's are typed as configured, and the audience keeps its ID tokens out.
            let mut provider =
                TrustedIssuer::new(external_issuer, jwks).audience(config.audience.clone());
            if let Some(typ) = &config.external_typ {
                provider = provider.typ(typ.clone()).map_err(|e| e.to_string())?;
            }
            JwtAuthLayer::trusting([issuer.trusted(), provider])
                .map_err(|e| e.to_string())?
                .require_claim("sub")
                .cache(config.token_cache)
        }
    }
    // A token older than `lifetime` would outlive a "log out everywhere" made before it:
    // refuse those (and tokens without `iat`), whatever `exp` their issuer chose.
    .max_age(lifetime)
    .map_err(|e| e.to_string())?
    .revocations(revocations.clone())
    .on_rejection(rejection);
    let passwords = Passwords::new();
    let mut users = HashMap::new();
    for (name, password, scope) in [
        ("alice", "wonderland", "todos:read todos:write"),
        ("bob", "builder", "todos:read"),
    ] {
        let phc = passwords.hash(password).await.map_err(|e| e.to_string())?;
        users.insert(name, User { phc, scope });
    }
    // Make the dummy hash that unknown users are checked against now, so that the first
    // "no such user" login costs what every other login costs.
    passwords
        .verify("warm-up", None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(AppState(Arc::new(State {
        issuer,
        auth,
        passwords,
        users,
        todos: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        throttle,
        revocations,
        require_write: RequireScope::all(["todos:write"])
            .map_err(|e| e.to_string())?
            .on_rejection(rejection),
        trusted_proxies: config.trusted_proxies.clone(),
        limits: config.limits.clone(),
    })))
}

/// The built state; [`AppState::service`] turns it into routes.
#[derive(Clone)]
pub struct AppState(Arc<State>);

/// Who may call a route: this is where `tower-jwt-auth` comes in.
#[derive(Clone, Copy)]
enum Access {
    /// Anyone.
    Public,
    /// A valid bearer token: `JwtAuthLayer` checks it and puts its claims in the request.
    Authenticated,
    /// A valid token that grants `todos:write`: `JwtAuthLayer`, then `RequireScope`.
    Writer,
}

/// What answers a request; [`route`] finds it, [`handle`] runs it.
#[derive(Clone, Copy)]
enum Route {
    Login,
    Health,
    PublicTodos,
    Jwks,
    Me,
    ListTodos,
    CreateTodo,
    DeleteTodo,
    Logout,
    LogoutAll,
    /// A known path with another method; the methods it allows, for `Allow`.
    MethodNotAllowed(&'static str),
    NotFound,
}

/// Every route of the server, and who may call it: the one place to read the API.
fn route(method: &Method, path: &str) -> (Access, Route) {
    use Access::{Authenticated, Public, Writer};
    // `HEAD` is `GET` without the body, which hyper leaves out.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    match (method, path) {
        (&Method::POST, "/login") => (Public, Route::Login),
        (&Method::GET, "/health") => (Public, Route::Health),
        (&Method::GET, "/todos") => (Public, Route::PublicTodos),
        (&Method::GET, "/.well-known/jwks.json") => (Public, Route::Jwks),
        (&Method::GET, "/me") => (Authenticated, Route::Me),
        (&Method::GET, "/secure-todos") => (Authenticated, Route::ListTodos),
        (&Method::POST, "/logout") => (Authenticated, Route::Logout),
        (&Method::POST, "/logout/all") => (Authenticated, Route::LogoutAll),
        (&Method::POST, "/secure-todos") => (Writer, Route::CreateTodo),
        (&Method::DELETE, p) if p.starts_with("/secure-todos/") => (Writer, Route::DeleteTodo),
        // A known path with another method: 405 with `Allow`, after the same
        // authentication, so that a protected path answers nothing to a caller without a
        // token.
        (_, "/login") => (Public, Route::MethodNotAllowed("POST")),
        (_, "/health" | "/todos" | "/.well-known/jwks.json") => {
            (Public, Route::MethodNotAllowed("GET, HEAD"))
        }
        (_, "/me") => (Authenticated, Route::MethodNotAllowed("GET, HEAD")),
        (_, "/secure-todos") => (Authenticated, Route::MethodNotAllowed("GET, HEAD, POST")),
        (_, "/logout" | "/logout/all") => (Authenticated, Route::MethodNotAllowed("POST")),
        (_, p) if p.starts_with("/secure-todos/") => {
            (Authenticated, Route::MethodNotAllowed("DELETE"))
        }
        _ => (Public, Route::NotFound),
    }
}

impl AppState {
    /// The server as one service: [`route`] picks the route and its access, the access picks
    /// the middleware stack, and [`handle`] answers behind it.
    pub fn service(&self) -> App {
        let state = self.0.clone();
        let handler = service_fn(move |req| handle(state.clone(), req));
        // One stack per kind of access, all ending in the same handler.
        let public = BoxCloneSyncService::new(handler.clone());
        let authenticated = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(boxed)
                .layer(self.0.auth.clone())
                .service(handler.clone()),
        );
        let writer = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(boxed)
                .layer(self.0.auth.clone())
                .layer(self.0.require_write.clone())
                .service(handler),
        );
        BoxCloneSyncService::new(service_fn(move |mut req: Request<_>| {
            let (access, route) = route(req.method(), req.uri().path());
            req.extensions_mut().insert(route);
            let stack = match access {
                Access::Public => &public,
                Access::Authenticated => &authenticated,
                Access::Writer => &writer,
            };
            stack.clone().oneshot(req)
        }))
    }
}

/// Answers a request that [`route`] routed and its stack let through.
async fn handle<B>(state: Arc<State>, req: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let route = req.extensions().get().copied().unwrap_or(Route::NotFound);
    // Behind `JwtAuthLayer` (every route but the public ones) the claims are there.
    let claims = req.extensions().get::<Claims<StandardClaims>>().cloned();
    let claims = || claims.clone().expect("behind JwtAuthLayer");
    Ok(match route {
        Route::Login => login(&state, req).await,
        Route::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Route::PublicTodos => json_response(StatusCode::OK, &public_todos()),
        Route::Jwks => match state.issuer.public_jwk() {
            // Other services validate this server's tokens with these keys.
            Some(jwk) => json_response(StatusCode::OK, &json!({ "keys": [jwk] })),
            None => error(
                StatusCode::NOT_FOUND,
                "tokens are signed with a shared secret",
            ),
        },
        Route::Me => json_response(StatusCode::OK, &*claims()),
        Route::ListTodos => list_todos(&state, &claims()),
        Route::CreateTodo => create_todo(&state, &claims(), req.into_body()).await,
        Route::DeleteTodo => delete_todo(&state, &claims(), req.uri().path()),
        Route::Logout => logout(&state, &claims()),
        Route::LogoutAll => logout_all(&state, &claims()).await,
        Route::MethodNotAllowed(allow) => {
            let mut res = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            res
        }
        Route::NotFound => error(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Serves `app` on `listener` until `shutdown` completes, then drains open connections.
///
/// HTTP/1.1 and HTTP/2 (prior knowledge, `h2c`) on the same port, with the limits a server
/// facing the internet needs: a client gets `header_read_timeout` to send its request head
/// (and an idle keep-alive connection no longer than that before its next one), and at most
/// `max_connections` connections are open at once (more wait in the listen backlog).
pub async fn serve(listener: TcpListener, app: AppState, shutdown: impl Future<Output = ()>) {
    let limits = app.0.limits.clone();
    let service = ServiceBuilder::new()
        // Outside the trace layer: no log line, at any level, can show a credential.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(TraceLayer::new_for_http())
        // tower-http answers a declared `Content-Length` over the limit itself, in plain
        // text: give that 413 the server's one error body too.
        .map_response(|res: Response<_>| {
            let json = res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v == "application/json");
            if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
                boxed(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                ))
            } else {
                boxed(res)
            }
        })
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .service(app.service());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout)
        .max_concurrent_streams(64);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A free connection slot first, then the next connection.
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The client address keys the login throttle.
        let svc = service
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                req
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10s; closing them");
    }
    // Logouts made while Redis was unreachable are held in memory until Redis has them.
    if !app.0.revocations.flush(Duration::from_secs(5)).await {
        tracing::warn!("some revocations never reached Redis; other instances will not know them");
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
}

/// `POST /login`: the OAuth2 password form (or JSON) in, a bearer token out.
async fn login<B>(state: &State, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // The throttle's client: the peer, or what a trusted proxy says the client was.
    let peer = req
        .extensions()
        .get::<SocketAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), SocketAddr::ip);
    let client = client_address(peer, req.headers(), &state.trusted_proxies);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    let form: LoginForm = match media.as_str() {
        "application/x-www-form-urlencoded" => match serde_urlencoded::from_bytes(&body) {
            Ok(form) => form,
            Err(_) => return error(StatusCode::BAD_REQUEST, "malformed form body"),
        },
        "application/json" => match serde_json::from_slice(&body) {
            Ok(form) => form,
            Err(_) => return error(StatusCode::BAD_REQUEST, "malformed JSON body"),
        },
        _ => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send application/x-www-form-urlencoded or application/json",
            );
        }
    };
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "username and password are required",
        );
    };
    if password.len() > tower_jwt_auth::password::MAX_PASSWORD_LEN || username.len() > 256 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "username or password too long",
        );
    }

    // Counted before the password is checked: a burst cannot outrun the budget.
    let attempt = match state.throttle.begin(&username, client).await {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::info!("login throttled");
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins; try again later",
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return res;
        }
    };

    let user = state.users.get(username.as_str());
    // An unknown user is verified against a dummy hash: same time, same answer.
    let verified = state
        .passwords
        .verify(&password, user.map(|u| u.phc.as_str()))
        .await;
    match (user, verified) {
        (Some(user), Ok(true)) => {
            attempt.succeeded().await;
            match state.issuer.issue(&username, user.scope) {
                Ok(token) => {
                    tracing::info!(user = %username, "login succeeded");
                    json_response(StatusCode::OK, &token)
                }
                Err(e) => {
                    tracing::error!(error = %e, "token signing failed");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "could not issue a token")
                }
            }
        }
        (_, Ok(_)) => {
            // Already counted when it was admitted.
            drop(attempt);
            tracing::info!("login failed");
            error(StatusCode::UNAUTHORIZED, "Invalid username or password")
        }
        (_, Err(PasswordError::Busy)) => {
            // A login storm: refuse quickly rather than queue without limit. The password
            // was not checked, so the attempt does not count.
            attempt.refund().await;
            tracing::warn!("login refused: every password worker is busy");
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins at once; try again shortly",
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        (_, Err(e)) => {
            attempt.refund().await;
            tracing::error!(error = %e, "password verification failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not verify the password",
            )
        }
    }
}

/// `GET /secure-todos`.
fn list_todos(state: &State, claims: &StandardClaims) -> Response<Body> {
    let todos = state.todos.lock().unwrap();
    let mine = todos.get(&owner(claims)).map_or(&[][..], Vec::as_slice);
    json_response(StatusCode::OK, &mine)
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

/// `POST /secure-todos`.
async fn create_todo<B>(state: &State, claims: &StandardClaims, body: B) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    let Ok(new) = serde_json::from_slice::<NewTodo>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a JSON body {\"title\": \"...\"}",
        );
    };
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the title must have 1 to 200 characters",
        );
    }
    let mut todos = state.todos.lock().unwrap();
    let mine = todos.entry(owner(claims)).or_default();
    if mine.len() >= MAX_TODOS_PER_USER {
        return error(
            StatusCode::CONFLICT,
            "too many todos: delete some before adding more",
        );
    }
    let todo = Todo {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        title: title.to_owned(),
        done: false,
    };
    mine.push(todo.clone());
    drop(todos);
    let mut res = json_response(StatusCode::CREATED, &todo);
    let location = HeaderValue::try_from(format!("/secure-todos/{}", todo.id))
        .expect("digits are a valid header");
    res.headers_mut().insert(header::LOCATION, location);
    res
}

/// `DELETE /secure-todos/{id}`.
fn delete_todo(state: &State, claims: &StandardClaims, path: &str) -> Response<Body> {
    let id = path["/secure-todos/".len()..].parse::<u64>().ok();
    let mut todos = state.todos.lock().unwrap();
    match (id, todos.get_mut(&owner(claims))) {
        (Some(id), Some(list)) if list.iter().any(|t| t.id == id) => {
            list.retain(|t| t.id != id);
            no_content()
        }
        _ => error(StatusCode::NOT_FOUND, "no such todo"),
    }
}

/// `POST /logout`: the presented token is refused from now on, on every instance that
/// shares the revocations. A token without `jti` (an external provider's) cannot be
/// revoked alone: `/logout/all` can.
fn logout(state: &State, claims: &StandardClaims) -> Response<Body> {
    let iss = claims.iss.as_deref().unwrap_or("");
    match (&claims.jti, claims.exp) {
        (Some(jti), Some(exp)) => {
            state.revocations.revoke_token(iss, jti, exp);
            tracing::info!("logout");
            no_content()
        }
        _ => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this token has no jti to revoke; use /logout/all",
        ),
    }
}

/// `POST /logout/all`: every token of this user issued until now is refused from now on.
///
/// `iat` counts whole seconds, so the revocation covers the whole current second; the
/// answer waits for that second to end, so that a login made after it gets a token the
/// revocation does not cover.
async fn logout_all(state: &State, claims: &StandardClaims) -> Response<Body> {
    // A user is the pair (`iss`, `sub`): the provider's `alice` is not this server's.
    match claims.principal() {
        Some((iss, sub)) => {
            state.revocations.revoke_subject(iss, sub);
            tracing::info!("logout from every session");
            let into_second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(Duration::ZERO, |d| {
                    Duration::from_nanos(d.subsec_nanos().into())
                });
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(into_second)).await;
            no_content()
        }
        None => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this token has no subject",
        ),
    }
}

/// The owner of the request's todos. The layer requires `sub`, and `iss` (it picks the
/// issuer, or is configured), so both are there.
fn owner(claims: &StandardClaims) -> Owner {
    let (iss, sub) = claims.principal().unwrap_or_default();
    (iss.to_owned(), sub.to_owned())
}

fn public_todos() -> serde_json::Value {
    json!([
        {"id": 1, "title": "Read the authentication chapter", "done": true},
        {"id": 2, "title": "Log in and create a todo of your own", "done": false},
    ])
}

/// Reads a whole (already size-limited) body: `413` past the limit, `400` on a broken one.
async fn read_body<B>(body: B) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let e: BoxError = e.into();
            if e.is::<http_body_util::LengthLimitError>() {
                Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                ))
            } else {
                Err(error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        }
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("plain data serializes");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

/// Every error this server answers has one body shape, `{"detail": "..."}` (the seed
/// app's FastAPI shape), whether a route or the auth middleware refused the request.
fn error(status: StatusCode, detail: &str) -> Response<Body> {
    json_response(status, &json!({"detail": detail}))
}

/// The auth middleware's rejections in the same shape: its status and headers (the RFC 6750
/// `WWW-Authenticate` challenge with the machine-readable error code, or `Retry-After`), and
/// `{"detail": ...}` for a body.
fn rejection(error: &AuthError, realm: &str) -> Response<Bytes> {
    let detail = serde_json::to_vec(&json!({"detail": error.description()}));
    error
        .response(realm)
        .map(|body| detail.map(Bytes::from).unwrap_or(body))
}

fn no_content() -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()).boxed());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

fn boxed<B>(res: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    res.map(BodyExt::boxed)
}
