//! A forward-auth server: nginx (`auth_request`), Traefik (`ForwardAuth`) and Caddy
//! (`forward_auth`) ask it about every request, so services in any language sit behind
//! `JwtAuthLayer` without linking it.
//!
//! ```sh
//! JWT_SECRET=... RULES=examples/forward_auth/rules.txt cargo run --example forward_auth
//! ```
//!
//! It answers `200` with `X-Auth-Subject`, `X-Auth-Issuer` and `X-Auth-Scopes` for a valid
//! token (the proxy copies them to the upstream), or the layer's `401`/`403` with its
//! challenge. The request it judges is the proxy's original one, from `X-Original-Method` and
//! `X-Original-URI` (nginx) or `X-Forwarded-Method`, `-Host` and `-Uri` (Traefik, Caddy),
//! believed only from `TRUSTED_PROXIES`. `examples/forward_auth/` has the proxies' configuration.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
use tower_jwt_auth::{
    AuthorizeLayer, Dpop, ForwardClaimsLayer, JwtAuthLayer, OriginalRequest, RequireScope, Scopes,
    StandardClaims, TrustedIssuer, VerificationKey, jsonwebtoken::Algorithm, jwks::JwksSource,
};

/// The forward-auth server's settings: `--help` lists each with its environment variable.
#[derive(Parser)]
#[command(about = "Answers nginx, Traefik and Caddy: may this request pass?")]
struct Settings {
    #[arg(long, env = "AUTH_ADDR", default_value = "127.0.0.1:3100")]
    addr: SocketAddr,
    /// The todo server's HS256 secret: its tokens (`typ` at+jwt) are trusted.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    #[arg(long, env = "JWT_ISSUER", default_value = "todo-server")]
    issuer: String,
    /// The audience every trusted token must name.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "todo-api")]
    audience: String,
    /// An OpenID Connect provider whose access tokens are trusted too.
    #[arg(long, env = "OIDC_ISSUER_URL", conflicts_with = "jwks_url")]
    oidc_issuer_url: Option<String>,
    /// A JWKS (the todo server's, with JWT_SIGNING_KEY) whose tokens, with `iss` =
    /// JWKS_ISSUER, are trusted too.
    #[arg(long, env = "JWKS_URL", requires = "jwks_issuer")]
    jwks_url: Option<String>,
    #[arg(long, env = "JWKS_ISSUER")]
    jwks_issuer: Option<String>,
    /// Method, path prefix and requirement per line [default: a valid token for everything].
    #[arg(long, env = "RULES")]
    rules: Option<PathBuf>,
    /// Who may name the original request in headers (comma-separated).
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    trusted_proxies: Vec<IpAddr>,
    /// The origin clients reach the proxy at: with it, DPoP-bound tokens work too.
    #[arg(long, env = "PUBLIC_URL")]
    public_url: Option<String>,
}

