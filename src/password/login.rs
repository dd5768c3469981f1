//! [`PasswordLogin`]: the password grant's token endpoint as one tower service.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    fmt,
    future::Future,
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower_service::Service;

use super::{GrantError, PasswordGrant, Passwords};
use crate::{
    AuthError, ConfigError, Dpop, DpopMode, DpopVerifier, IssueError, TokenIssuer,
    throttle::{LoginError, LoginThrottle, LoginThrottleBuilder, TrustedProxies},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest login body read by default, in bytes.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024;

/// An account [`PasswordLogin`] can log in: its argon2id PHC string (from
/// [`Passwords::hash`]) and the space-separated scopes a token for it grants.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    phc: String,
    scope: String,
}

impl Account {
    /// An account whose password hashes to `phc` and whose tokens grant `scope`.
    pub fn new(phc: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            phc: phc.into(),
            scope: scope.into(),
        }
    }

    /// The scopes its tokens grant.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("phc", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// Where [`PasswordLogin`] looks accounts up: a map, or a database behind this trait.
///
/// `Ok(None)` is an unknown user, answered exactly like a wrong password (the same argon2
/// work against a dummy hash, the same refusal). `Err` is a lookup that failed: the login is
/// refused with `503` ([`LoginRefusal::AccountsUnavailable`]) before any attempt is counted.
pub trait Accounts: Send + Sync + 'static {
    /// The account named `username`, if there is one.
    fn find(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Account>, BoxError>> + Send;
}

impl<S: BuildHasher + Send + Sync + 'static> Accounts for HashMap<String, Account, S> {
    fn find(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Account>, BoxError>> + Send {
        std::future::ready(Ok(self.get(username).cloned()))
    }
}

impl<A: Accounts> Accounts for Arc<A> {
    fn find(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Account>, BoxError>> + Send {
        (**self).find(username)
    }
}

impl Accounts for BTreeMap<String, Account> {
    fn find(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Account>, BoxError>> + Send {
        std::future::ready(Ok(self.get(username).cloned()))
    }
}

/// Why [`PasswordLogin`] refused a token request. Each has a status, an RFC 6749 section 5.2
/// `error` code and a description; [`response`](Self::response) renders it as that section
/// (or RFC 9449 section 5 for a DPoP proof) says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginRefusal {
    /// The DPoP proof of the request (RFC 9449 section 5) is missing, invalid, lacks the
    /// server's nonce, or its replay store is unreachable: rendered by
    /// [`AuthError::token_request_response`].
    Dpop(AuthError),
    /// The body is longer than [`max_body`](PasswordLoginBuilder::max_body): `413`.
    BodyTooLarge,
    /// The body could not be read: `400 invalid_request`.
    BodyUnreadable,
    /// The body is not a password-grant token request (its status is the [`GrantError`]'s).
    Grant(GrantError),
    /// The [`Accounts`] lookup failed: `503 temporarily_unavailable`, `Retry-After: 5`.
    AccountsUnavailable,
    /// A wrong password or an unknown user, indistinguishable: `400 invalid_grant`
    /// (RFC 6749 section 5.2).
    InvalidCredentials,
    /// Locked by the [`LoginThrottle`] (`429`), every password worker busy (`503`), or a
    /// stored hash that cannot be read (`500`), each with the [`LoginError`]'s
    /// `Retry-After`.
    Login(LoginError),
    /// The `scope` asked for is not within the account's: `400 invalid_scope` (RFC 6749
    /// section 3.3). Only said once the password was right.
    InvalidScope,
    /// The token could not be signed: `500 server_error`.
    Issue(IssueError),
}

impl LoginRefusal {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Dpop(error) => error.token_request_response().status(),
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable | Self::InvalidCredentials | Self::InvalidScope => {
                StatusCode::BAD_REQUEST
            }
            Self::Grant(error) => error.status(),
            Self::AccountsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Login(error) => error.status(),
            Self::Issue(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6749 section 5.2 `error` code (RFC 9449's for a DPoP proof).
    pub fn error_code(&self) -> &'static str {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => return "temporarily_unavailable",
            StatusCode::INTERNAL_SERVER_ERROR => return "server_error",
            _ => {}
        }
        match self {
            Self::Dpop(error) => error.error_code().unwrap_or("invalid_dpop_proof"),
            Self::Grant(error) => error.error_code(),
            Self::InvalidCredentials => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            _ => "invalid_request",
        }
    }

