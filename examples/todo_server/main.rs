//! A todo API behind `JwtAuthLayer`: argon2id logins with the OWASP throttle, HS256 (or
//! PEM-signed) access tokens, per-user todos, RFC 6750 errors, logout everywhere.
//!
//! ```sh
//! cargo run --example todo_server                 # --help lists every setting
//! curl -s -X POST localhost:3000/login -d 'username=alice&password=wonderland'
//! curl -s localhost:3000/secure-todos -H "Authorization: Bearer $TOKEN"
//! ```
//!
//! Every setting has a safe default and an environment variable. `REDIS_URL` shares logouts
//! and the login budgets with every instance using that Redis; `JWT_SIGNING_KEY` signs with a
//! PEM private key and publishes its public half at `/.well-known/jwks.json`;
//! `OIDC_ISSUER_URL` (or `JWKS_URL` with `JWKS_ISSUER`) trusts an identity provider's tokens.
//! DPoP (RFC 9449) is allowed: a login with a `DPoP` proof gets a token bound to its key,
//! which then works only with `Authorization: DPoP` and a fresh proof; `PUBLIC_URL` is the
//! origin those proofs name.

// Handlers refuse with `Err(response)`: both sides are responses, boxing one gains nothing.
#![allow(clippy::result_large_err)]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicU64, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
use tower_http::{sensitive_headers::SetSensitiveRequestHeadersLayer, trace::TraceLayer};
use tower_jwt_auth::{
    AuthError, Claims, ClientCertificate, Dpop, DpopMode, ForwardedCertificates, JwtAuthLayer,
    MAX_TTL, OutOfSync, ProtectedResourceMetadata, RequireScope, Revocations, StandardClaims,
    TokenIssuer, TrustedIssuer,
    introspect::Introspection,
    jwks::JwksSource,
    password::{Account, LoginRefusal, PasswordLogin, Passwords},
    throttle::LoginThrottle,
};

