use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::requirement::Requirement;
use crate::{SenderConstraint, body::ResponseBody, rejection::Rejecter, token::Scheme};

/// Middleware that checks a [`Requirement`]; built by
/// [`AuthorizeLayer`](crate::AuthorizeLayer).
pub struct Authorize<S, R> {
    pub(crate) inner: S,
    pub(crate) requirement: Arc<R>,
    pub(crate) rejecter: Rejecter,
}

impl<S, R> Authorize<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Requirement,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.requirement.check(req.extensions()) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(error) => {
                // A DPoP request is answered with a `DPoP` challenge (RFC 9449 section 7.1).
                let scheme = match req.extensions().get::<SenderConstraint>() {
                    Some(SenderConstraint::Dpop { .. }) => Scheme::Dpop,
                    _ => Scheme::Bearer,
                };
                let response = self.rejecter.reject(
                    &error,
                    Some(scheme),
                    req.headers(),
                    crate::metrics::Started::none(),
                    None,
                );
                ResponseFuture::rejected(response)
            }
        }
    }
}

impl<S: Clone, R> Clone for Authorize<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            requirement: self.requirement.clone(),
            rejecter: self.rejecter.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for Authorize<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("requirement", &self.requirement)
            .finish_non_exhaustive()
    }
}
