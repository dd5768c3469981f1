//! The response future of [`JwtAuth`](crate::JwtAuth).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::config::Config;
use crate::{Claims, body::ResponseBody, keys::RefreshWait, validate::Verdict};

pin_project! {
    /// Response future of [`JwtAuth`](crate::JwtAuth): the inner service's future or a
    /// ready rejection, or (rarely) a wait for a key refresh first.
    pub struct ResponseFuture<F, S, ReqBody, C> {
        #[pin]
        kind: Kind<F, S, ReqBody, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody, C> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
        /// Only when a remote key set is refreshed for this token: the one boxed future on
        /// the request path, and it is on the slow one.
        WaitingForKeys { wait: RefreshWait, parked: Option<Parked<S, ReqBody, C>> },
    }
}

/// What a request waiting for keys needs afterwards: its token, the inner service that was
/// polled ready, the request, and the configuration.
struct Parked<S, ReqBody, C> {
    token: String,
    inner: S,
    req: Request<ReqBody>,
    config: Arc<Config<C>>,
}

impl<F, S, ReqBody, C> ResponseFuture<F, S, ReqBody, C> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn rejected(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn wait_for_keys(
        wait: RefreshWait,
        token: String,
        inner: S,
        req: Request<ReqBody>,
        config: Arc<Config<C>>,
    ) -> Self {
        let parked = Parked {
            token,
            inner,
            req,
            config,
        };
        Self {
            kind: Kind::WaitingForKeys {
                wait,
                parked: Some(parked),
            },
        }
    }
}

impl<S, ReqBody, C> ResponseFuture<S::Future, S, ReqBody, C>
where
    S: Service<Request<ReqBody>>,
    C: Send + Sync + 'static,
{
    /// Acts on a verdict: the claims go into the request's extensions and the request to
    /// `inner`, or the rejection is answered. A verdict still waiting for keys after one
    /// refresh is final: its error is the answer.
    pub(crate) fn decided(
        verdict: Verdict<C>,
        inner: &mut S,
        mut req: Request<ReqBody>,
        config: &Config<C>,
    ) -> Self {
        let error = match verdict {
            Verdict::Valid(validated) => {
                let extensions = req.extensions_mut();
                extensions.insert(Claims(validated.claims));
                extensions.insert(validated.scopes);
                return Self::inner(inner.call(req));
            }
            Verdict::Invalid(error) => error,
            Verdict::WaitForKeys(_, error) => error,
        };
        Self::rejected(config.rejecter.reject(&error, req.headers()))
    }
}

impl<S, ReqBody, ResBody, C> Future for ResponseFuture<S::Future, S, ReqBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future } => {
                    return Poll::Ready(Ok(ready!(future.poll(cx))?.map(ResponseBody::new)));
                }
                KindProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                KindProj::WaitingForKeys { wait, parked } => {
                    ready!(wait.as_mut().poll(cx));
                    let Parked {
                        token,
                        mut inner,
                        req,
                        config,
                    } = parked
                        .take()
                        .expect("ResponseFuture polled after completion");
                    // Checked again with whatever keys arrived.
                    let verdict = config.validator.check(&token);
                    Self::decided(verdict, &mut inner, req, &config)
                }
            };
            self.set(next);
        }
    }
}

impl<F, S, ReqBody, C> fmt::Debug for ResponseFuture<F, S, ReqBody, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