    /// What to tell the client: never whether the user exists, which budget locked it, or
    /// why a lookup failed.
    pub fn description(&self) -> String {
        match self {
            Self::Dpop(error) => error.description().into_owned(),
            Self::BodyTooLarge => "the request body is too large".into(),
            Self::BodyUnreadable => "the request body could not be read".into(),
            Self::Grant(error) => error.description().into(),
            Self::AccountsUnavailable => "logins are unavailable; try again shortly".into(),
            Self::InvalidCredentials => "Invalid username or password".into(),
            Self::Login(error) => error.description().into(),
            Self::InvalidScope => "the scope asked for is not granted to this account".into(),
            Self::Issue(_) => "could not issue a token".into(),
        }
    }

    /// The `Retry-After` to send, in seconds.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Login(error) => error.retry_after_secs(),
            Self::AccountsUnavailable => Some(5),
            Self::Dpop(AuthError::DpopUnavailable) => Some(5),
            _ => None,
        }
    }

    /// Is this the DPoP proof's refusal, whose body a DPoP client reads (its `error`, and a
    /// `DPoP-Nonce` header to retry with)?
    pub fn is_dpop(&self) -> bool {
        matches!(self, Self::Dpop(_))
    }

    /// The default answer: [`status`](Self::status) with `{"error": ...,
    /// "error_description": ...}`, `Cache-Control: no-store`, and `Retry-After` when there
    /// is one. A DPoP proof's refusal is [`AuthError::token_request_response`], with its
    /// `DPoP-Nonce`.
    pub fn response(&self) -> Response<Bytes> {
        if let Self::Dpop(error) = self {
            return error.token_request_response();
        }
        let body = serde_json::json!({
            "error": self.error_code(),
            "error_description": self.description(),
        });
        let mut response = json_response(self.status(), &body);
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for LoginRefusal {}

type OnRefusal = dyn Fn(&LoginRefusal) -> Response<Bytes> + Send + Sync;

/// Settings of a [`PasswordLogin`]; every mistake is reported by [`build`](Self::build).
#[must_use]
pub struct PasswordLoginBuilder<A> {
    issuer: TokenIssuer,
    accounts: A,
    passwords: Option<Passwords>,
    throttle: LoginThrottleBuilder,
    proxies: Vec<IpAddr>,
    dpop: Option<Dpop>,
    max_body: usize,
    on_refusal: Option<Arc<OnRefusal>>,
}

impl<A: Accounts> PasswordLoginBuilder<A> {
    /// The hasher passwords are verified with (default: [`Passwords::new`]). Pass the one
    /// the accounts were hashed with, to share its workers and queue.
    pub fn passwords(mut self, passwords: Passwords) -> Self {
        self.passwords = Some(passwords);
        self
    }

    /// The login throttle's settings (default: [`LoginThrottle::builder`]'s).
    pub fn throttle(mut self, throttle: LoginThrottleBuilder) -> Self {
        self.throttle = throttle;
        self
    }

    /// Proxies whose `X-Forwarded-For` names the client the throttle counts (default: none,
    /// the peer is the client). See [`TrustedProxies`].
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.proxies = proxies.into_iter().collect();
        self
    }

    /// Issues DPoP-bound tokens (RFC 9449 section 5) to requests with a `DPoP` proof, and
    /// with [`DpopMode::Required`] refuses requests without one. Without this setting a
    /// `DPoP` header is ignored and every token is a bearer token.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// The longest body read, in bytes (default [`DEFAULT_MAX_BODY`]); a longer one is
    /// [`LoginRefusal::BodyTooLarge`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Renders refusals as the application's API does (default:
    /// [`LoginRefusal::response`]). The service adds `Cache-Control: no-store` when the
    /// handler sets no `Cache-Control`.
    pub fn on_refusal(
        mut self,
        handler: impl Fn(&LoginRefusal) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.on_refusal = Some(Arc::new(handler));
        self
    }

    /// The endpoint, or the first mistake of the throttle's or DPoP's settings.
    pub fn build(self) -> Result<PasswordLogin<A>, ConfigError> {
        let dpop = self.dpop.map(Dpop::verifier).transpose()?;
        if self.max_body == 0 {
            return Err(ConfigError::OutOfRange("max_body must be at least 1 byte"));
        }
        Ok(PasswordLogin {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                accounts: self.accounts,
                passwords: self.passwords.unwrap_or_default(),
                throttle: self.throttle.build()?,
                proxies: TrustedProxies::new(self.proxies),
                dpop,
                max_body: self.max_body,
                on_refusal: self.on_refusal,
            }),
        })
    }
}

