//! Turning an [`AuthError`] into the response the client sees.
//!
//! By default a rejection is the RFC 6750 response of [`AuthError::response`]. Replace it with
//! any [`OnRejection`], for instance a closure that keeps the challenge but renders another
//! body:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, header};
//! use tower_jwt_auth::{AuthError, JwtAuthLayer, StandardClaims};
//!
//! let layer = JwtAuthLayer::<StandardClaims>::hs256(&[7; 32])
//!     .unwrap()
//!     .on_rejection(|error: &AuthError, realm: &str| {
//!         Response::builder()
//!             .status(error.status())
//!             .header(header::WWW_AUTHENTICATE, error.challenge(realm))
//!             .body(Bytes::from(format!("denied: {error}")))
//!             .unwrap()
//!     });
//! ```

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::Response;

use crate::AuthError;

/// The realm used in challenges unless another one is configured.
pub const DEFAULT_REALM: &str = "api";

/// Builds the response for a rejected request.
///
/// Implemented for every `Fn(&AuthError, &str) -> Response<Bytes>`; the second argument is
/// the configured realm, for [`AuthError::challenge`].
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
    /// # Panics
    ///
    /// When `realm` is not visible ASCII: it could not appear in a header.
    pub(crate) fn set_realm(&mut self, realm: &str) {
        assert!(
            realm.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "the realm must be visible ASCII"
        );
        self.realm = realm.into();
    }

    pub(crate) fn set_handler(&mut self, handler: impl OnRejection) {
        self.handler = Some(Arc::new(handler));
    }

    /// Logs the rejection (never the token) and builds its response.
    pub(crate) fn reject(&self, error: &AuthError) -> Response<Bytes> {
        tracing::debug!(status = error.status().as_u16(), reason = %error, "request rejected");
        match &self.handler {
            Some(handler) => handler.on_rejection(error, &self.realm),
            None => error.response(&self.realm),
        }
    }
}

impl fmt::Debug for Rejecter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejecter")
            .field("realm", &self.realm)
            .field("custom_handler", &self.handler.is_some())
            .finish()
    }
}
