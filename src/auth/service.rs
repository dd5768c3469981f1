use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::{
    future::{Parked, ResponseFuture},
    layer::{Authn, Config},
};
use crate::body::ResponseBody;

/// Middleware that authenticates requests with bearer JWTs; built by
/// [`JwtAuthLayer`](crate::JwtAuthLayer).
///
/// The inner service must be `Clone`: a request whose key has to be fetched first (a new
/// `kid` from a JWKS) takes the inner service that was polled ready along while it waits, and
/// a clone stays behind for the next request.
pub struct JwtAuth<S, C> {
    inner: S,
    config: Arc<Config>,
    _claims: PhantomData<fn() -> C>,
}

impl<S, C> JwtAuth<S, C> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self {
            inner,
            config,
            _claims: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self
            .config
            .authenticate::<C>(req.headers(), req.uri(), true)
        {
            Authn::Granted(validated) => {
                validated.insert_into(req.extensions_mut());
            }
            Authn::Anonymous => {}
            Authn::Rejected(error) => {
                return ResponseFuture::rejected(self.config.rejecter.reject(&error));
            }
            Authn::Pending(wait) => {
                // The service polled ready goes with the request; this one keeps a clone
                // (tower-service docs, "Be careful when cloning inner services").
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let parked = Parked {
                    inner,
                    req,
                    config: self.config.clone(),
                    _claims: PhantomData,
                };
                return ResponseFuture::waiting(wait, parked);
            }
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

impl<S: Clone, C> Clone for JwtAuth<S, C> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.config.clone())
    }
}

impl<S: fmt::Debug, C> fmt::Debug for JwtAuth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
