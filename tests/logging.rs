//! The rejection log line, in a test binary of its own: `tracing` caches a call site as
//! disabled when another test reaches it first without a subscriber.

mod common;

use common::*;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, VerificationKey};

async fn send(
    layer: &JwtAuthLayer<StandardClaims>,
    rec: &Recorder,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Reply {
    read(layer.layer(rec.service()).oneshot(req).await.unwrap()).await
}

/// Captures what a `tracing` subscriber writes, for the log-line test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_rejection_is_one_debug_event_with_reason_issuer_and_kid_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-2026\n\"forged\"".into());
    let expired = claims_with(|c| {
        c.insert("exp".into(), json!(now() - 3600));
        c.insert("iss".into(), json!(ISSUER));
    });
    let token = mint_with(
        &header,
        &expired,
        &EncodingKey::from_secret(SECRET).unwrap(),
    );
    let rec = Recorder::default();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key(
            VerificationKey::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .with_kid("key-2026\n\"forged\""),
        )
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let res = send(&layer, &rec, get(Some(&token))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send(&layer, &rec, get(None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("request rejected"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("reason=\"expired\""), "{log}");
    assert!(lines[0].contains("status=401"), "{log}");
    assert!(lines[0].contains(&format!("iss=\"{ISSUER}\"")), "{log}");
    // The kid as the token claims it, escaped: its newline cannot start a forged line.
    assert!(lines[0].contains(r#"kid="key-2026\n\"forged\"""#), "{log}");
    assert!(lines[1].contains("reason=\"missing_token\""), "{log}");
    for part in token.split('.') {
        assert!(!log.contains(part), "a token part in the log: {log}");
    }
}
