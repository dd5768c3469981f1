//! Claims forwarded to the service behind, as request headers: for upstreams that do not
//! read JWTs (another language, another process behind a proxy).
//!
//! Put [`ForwardClaimsLayer`] inside (after) [`JwtAuthLayer`](crate::JwtAuthLayer). Every
//! configured header is first removed from the incoming request, so a client can never set
//! one itself; then each claim of the validated token is written:
//!
//! - a string as is, a number or boolean as its JSON text;
//! - an array of strings, numbers or booleans joined by the separator (default `" "`);
//! - a claim that is absent or `null`: no header.
//!
//! A claim is named by its member (`sub`) or by a JSON pointer (RFC 6901) into nested claims
//! (`/realm_access/roles`). A value that cannot be a header value (control characters,
//! characters outside ASCII, an object, an array of objects) refuses the request with
//! `401 invalid_token` rather than being mangled.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Request, Response};
use serde::Serialize;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AuthError, Claims, ConfigError, SenderConstraint, StandardClaims,
    authorize::future::ResponseFuture, body::ResponseBody, rejection::Rejecter, token::Scheme,
};

/// A [`Layer`] that copies claims into request headers; built with
/// [`ForwardClaimsLayer::builder`].
///
/// ```
/// use tower_jwt_auth::{ForwardClaimsLayer, StandardClaims};
///
/// let forward = ForwardClaimsLayer::<StandardClaims>::builder()
///     .claim("sub", "x-auth-subject")
///     .claim("iss", "x-auth-issuer")
///     .claim("/realm_access/roles", "x-auth-roles")
///     .separator(",")
///     .build()
///     .unwrap();
/// ```
pub struct ForwardClaimsLayer<C = StandardClaims> {
    rules: Arc<[Rule]>,
    separator: Arc<str>,
    rejecter: Rejecter,
    _claims: PhantomData<fn() -> C>,
}

/// The settings of a [`ForwardClaimsLayer`]; [`build`](Self::build) reports a mistake.
pub struct ForwardClaimsLayerBuilder<C = StandardClaims> {
    rules: Vec<(String, String)>,
    separator: String,
    _claims: PhantomData<fn() -> C>,
}

#[derive(Debug)]
struct Rule {
    /// A JSON pointer: `/sub` for the member `sub`.
    pointer: String,
    header: HeaderName,
}

impl<C> ForwardClaimsLayer<C> {
    /// No claims forwarded yet.
    pub fn builder() -> ForwardClaimsLayerBuilder<C> {
        ForwardClaimsLayerBuilder {
            rules: Vec::new(),
            separator: " ".to_owned(),
            _claims: PhantomData,
        }
    }
}

impl<C> ForwardClaimsLayerBuilder<C> {
    /// Forwards `claim` (a member name, or a JSON pointer starting with `/`) as `header`.
    pub fn claim(mut self, claim: impl Into<String>, header: impl Into<String>) -> Self {
        self.rules.push((claim.into(), header.into()));
        self
    }

    /// What joins the elements of an array claim (default a space, as `scope` is written).
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// The layer, or [`ConfigError::InvalidValue`] for a header name that is not a valid
    /// token (RFC 9110 section 5.1) or named twice, an empty claim, or a separator that
    /// cannot be in a header value.
    pub fn build(self) -> Result<ForwardClaimsLayer<C>, ConfigError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for (claim, header) in self.rules {
            let header = HeaderName::try_from(header)
                .map_err(|_| ConfigError::InvalidValue("a forwarded header name is not valid"))?;
            if rules.iter().any(|r| r.header == header) {
                return Err(ConfigError::InvalidValue(
                    "a forwarded header is named twice",
                ));
            }
            let pointer = match claim.as_str() {
                "" | "/" => {
                    return Err(ConfigError::InvalidValue("a forwarded claim is empty"));
                }
                c if c.starts_with('/') => claim,
                // A member name as a pointer: `~` and `/` escaped (RFC 6901 section 3).
                c => format!("/{}", c.replace('~', "~0").replace('/', "~1")),
            };
            rules.push(Rule { pointer, header });
        }
        if HeaderValue::try_from(format!("a{}b", self.separator)).is_err() {
            return Err(ConfigError::InvalidValue(
                "the separator cannot be in a header value",
            ));
        }
        Ok(ForwardClaimsLayer {
            rules: rules.into(),
            separator: self.separator.into(),
            rejecter: Rejecter::default(),
            _claims: PhantomData,
        })
    }
}

impl<S, C> Layer<S> for ForwardClaimsLayer<C> {
    type Service = ForwardClaims<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardClaims {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that copies claims into request headers; built by [`ForwardClaimsLayer`].
pub struct ForwardClaims<S, C = StandardClaims> {
    inner: S,
    layer: ForwardClaimsLayer<C>,
}

impl<S, C> ForwardClaims<S, C> {
    define_inner_service_accessors!();
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for ForwardClaims<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Serialize + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        for rule in layer.rules.iter() {
            req.headers_mut().remove(&rule.header);
        }
        let claims = req.extensions().get::<Claims<C>>().cloned();
        if let Some(claims) = claims {
            let values = serde_json::to_value(&*claims.0)
                .ok()
                .and_then(|claims| layer.values(&claims));
            let Some(values) = values else {
                let scheme = match req.extensions().get::<SenderConstraint>() {
                    Some(SenderConstraint::Dpop { .. }) => Scheme::Dpop,
                    _ => Scheme::Bearer,
                };
                let error = AuthError::InvalidClaims;
                let response = layer.rejecter.reject(
                    &error,
                    Some(scheme),
                    req.headers(),
                    crate::metrics::Started::none(),
                    None,
                );
                return ResponseFuture::rejected(response);
            };
            for (header, value) in values {
                req.headers_mut().insert(header, value);
            }
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

impl<C> ForwardClaimsLayer<C> {
    /// The header values of `claims`, or `None` when one cannot be a header value.
    fn values(&self, claims: &Value) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let mut out = Vec::with_capacity(self.rules.len());
        for rule in self.rules.iter() {
            let text = match claims.pointer(&rule.pointer) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => {
                    let items: Option<Vec<String>> = items.iter().map(scalar).collect();
                    items?.join(&self.separator)
                }
                Some(value) => scalar(value)?,
            };
            // Visible ASCII, spaces and tabs only: other bytes are `obs-text`, which
            // upstreams read differently (RFC 9110 section 5.5).
            if !text
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return None;
            }
            out.push((rule.header.clone(), HeaderValue::try_from(text).ok()?));
        }
        Some(out)
    }
}

/// A string as is, a number or boolean as its JSON text; `None` for anything else.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<C> Clone for ForwardClaimsLayer<C> {
    fn clone(&self) -> Self {
        Self {
            rules: self.rules.clone(),
            separator: self.separator.clone(),
            rejecter: self.rejecter.clone(),
            _claims: PhantomData,
        }
    }
}

impl<S: Clone, C> Clone for ForwardClaims<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<C> fmt::Debug for ForwardClaimsLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardClaimsLayer")
            .field("rules", &self.rules)
            .field("separator", &self.separator)
            .finish()
    }
}

impl<C> fmt::Debug for ForwardClaimsLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardClaimsLayerBuilder")
            .field("rules", &self.rules)
            .field("separator", &self.separator)
            .finish()
    }
}

impl<S: fmt::Debug, C> fmt::Debug for ForwardClaims<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardClaims")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}
