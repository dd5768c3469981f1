//! The authorization server side of introspection: finding the endpoint, the request of RFC
//! 7662 section 2.1, reading the answer, and the breaker that stops asking a server that is
//! down.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::{
    jwks::{Connector, check_transport, hyper_client},
    metrics,
};

/// Larger answers are refused: an introspection response is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

pub(crate) enum Endpoint {
    Fixed(Uri),
    /// Found in the discovery document at `config` on first use.
    Discover {
        config: Uri,
        found: Mutex<Option<Uri>>,
    },
}

impl Endpoint {
    pub(super) fn discover(config: Uri) -> Self {
        Self::Discover {
            config,
            found: Mutex::new(None),
        }
    }
}

pub(crate) struct Remote {
    pub(crate) issuer: String,
    endpoint: Endpoint,
    /// `Authorization: Basic ...`, marked sensitive.
    authorization: Option<HeaderValue>,
    client: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    timeout: Duration,
    allow_http: bool,
    breaker: Mutex<Breaker>,
    calls: AtomicU64,
}

struct Breaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    open_until: Option<Instant>,
}

/// Why there is no answer to act on; logged, never shown to the client.
type Failure = String;

impl Remote {
    pub(super) fn new(
        issuer: String,
        endpoint: Endpoint,
        client: Option<(&str, &str)>,
        timeout: Duration,
        (threshold, open_for): (u32, Duration),
        allow_http: bool,
    ) -> Self {
        let authorization = client.and_then(|(id, secret)| {
            // RFC 6749 section 2.3.1: each part application/x-www-form-urlencoded first.
            let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            let secret: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
            let mut value = HeaderValue::try_from(value).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self {
            issuer,
            endpoint,
            authorization,
            client: hyper_client(timeout),
            timeout,
            allow_http,
            breaker: Mutex::new(Breaker {
                threshold,
                open_for,
                failures: 0,
                open_until: None,
            }),
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether a request may be sent now (the breaker is closed, or its pause is over).
    pub(crate) fn may_call(&self) -> bool {
        let breaker = self.breaker.lock().unwrap();
        breaker
            .open_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// The answer to "is `token` active?", a JSON object, or why there is none. Counts
    /// towards the breaker either way.
    pub(crate) async fn introspect(&self, token: &str) -> Result<Map<String, Value>, ()> {
        let span = tracing::debug_span!("introspection", issuer = %self.issuer);
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.ask(token))
            .instrument(span)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        let result = match &outcome {
            Ok(answer) if answer.get("active") == Some(&Value::Bool(true)) => "active",
            Ok(_) => "inactive",
            Err(_) => "failure",
        };
        metrics::introspection(result, started.elapsed());
        let mut breaker = self.breaker.lock().unwrap();
        match outcome {
            Ok(answer) => {
                breaker.failures = 0;
                breaker.open_until = None;
                Ok(answer)
            }
            Err(why) => {
                breaker.failures = breaker.failures.saturating_add(1);
                let open = breaker.failures >= breaker.threshold;
                if open {
                    breaker.open_until = Some(Instant::now() + breaker.open_for);
                }
                tracing::warn!(
                    issuer = %self.issuer,
                    reason = %why,
                    consecutive_failures = breaker.failures,
                    paused = open,
                    "token introspection failed"
                );
                Err(())
            }
        }
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, Failure> {
        let endpoint = self.endpoint().await?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            req = req.header(header::AUTHORIZATION, authorization.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        // A 401 or 403 here: the provider refused this client's credentials.
        self.json(req).await
    }

    /// The endpoint: configured, or read from the discovery document once.
    async fn endpoint(&self) -> Result<Uri, Failure> {
        let (config, found) = match &self.endpoint {
            Endpoint::Fixed(uri) => return Ok(uri.clone()),
            Endpoint::Discover { config, found } => (config, found),
        };
        if let Some(uri) = found.lock().unwrap().clone() {
            return Ok(uri);
        }
        let req = Request::get(config.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        let doc = self.json(req).await?;
        // The mix-up defence (RFC 8414 section 3.3, OpenID Connect Discovery section 4.3).
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(format!("{config}: the document names another issuer"));
        }
        let uri: Uri = doc
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{config}: no `introspection_endpoint`"))?
            .parse()
            .map_err(|_| format!("{config}: `introspection_endpoint` does not parse"))?;
        check_transport(&uri, self.allow_http)
            .map_err(|why| format!("{config}: `introspection_endpoint` {uri}: {why}"))?;
        *found.lock().unwrap() = Some(uri.clone());
        Ok(uri)
    }
}

impl Remote {
    /// Sends `req`; its answer, which must be `200` with a JSON object (of valid UTF-8
    /// throughout) of at most [`MAX_BODY`] bytes.
    async fn json(&self, req: Request<Full<Bytes>>) -> Result<Map<String, Value>, Failure> {
        let target = format!("{} {}", req.method(), req.uri());
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{target}: reading the answer: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!("{target}: status {status}"));
        }
        std::str::from_utf8(&body)
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| format!("{target}: the answer is not a JSON object"))
    }
}
