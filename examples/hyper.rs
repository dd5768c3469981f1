//! The smallest complete server: one route behind `JwtAuthLayer` and `RequireScope`, served
//! with hyper.
//!
//! ```sh
//! cargo run --example hyper
//! curl -s localhost:3002/hello -H "Authorization: Bearer $TOKEN"   # the token it printed
//! ```
//!
//! `HYPER_ADDR` (default `127.0.0.1:3002`) is where it listens; `HYPER_JWT_SECRET` (at least
//! 32 bytes) signs and checks the tokens, random per process when unset.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};
use tower_jwt_auth::{Claims, RequireScope, StandardClaims, TokenIssuer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = match std::env::var("HYPER_JWT_SECRET") {
        Ok(secret) => secret.into_bytes(),
        Err(_) => {
            let mut secret = vec![0; 32];
            getrandom::fill(&mut secret)?;
            secret
        }
    };

    // The issuing side signs tokens; the layer derived from it accepts exactly those (same
    // key, `iss`, `aud`, `typ`). A secret shorter than 32 bytes is refused here.
    let issuer = TokenIssuer::builder()
        .hs256(&secret)
        .issuer("hyper-demo")
        .audience("greetings")
        .build()?;
    println!("token: {}", issuer.issue("alice", "greet")?.access_token);

    // Authentication, then authorization, then the handler, which finds the validated claims
    // in the request's extensions. Without a token: 401; without the scope: 403.
    let service = ServiceBuilder::new()
        .layer(issuer.layer::<StandardClaims>().build()?)
        .layer(RequireScope::all(["greet"]))
        .service(service_fn(hello));

    let addr = std::env::var("HYPER_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // HTTP/1.1 and HTTP/2 on the same port.
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection closed: {e}");
            }
        });
    }
}

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let claims = req
        .extensions()
        .get::<Claims<StandardClaims>>()
        .expect("JwtAuthLayer puts the claims here");
    let name = claims.sub.as_deref().unwrap_or("stranger");
    Ok(Response::new(Full::from(format!("hello, {name}\n"))))
}