/// The todo server's settings: `--help` lists each with its environment variable.
#[derive(Parser)]
#[command(about = "A todo API behind tower-jwt-auth")]
struct Settings {
    /// Address to listen on (port 0: any free port; the log says which).
    #[arg(long, env = "TODO_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// HS256 secret, at least 32 bytes; random per process when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// PEM private key (Ed25519, P-256 or RSA) to sign with instead of the secret.
    #[arg(long, env = "JWT_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    #[arg(long, env = "JWT_ISSUER", default_value = "todo-server")]
    issuer: String,
    #[arg(long, env = "JWT_AUDIENCE", default_value = "todo-api")]
    audience: String,
    /// Lifetime of issued tokens, in seconds (at most a day).
    #[arg(long, env = "JWT_TTL_SECS", default_value_t = 1800)]
    ttl_secs: u64,
    /// Validated tokens remembered (0: none).
    #[arg(long, env = "JWT_CACHE_SIZE", default_value_t = 10_000)]
    cache_size: usize,
    /// Failed logins of one (user, client) pair before it is locked.
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 10)]
    login_max_failures: u32,
    #[arg(long, env = "LOGIN_LOCKOUT_SECS", default_value_t = 60)]
    login_lockout_secs: u64,
    #[arg(long, env = "LOGIN_MAX_LOCKOUT_SECS", default_value_t = 3600)]
    login_max_lockout_secs: u64,
    /// Failed logins of one account, from all clients, per window.
    #[arg(long, env = "LOGIN_ACCOUNT_MAX_FAILURES", default_value_t = 100)]
    login_account_max_failures: u32,
    #[arg(long, env = "LOGIN_ACCOUNT_WINDOW_SECS", default_value_t = 3600)]
    login_account_window_secs: u64,
    /// Proxies whose X-Forwarded-For names the client (comma-separated).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpAddr>,
    /// Time to send a request head, and the longest keep-alive idle.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// An OpenID Connect provider whose access tokens are trusted too.
    #[arg(long, env = "OIDC_ISSUER_URL", conflicts_with = "jwks_url")]
    oidc_issuer_url: Option<String>,
    /// A JWKS whose tokens (with `iss` = JWKS_ISSUER) are trusted too.
    #[arg(long, env = "JWKS_URL", requires = "jwks_issuer")]
    jwks_url: Option<String>,
    #[arg(long, env = "JWKS_ISSUER")]
    jwks_issuer: Option<String>,
    /// The `typ` required of the provider's tokens.
    #[arg(long, env = "EXTERNAL_TOKEN_TYP")]
    external_token_typ: Option<String>,
    /// Introspect OIDC_ISSUER_URL's opaque tokens (RFC 7662) as this client...
    #[arg(long, env = "INTROSPECTION_CLIENT_ID", requires_all = ["oidc_issuer_url", "introspection_client_secret"])]
    introspection_client_id: Option<String>,
    /// ...with this secret (client_secret_basic).
    #[arg(long, env = "INTROSPECTION_CLIENT_SECRET", hide_env_values = true)]
    introspection_client_secret: Option<String>,
    /// The introspection endpoint [default: the provider's, from discovery].
    #[arg(long, env = "INTROSPECTION_URL")]
    introspection_url: Option<String>,
    /// The longest an introspection result is trusted (a revocation at the provider waits it out).
    #[arg(long, env = "INTROSPECTION_CACHE_SECS", default_value_t = 60)]
    introspection_cache_secs: u64,
    /// Redis shared by every instance: logouts, login budgets, DPoP proofs, introspections.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Answer 503 once logouts have been out of sync with Redis this long (unset: serve on).
    #[arg(long, env = "REVOCATIONS_REFUSE_AFTER_SECS")]
    revocations_refuse_after_secs: Option<u64>,
    /// DPoP-bound tokens (RFC 9449): beside bearer tokens, only them, or not at all.
    #[arg(long, env = "DPOP", value_enum, default_value = "allowed")]
    dpop: DpopSetting,
    /// The URL clients reach this server at: the origin DPoP proofs name, and the resource
    /// of its RFC 9728 metadata [default: http://TODO_ADDR].
    #[arg(long, env = "PUBLIC_URL")]
    public_url: Option<String>,
    /// Ask DPoP clients for server nonces (RFC 9449 section 9).
    #[arg(long, env = "DPOP_NONCE", value_parser = clap::builder::BoolishValueParser::new())]
    dpop_nonce: bool,
    /// What nonces derive from, shared by instances (32+ bytes; random per process when unset).
    #[arg(long, env = "DPOP_NONCE_SECRET", hide_env_values = true)]
    dpop_nonce_secret: Option<String>,
    /// Serve HTTPS (HTTP/1.1 and h2 by ALPN) with this PEM certificate chain and TLS_KEY.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of TLS_CERT.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask clients for a certificate from this PEM CA: optional, but certificate-bound
    /// tokens (RFC 8705) work only with one.
    #[arg(long, env = "TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// TLS-terminating proxies whose Client-Cert header (RFC 9440) names the client's certificate.
    #[arg(long, env = "CLIENT_CERT_PROXIES", value_delimiter = ',')]
    client_cert_proxies: Vec<IpAddr>,
    /// Serve Prometheus metrics at http://METRICS_ADDR/metrics (a port other than 0)
    /// [default: off].
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DpopSetting {
    Allowed,
    Required,
    Off,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type Server = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;
type Owner = (String, String);
const MAX_BODY: usize = 16 * 1024;
const MAX_TODOS_PER_USER: usize = 1000;

/// Everything the handlers share.
struct App {
    issuer: TokenIssuer,
    /// The validating side, asked by `GET /ready` whether it can serve.
    auth: JwtAuthLayer,
    /// `POST /login`: the password grant, throttled, bound to a DPoP key when asked.
    login: PasswordLogin<HashMap<String, Account>>,
    /// Logouts; shared through Redis with `REDIS_URL`.
    revocations: Revocations,
    /// The RFC 9728 document, when `PUBLIC_URL` allows one.
    metadata: Option<ProtectedResourceMetadata>,
    /// Each user's todos. A user is (`iss`, `sub`): `sub` is unique only within its issuer.
    todos: Mutex<HashMap<Owner, Vec<Value>>>,
    next_id: AtomicU64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A configuration mistake stops the server before it listens, with the setting named.
    match run(Settings::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("todo_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env();
    tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|_| "info".into()))
        .init();
    // Before any layer exists: each registers its metrics when it is built.
    if let Some(addr) = s.metrics_addr {
        serve_metrics(addr)?;
    }

    // Bound first: with port 0 the address, which DPoP proofs name, is known only now.
    let listener = TcpListener::bind(s.addr).await?;
    let addr = listener.local_addr()?;
    let tls = tls_acceptor(&s)?;
    let scheme = if tls.is_some() { "https" } else { "http" };

    // The issuing side: this server's logins sign with a secret or a PEM key.
    let base = TokenIssuer::builder()
        .issuer(&s.issuer)
        .audience(&s.audience)
        .ttl(Duration::from_secs(s.ttl_secs));
    let issuer = match (&s.signing_key, &s.secret) {
        (Some(path), _) => base.private_key_pem(std::fs::read(path)?),
        (None, Some(secret)) => base.hs256(secret),
        (None, None) => {
            tracing::warn!("JWT_SECRET is not set: using a random per-process secret");
            let mut secret = [0; 32];
            getrandom::fill(&mut secret)?;
            base.hs256(secret)
        }
    }
    .build()?;

    // Logouts and login budgets: in this process, or shared by every instance via Redis.
    let external = external_provider(&s)?;
    // A "log out everywhere" must outlive every token it covers (a provider's: a day).
    let lifetime = match external {
        Some(_) => MAX_TTL,
        None => Duration::from_secs(s.ttl_secs),
    };
    let revocations = Revocations::builder()
        .max_token_lifetime(lifetime)
        .key_prefix("todo-server:revocations")
        .when_out_of_sync(match s.revocations_refuse_after_secs {
            Some(secs) => OutOfSync::Refuse {
                after: Duration::from_secs(secs),
            },
            None => OutOfSync::Serve,
        });
    let mut throttle = LoginThrottle::builder()
        .max_failures(s.login_max_failures)
        .lockout(Duration::from_secs(s.login_lockout_secs))
        .max_lockout(Duration::from_secs(s.login_max_lockout_secs))
        .account_max_failures(s.login_account_max_failures)
        .account_window(Duration::from_secs(s.login_account_window_secs));
    let redis = s
        .redis_url
        .as_deref()
        .map(redis::Client::open)
        .transpose()?;
    let revocations = match redis.clone() {
        Some(redis) => {
            throttle = throttle
                .redis(redis.clone())
                .key_prefix("todo-server:throttle");
            revocations.redis(redis).await?
        }
        None => revocations.in_memory(),
    };

    // DPoP: proofs name the public origin, which a server behind a proxy cannot guess.
    let public_url = s.public_url.clone();
    let public_url = public_url.unwrap_or_else(|| format!("{scheme}://{addr}"));
    let dpop = match s.dpop {
        DpopSetting::Off => None,
        DpopSetting::Allowed => Some(DpopMode::Allowed),
        DpopSetting::Required => Some(DpopMode::Required),
    }
    .map(|mode| {
        let mut dpop = Dpop::new(&public_url).mode(mode);
        if let Some(redis) = &redis {
            // A proof used on one instance is refused on every other.
            dpop = dpop
                .redis(redis.clone())
                .redis_key_prefix("todo-server:dpop");
        }
        match (&s.dpop_nonce_secret, s.dpop_nonce) {
            (Some(secret), true) => dpop = dpop.nonces(secret),
            (None, true) => {
                tracing::warn!(
                    "DPOP_NONCE_SECRET is not set: nonces are good on this instance only"
                );
                dpop = dpop.random_nonces();
            }
            (_, false) => {}
        }
        dpop
    });

    // RFC 9728: who issues tokens for this API and how it takes them; challenges point here.
    let mut metadata = ProtectedResourceMetadata::builder(&public_url)
        .authorization_server(&s.issuer)
        .scopes_supported(["todos:read", "todos:write"])
        .resource_name("Todo API");
    if let Some(provider) = s.oidc_issuer_url.as_ref().or(s.jwks_issuer.as_ref()) {
        metadata = metadata.authorization_server(provider);
    }
    if let Some(dpop) = &dpop {
        metadata = metadata.dpop(dpop);
    }
    if s.tls_client_ca.is_some() || !s.client_cert_proxies.is_empty() {
        metadata = metadata.certificate_bound_tokens();
    }
    // The RFC wants an https resource (http only on loopback): without one, no document.
    let metadata = metadata
        .build()
        .inspect_err(|e| tracing::warn!("no RFC 9728 metadata for PUBLIC_URL {public_url}: {e}"))
        .ok();
    let metadata_url = metadata.as_ref().map(|m| m.url().to_owned());

    // The validating side: this server's tokens keep every check of `issuer.layer()`
    // (`typ` = `at+jwt`); a provider's are typed as configured, and the audience keeps its
    // ID tokens out.
    let auth = match external {
        None => issuer.layer(),
        Some(provider) => JwtAuthLayer::builder()
            .trusting([issuer.trusted(), provider.audience(&s.audience)])
            .require_claim("sub"),
    };
    let auth = match introspection(&s)? {
        Some(opaque) => auth.introspection(opaque),
        None => auth,
    };
    let mut auth = match &dpop {
        Some(dpop) => auth.dpop(dpop.clone()),
        None => auth,
    }
    .cache(s.cache_size)
    .max_age(lifetime) // an older token would outlive a "log out everywhere" before it
    .revocations(revocations.clone())
    .on_rejection(rejection);
    let mut writers = RequireScope::all(["todos:write"]).on_rejection(rejection);
    if let Some(url) = &metadata_url {
        auth = auth.resource_metadata(url);
        writers = writers.resource_metadata(url);
    }
    let auth: JwtAuthLayer = auth.build()?;

    // The demo users, and the dummy hash unknown users are checked against, made now.
    let passwords = Passwords::new();
    let mut users = HashMap::new();
    for (name, password, scope) in [
        ("alice", "wonderland", "todos:read todos:write"),
        ("bob", "builder", "todos:read"),
    ] {
        let phc = passwords.hash(password).await?;
        users.insert(name.to_owned(), Account::new(phc, scope));
    }
    passwords.verify("warm-up", None).await?;
    let mut login = PasswordLogin::builder(issuer.clone(), users)
        .passwords(passwords)
        .throttle(throttle)
        .trusted_proxies(s.trusted_proxies.clone())
        .on_refusal(login_refusal);
    if let Some(dpop) = dpop {
        login = login.dpop(dpop);
    }
    let app = Arc::new(App {
        issuer,
        auth: auth.clone(),
        login: login.build()?,
        revocations: revocations.clone(),
        metadata,
        todos: Mutex::default(),
        next_id: AtomicU64::new(1),
    });

    // One stack per kind of access, all ending in the same handler: this is where
    // `JwtAuthLayer` and `RequireScope` come in.
    let metadata_path = app.metadata.as_ref().map(|m| m.path().to_owned());
    let handler = service_fn(move |req| handle(app.clone(), req));
    let public = BoxCloneSyncService::new(handler.clone());
    let authenticated = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|res: Response<_>| res.map(BodyExt::boxed))
            .layer(auth.clone())
            .service(handler.clone()),
    );
    let writer = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|res: Response<_>| res.map(BodyExt::boxed))
            .layer(auth)
            .layer(writers)
            .service(handler),
    );
    let service = ServiceBuilder::new()
        .map_response(|res: Response<_>| res.map(BodyExt::boxed))
        // Before the trace layer: no log line, at any level, shows a credential.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(TraceLayer::new_for_http())
        .service(service_fn(move |mut req: Request<Incoming>| {
            let path = req.uri().path();
            let (access, route) = route(req.method(), path, metadata_path.as_deref());
            req.extensions_mut().insert(route);
            match access {
                Access::Public => public.clone(),
                Access::Authenticated => authenticated.clone(),
                Access::Writer => writer.clone(),
            }
            .oneshot(req)
        }));

    tracing::info!("listening on {scheme}://{addr}");
    serve(listener, tls, BoxCloneSyncService::new(service), &s).await;
    // Logouts made while Redis was unreachable wait in memory until Redis has them.
    if !revocations.flush(Duration::from_secs(5)).await {
        tracing::warn!("some logouts never reached Redis; other instances do not know them");
    }
    Ok(())
}