type Body = BoxBody<Bytes, Infallible>;
type Judge = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// One line of the rules file: `METHOD|* /prefix public|token|scope...`; the first match wins.
struct Rule {
    method: Option<Method>,
    prefix: String,
    judge: Judge,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A configuration mistake stops the server before it listens, with the setting named.
    match run(Settings::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forward_auth: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // The same trust as the todo server: its secret, and an identity provider.
    let mut trusted = Vec::new();
    if let Some(secret) = &s.secret {
        let key = VerificationKey::hmac(Algorithm::HS256, secret.as_bytes())?;
        trusted.push(TrustedIssuer::new(&s.issuer, key).typ("at+jwt"));
    }
    if let Some(url) = &s.oidc_issuer_url {
        trusted.push(TrustedIssuer::new(url, JwksSource::discover(url).build()?));
    }
    if let (Some(url), Some(iss)) = (&s.jwks_url, &s.jwks_issuer) {
        trusted.push(TrustedIssuer::new(iss, JwksSource::builder(url).build()?));
    }
    if trusted.is_empty() {
        let keys = "set JWT_SECRET, OIDC_ISSUER_URL or JWKS_URL: no token could be valid";
        return Err(keys.into());
    }
    let trusted = trusted.into_iter().map(|t| t.audience(&s.audience));
    let auth = JwtAuthLayer::builder()
        .trusting(trusted)
        .require_claim("sub")
        .cache(10_000);
    let auth: JwtAuthLayer = match &s.public_url {
        Some(url) => auth.dpop(Dpop::new(url)),
        None => auth,
    }
    .build()?;
    // The subject and issuer are copied as the layer checked them; a value that cannot be a
    // header value is refused rather than mangled.
    let forward = ForwardClaimsLayer::<StandardClaims>::builder()
        .claim("sub", "x-auth-subject")
        .claim("iss", "x-auth-issuer")
        .build()?;
    let token = |scopes: Option<AuthorizeLayer<RequireScope>>| -> Judge {
        let allow = ServiceBuilder::new()
            .map_response(boxed)
            .layer(forward.clone())
            .service(service_fn(allow));
        let auth = ServiceBuilder::new()
            .map_response(boxed)
            .layer(auth.clone());
        match scopes {
            None => BoxCloneSyncService::new(auth.service(allow)),
            Some(scopes) => {
                let allow = ServiceBuilder::new()
                    .map_response(boxed)
                    .layer(scopes)
                    .service(allow);
                BoxCloneSyncService::new(auth.service(allow))
            }
        }
    };

    let text = match &s.rules {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("RULES {}: {e}", path.display()))?
        }
        None => String::new(),
    };
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: &dyn std::fmt::Display| format!("RULES line {n}: {e}");
        let mut words = line.split_ascii_whitespace();
        let (Some(method), Some(prefix), need) =
            (words.next(), words.next(), words.collect::<Vec<_>>())
        else {
            return Err(at(&"expected `METHOD /prefix public|token|scope...`").into());
        };
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(at(&"methods are upper case (GET, not get)").into());
        }
        let method = (method != "*")
            .then(|| method.parse::<Method>())
            .transpose()
            .map_err(|e| at(&e))?;
        if !prefix.starts_with('/') {
            return Err(at(&"a path prefix starts with `/`").into());
        }
        let judge = match need[..] {
            ["public"] => BoxCloneSyncService::new(service_fn(|_| async {
                Ok(Response::new(Full::default().boxed()))
            })),
            [] | ["token"] => token(None),
            _ => token(Some(RequireScope::try_all(need).map_err(|e| at(&e))?)),
        };
        rules.push(Rule {
            method,
            prefix: prefix.to_owned(),
            judge,
        });
    }
    // A request no rule names needs a valid token.
    rules.push(Rule {
        method: None,
        prefix: "/".into(),
        judge: token(None),
    });
    let rules: Arc<[Rule]> = rules.into();
    let original = OriginalRequest::trusting(s.trusted_proxies);

    let listener = TcpListener::bind(s.addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (rules, original) = (rules.clone(), original.clone());
        let service = service_fn(move |req| judge(rules.clone(), original.clone(), peer.ip(), req));
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// Judges the proxy's original request (from a trusted proxy's headers) by the first rule
/// that names it.
async fn judge(
    rules: Arc<[Rule]>,
    original: OriginalRequest,
    peer: IpAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    // The path as an upstream reads it; one that reads two ways is refused, not guessed at.
    let path = match original.apply(peer, &mut req) {
        Ok(path) => path,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    // Some upstreams route without regard to case: a path that another rule names in
    // another case is refused.
    let find = |path: &str, fold: bool| {
        rules.iter().position(|r| {
            let prefix = r.prefix.trim_end_matches('/');
            let rest = match fold {
                false => path.strip_prefix(prefix),
                true => (path.get(..prefix.len()))
                    .filter(|head| head.eq_ignore_ascii_case(prefix))
                    .map(|_| &path[prefix.len()..]),
            };
            r.method.as_ref().is_none_or(|m| m == req.method())
                && rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    };
    let (Some(exact), Some(folded)) = (find(&path, false), find(&path, true)) else {
        unreachable!("the last rule matches every path");
    };
    if exact != folded {
        return Ok(refuse("another rule names this path in another case"));
    }
    rules[exact].judge.clone().oneshot(req).await
}

/// `200` behind the layers: the request may pass, with what the token said (the layer put
/// the subject and issuer in the request, after removing any a client sent).
async fn allow(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut res = Response::new(Full::default().boxed());
    for name in ["x-auth-subject", "x-auth-issuer"] {
        if let Some(value) = req.headers().get(name) {
            res.headers_mut().insert(name, value.clone());
        }
    }
    if let Some(scopes) = req.extensions().get::<Scopes>().filter(|s| !s.is_empty()) {
        // A scope with a control character (no RFC 6749 scope-token) is refused, not mangled.
        let joined = scopes.iter().collect::<Vec<_>>().join(" ");
        let Ok(value) = HeaderValue::try_from(joined) else {
            return Ok(refuse("the token's scopes cannot be a header value"));
        };
        res.headers_mut().insert("x-auth-scopes", value);
    }
    Ok(res)
}

fn boxed<B>(res: Response<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    res.map(BodyExt::boxed)
}

/// `403` (the one refusal besides `401` that nginx passes on) for a request it cannot judge.
fn refuse(detail: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": detail });
    let mut res = Response::new(Full::from(body.to_string()).boxed());
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