/// The password grant's token endpoint (RFC 6749 section 4.3) as a tower service, for a
/// `POST /login` route: every step of a safe login in order.
///
/// 1. With [`dpop`](PasswordLoginBuilder::dpop) and a `DPoP` header (or
///    [`DpopMode::Required`]), the proof of the request is checked and the token will be
///    bound to its key.
/// 2. The client is the peer address (a [`SocketAddr`] in the request's extensions, as
///    servers insert it), or the `X-Forwarded-For` of a
///    [trusted proxy](PasswordLoginBuilder::trusted_proxies). Without a `SocketAddr`
///    every client counts as `0.0.0.0`: insert one.
/// 3. The body, at most [`max_body`](PasswordLoginBuilder::max_body) bytes, is read as a
///    [`PasswordGrant`] (a form or JSON).
/// 4. The account is looked up in [`Accounts`], and the password verified through the
///    [`LoginThrottle`] ([`LoginThrottle::verify`]: counted before it is checked, the same
///    work for an unknown user).
/// 5. A `scope` asked for must be within the account's; the token grants it, or the
///    account's whole scope.
/// 6. `200` with the [`IssuedToken`](crate::IssuedToken) as JSON, `Cache-Control: no-store`
///    and `Pragma: no-cache` (RFC 6749 section 5.1).
///
/// Any other outcome is a [`LoginRefusal`], rendered by
/// [`on_refusal`](PasswordLoginBuilder::on_refusal). The service never looks at the method
/// or path: route `POST /login` to it.
///
/// ```
/// use std::collections::HashMap;
///
/// use http::{Request, StatusCode, header};
/// use tower::ServiceExt;
/// use tower_jwt_auth::{TokenIssuer, password::{Account, PasswordLogin, Passwords}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = TokenIssuer::builder()
///     .hs256("a shared secret of at least 32 bytes")
///     .issuer("todo-server")
///     .audience("todo-api")
///     .build()?;
/// let passwords = Passwords::new();
/// let accounts = HashMap::from([(
///     "alice".to_owned(),
///     Account::new(passwords.hash("wonderland").await?, "todos:read"),
/// )]);
/// let login = PasswordLogin::builder(issuer, accounts).passwords(passwords).build()?;
///
/// let req = Request::post("/login")
///     .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
///     .body("grant_type=password&username=alice&password=wonderland".to_owned())?;
/// let res = login.oneshot(req).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
/// # Ok(())
/// # }
/// ```
pub struct PasswordLogin<A> {
    inner: Arc<Inner<A>>,
}

struct Inner<A> {
    issuer: TokenIssuer,
    accounts: A,
    passwords: Passwords,
    throttle: LoginThrottle,
    proxies: TrustedProxies,
    dpop: Option<DpopVerifier>,
    max_body: usize,
    on_refusal: Option<Arc<OnRefusal>>,
}

impl<A> Clone for PasswordLogin<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A> fmt::Debug for PasswordLogin<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("max_body", &self.inner.max_body)
            .field("dpop", &self.inner.dpop.is_some())
            .finish_non_exhaustive()
    }
}

impl<A: Accounts> PasswordLogin<A> {
    /// An endpoint issuing `issuer`'s tokens to the accounts of `accounts`.
    pub fn builder(issuer: TokenIssuer, accounts: A) -> PasswordLoginBuilder<A> {
        PasswordLoginBuilder {
            issuer,
            accounts,
            passwords: None,
            throttle: LoginThrottle::builder(),
            proxies: Vec::new(),
            dpop: None,
            max_body: DEFAULT_MAX_BODY,
            on_refusal: None,
        }
    }

