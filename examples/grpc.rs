//! A gRPC service behind `JwtAuthLayer`, with tonic.
//!
//! The service is tonic's standard health check (`grpc.health.v1.Health`, generated code that
//! `tonic-health` ships, so no `protoc` is needed). The layers go on the tonic server like
//! any tower layer; a gRPC client sends its token as the `authorization` metadata entry,
//! which is the HTTP/2 `authorization` header the layer reads.
//!
//! Rejections are gRPC-shaped for gRPC requests (the layer looks at `content-type:
//! application/grpc`): the client sees `Code::Unauthenticated` without a valid token and
//! `Code::PermissionDenied` without the `health:read` scope.
//!
//! ```sh
//! cargo run --example grpc
//! ```
//!
//! It prints a token to try with any gRPC client, for instance
//! `grpcurl -plaintext -H "authorization: Bearer $TOKEN" 127.0.0.1:50051 grpc.health.v1.Health/Check`.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tower_jwt_auth::{RequireScope, StandardClaims, TokenIssuer};

/// Serves the health service on `listener` until `shutdown` completes: the token's signature
/// and claims are checked by `issuer`'s layer, then the `health:read` scope is required.
async fn serve(
    listener: TcpListener,
    issuer: &TokenIssuer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    Server::builder()
        // Authentication: `401`-class failures become `Code::Unauthenticated`.
        .layer(issuer.layer::<StandardClaims>().build().unwrap())
        // Authorization: a valid token without the scope becomes `Code::PermissionDenied`.
        .layer(RequireScope::all(["health:read"]))
        .add_service(health)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// The issuer of this demo's tokens: HS256 with a secret from `GRPC_JWT_SECRET`, or a random
/// one for the life of the process.
fn issuer(secret: Option<&[u8]>) -> TokenIssuer {
    let random;
    let secret = match secret {
        Some(secret) => secret,
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the system has randomness");
            random = bytes;
            &random
        }
    };
    TokenIssuer::builder()
        .hs256(secret)
        .issuer("grpc-demo")
        .audience("health")
        .ttl(Duration::from_secs(600))
        .build()
        .expect("the secret is at least 32 bytes")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("GRPC_JWT_SECRET").ok();
    let issuer = issuer(secret.as_deref().map(str::as_bytes));
    let addr: SocketAddr = std::env::var("GRPC_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    let token = issuer.issue("demo-user", "health:read")?;
    println!("a token for it:\n{}", token.access_token);
    println!("listening on {}", listener.local_addr()?);
    serve(listener, &issuer, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