/// Prometheus' text format on a listener of its own (the exporter's), so that the API's
/// port does not publish it.
fn serve_metrics(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    if addr.port() == 0 {
        return Err("METRICS_ADDR needs a port: the exporter would not say which it picked".into());
    }
    // From 10 us (a cached token) to 5 s (a slow identity provider).
    let buckets = [
        1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .install()?;
    tower_jwt_auth::metrics::describe();
    tracing::info!("metrics at http://{addr}/metrics");
    Ok(())
}

/// With `INTROSPECTION_CLIENT_ID`: the provider's opaque tokens, checked at its endpoint.
fn introspection(s: &Settings) -> Result<Option<Introspection>, Box<dyn std::error::Error>> {
    let (Some(iss), Some(id), Some(secret)) = (
        &s.oidc_issuer_url,
        &s.introspection_client_id,
        &s.introspection_client_secret,
    ) else {
        return Ok(None);
    };
    let opaque = match &s.introspection_url {
        Some(url) => Introspection::builder(iss, url),
        None => Introspection::discover(iss),
    };
    let mut opaque = opaque
        .client_secret_basic(id, secret)
        .cache_ttl(Duration::from_secs(s.introspection_cache_secs));
    if let Some(url) = &s.redis_url {
        // One introspection per token for every instance.
        let shared = opaque.redis(redis::Client::open(url.as_str())?);
        opaque = shared.redis_key_prefix("todo-server:introspection");
    }
    let opaque = opaque.build()?;
    Ok(Some(opaque))
}

/// `OIDC_ISSUER_URL` (keys through discovery) or `JWKS_URL` with `JWKS_ISSUER`.
fn external_provider(s: &Settings) -> Result<Option<TrustedIssuer>, Box<dyn std::error::Error>> {
    let (iss, jwks) = match (&s.oidc_issuer_url, &s.jwks_url, &s.jwks_issuer) {
        (Some(iss), _, _) => (iss, JwksSource::discover(iss).build()?),
        (None, Some(url), Some(iss)) => (iss, JwksSource::builder(url).build()?),
        _ => return Ok(None),
    };
    tracing::info!(issuer = %iss, "also trusting an external identity provider");
    let provider = TrustedIssuer::new(iss, jwks);
    Ok(Some(match &s.external_token_typ {
        Some(typ) => provider.typ(typ),
        None => provider,
    }))
}

/// HTTP/1.1 and h2c (or, with TLS, both by ALPN) on one port until Ctrl-C or SIGTERM, then
/// a drain of open connections. A client gets `HEADER_READ_TIMEOUT_SECS` for the TLS
/// handshake and for each request head (and no longer idle on a keep-alive connection); at
/// most `MAX_CONNECTIONS` are open (more wait in the backlog).
async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, service: Server, s: &Settings) {
    let timeout = Duration::from_secs(s.header_read_timeout_secs);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeout)
        .keep_alive_timeout(timeout)
        .max_concurrent_streams(64);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(s.max_connections));
    let proxies = ForwardedCertificates::new(s.client_cert_proxies.clone());
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let accepted = tokio::select! {
            accepted = async {
                let slot = open.clone().acquire_owned().await;
                (slot, listener.accept().await)
            } => accepted,
            () = &mut shutdown => break,
        };
        let (Ok(slot), Ok((stream, peer))) = accepted else {
            continue;
        };
        let (service, builder, tls, proxies) = (
            service.clone(),
            builder.clone(),
            tls.clone(),
            proxies.clone(),
        );
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot; // held until the connection ends
            // The client address keys the login throttle; its certificate (from this TLS
            // connection or a trusted proxy's `Client-Cert`) binds tokens to it.
            let with = |cert: Option<ClientCertificate>| {
                TowerToHyperService::new(service.map_request(move |mut req: Request<_>| {
                    if let Some(cert) = &cert {
                        req.extensions_mut().insert(cert.clone());
                    }
                    proxies.apply(peer.ip(), &mut req);
                    req.extensions_mut().insert(peer);
                    req
                }))
            };
            let Some(tls) = tls else {
                let conn = builder.serve_connection(TokioIo::new(stream), with(None));
                return drop(watcher.watch(conn.into_owned()).await);
            };
            let Ok(Ok(stream)) = tokio::time::timeout(timeout, tls.accept(stream)).await else {
                return;
            };
            let certs = stream.get_ref().1.peer_certificates();
            let cert = certs
                .and_then(|c| c.first())
                .map(|c| ClientCertificate::new(c.to_vec()));
            let conn = builder.serve_connection(TokioIo::new(stream), with(cert));
            drop(watcher.watch(conn.into_owned()).await);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}

