//! axum integration (feature `axum`): [`Claims<C>`] is an extractor and [`AuthError`] a
//! response.

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::{AuthError, Claims, rejection::DEFAULT_REALM};

/// Extracts the claims that [`JwtAuthLayer`](crate::JwtAuthLayer) injected. Without them
/// (the route is not behind the layer, or the layer is optional and saw no token) the
/// handler is not called and the client gets `401`.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<C, S> FromRequestParts<S> for Claims<C>
where
    C: Clone + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(AuthError::MissingToken)
    }
}

/// `Option<Claims<C>>`: `None` when the request was let through without a token.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<C, S> OptionalFromRequestParts<S> for Claims<C>
where
    C: Clone + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The RFC 6750 response of [`AuthError::response`] with the default realm.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.response(DEFAULT_REALM)
            .map(axum_core::body::Body::from)
    }
}
