//! The response future of [`JwtAuth`](super::JwtAuth).

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

use super::layer::{Authn, Config};
use crate::{AuthError, body::ResponseBody, future::ResponseFuture as Decided, keys::RefreshWait};

pin_project! {
    /// Response future of [`JwtAuth`](super::JwtAuth): the inner service's future or a ready
    /// rejection, or (rarely) a wait for a key refresh first.
    pub struct ResponseFuture<F, S, ReqBody, C> {
        #[pin]
        kind: Kind<F, S, ReqBody, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody, C> {
        Decided { #[pin] future: Decided<F> },
        /// Only when a remote key set is refreshed for this token: the one boxed future on
        /// the request path, and it is on the slow one.
        WaitingForKeys {
            wait: RefreshWait,
            parked: Option<Parked<S, ReqBody, C>>,
        },
    }
}

/// What a request waiting for keys needs afterwards: the inner service that was polled
/// ready, the request, and the configuration.
pub(crate) struct Parked<S, ReqBody, C> {
    pub(crate) inner: S,
    pub(crate) req: Request<ReqBody>,
    pub(crate) config: Arc<Config>,
    pub(crate) _claims: std::marker::PhantomData<fn() -> C>,
}

impl<F, S, ReqBody, C> ResponseFuture<F, S, ReqBody, C> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Decided {
                future: Decided::inner(future),
            },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Decided {
                future: Decided::rejected(response),
            },
        }
    }

    pub(crate) fn waiting(wait: RefreshWait, parked: Parked<S, ReqBody, C>) -> Self {
        Self {
            kind: Kind::WaitingForKeys {
                wait,
                parked: Some(parked),
            },
        }
    }
}

impl<S, ReqBody, ResBody, C> Future for ResponseFuture<S::Future, S, ReqBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let decided = match self.as_mut().project().kind.project() {
                KindProj::Decided { future } => return future.poll(cx),
                KindProj::WaitingForKeys { wait, parked } => {
                    ready!(wait.as_mut().poll(cx));
                    let Parked {
                        mut inner,
                        mut req,
                        config,
                        ..
                    } = parked
                        .take()
                        .expect("ResponseFuture polled after completion");
                    // Check again with whatever keys arrived; no second refresh.
                    match config.authenticate::<C>(req.headers(), req.uri(), false) {
                        Authn::Granted(validated) => {
                            validated.insert_into(req.extensions_mut());
                            Decided::inner(inner.call(req))
                        }
                        Authn::Anonymous => Decided::inner(inner.call(req)),
                        Authn::Rejected(error) => Decided::rejected(config.rejecter.reject(&error)),
                        Authn::Pending(_) => {
                            Decided::rejected(config.rejecter.reject(&AuthError::KeysUnavailable))
                        }
                    }
                }
            };
            self.as_mut()
                .project()
                .kind
                .set(Kind::Decided { future: decided });
        }
    }
}

impl<F, S, ReqBody, C> fmt::Debug for ResponseFuture<F, S, ReqBody, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
