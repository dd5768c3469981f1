//! Why a request was refused, and why a configuration was refused.
//!
//! [`AuthError`] is the typed reason behind every rejection the middleware produces. It knows
//! its HTTP status, its RFC 6750 error code and the `WWW-Authenticate` challenge it answers
//! with, so a custom [`OnRejection`](crate::OnRejection) can change the response without losing
//! the reason. [`ConfigError`] is returned when a layer is built from keys or settings that
//! could never validate a token safely.

use std::{borrow::Cow, fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Why a request was not authenticated or not authorized.
///
/// Every variant maps to one of the three RFC 6750 outcomes: `401` without an error code when
/// the request carries no token, `400 invalid_request` when the request itself is malformed,
/// `401 invalid_token` when the token is not acceptable, and `403 insufficient_scope` when
/// the token is valid but does not grant what the route requires.
///
/// Descriptions never contain the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no bearer token (or uses another authentication scheme).
    MissingToken,
    /// The request is malformed: duplicated `Authorization` headers, a value that is not
    /// visible ASCII, or a bare `Bearer`.
    InvalidRequest(&'static str),
    /// The token is longer than the configured limit; it was refused before decoding.
    TokenTooLarge,
    /// The token is not a well-formed JWS compact serialization: not three base64url parts
    /// (RFC 6750's `b64token` syntax included), a header that is not JSON, or an unsupported
    /// `crit` extension.
    MalformedToken,
    /// The token's `alg` is not one the configured keys allow (`none` never is).
    UnsupportedAlgorithm,
    /// The token names a `kid` that no configured key has.
    UnknownKey,
    /// The signature does not verify with the selected key.
    InvalidSignature,
    /// The token's `exp` is in the past (beyond the leeway).
    Expired,
    /// The token's `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// The token's `iss` is missing or is not a configured issuer.
    InvalidIssuer,
    /// The token's `aud` is missing or names none of the configured audiences.
    InvalidAudience,
    /// The token names an audience and the layer has none configured (nor accepts any).
    UnexpectedAudience,
    /// The token was issued longer ago than the layer's maximum age (or has no `iat`).
    TooOld,
    /// The token's `typ` header is missing or is not the configured one.
    InvalidType,
    /// A claim the configuration requires is missing.
    MissingClaim(Arc<str>),
    /// The claims are not valid JSON of the expected shape (or a registered claim has the
    /// wrong type).
    InvalidClaims,
    /// The token is valid but lacks the scopes the route requires.
    InsufficientScope {
        /// The space-separated scopes the route requires, as sent in the challenge.
        required: Arc<str>,
    },
    /// The token is valid but a claim requirement of the route rejected it.
    Forbidden,
    /// The keys to verify the token could not be obtained (the identity provider has been
    /// unreachable for longer than the allowed staleness): `503`, the token may be fine.
    KeysUnavailable,
    /// The token was revoked (a logout, or every token of its subject up to some time).
    Revoked,
    /// Whether the token was revoked cannot be known: the shared revocation list has been
    /// out of sync for longer than allowed ([`OutOfSync::Refuse`](crate::OutOfSync)): `503`.
    RevocationsUnavailable,
}

impl AuthError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::KeysUnavailable | Self::RevocationsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 `error` code, or `None` when the request had no credentials at all (or
    /// the failure is the server's, [`KeysUnavailable`](Self::KeysUnavailable)).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::KeysUnavailable | Self::RevocationsUnavailable => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InsufficientScope { .. } | Self::Forbidden => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// A description that helps the client; it never contains the token.
    pub fn description(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::MissingToken => "a bearer token is required",
            Self::InvalidRequest(reason) => reason,
            Self::TokenTooLarge => "the token is too large",
            Self::MalformedToken => "the token is not a well-formed JWT",
            Self::UnsupportedAlgorithm => "the token's signing algorithm is not accepted",
            Self::UnknownKey => "the token's key id is not known",
            Self::InvalidSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::InvalidIssuer => "the token's issuer is not accepted",
            Self::InvalidAudience => "the token is not intended for this audience",
            Self::UnexpectedAudience => {
                "the token names an audience and this service is configured with none \
                 (configure `audience`, or `any_audience` to accept any)"
            }
            Self::TooOld => "the token was issued too long ago",
            Self::InvalidType => "the token's type is not accepted",
            Self::MissingClaim(name) => {
                return Cow::Owned(format!("the token lacks the required claim `{name}`"));
            }
            Self::InvalidClaims => "the token's claims are malformed",
            Self::InsufficientScope { .. } => "the token does not grant the required scope",
            Self::Forbidden => "the token does not grant access to this resource",
            Self::KeysUnavailable => {
                "the keys to verify the token are unavailable; try again later"
            }
            Self::Revoked => "the token has been revoked",
            Self::RevocationsUnavailable => {
                "whether the token was revoked cannot be checked now; try again later"
            }
        })
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 section 3).
    ///
    /// Quoted-string values are escaped; `realm` is included when it is not empty.
    pub fn challenge(&self, realm: &str) -> HeaderValue {
        let mut value = String::from("Bearer");
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
        if let Some(code) = self.error_code() {
            param("error", code);
            param("error_description", &self.description());
        }
        if let Self::InsufficientScope { required } = self {
            param("scope", required);
        }
        // Every part is either a static string or was checked to be visible ASCII when the
        // layer was configured, so this cannot fail; fall back to the bare scheme regardless.
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The default RFC 6750 response: status, `WWW-Authenticate`, `Cache-Control: no-store`
    /// and a small JSON body `{"error": ..., "error_description": ...}`. A `503`
    /// ([`KeysUnavailable`](Self::KeysUnavailable)) carries `Retry-After` instead of a
    /// challenge: the client's credentials are not in question.
    pub fn response(&self, realm: &str) -> Response<Bytes> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
        }
        let description = self.description();
        let body = serde_json::to_vec(&Body {
            error: match self {
                Self::KeysUnavailable | Self::RevocationsUnavailable => "temporarily_unavailable",
                _ => self.error_code().unwrap_or("unauthorized"),
            },
            error_description: &description,
        })
        .unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else {
            headers.insert(header::WWW_AUTHENTICATE, self.challenge(realm));
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

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for AuthError {}

/// A layer could not be built from the given keys or settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An HMAC secret is shorter than the hash output of its algorithm (RFC 7518 3.2).
    WeakSecret {
        /// The minimum length in bytes.
        min_len: usize,
        /// The length that was given.
        len: usize,
    },
    /// A key could not be parsed, or does not belong to the algorithm it was given for.
    InvalidKey(&'static str),
    /// No key was configured.
    NoKeys,
    /// A builder was given keys by two steps (`hs256`, `key`, `keys`, `key_source`,
    /// `trusting`): one would silently replace the other.
    KeysTwice,
    /// Two keys share one `kid`.
    DuplicateKeyId,
    /// A realm, scope or type is not visible ASCII, or a scope contains a space.
    InvalidValue(&'static str),
    /// A duration or size outside what the setting allows.
    OutOfRange(&'static str),
    /// Keys would be fetched over a transport an attacker could tamper with.
    InsecureUrl(&'static str),
    /// [`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting) was given no issuer.
    NoIssuers,
    /// [`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting) was given this issuer twice.
    DuplicateIssuer(String),
    /// [`JwtAuthLayerBuilder::issuer`](crate::JwtAuthLayerBuilder::issuer) on a layer built with
    /// `trusting`, whose [`TrustedIssuer`](crate::TrustedIssuer)s each name their issuer.
    IssuersFixed,
    /// A [`RequireScope`](crate::RequireScope) with no scope: it would require nothing.
    NoScopes,
    /// This is not an RFC 6749 `scope-token` (one or more visible ASCII characters other
    /// than `"` and `\`, no space).
    InvalidScope(String),
    /// This is not a `typ` a token can carry (one or more visible ASCII characters, no space).
    InvalidType(String),
    /// An empty algorithm allow-list: no token could ever be accepted.
    NoAlgorithms,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakSecret { min_len, len } => write!(
                f,
                "the HMAC secret is {len} bytes long; this algorithm needs at least {min_len}"
            ),
            Self::InvalidKey(reason) => write!(f, "invalid key: {reason}"),
            Self::NoKeys => f.write_str(
                "no verification key was configured: set one with `hs256`, `key`, `keys`, `key_source` or `trusting`",
            ),
            Self::KeysTwice => f.write_str(
                "keys were configured twice: give every key in one `keys([...])` step, or several issuers in one `trusting([...])`",
            ),
            Self::DuplicateKeyId => f.write_str("two keys share one `kid`"),
            Self::InvalidValue(what) => write!(f, "invalid configuration value: {what}"),
            Self::OutOfRange(what) => write!(f, "configuration value out of range: {what}"),
            Self::InsecureUrl(why) => write!(f, "insecure key URL: {why}"),
            Self::NoIssuers => f.write_str("no trusted issuer was configured"),
            Self::DuplicateIssuer(iss) => write!(f, "the issuer {iss:?} is trusted twice"),
            Self::IssuersFixed => f.write_str(
                "`issuer` does not apply to a layer built with `trusting`: each TrustedIssuer names its issuer",
            ),
            Self::NoScopes => f.write_str("RequireScope needs at least one scope"),
            Self::InvalidScope(scope) => {
                write!(f, "{scope:?} is not a valid scope (RFC 6749 scope-token)")
            }
            Self::InvalidType(typ) => write!(f, "{typ:?} is not a valid `typ` value"),
            Self::NoAlgorithms => f.write_str("the algorithm list is empty: no token could pass"),
        }
    }
}

impl std::error::Error for ConfigError {}

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
}
