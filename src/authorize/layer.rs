use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{
    requirement::{RequireClaims, RequireScope, Requirement},
    service::Authorize,
};
use crate::{ConfigError, OnRejection, rejection::Rejecter};

/// A [`Layer`] that checks a [`Requirement`] before calling the inner service.
pub struct AuthorizeLayer<R> {
    pub(crate) requirement: Arc<R>,
    pub(crate) rejecter: Rejecter,
}

impl<R: Requirement> AuthorizeLayer<R> {
    /// A layer that checks `requirement`.
    pub fn new(requirement: R) -> Self {
        Self {
            requirement: Arc::new(requirement),
            rejecter: Rejecter::default(),
        }
    }

    /// The realm sent in challenges (default `"api"`): set the same one as on the
    /// [`JwtAuthLayer`](crate::JwtAuthLayer) in front.
    ///
    /// # Panics
    ///
    /// When `realm` is empty or not visible ASCII, like
    /// [`HeaderValue::from_static`](http::HeaderValue::from_static): for a literal. Use
    /// [`try_realm`](Self::try_realm) for a realm from configuration.
    pub fn realm(self, realm: &str) -> Self {
        match self.try_realm(realm) {
            Ok(layer) => layer,
            Err(error) => panic!("AuthorizeLayer::realm({realm:?}): {error}"),
        }
    }

    /// The realm sent in challenges; [`ConfigError::InvalidValue`] when it is empty or not
    /// visible ASCII.
    pub fn try_realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        self.rejecter.set_realm(realm)?;
        Ok(self)
    }

    /// The URL of the resource's metadata document (RFC 9728 section 5.1), sent as
    /// `resource_metadata="..."` in the `403` challenge: set the same one as on the
    /// [`JwtAuthLayer`](crate::JwtAuthLayer) in front.
    ///
    /// # Panics
    ///
    /// When `url` is not an absolute http(s) URL without a fragment: for a literal. Use
    /// [`try_resource_metadata`](Self::try_resource_metadata) for a URL from configuration.
    pub fn resource_metadata(self, url: &str) -> Self {
        match self.try_resource_metadata(url) {
            Ok(layer) => layer,
            Err(error) => panic!("AuthorizeLayer::resource_metadata({url:?}): {error}"),
        }
    }

    /// The URL of the resource's metadata document; [`ConfigError::InvalidValue`] when it is
    /// not an absolute http(s) URL without a fragment.
    pub fn try_resource_metadata(mut self, url: &str) -> Result<Self, ConfigError> {
        self.rejecter.set_resource_metadata(url)?;
        Ok(self)
    }

    /// Replaces the RFC 6750 rejection response.
    pub fn on_rejection(mut self, handler: impl OnRejection) -> Self {
        self.rejecter.set_handler(Arc::new(handler));
        self
    }
}

impl<R> Clone for AuthorizeLayer<R> {
    fn clone(&self) -> Self {
        Self {
            requirement: self.requirement.clone(),
            rejecter: self.rejecter.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for AuthorizeLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("requirement", &self.requirement)
            .field("rejecter", &self.rejecter)
            .finish()
    }
}

impl<S, R> Layer<S> for AuthorizeLayer<R> {
    type Service = Authorize<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            requirement: self.requirement.clone(),
            rejecter: self.rejecter.clone(),
        }
    }
}

// `RequireScope`'s constructors live beside the layer they build, so that the requirement
// module does not depend back on the layer.
impl RequireScope {
    /// A layer that requires every one of `scopes`, given as literals.
    ///
    /// # Panics
    ///
    /// When `scopes` is empty or one is not a valid RFC 6749 `scope-token` (visible ASCII
    /// except `"` and `\\`, no space), like
    /// [`HeaderValue::from_static`](http::HeaderValue::from_static). For scopes that come
    /// from configuration, use [`try_all`](Self::try_all).
    pub fn all<I>(scopes: I) -> AuthorizeLayer<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::try_all(scopes).unwrap_or_else(|error| panic!("RequireScope::all: {error}"))
    }

    /// A layer that requires at least one of `scopes`, given as literals.
    ///
    /// # Panics
    ///
    /// As [`all`](Self::all); use [`try_any`](Self::try_any) for scopes from configuration.
    pub fn any<I>(scopes: I) -> AuthorizeLayer<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::try_any(scopes).unwrap_or_else(|error| panic!("RequireScope::any: {error}"))
    }

    /// A layer that requires every one of `scopes`. No scope is [`ConfigError::NoScopes`]; a
    /// scope that is not a valid RFC 6749 `scope-token` is [`ConfigError::InvalidScope`].
    pub fn try_all<I>(scopes: I) -> Result<AuthorizeLayer<Self>, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::new(scopes, true).map(AuthorizeLayer::new)
    }

    /// A layer that requires at least one of `scopes`; errors as [`try_all`](Self::try_all).
    pub fn try_any<I>(scopes: I) -> Result<AuthorizeLayer<Self>, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::new(scopes, false).map(AuthorizeLayer::new)
    }
}

/// A layer that admits a request only when `predicate` holds for its [`Claims<C>`](crate::Claims); otherwise
/// it answers `403 insufficient_scope` (or `401` when there are no claims).
///
/// ```
/// use tower_jwt_auth::{StandardClaims, require};
///
/// let admins_only = require(|c: &StandardClaims| c.extra.get("role").is_some_and(|r| r == "admin"));
/// ```
pub fn require<C, F>(predicate: F) -> AuthorizeLayer<RequireClaims<C, F>>
where
    C: Send + Sync + 'static,
    F: Fn(&C) -> bool + Send + Sync + 'static,
{
    AuthorizeLayer::new(RequireClaims::new(predicate))
}
