use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::{config::Config, future::ResponseFuture};
use crate::{AuthError, body::ResponseBody, metrics, validate::Verdict};

/// Middleware that authenticates requests with bearer JWTs; built by
/// [`JwtAuthLayer`](crate::JwtAuthLayer).
///
/// The inner service must be `Clone`: a request whose key has to be fetched first (a new
/// `kid` from a JWKS) takes the inner service that was polled ready along while it waits, and
/// a clone stays behind for the next request.
pub struct JwtAuth<S, C> {
    inner: S,
    config: Arc<Config<C>>,
}

impl<S, C> JwtAuth<S, C> {
    pub(crate) fn new(inner: S, config: Arc<Config<C>>) -> Self {
        Self { inner, config }
    }

    define_inner_service_accessors!();
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let started = metrics::Started::now();
        // 1. The token: none (pass through if optional), malformed, or one to check. A
        //    scheme the layer does not accept counts as none.
        let max_len = config.validator.max_token_len;
        let credential = match config.source.extract(req.headers(), req.uri(), max_len) {
            Ok(Some(credential)) if config.senders.accepts(credential.scheme) => credential,
            Ok(_) if config.optional => {
                config.rejecter.meter().anonymous(started);
                return ResponseFuture::inner(self.inner.call(req), None);
            }
            Ok(_) => {
                let error = AuthError::MissingToken;
                return ResponseFuture::refused(error, None, req, config, started);
            }
            Err(error) => return ResponseFuture::refused(error, None, req, config, started),
        };
        // 2. The token itself.
        let verdict = config.validator.check(&credential.token);
        if let Verdict::WaitForRemote(wait, _) = verdict {
            // Its key may be on its way: wait with the ready service and the token. The
            // service polled ready goes with the request; this one keeps a clone
            // (tower-service docs, "Be careful when cloning inner services").
            let credential = credential.into_owned();
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let started = started.waiting();
            let config = config.clone();
            return ResponseFuture::wait_for_keys(wait, credential, inner, req, config, started);
        }
        // 3. Whether this request may use it: its scheme, its DPoP proof or certificate.
        let scheme = credential.scheme;
        let verdict = config.senders.check(verdict, &credential, &req);
        // 4. Claims into the extensions and on to the inner service, or the rejection.
        ResponseFuture::decided(verdict, scheme, &mut self.inner, req, config, started)
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
