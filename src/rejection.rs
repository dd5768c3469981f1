//! Turning an [`AuthError`] into the response the client sees: the `WWW-Authenticate`
//! challenge, the RFC 6750 JSON body, the gRPC shape. This is the one place that renders a
//! rejection; the error itself only knows its status, code, description and scope.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::{
    AuthError, ConfigError, metrics, sender::DPOP_NONCE, token::Scheme,
    validate::jws::claimed_iss_kid,
};

/// The realm used in challenges unless another one is configured.
pub const DEFAULT_REALM: &str = "api";

/// Builds the response for a rejected request.
///
/// Implemented for every `Fn(&AuthError, &str) -> Response<Bytes>`; the second argument is
/// the configured realm, for [`AuthError::challenge`].
///
/// # Overview
///
/// Turning an [`AuthError`] into the response the client sees.
///
/// By default a rejection is the RFC 6750 response of [`AuthError::response`], or, for a gRPC
/// request (`content-type: application/grpc*`), the gRPC one of [`AuthError::grpc_response`]:
/// HTTP `200` with `grpc-status` `16` (UNAUTHENTICATED), `7` (PERMISSION_DENIED) or `14`
/// (UNAVAILABLE) and a `grpc-message`, the `WWW-Authenticate` challenge kept. Replace it with
/// any [`OnRejection`], for instance a closure that keeps the challenge but renders another
/// body. A response whose `WWW-Authenticate` is [`AuthError::challenge`]'s gets the layer's
/// challenges in its place (with [DPoP](crate::Dpop), the `DPoP` one too):
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, header};
/// use tower_jwt_auth::{AuthError, JwtAuthLayer, StandardClaims};
///
/// let layer = JwtAuthLayer::<StandardClaims>::builder()
///     .hs256([7; 32])
///     .on_rejection(|error: &AuthError, realm: &str| {
///         Response::builder()
///             .status(error.status())
///             .header(header::WWW_AUTHENTICATE, error.challenge(realm))
///             .body(Bytes::from(format!("denied: {error}")))
///             .unwrap()
///     })
///     .build()
///     .unwrap();
/// ```
pub trait OnRejection: Send + Sync + 'static {
    /// The response for `error`.
    fn on_rejection(&self, error: &AuthError, realm: &str) -> Response<Bytes>;
}

impl<F> OnRejection for F
where
    F: Fn(&AuthError, &str) -> Response<Bytes> + Send + Sync + 'static,
{
    fn on_rejection(&self, error: &AuthError, realm: &str) -> Response<Bytes> {
        self(error, realm)
    }
}

/// The realm and rejection handler shared by the authentication and authorization layers.
#[derive(Clone)]
pub(crate) struct Rejecter {
    realm: Arc<str>,
    handler: Option<Arc<dyn OnRejection>>,
    schemes: Schemes,
    /// RFC 9728 section 5.1: where the resource's metadata is, in every challenge.
    resource_metadata: Option<Arc<str>>,
    /// Counts every decision of the layer: its rejections here, its acceptances through
    /// [`meter`](Self::meter).
    meter: metrics::Meter,
}

/// The schemes a layer's challenges offer (RFC 9110 section 11.6.1: one challenge each).
#[derive(Clone, Debug)]
pub(crate) struct Schemes {
    /// `Bearer` (not when every token must be DPoP-bound).
    pub(crate) bearer: bool,
    /// `DPoP`, with its `algs` parameter, when DPoP is configured.
    pub(crate) dpop: Option<HeaderValue>,
}

impl Default for Schemes {
    fn default() -> Self {
        Self {
            bearer: true,
            dpop: None,
        }
    }
}

impl Default for Rejecter {
    fn default() -> Self {
        Self {
            realm: DEFAULT_REALM.into(),
            handler: None,
            schemes: Schemes::default(),
            resource_metadata: None,
            meter: metrics::Meter::new(),
        }
    }
}

