//! Turning an [`AuthError`] into the response the client sees.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, Response, header};

use crate::{AuthError, ConfigError};

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
/// body:
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
}

impl Default for Rejecter {
    fn default() -> Self {
        Self {
            realm: DEFAULT_REALM.into(),
            handler: None,
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

    pub(crate) fn set_handler(&mut self, handler: Arc<dyn OnRejection>) {
        self.handler = Some(handler);
    }

    /// Logs the rejection (never the token) and builds its response for the request with
    /// `headers`: a custom handler's, or the default one of the request's protocol (gRPC
    /// for `content-type: application/grpc*`, RFC 6750 otherwise).
    pub(crate) fn reject(&self, error: &AuthError, headers: &HeaderMap) -> Response<Bytes> {
        tracing::debug!(status = error.status().as_u16(), reason = %error, "request rejected");
        match &self.handler {
            Some(handler) => handler.on_rejection(error, &self.realm),
            None if is_grpc(headers) => error.grpc_response(&self.realm),
            None => error.response(&self.realm),
        }
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
            .finish()
    }
}
