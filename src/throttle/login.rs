use std::{
    fmt,
    time::{Duration, Instant},
};

use super::{
    Client,
    local::{Key, Local},
};
use crate::{
    ConfigError,
    password::{PasswordError, Passwords},
};

/// How many (user, client) pairs, accounts and known logins each in-process table holds at
/// most, by default.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The throttle's budgets and durations, checked by [`LoginThrottleBuilder::build`].
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub(super) max_failures: u32,
    pub(super) lockout: Duration,
    pub(super) max_lockout: Duration,
    pub(super) account_max_failures: u32,
    pub(super) account_window: Duration,
}

/// Configures a [`LoginThrottle`]; made by [`LoginThrottle::builder`]. Settings are
/// infallible; [`build`](Self::build) reports the first mistake.
#[must_use = "a builder does nothing until `build` is called"]
pub struct LoginThrottleBuilder {
    policy: Policy,
    capacity: usize,
    #[cfg(feature = "redis")]
    redis: Option<(redis::Client, String)>,
}

impl LoginThrottleBuilder {
    /// Failed attempts of one (user, client) pair before it is locked (default 10).
    pub fn max_failures(mut self, n: u32) -> Self {
        self.policy.max_failures = n;
        self
    }

    /// How long the first lockout of a pair lasts (default 60 seconds); each further one
    /// doubles, up to [`max_lockout`](Self::max_lockout).
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.policy.lockout = lockout;
        self
    }

    /// The longest lockout (default one hour). A pair quiet for twice this long starts its
    /// backoff afresh.
    pub fn max_lockout(mut self, max_lockout: Duration) -> Self {
        self.policy.max_lockout = max_lockout;
        self
    }

    /// Failures of one account, from every client, within [`account_window`](Self::account_window)
    /// before the account is locked for clients it never logged in from (default 100).
    pub fn account_max_failures(mut self, n: u32) -> Self {
        self.policy.account_max_failures = n;
        self
    }

    /// The window of the per-account budget (default one hour).
    pub fn account_window(mut self, window: Duration) -> Self {
        self.policy.account_window = window;
        self
    }

    /// How many pairs, accounts and known logins each in-process table holds (default
    /// [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Shares the budgets with every instance that uses this Redis (and
    /// [`key_prefix`](Self::key_prefix)); the in-process tables remain as the fallback while
    /// Redis is unreachable.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, client: redis::Client) -> Self {
        let prefix = match self.redis.take() {
            Some((_, prefix)) => prefix,
            None => "tower-jwt-auth:throttle".to_owned(),
        };
        self.redis = Some((client, prefix));
        self
    }

    /// The prefix of the throttle's Redis keys (default `tower-jwt-auth:throttle`), for
    /// several services sharing one Redis. Without [`redis`](Self::redis), it does nothing.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some((_, p)) = &mut self.redis {
            *p = prefix.into();
        }
        self
    }

    /// The throttle, or [`ConfigError::OutOfRange`] naming the setting: a budget of zero, a
    /// duration under a second, a `max_lockout` shorter than the `lockout`, or a capacity of
    /// zero.
    pub fn build(self) -> Result<LoginThrottle, ConfigError> {
        let p = &self.policy;
        let second = Duration::from_secs(1);
        let checks = [
            (
                p.max_failures == 0,
                "LoginThrottleBuilder::max_failures must be at least 1",
            ),
            (
                p.lockout < second,
                "LoginThrottleBuilder::lockout must be at least 1 second",
            ),
            (
                p.max_lockout < p.lockout,
                "LoginThrottleBuilder::max_lockout must be at least the lockout",
            ),
            (
                p.account_max_failures == 0,
                "LoginThrottleBuilder::account_max_failures must be at least 1",
            ),
            (
                p.account_window < second,
                "LoginThrottleBuilder::account_window must be at least 1 second",
            ),
            (
                self.capacity == 0,
                "LoginThrottleBuilder::capacity must be at least 1",
            ),
        ];
        if let Some((_, what)) = checks.iter().find(|(bad, _)| *bad) {
            return Err(ConfigError::OutOfRange(what));
        }
        Ok(LoginThrottle {
            #[cfg(feature = "redis")]
            shared: match &self.redis {
                Some((client, prefix)) => Some(super::shared::Shared::new(
                    client.clone(),
                    prefix,
                    &self.policy,
                )?),
                None => None,
            },
            local: Local::with_capacity(self.policy, self.capacity),
            #[cfg(feature = "redis")]
            fallbacks: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

impl fmt::Debug for LoginThrottleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LoginThrottleBuilder");
        d.field("policy", &self.policy)
            .field("capacity", &self.capacity);
        // The Redis URL may carry a password.
        #[cfg(feature = "redis")]
        d.field("redis", &self.redis.as_ref().map(|(_, prefix)| prefix));
        d.finish()
    }
}

/// The login throttle: in this process, or (feature `redis`) shared through Redis with a
/// per-process fallback. See the [module docs](super).
pub struct LoginThrottle {
    local: Local,
    #[cfg(feature = "redis")]
    shared: Option<super::shared::Shared>,
    /// Attempts counted in this process because Redis did not answer in time.
    #[cfg(feature = "redis")]
    fallbacks: std::sync::atomic::AtomicU64,
}

/// A login attempt that was refused because its pair or account is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    retry_after: Duration,
}