/// The HTTPS settings: `TLS_CERT` and `TLS_KEY`, and `TLS_CLIENT_CA` to ask for (but not
/// require) client certificates it issued.
fn tls_acceptor(s: &Settings) -> Result<Option<TlsAcceptor>, Box<dyn std::error::Error>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) else {
        return Ok(None);
    };
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &s.tls_client_ca {
        None => config.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)? {
                roots.add(cert?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .allow_unauthenticated()
                .build()?;
            config.with_client_cert_verifier(verifier)
        }
    };
    let mut config = config.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Who may call a route.
#[derive(Clone, Copy)]
enum Access {
    Public,
    /// A valid token: `JwtAuthLayer` checks it and puts its claims in the request.
    Authenticated,
    /// A valid token that grants `todos:write`: `JwtAuthLayer`, then `RequireScope`.
    Writer,
}

#[derive(Clone, Copy)]
enum Route {
    Login,
    Health,
    Ready,
    PublicTodos,
    Jwks,
    Metadata,
    Me,
    ListTodos,
    CreateTodo,
    DeleteTodo,
    Logout,
    LogoutAll,
    /// A known path with another method, and the methods it allows.
    MethodNotAllowed(&'static str),
    NotFound,
}

/// Every route and who may call it: the one place to read the API. A known path with
/// another method is 405 after the same authentication, so a protected path tells a caller
/// without a token nothing. `HEAD` is `GET` without the body, which hyper leaves out.
fn route(method: &Method, path: &str, metadata: Option<&str>) -> (Access, Route) {
    use {Access::*, Route::*};
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let todo = path.starts_with("/secure-todos/");
    match path {
        // The RFC 9728 document: its service answers every method.
        _ if Some(path) == metadata => (Public, Metadata),
        "/login" if post => (Public, Login),
        "/health" if get => (Public, Health),
        "/ready" if get => (Public, Ready),
        "/todos" if get => (Public, PublicTodos),
        "/.well-known/jwks.json" if get => (Public, Jwks),
        "/me" if get => (Authenticated, Me),
        "/secure-todos" if get => (Authenticated, ListTodos),
        "/logout" if post => (Authenticated, Logout),
        "/logout/all" if post => (Authenticated, LogoutAll),
        "/secure-todos" if post => (Writer, CreateTodo),
        _ if todo && method == Method::DELETE => (Writer, DeleteTodo),
        "/login" => (Public, MethodNotAllowed("POST")),
        "/health" | "/ready" | "/todos" | "/.well-known/jwks.json" => {
            (Public, MethodNotAllowed("GET, HEAD"))
        }
        "/me" => (Authenticated, MethodNotAllowed("GET, HEAD")),
        "/secure-todos" => (Authenticated, MethodNotAllowed("GET, HEAD, POST")),
        "/logout" | "/logout/all" => (Authenticated, MethodNotAllowed("POST")),
        _ if todo => (Authenticated, MethodNotAllowed("DELETE")),
        _ => (Public, NotFound),
    }
}

/// A handler's answer: a response, or a refusal that is a response too (so `?` can refuse).
type Answer = Result<Response<Body>, Response<Body>>;

/// Answers a request that [`route`] routed and its stack let through. Behind `JwtAuthLayer`
/// the claims are in the extensions; the layer requires `sub` and `iss`, so a user is there.
async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let route = req.extensions().get().copied().unwrap_or(Route::NotFound);
    let claims = req.extensions().get::<Claims<StandardClaims>>().cloned();
    let claims = claims.as_deref();
    let user = claims.and_then(StandardClaims::principal);
    let owner = user
        .map(|(iss, sub)| (iss.to_owned(), sub.to_owned()))
        .unwrap_or_default();
    let answer = match route {
        Route::Login => Ok(app.login.clone().oneshot(req).await?.map(BodyExt::boxed)),
        // Liveness: the process answers.
        Route::Health => Ok(json(StatusCode::OK, &json!({"status": "ok"}))),
        // Readiness: keys loaded for every issuer, logouts in sync, introspection answering;
        // the body names the part that is not.
        Route::Ready => {
            let readiness = app.auth.readiness();
            let status = match readiness.is_ready() {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            Ok(json(status, &readiness))
        }
        Route::PublicTodos => Ok(json(
            StatusCode::OK,
            &json!([
                {"id": 1, "title": "Read the authentication chapter", "done": true},
                {"id": 2, "title": "Log in and create a todo of your own", "done": false},
            ]),
        )),
        // Other services validate this server's tokens with this key.
        Route::Jwks => match app.issuer.public_jwk() {
            Some(jwk) => Ok(json(StatusCode::OK, &json!({ "keys": [jwk] }))),
            None => Err(error(
                StatusCode::NOT_FOUND,
                "tokens are signed with a shared secret",
            )),
        },
        Route::Metadata => match &app.metadata {
            Some(metadata) => Ok(metadata.service().oneshot(req).await?.map(BodyExt::boxed)),
            None => Err(error(StatusCode::NOT_FOUND, "not found")),
        },
        Route::Me => Ok(json(StatusCode::OK, &claims)),
        Route::ListTodos => {
            let todos = app.todos.lock().unwrap();
            Ok(json(
                StatusCode::OK,
                &todos.get(&owner).cloned().unwrap_or_default(),
            ))
        }
        Route::CreateTodo => create_todo(&app, owner, req).await,
        Route::DeleteTodo => {
            let id = req.uri().path()["/secure-todos/".len()..]
                .parse::<u64>()
                .ok();
            let mut todos = app.todos.lock().unwrap();
            let mine = todos.entry(owner).or_default();
            match mine
                .iter()
                .position(|t| id.is_some() && t["id"] == json!(id))
            {
                Some(i) => Ok(no_content(mine.remove(i))),
                None => Err(error(StatusCode::NOT_FOUND, "no such todo")),
            }
        }
        // `/logout` revokes this token (it needs a `jti`), `/logout/all` every token of the
        // user issued until now, on every instance that shares the revocations.
        Route::Logout => match (
            claims.and_then(|c| c.jti.as_deref()),
            claims.and_then(|c| c.exp),
        ) {
            (Some(jti), Some(exp)) => {
                app.revocations.revoke_token(&owner.0, jti, exp);
                published(&app).await
            }
            _ => Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this token has no jti to revoke; use /logout/all",
            )),
        },
        Route::LogoutAll => {
            // Answered once the second it covers is over: a login after the answer works.
            tokio::time::sleep(app.revocations.revoke_subject(&owner.0, &owner.1)).await;
            published(&app).await
        }
        Route::MethodNotAllowed(allow) => {
            let mut res = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            Err(res)
        }
        Route::NotFound => Err(error(StatusCode::NOT_FOUND, "not found")),
    };
    Ok(answer.unwrap_or_else(|refusal| refusal))
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

