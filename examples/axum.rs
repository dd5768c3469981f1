//! An axum app behind `JwtAuthLayer`: a custom claims type, `Claims<C>` as an extractor,
//! scope requirements on the write routes, and a route that works with or without a token.
//!
//! ```sh
//! cargo run --example axum
//! ```
//!
//! It prints two tokens (one may write, one may only read) for trying the routes with curl.
//! `AXUM_ADDR` (default `127.0.0.1:3001`) is where it listens; `AXUM_JWT_SECRET` (at least 32
//! bytes) signs the tokens, random per process when unset.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tower_jwt_auth::{Claims, JwtAuthLayer, RequireScope, TokenIssuer};

/// The claims this app reads from its tokens. Any `Deserialize` type works: the registered
/// claims (`exp`, `iss`, `aud`, ...) are checked by the layer whatever `C` is.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct AppClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    scope: String,
}

/// Who owns a note: the token's (`iss`, `sub`).
type Owner = (String, String);

/// Notes by their owner.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<HashMap<Owner, Vec<String>>>>);

/// The routes: `GET /notes` needs a valid token, `POST /notes` the `notes:write` scope as
/// well, and `GET /hello` works for anyone, greeting a caller with a token by name.
fn app(auth: JwtAuthLayer<AppClaims>) -> Router {
    Router::new()
        // `route_layer` puts the scope check on these routes only (a 403 for the others'
        // tokens), and after routing, so an unknown path is still a 404.
        .route("/notes", post(add_note))
        .route_layer(RequireScope::all(["notes:write"]))
        .route("/notes", get(list_notes))
        .route("/hello", get(hello))
        .with_state(Notes::default())
        // Outermost: every request is authenticated; without a token it goes on anonymous
        // (the layer is built `optional`), and the `Claims` extractor answers `401` where a
        // route needs one.
        .layer(auth)
}

/// `Claims<C>` as an extractor: the handler runs only with validated claims.
async fn list_notes(
    State(notes): State<Notes>,
    Claims(claims): Claims<AppClaims>,
) -> Json<Vec<String>> {
    let owner = (claims.iss.clone(), claims.sub.clone());
    Json(
        notes
            .0
            .lock()
            .unwrap()
            .get(&owner)
            .cloned()
            .unwrap_or_default(),
    )
}

async fn add_note(
    State(notes): State<Notes>,
    Claims(claims): Claims<AppClaims>,
    body: String,
) -> StatusCode {
    let owner = (claims.iss.clone(), claims.sub.clone());
    notes.0.lock().unwrap().entry(owner).or_default().push(body);
    StatusCode::CREATED
}

/// `Option<Claims<C>>`: `None` for a request without a token. (A request with an invalid
/// token never gets here: the layer refuses it.)
async fn hello(claims: Option<Claims<AppClaims>>) -> String {
    match claims {
        Some(Claims(claims)) => format!("hello, {}", claims.sub),
        None => "hello, stranger".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = match std::env::var("AXUM_JWT_SECRET") {
        Ok(secret) => secret.into_bytes(),
        Err(_) => {
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret)?;
            secret
        }
    };
    let issuer = TokenIssuer::builder()
        .hs256(&secret)
        .issuer("axum-demo")
        .audience("notes")
        .build()?;
    println!(
        "writer: {}\nreader: {}",
        issuer
            .issue("alice", "notes:read notes:write")?
            .access_token,
        issuer.issue("bob", "notes:read")?.access_token,
    );
    let addr = std::env::var("AXUM_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(issuer.layer().optional().build()?)).await?;
    Ok(())
}