impl Rejecter {
    /// Fails when `realm` is empty or not visible ASCII (it could not appear in a header).
    pub(crate) fn set_realm(&mut self, realm: &str) -> Result<(), ConfigError> {
        if realm.trim().is_empty() || !realm.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(ConfigError::InvalidValue(
                "the realm must be non-empty visible ASCII",
            ));
        }
        self.realm = realm.into();
        Ok(())
    }

    /// Fails unless `url` is an absolute http(s) URL without a fragment whose characters
    /// can appear in a header.
    pub(crate) fn set_resource_metadata(&mut self, url: &str) -> Result<(), ConfigError> {
        let parsed = fluent_uri::Uri::parse(url).ok();
        let fits = parsed.as_ref().is_some_and(|uri| {
            let scheme = uri.scheme().as_str();
            (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
                && uri.authority().is_some_and(|a| !a.host().is_empty())
                && uri.fragment().is_none()
        });
        if !fits || HeaderValue::from_str(url).is_err() {
            return Err(ConfigError::InvalidValue(
                "resource_metadata must be an absolute http(s) URL without a fragment",
            ));
        }
        self.resource_metadata = Some(url.into());
        Ok(())
    }

    /// The layer's decision counters, for the acceptances.
    pub(crate) fn meter(&self) -> &metrics::Meter {
        &self.meter
    }

    pub(crate) fn set_handler(&mut self, handler: Arc<dyn OnRejection>) {
        self.handler = Some(handler);
    }

    pub(crate) fn set_schemes(&mut self, schemes: Schemes) {
        self.schemes = schemes;
    }

    /// Logs the rejection (never the token) and builds its response for the request with
    /// `headers`, which presented its token with `used` (if any): a custom handler's, or
    /// the default one of the request's protocol (gRPC for `content-type:
    /// application/grpc*`, RFC 6750 otherwise), with the challenges of
    /// [`challenges`](Self::challenges) in place of the default one.
    /// A `use_dpop_nonce` answer carries the nonce in `DPoP-Nonce` whoever renders it.
    ///
    /// The rejection is counted ([`metrics`](crate::metrics), with the time since `started`)
    /// and logged at `debug` with its reason and, from `token` when given, the `iss` and
    /// `kid` it claims; the token is read for that only when the event is enabled.
    pub(crate) fn reject(
        &self,
        error: &AuthError,
        used: Option<Scheme>,
        headers: &HeaderMap,
        started: metrics::Started,
        token: Option<&str>,
    ) -> Response<Bytes> {
        self.meter.rejected(error, started);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let (iss, kid) = token.map(claimed_iss_kid).unwrap_or_default();
            tracing::debug!(
                reason = error.reason(),
                status = error.status().as_u16(),
                iss = iss.as_deref(),
                kid = kid.as_deref(),
                "request rejected"
            );
        }
        let mut response = match &self.handler {
            Some(handler) => handler.on_rejection(error, &self.realm),
            None if is_grpc(headers) => error.grpc_response(&self.realm),
            None => error.response(&self.realm),
        };
        // The response kept the default `Bearer` challenge (ours, or a custom handler's that
        // only changed the body): it becomes the layer's challenges, `DPoP` included.
        let headers = response.headers_mut();
        if headers.get(header::WWW_AUTHENTICATE) == Some(&error.challenge(&self.realm)) {
            headers.remove(header::WWW_AUTHENTICATE);
            for challenge in self.challenges(error, used) {
                headers.append(header::WWW_AUTHENTICATE, challenge);
            }
        }
        if let AuthError::UseDpopNonce { nonce } = error
            && let Ok(nonce) = HeaderValue::try_from(&**nonce)
        {
            response.headers_mut().insert(DPOP_NONCE, nonce);
        }
        response
    }

    /// One challenge per scheme the layer accepts (RFC 9449 section 7.1, RFC 9110 section
    /// 11.6.1); the error goes on the scheme the request used, or, for a scheme this layer
    /// does not accept (a bearer token where DPoP is required) and for DPoP proof errors,
    /// on the one it should have used.
    pub(crate) fn challenges(&self, error: &AuthError, used: Option<Scheme>) -> Vec<HeaderValue> {
        let Schemes { bearer, dpop } = &self.schemes;
        let dpop_error = matches!(
            error,
            AuthError::InvalidDpopProof(_) | AuthError::UseDpopNonce { .. }
        );
        // The scheme that carries the error.
        let blamed = if dpop_error || used == Some(Scheme::Dpop) || !bearer {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        };
        let with_error = !matches!(error, AuthError::MissingToken);
        let metadata = self
            .resource_metadata
            .as_deref()
            .map(|url| ("resource_metadata", url));
        let mut out = Vec::with_capacity(2);
        if *bearer {
            out.push(error.challenge_for(
                Scheme::Bearer,
                &self.realm,
                with_error && blamed == Scheme::Bearer,
                metadata.as_slice(),
            ));
        }
        if dpop.is_some() || used == Some(Scheme::Dpop) {
            let algs = dpop.as_ref().and_then(|a| a.to_str().ok());
            let extra: Vec<_> = algs
                .map(|a| ("algs", a))
                .into_iter()
                .chain(metadata)
                .collect();
            out.push(error.challenge_for(
                Scheme::Dpop,
                &self.realm,
                with_error && blamed == Scheme::Dpop,
                &extra,
            ));
        }
        // The challenge with the error first.
        if blamed == Scheme::Dpop {
            out.reverse();
        }
        out
    }
}

