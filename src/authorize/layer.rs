use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{requirement::Requirement, service::Authorize};
use crate::{OnRejection, rejection::Rejecter};

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
    /// [`JwtAuthLayer`](crate::JwtAuthLayer) in front. Fails when it is empty or not visible
    /// ASCII.
    pub fn realm(mut self, realm: &str) -> Result<Self, crate::ConfigError> {
        self.rejecter.set_realm(realm)?;
        Ok(self)
    }

    /// Replaces the RFC 6750 rejection response.
    pub fn on_rejection(mut self, handler: impl OnRejection) -> Self {
        self.rejecter.set_handler(handler);
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