/// `POST /secure-todos`: `{"title": "..."}` in, the new todo out, with its `Location`.
async fn create_todo(app: &App, owner: Owner, req: Request<Incoming>) -> Answer {
    let unprocessable = |detail| error(StatusCode::UNPROCESSABLE_ENTITY, detail);
    let new: NewTodo = serde_json::from_slice(&read_body(req).await?)
        .map_err(|_| unprocessable("expected a JSON body {\"title\": \"...\"}"))?;
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(unprocessable("the title must have 1 to 200 characters"));
    }
    let mut todos = app.todos.lock().unwrap();
    let mine = todos.entry(owner).or_default();
    if mine.len() >= MAX_TODOS_PER_USER {
        return Err(error(
            StatusCode::CONFLICT,
            "too many todos: delete some before adding more",
        ));
    }
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    mine.push(json!({"id": id, "title": title, "done": false}));
    let mut res = json(StatusCode::CREATED, mine.last().unwrap());
    res.headers_mut().insert(
        header::LOCATION,
        format!("/secure-todos/{id}").parse().unwrap(),
    );
    Ok(res)
}

/// `204` once a logout has reached Redis (at once without Redis); `503` when it could not
/// within a short bound: it holds here, and reaches Redis when Redis is back.
async fn published(app: &App) -> Answer {
    if app.revocations.flush(Duration::from_secs(2)).await {
        return Ok(no_content(()));
    }
    tracing::warn!("a logout did not reach Redis; other instances do not know it yet");
    let detail = "the logout could not be shared; try again";
    Err(retry(error(StatusCode::SERVICE_UNAVAILABLE, detail), 5))
}

