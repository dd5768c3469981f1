//! A minimal todo API behind `JwtAuthLayer`: argon2id login, HS256 access tokens, per-user
//! todos, RFC 6750 errors, login throttling, logout.
//!
//! ```sh
//! cargo run --example todo_server
//! curl -s -X POST localhost:3000/login -d 'username=alice&password=wonderland'
//! curl -s localhost:3000/secure-todos -H "Authorization: Bearer $TOKEN"
//! ```
//!
//! Settings come from the environment, each with a safe default: `TODO_ADDR`
//! (`127.0.0.1:3000`), `JWT_SECRET` (at least 32 bytes; random per process when unset),
//! `JWT_ISSUER` (`todo-server`), `JWT_AUDIENCE` (`todo-api`), `JWT_TTL_SECS` (`1800`),
//! `LOGIN_MAX_FAILURES` (`10`), `LOGIN_LOCKOUT_SECS` (`60`), `JWT_CACHE_SIZE` (`10000` validated
//! tokens remembered; `0` for none), and `RUST_LOG` for the log level. `REDIS_URL` (for example
//! `redis://127.0.0.1:6379`) shares logouts and the failed-login budgets with every instance
//! that uses the same Redis.
//!
//! Beyond one server: `JWT_SIGNING_KEY` (a PEM private key: Ed25519, P-256 or RSA) signs login
//! tokens with that key and publishes the public key at `GET /.well-known/jwks.json`, so other
//! services can validate them with this crate; `OIDC_ISSUER_URL` (discovery) or `JWKS_URL` +
//! `JWKS_ISSUER` trusts an external identity provider's tokens too (audience `JWT_AUDIENCE`).

mod app;
mod throttle;

use std::process::ExitCode;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // Configuration errors (a short JWT_SECRET, say) stop the server before it listens.
    let config = match app::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("todo_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    tracing::debug!(?config, "configuration");

    let state = match app::build(&config).await {
        Ok(state) => state,
        Err(message) => {
            eprintln!("todo_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(config.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("todo_server: cannot listen on {}: {e}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("listening on http://{}", config.addr);
    app::serve(listener, state, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
