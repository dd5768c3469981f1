use std::{fmt, sync::Arc};

use jsonwebtoken::Algorithm;
use tower_layer::Layer;

use super::{builder::JwtAuthLayerBuilder, config::Config, service::JwtAuth};
use crate::{
    KeySource, Readiness, StandardClaims, VerificationKey, rejection::Rejecter, token::TokenSource,
    validate::Validator,
};

/// A [`Layer`] that authenticates requests with bearer JWTs; see the [module docs](crate::auth).
///
/// `C` is the type the token's claims are decoded into and injected as
/// [`Claims<C>`](crate::Claims). The layer is an `Arc` of configuration that was checked and
/// precomputed when it was built: cloning it, and applying it to many services, is cheap.
pub struct JwtAuthLayer<C = StandardClaims> {
    config: Arc<Config<C>>,
}

impl<C> JwtAuthLayer<C> {
    /// Starts configuring a layer: keys, issuers, audiences, leeway and the rest, each an
    /// infallible step, every mistake reported by
    /// [`JwtAuthLayerBuilder::build`].
    pub fn builder() -> JwtAuthLayerBuilder<C> {
        JwtAuthLayerBuilder::new()
    }

    /// Validates tokens signed with one key, with every other setting at its default (any
    /// issuer, no audience, 30 seconds of leeway). Use [`builder`](Self::builder) for more.
    pub fn new(key: VerificationKey) -> Self {
        Self::from_config(Config {
            validator: Validator::new(KeySource::from(key).0),
            source: TokenSource::default(),
            optional: false,
            rejecter: Rejecter::default(),
            senders: Default::default(),
        })
    }

    pub(super) fn from_config(config: Config<C>) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// Whether the layer can serve now: the keys of every fixed issuer loaded (and not
    /// stale beyond their allowance), the revocation replica in sync with its shared
    /// backend, the introspection endpoint answering. A readiness probe answers `200` or
    /// `503` with [`Readiness::to_json`] as its body.
    pub fn readiness(&self) -> Readiness {
        self.config.validator.readiness()
    }

    /// The algorithms this layer accepts (a token must also name a key bound to its `alg`).
    pub fn accepted_algorithms(&self) -> Vec<Algorithm> {
        self.config.validator.algorithms()
    }
}

impl<C> Clone for JwtAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<C> fmt::Debug for JwtAuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("claims", &std::any::type_name::<C>())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, C> Layer<S> for JwtAuthLayer<C> {
    type Service = JwtAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth::new(inner, self.config.clone())
    }
}