/// The whole body, at most `MAX_BODY` bytes: `413` past the limit, `400` if it breaks.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        )),
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("plain data serializes");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::from(body).boxed())
        .expect("a valid head")
}

/// Every error has one body shape, `{"detail": "..."}` (the seed app's FastAPI shape).
fn error(status: StatusCode, text: &str) -> Response<Body> {
    let mut res = json(status, &());
    *res.body_mut() = Full::from(detail(text)).boxed();
    res
}

fn detail(text: &str) -> Bytes {
    serde_json::to_vec(&json!({ "detail": text })).map_or_else(|_| Bytes::new(), Bytes::from)
}

/// The layers' rejections in the same shape, with their status and headers (the RFC 6750
/// challenge with its error code, or `Retry-After`).
fn rejection(error: &AuthError, realm: &str) -> Response<Bytes> {
    error.response(realm).map(|_| detail(&error.description()))
}

/// Login refusals in that shape too, with their status and `Retry-After`; a wrong password
/// is the seed's `401`. A DPoP proof's refusal stays RFC 9449's, which DPoP clients read.
fn login_refusal(refusal: &LoginRefusal) -> Response<Bytes> {
    let mut res = refusal.response();
    if !refusal.is_dpop() {
        if *refusal == LoginRefusal::InvalidCredentials {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
        }
        *res.body_mut() = detail(&refusal.description());
    }
    res
}

fn retry(mut res: Response<Body>, secs: u64) -> Response<Body> {
    res.headers_mut().insert(header::RETRY_AFTER, secs.into());
    res
}

fn no_content<T>(_: T) -> Response<Body> {
    let mut res = Response::new(Full::default().boxed());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}
