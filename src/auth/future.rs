//! The response future of [`JwtAuth`](crate::JwtAuth).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::config::Config;
use crate::{
    AuthError, Claims,
    body::ResponseBody,
    keys::RefreshWait,
    metrics::Started,
    sender::DPOP_NONCE,
    token::{Credential, Scheme},
    validate::{Pending, Validated, Verdict},
};

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
        /// The inner service's future, and a fresher DPoP nonce for its response.
        Inner { #[pin] future: F, nonce: Option<HeaderValue> },
        Rejected { response: Option<Response<Bytes>> },
        /// Only when a remote key set is refreshed for this token: the one boxed future on
        /// the request path, and it is on the slow one.
        WaitingForRemote { wait: RefreshWait, parked: Option<Parked<S, ReqBody, C>> },
        /// Only with a DPoP replay store shared through Redis: the proof's claim there.
        WaitingForReplay { wait: Pending, parked: Option<Admitted<S, ReqBody, C>> },
    }
}

/// A request whose token passed, waiting for the last word of the shared replay store.
struct Admitted<S, ReqBody, C> {
    validated: Validated<C>,
    scheme: Scheme,
    inner: S,
    req: Request<ReqBody>,
    config: Arc<Config<C>>,
    started: Started,
}

/// What a request waiting for keys needs afterwards: its token, the inner service that was
/// polled ready, the request, and the configuration.
struct Parked<S, ReqBody, C> {
    credential: Credential<'static>,
    inner: S,
    req: Request<ReqBody>,
    config: Arc<Config<C>>,
    started: Started,
}

impl<F, S, ReqBody, C> ResponseFuture<F, S, ReqBody, C> {
    pub(crate) fn inner(future: F, nonce: Option<HeaderValue>) -> Self {
        Self {
            kind: Kind::Inner { future, nonce },
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
        credential: Credential<'static>,
        inner: S,
        req: Request<ReqBody>,
        config: Arc<Config<C>>,
        started: Started,
    ) -> Self {
        let parked = Parked {
            credential,
            inner,
            req,
            config,
            started,
        };
        Self {
            kind: Kind::WaitingForRemote {
                wait,
                parked: Some(parked),
            },
        }
    }
}

impl<S, ReqBody, C> ResponseFuture<S::Future, S, ReqBody, C>
where
    S: Service<Request<ReqBody>> + Clone,
    C: Send + Sync + 'static,
{
    /// Acts on a verdict: the claims go into the request's extensions and the request to
    /// `inner`, or the rejection is answered. A verdict still waiting for keys after one
    /// refresh is final: its error is the answer.
    pub(crate) fn decided(
        verdict: Verdict<C>,
        scheme: Scheme,
        inner: &mut S,
        mut req: Request<ReqBody>,
        config: &Arc<Config<C>>,
        started: Started,
    ) -> Self {
        let error = match verdict {
            Verdict::Valid(validated) => {
                config.rejecter.meter().accepted(started);
                let extensions = req.extensions_mut();
                extensions.insert(Claims(validated.claims));
                extensions.insert(validated.scopes);
                let admission = validated.admission;
                if let Some(constraint) = admission.constraint {
                    extensions.insert(constraint);
                }
                return Self::inner(inner.call(req), admission.nonce);
            }
            Verdict::WaitForReplay(wait, validated) => {
                // As for a key wait: the service polled ready goes with the request.
                let clone = inner.clone();
                let parked = Admitted {
                    validated,
                    scheme,
                    inner: std::mem::replace(inner, clone),
                    req,
                    config: config.clone(),
                    started: started.waiting(),
                };
                return Self {
                    kind: Kind::WaitingForReplay {
                        wait,
                        parked: Some(parked),
                    },
                };
            }
            Verdict::Invalid(error) => error,
            Verdict::WaitForRemote(_, error) => error,
        };
        Self::refused(error, Some(scheme), req, config, started)
    }

    /// The rejection of a request that presented its token with `scheme` (if any); the
    /// token is read again only for the rejection's log line, when that is enabled.
    pub(crate) fn refused(
        error: AuthError,
        scheme: Option<Scheme>,
        req: Request<ReqBody>,
        config: &Config<C>,
        started: Started,
    ) -> Self {
        let logged = tracing::enabled!(tracing::Level::DEBUG) && scheme.is_some();
        let credential = logged
            .then(|| config.source.extract(req.headers(), req.uri(), usize::MAX))
            .and_then(|found| found.ok().flatten());
        let token = credential.as_ref().map(|c| &*c.token);
        let response = config
            .rejecter
            .reject(&error, scheme, req.headers(), started, token);
        Self::rejected(response)
    }
}

impl<S, ReqBody, ResBody, C> Future for ResponseFuture<S::Future, S, ReqBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future, nonce } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(nonce) = nonce.take() {
                        response.headers_mut().insert(DPOP_NONCE, nonce);
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                KindProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                KindProj::WaitingForRemote { wait, parked } => {
                    ready!(wait.as_mut().poll(cx));
                    let Parked {
                        credential,
                        mut inner,
                        req,
                        config,
                        started,
                    } = parked
                        .take()
                        .expect("ResponseFuture polled after completion");
                    // Checked again with whatever keys arrived, then as in `JwtAuth::call`.
                    let verdict = config.validator.check(&credential.token);
                    let verdict = config.senders.check(verdict, &credential, &req);
                    Self::decided(
                        verdict,
                        credential.scheme,
                        &mut inner,
                        req,
                        &config,
                        started,
                    )
                }
                KindProj::WaitingForReplay { wait, parked } => {
                    let claimed = ready!(wait.as_mut().poll(cx));
                    let Admitted {
                        validated,
                        scheme,
                        mut inner,
                        req,
                        config,
                        started,
                    } = parked
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let verdict = match claimed {
                        Ok(()) => Verdict::Valid(validated),
                        Err(error) => Verdict::Invalid(error),
                    };
                    Self::decided(verdict, scheme, &mut inner, req, &config, started)
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