/// Whether the request is gRPC (`application/grpc`, `application/grpc+proto`, ...): its client
/// reads a `grpc-status`, not an HTTP status.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
}

impl fmt::Debug for Rejecter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejecter")
            .field("realm", &self.realm)
            .field("custom_handler", &self.handler.is_some())
            .field("resource_metadata", &self.resource_metadata)
            .finish()
    }
}

// Rendering, for every layer and for custom `OnRejection` handlers.
impl AuthError {
    /// The `WWW-Authenticate` challenge for this error (RFC 6750 section 3).
    ///
    /// Quoted-string values are escaped; `realm` is included when it is not empty. A layer
    /// that accepts DPoP answers with a `DPoP` challenge too; this is the `Bearer` one.
    pub fn challenge(&self, realm: &str) -> HeaderValue {
        self.challenge_for(Scheme::Bearer, realm, true, &[])
    }

    /// The challenge of `scheme`, with this error's code and description when `with_error`
    /// (and the code is not `None`), then the `extra` parameters (DPoP's `algs`, RFC 9728's
    /// `resource_metadata`).
    pub(crate) fn challenge_for(
        &self,
        scheme: Scheme,
        realm: &str,
        with_error: bool,
        extra: &[(&str, &str)],
    ) -> HeaderValue {
        let name = match scheme {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        };
        let mut value = String::from(name);
        let mut sep = " ";
        let mut param = |name: &str, v: &str| {
            value.push_str(sep);
            value.push_str(name);
            value.push_str("=\"");
            push_escaped(&mut value, v);
            value.push('"');
            sep = ", ";
        };
        if !realm.is_empty() {
            param("realm", realm);
        }
        if with_error && let Some(code) = self.error_code() {
            param("error", code);
            param("error_description", &self.description());
            if let Self::InsufficientScope { required } = self {
                param("scope", required);
            }
        }
        for (name, v) in extra {
            param(name, v);
        }
        // Every part is either a static string or was checked to be visible ASCII when the
        // layer was configured, so this cannot fail; fall back to the bare scheme regardless.
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(name))
    }

    /// The default RFC 6750 response: status, `WWW-Authenticate`, `Cache-Control: no-store`
    /// and a small JSON body `{"error": ..., "error_description": ...}`. A `503`
    /// ([`KeysUnavailable`](Self::KeysUnavailable)) carries `Retry-After` instead of a
    /// challenge: the client's credentials are not in question.
    pub fn response(&self, realm: &str) -> Response<Bytes> {
        let mut response = self.json_response(self.status(), "unauthorized");
        if self.status() != StatusCode::SERVICE_UNAVAILABLE {
            let challenge = self.challenge(realm);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }

    /// The refusal of a token request whose DPoP proof failed
    /// ([`DpopVerifier::check_token_request`](crate::DpopVerifier::check_token_request)) as
    /// an authorization server answers it (RFC 9449 section 5, RFC 6749 section 5.2): `400`
    /// with `{"error": ..., "error_description": ...}` (`invalid_dpop_proof`, or
    /// `use_dpop_nonce` with the `DPoP-Nonce` to retry with, section 8), `Cache-Control:
    /// no-store`; `503` with `Retry-After` when the replay store cannot be reached.
    pub fn token_request_response(&self) -> Response<Bytes> {
        let status = match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = self.json_response(status, "invalid_request");
        if let Self::UseDpopNonce { nonce } = self
            && let Ok(nonce) = HeaderValue::try_from(&**nonce)
        {
            response.headers_mut().insert("dpop-nonce", nonce);
        }
        response
    }

    /// `status` with the JSON error body (`error` is `fallback` for an error without a
    /// code), `Cache-Control: no-store`, and `Retry-After` on a `503`.
    fn json_response(&self, status: StatusCode, fallback: &'static str) -> Response<Bytes> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
        }
        let description = self.description();
        let body = serde_json::to_vec(&Body {
            error: match status {
                StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
                _ => self.error_code().unwrap_or(fallback),
            },
            error_description: &description,
        })
        .unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl AuthError {
    /// The gRPC status code (gRPC's `statusCodes`): `16` UNAUTHENTICATED for a missing or
    /// invalid token or a malformed request, `7` PERMISSION_DENIED for a valid token that
    /// does not grant access, `14` UNAVAILABLE when the keys cannot be had.
    pub fn grpc_code(&self) -> u16 {
        match self.status() {
            StatusCode::FORBIDDEN => 7,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            _ => 16,
        }
    }

    /// The rejection as a gRPC client expects it: HTTP `200`, `content-type:
    /// application/grpc`, `grpc-status` ([`grpc_code`](Self::grpc_code)) and a percent-encoded
    /// `grpc-message`, in the headers (a "trailers-only" response) with an empty body. The
    /// `WWW-Authenticate` challenge (or `Retry-After`) is kept.
    pub fn grpc_response(&self, realm: &str) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
        let message = percent_encode_grpc(&self.description());
        if let Ok(message) = HeaderValue::try_from(message) {
            headers.insert("grpc-message", message);
        }
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else {
            headers.insert(header::WWW_AUTHENTICATE, self.challenge(realm));
        }
        response
    }
}