impl Throttled {
    /// How long until the lock ends: what a server sends as `Retry-After`.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up, for the
    /// `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after;
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "too many failed logins; try again in {} s",
            self.retry_after_secs()
        )
    }
}

impl std::error::Error for Throttled {}

/// An admitted login attempt, already counted as a failure: [`succeeded`](Self::succeeded)
/// clears it, [`refund`](Self::refund) takes it back when the password was never checked,
/// and dropping it leaves it counted.
#[must_use = "an attempt is counted as a failure unless it succeeded or is refunded"]
pub struct Attempt<'t> {
    throttle: &'t LoginThrottle,
    key: Key,
    /// Counted in Redis (else in this process).
    #[cfg(feature = "redis")]
    shared: bool,
}

impl LoginThrottle {
    /// Starts configuring a throttle.
    pub fn builder() -> LoginThrottleBuilder {
        LoginThrottleBuilder {
            policy: Policy {
                max_failures: 10,
                lockout: Duration::from_secs(60),
                max_lockout: Duration::from_secs(3600),
                account_max_failures: 100,
                account_window: Duration::from_secs(3600),
            },
            capacity: DEFAULT_CAPACITY,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Admits and counts an attempt for `user` from `client`, or says how long the pair or
    /// the account is locked.
    pub async fn begin(
        &self,
        user: &str,
        client: impl Into<Client>,
    ) -> Result<Attempt<'_>, Throttled> {
        let key = (user.to_owned(), client.into());
        let locked = |retry_after| {
            crate::metrics::login_lockout();
            Throttled { retry_after }
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            match shared.begin(&key).await {
                Some(Ok(())) => {
                    return Ok(Attempt {
                        throttle: self,
                        key,
                        shared: true,
                    });
                }
                Some(Err(wait)) => return Err(locked(wait)),
                // Redis did not answer within 500 ms: count here (fail open to this
                // instance's tables), and count that it happened.
                None => {
                    self.fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        self.local.begin_at(&key, Instant::now()).map_err(locked)?;
        Ok(Attempt {
            throttle: self,
            key,
            #[cfg(feature = "redis")]
            shared: false,
        })
    }
}

/// Why [`LoginThrottle::verify`] could not say whether a password is right.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    /// The pair or the account is locked: answer `429` with this `Retry-After`.
    Throttled(Throttled),
    /// Every password worker is busy: answer `503` with a short `Retry-After`. The attempt
    /// was refunded.
    Busy,
    /// The password could not be checked (too long, a corrupt stored hash). The attempt
    /// was refunded.
    Password(PasswordError),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Throttled(throttled) => throttled.fmt(f),
            Self::Busy => f.write_str("too many logins at once; try again shortly"),
            Self::Password(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for LoginError {}

impl LoginError {
    /// The status to answer with: `429` when throttled, `503` when every password worker is
    /// busy, `500` when the password could not be checked.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Throttled(_) => http::StatusCode::TOO_MANY_REQUESTS,
            Self::Busy => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::Password(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` to send with it, in seconds: until the lock ends, or `1` when busy.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Throttled(throttled) => Some(throttled.retry_after_secs()),
            Self::Busy => Some(1),
            Self::Password(_) => None,
        }
    }

    /// What to tell the client: never which of pair or account is locked, nor why a stored
    /// hash could not be read.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "too many failed logins; try again later",
            Self::Busy => "too many logins at once; try again shortly",
            Self::Password(_) => "could not verify the password",
        }
    }
}

impl LoginThrottle {
    /// The whole protocol in one call: [`begin`](Self::begin) (counted before the password
    /// is checked), [`Passwords::verify`] against `phc` (`None` for an unknown user: the same
    /// work and answer as a wrong password), then [`Attempt::succeeded`] for a right
    /// password, the failure kept for a wrong one, or [`Attempt::refund`] when the password
    /// was never checked.
    ///
    /// ```
    /// use std::net::IpAddr;
    ///
    /// use tower_jwt_auth::{password::Passwords, throttle::LoginThrottle};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let passwords = Passwords::new();
    /// let throttle = LoginThrottle::builder().build()?;
    /// let phc = passwords.hash("wonderland").await?;
    /// let client: IpAddr = "192.0.2.7".parse()?;
    /// assert!(throttle.verify(&passwords, "alice", client, "wonderland", Some(&phc)).await?);
    /// assert!(!throttle.verify(&passwords, "alice", client, "guess", Some(&phc)).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify(
        &self,
        passwords: &Passwords,
        user: &str,
        client: impl Into<Client>,
        password: &str,
        phc: Option<&str>,
    ) -> Result<bool, LoginError> {
        let attempt = self
            .begin(user, client)
            .await
            .map_err(LoginError::Throttled)?;
        match passwords.verify(password, phc).await {
            Ok(true) if phc.is_some() => {
                attempt.succeeded().await;
                Ok(true)
            }
            // Already counted when it was admitted.
            Ok(_) => Ok(false),
            Err(error) => {
                attempt.refund().await;
                Err(match error {
                    PasswordError::Busy => LoginError::Busy,
                    error => LoginError::Password(error),
                })
            }
        }
    }
}

impl LoginThrottle {
    /// How many attempts were judged by this process alone because the shared backend
    /// (Redis) did not answer within 500 ms. Such attempts are throttled per instance: a
    /// guesser spreading over `n` instances while Redis is unreachable gets up to `n` times
    /// the budget. That is the trade-off of failing open (logins keep working through a
    /// Redis outage); watch this count, and the `warn` logged when an outage begins. Always
    /// zero without Redis.
    pub fn local_fallbacks(&self) -> u64 {
        #[cfg(feature = "redis")]
        return self.fallbacks.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(feature = "redis"))]
        0
    }
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LoginThrottle");
        #[cfg(feature = "redis")]
        d.field("shared", &self.shared.is_some());
        d.finish_non_exhaustive()
    }
}

impl Attempt<'_> {
    /// The password was right: the pair starts afresh and the client becomes known to the
    /// account (exempt from its lock).
    pub async fn succeeded(self) {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.throttle.shared.as_ref().filter(|_| self.shared) {
            return shared.succeeded(&self.key).await;
        }
        self.throttle.local.succeeded(self.key);
    }

    /// The password was never checked (the password workers were busy): the attempt does
    /// not count.
    pub async fn refund(self) {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.throttle.shared.as_ref().filter(|_| self.shared) {
            return shared.refund(&self.key).await;
        }
        self.throttle.local.refund(&self.key);
    }
}

impl fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The username is not secret, but it is personal data: not in logs.
        f.debug_struct("Attempt").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::{LoginError, Throttled};

    #[test]
    fn each_login_error_says_how_to_answer() {
        let locked = LoginError::Throttled(Throttled {
            retry_after: Duration::from_millis(1500),
        });
        let answers = [locked, LoginError::Busy].map(|e| (e.status(), e.retry_after_secs()));
        assert_eq!(
            answers,
            [
                (StatusCode::TOO_MANY_REQUESTS, Some(2)),
                (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            ]
        );
        assert_eq!(
            LoginError::Busy.description(),
            "too many logins at once; try again shortly"
        );
    }
}