    /// The accounts it logs in.
    pub fn accounts(&self) -> &A {
        &self.inner.accounts
    }

    /// The throttle this endpoint counts with ([`LoginThrottle::local_fallbacks`] to watch
    /// a Redis outage).
    pub fn throttle(&self) -> &LoginThrottle {
        &self.inner.throttle
    }
}

impl<A: Accounts> Inner<A> {
    /// Steps 1 to 6 of [`PasswordLogin`]; every `?` is a refusal.
    async fn login<B>(&self, req: Request<B>) -> Result<Response<Bytes>, LoginRefusal>
    where
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        // The head alone is held across the proof's await: `B` need not be `Sync`.
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, ());
        let jkt = match &self.dpop {
            Some(dpop) if req.headers().contains_key("dpop") || dpop.mode == DpopMode::Required => {
                Some(
                    dpop.check_token_request(&req)
                        .await
                        .map_err(LoginRefusal::Dpop)?,
                )
            }
            _ => None,
        };
        let peer = req.extensions().get::<SocketAddr>().map(SocketAddr::ip);
        let client = self.proxies.client_ip(
            peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            req.headers(),
        );
        let media = req.headers().get(header::CONTENT_TYPE).cloned();
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(LoginRefusal::BodyTooLarge),
            Err(_) => return Err(LoginRefusal::BodyUnreadable),
        };
        let grant = PasswordGrant::parse(media.as_ref(), &body).map_err(LoginRefusal::Grant)?;
        let username = grant.username();
        let account = self.accounts.find(username).await.map_err(|error| {
            tracing::error!(%error, "the account lookup of a login failed");
            LoginRefusal::AccountsUnavailable
        })?;
        let phc = account.as_ref().map(|a| a.phc.as_str());
        let right = self
            .throttle
            .verify(&self.passwords, username, client, grant.password(), phc)
            .await
            .map_err(LoginRefusal::Login)?;
        let Some(account) = account.filter(|_| right) else {
            return Err(LoginRefusal::InvalidCredentials);
        };
        let scope = match grant.scope() {
            None => account.scope.as_str(),
            Some(asked) if within(asked, &account.scope) => asked,
            Some(_) => return Err(LoginRefusal::InvalidScope),
        };
        let token = match &jkt {
            Some(jkt) => self.issuer.issue_bound(username, scope, jkt),
            None => self.issuer.issue(username, scope),
        }
        .map_err(LoginRefusal::Issue)?;
        tracing::info!(user = %username, "login succeeded");
        let mut response = json_response(StatusCode::OK, &token);
        let pragma = HeaderValue::from_static("no-cache");
        response.headers_mut().insert(header::PRAGMA, pragma);
        Ok(response)
    }

    fn refuse(&self, refusal: &LoginRefusal) -> Response<Bytes> {
        let mut response = match &self.on_refusal {
            Some(handler) => handler(refusal),
            None => refusal.response(),
        };
        let headers = response.headers_mut();
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

/// Is every scope of `asked` one of `granted`'s (RFC 6749 section 3.3: space-delimited)?
/// An empty request asks for nothing beyond the grant.
fn within(asked: &str, granted: &str) -> bool {
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| granted.split(' ').any(|g| g == s))
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Bytes> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<A, B> Service<Request<B>> for PasswordLogin<A>
where
    A: Accounts,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    // Boxed: the login awaits the accounts' own future and argon2 on the blocking pool;
    // next to that work, one allocation per login is nothing, and a named future would
    // have to spell out `A`'s.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let response = match inner.login(req).await {
                Ok(response) => response,
                Err(refusal) => inner.refuse(&refusal),
            };
            Ok(response.map(Full::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn a_scope_asked_for_must_be_within_the_grant() {
        assert!(within("todos:read", "todos:read todos:write"));
        assert!(within("todos:write  todos:read", "todos:read todos:write"));
        assert!(within("", "todos:read"));
        assert!(!within("todos:admin", "todos:read todos:write"));
        assert!(!within("todos:read todos:admin", "todos:read"));
        assert!(!within("todos", "todos:read"));
    }
}