/// gRPC's `Percent-Encoded` for `grpc-message`: bytes outside printable ASCII, and `%`.
fn percent_encode_grpc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `s` as the inside of an RFC 9110 quoted-string (`"` and `\` are escaped).
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_has_no_error_code() {
        let e = AuthError::MissingToken;
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.challenge("api"), "Bearer realm=\"api\"");
    }

    #[test]
    fn invalid_token_challenge_carries_code_and_description() {
        assert_eq!(
            AuthError::Expired.challenge("api"),
            "Bearer realm=\"api\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        );
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let e = AuthError::InsufficientScope {
            required: "todos:write".into(),
        };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.challenge(""),
            "Bearer error=\"insufficient_scope\", \
             error_description=\"the token does not grant the required scope\", \
             scope=\"todos:write\""
        );
    }

    #[test]
    fn quoted_strings_are_escaped() {
        let e = AuthError::MissingClaim("a\"b\\c".into());
        let v = e.challenge("r\"x");
        assert_eq!(
            v,
            "Bearer realm=\"r\\\"x\", error=\"invalid_token\", \
             error_description=\"the token lacks the required claim `a\\\"b\\\\c`\""
        );
    }

    #[test]
    fn grpc_rejections_are_trailers_only_with_status_and_message() {
        let res = AuthError::Expired.grpc_response("api");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["grpc-message"], "the token has expired");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
        assert!(res.body().is_empty());
        let forbidden = AuthError::InsufficientScope {
            required: "a".into(),
        };
        assert_eq!(forbidden.grpc_response("").headers()["grpc-status"], "7");
        assert_eq!(AuthError::KeysUnavailable.grpc_code(), 14);
        assert_eq!(percent_encode_grpc("100% é"), "100%25 %C3%A9");
    }

    #[test]
    fn response_is_json_with_no_store() {
        let res = AuthError::InvalidRequest("duplicate header").response("api");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["error_description"], "duplicate header");
    }

    #[test]
    fn a_token_request_refusal_is_an_oauth_error_with_the_nonce_to_use() {
        let body = |res: &Response<Bytes>| -> serde_json::Value {
            serde_json::from_slice(res.body()).unwrap()
        };
        let nonce = AuthError::UseDpopNonce {
            nonce: "n-1".into(),
        };
        let res = nonce.token_request_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()["dpop-nonce"], "n-1");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(body(&res)["error"], "use_dpop_nonce");

        let res =
            AuthError::InvalidDpopProof("the DPoP proof has expired").token_request_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(!res.headers().contains_key("dpop-nonce"));
        assert_eq!(body(&res)["error"], "invalid_dpop_proof");
        assert_eq!(
            body(&res)["error_description"],
            "the DPoP proof has expired"
        );

        let res = AuthError::DpopUnavailable.token_request_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "5");
        assert_eq!(body(&res)["error"], "temporarily_unavailable");
    }
}
