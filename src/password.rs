//! argon2id password hashing that never blocks the async executor (feature `password`).
//!
//! [`Passwords`] hashes and verifies PHC strings with argon2id at no less than the OWASP
//! minimum (m = 19456 KiB, t = 2, p = 1). Every hash runs on tokio's blocking pool behind a
//! semaphore, so a login storm queues there instead of stalling the runtime's workers.
//! Verifying for a user that does not exist runs against a dummy hash with the same
//! parameters, so "no such user" and "wrong password" cost the same time. Passwords longer
//! than [`MAX_PASSWORD_LEN`] are refused before hashing; none is ever truncated.
//!
//! [`PasswordGrant`] reads the password grant's token request (RFC 6749 section 4.3.2) from a
//! `POST /login` body, form or JSON, and says why one is refused ([`GrantError`], with its
//! status). [`PasswordLogin`] is the whole `POST /login` as one tower service: the DPoP
//! proof, the grant, the account lookup, the [login throttle](crate::throttle), the token.
//!
//! ```
//! use tower_jwt_auth::password::Passwords;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let passwords = Passwords::new();
//! let phc = passwords.hash("wonderland").await?;
//! assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
//! assert!(passwords.verify("wonderland", Some(&phc)).await?);
//! assert!(!passwords.verify("wrong", Some(&phc)).await?);
//! // An unknown user: same work, same answer as a wrong password.
//! assert!(!passwords.verify("wonderland", None).await?);
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use tokio::sync::{OnceCell, Semaphore};

use crate::ConfigError;

mod grant;
mod login;
pub use grant::{GrantError, MAX_USERNAME_LEN, PasswordGrant};
pub use login::{
    Account, Accounts, DEFAULT_MAX_BODY, LoginRefusal, PasswordLogin, PasswordLoginBuilder,
};

/// The longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// OWASP's minimum for argon2id: 19 MiB of memory, two passes, one lane.
const OWASP_MIN: (u32, u32, u32) = (19 * 1024, 2, 1);

/// How many hashes may wait for a free worker, by default, before [`PasswordError::Busy`].
pub const DEFAULT_MAX_QUEUE: usize = 32;

/// Hashes and verifies passwords off the async executor. Cheap to clone.
///
/// A login storm cannot starve the rest of the service:
///
/// - at most `cpus - 1` hashes run at once (at least one; see
///   [`max_concurrent`](Self::max_concurrent)), so one core stays with the request path;
/// - at most [`max_queue`](Self::max_queue) more wait for a turn; past that a call fails at
///   once with [`PasswordError::Busy`], which a server answers with `503` and `Retry-After`
///   instead of queueing without limit;
/// - each running hash reuses the argon2 memory of a previous one, so memory stays at
///   `max_concurrent` times `m_cost` however many logins arrive.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    max_concurrent: usize,
    /// Requests waiting for a permit, and how many may.
    waiting: AtomicUsize,
    max_queue: usize,
    /// argon2 working memory, one buffer per hash that ran at once, handed to the next one.
    memory: Mutex<Vec<Vec<Block>>>,
    /// The hash an unknown user is verified against, made on first use.
    dummy: OnceCell<String>,
}

/// Why a password could not be hashed or verified. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_LEN`].
    TooLong,
    /// The stored hash is not an argon2 PHC string.
    InvalidHash,
    /// Every worker is busy and the wait queue is full: try again shortly (a server answers
    /// `503` with `Retry-After`).
    Busy,
    /// Parameters below the OWASP minimum, or an internal failure of the hasher.
    Hasher(&'static str),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "the password is longer than {MAX_PASSWORD_LEN} bytes"),
            Self::InvalidHash => {
                f.write_str("the stored password hash is not a valid argon2 PHC string")
            }
            Self::Busy => f.write_str("too many password checks are waiting; try again later"),
            Self::Hasher(reason) => write!(f, "password hashing failed: {reason}"),
        }
    }
}

impl std::error::Error for PasswordError {}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// argon2id at the OWASP minimum.
    pub fn new() -> Self {
        let (m, t, p) = OWASP_MIN;
        Self::with_params(m, t, p).expect("the OWASP parameters are valid")
    }

    /// argon2id with `m_cost` KiB of memory, `t_cost` passes and `p_cost` lanes; each must be
    /// at least the OWASP minimum.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, ConfigError> {
        let (m, t, p) = OWASP_MIN;
        if m_cost < m || t_cost < t || p_cost < p {
            return Err(ConfigError::OutOfRange(
                "argon2 parameters below the OWASP minimum (m=19456, t=2, p=1)",
            ));
        }
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|_| ConfigError::OutOfRange("argon2 parameters beyond argon2's limits"))?;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self::from_parts(
            params,
            (cpus - 1).max(1),
            DEFAULT_MAX_QUEUE,
        ))
    }

    fn from_parts(params: Params, max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                params,
                permits: Semaphore::new(max_concurrent),
                max_concurrent,
                waiting: AtomicUsize::new(0),
                max_queue,
                memory: Mutex::new(Vec::new()),
                dummy: OnceCell::new(),
            }),
        }
    }

    /// Runs at most `n` hashes at once (default: one fewer than the CPUs, at least one).
    /// Each takes `m_cost` KiB of memory, kept for the next hash. Zero is
    /// [`ConfigError::OutOfRange`]: no password could ever be checked.
    pub fn max_concurrent(self, n: usize) -> Result<Self, ConfigError> {
        if n == 0 {
            return Err(ConfigError::OutOfRange(
                "at least one hash must be allowed to run",
            ));
        }
        Ok(Self::from_parts(
            self.inner.params.clone(),
            n,
            self.inner.max_queue,
        ))
    }

    /// Lets at most `n` calls wait for a free worker (default [`DEFAULT_MAX_QUEUE`]); one
    /// more fails at once with [`PasswordError::Busy`].
    pub fn max_queue(self, n: usize) -> Self {
        Self::from_parts(self.inner.params.clone(), self.inner.max_concurrent, n)
    }

    /// Hashes `password` into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        check_len(password)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|_| PasswordError::Hasher("no randomness for a salt"))?;
        let salt = Salt::new(&salt).map_err(|_| PasswordError::Hasher("invalid salt"))?;
        let params = self.inner.params.clone();
        let password = password.to_owned();
        self.blocking(move |memory| {
            let hash = argon2id(memory, password.as_bytes(), &salt, &params)?;
            let phc = PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)
                    .map_err(|_| PasswordError::Hasher("invalid argon2 parameters"))?,
                salt: Some(salt),
                hash: Some(hash),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Whether `password` matches `phc`. With `phc = None` (no such user) the password is
    /// checked against a dummy hash of the same cost and the answer is `false`.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, PasswordError> {
        check_len(password)?;
        let (phc, known) = match phc {
            Some(phc) => (phc.to_owned(), true),
            None => (self.dummy().await?.to_owned(), false),
        };
        let password = password.to_owned();
        let matched = self
            .blocking(move |memory| {
                let stored = PasswordHash::new(&phc).map_err(|_| PasswordError::InvalidHash)?;
                let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
                    return Err(PasswordError::InvalidHash);
                };
                if stored.algorithm != argon2::ARGON2ID_IDENT
                    || stored.version != Some(Version::V0x13.into())
                {
                    return Err(PasswordError::InvalidHash);
                }
                let params = Params::try_from(&stored).map_err(|_| PasswordError::InvalidHash)?;
                // `Output`'s equality is constant-time.
                Ok(argon2id(memory, password.as_bytes(), salt, &params)? == *expected)
            })
            .await?;
        Ok(matched && known)
    }

    async fn dummy(&self) -> Result<&str, PasswordError> {
        self.inner
            .dummy
            .get_or_try_init(|| self.hash("not a password of anyone"))
            .await
            .map(String::as_str)
    }

    /// Runs `f` on the blocking pool once a permit is free, with a working-memory buffer
    /// that goes back to the pool afterwards; fails at once when too many already wait.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let inner = &self.inner;
        // Count this call as waiting for as long as it has no permit (the guard also
        // covers a caller that gives up while it waits).
        let ahead = inner.waiting.fetch_add(1, Ordering::AcqRel);
        if ahead >= inner.max_queue {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::password_busy();
            return Err(PasswordError::Busy);
        }
        crate::metrics::password_queue(ahead + 1);
        let waiting = WaitingGuard(&inner.waiting);
        let permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Hasher("closed"))?;
        drop(waiting);
        let _permit = permit;
        let mut memory = inner.memory.lock().unwrap().pop().unwrap_or_default();
        let this = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&mut memory);
            this.memory.lock().unwrap().push(memory);
            result
        })
        .await
        .map_err(|_| PasswordError::Hasher("the hashing task panicked"))?
    }
}

/// Takes a call off the waiting count when it gets its permit or is dropped while waiting.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        let was = self.0.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::password_queue(was - 1);
    }
}

/// argon2id of `password` with `salt` and `params`, in `memory` (grown when too small, and
/// kept for the next hash: allocating 19 MiB per login fragments the heap of a busy server).
fn argon2id(
    memory: &mut Vec<Block>,
    password: &[u8],
    salt: &Salt,
    params: &Params,
) -> Result<Output, PasswordError> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..len];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt.as_ref(), out, &mut memory[..blocks])
        .map_err(|_| PasswordError::Hasher("argon2 failed"))?;
    Output::new(out).map_err(|_| PasswordError::Hasher("argon2 output"))
}

fn check_len(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_LEN {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.inner.params;
        f.debug_struct("Passwords")
            .field("m_cost", &p.m_cost())
            .field("t_cost", &p.t_cost())
            .field("p_cost", &p.p_cost())
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("max_queue", &self.inner.max_queue)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_below_owasp_are_refused() {
        assert!(Passwords::with_params(4096, 2, 1).is_err());
        assert!(Passwords::with_params(19456, 1, 1).is_err());
        assert!(Passwords::with_params(19456, 2, 1).is_ok());
        assert!(matches!(
            Passwords::new().max_concurrent(0),
            Err(ConfigError::OutOfRange(_))
        ));
    }

    #[tokio::test]
    async fn overlong_password_is_refused_before_hashing() {
        let p = Passwords::new();
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(p.hash(&long).await, Err(PasswordError::TooLong));
        assert_eq!(p.verify(&long, None).await, Err(PasswordError::TooLong));
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let p = Passwords::new();
        let a = "a".repeat(MAX_PASSWORD_LEN);
        let mut b = a.clone();
        b.replace_range(MAX_PASSWORD_LEN - 1.., "b");
        let phc = p.hash(&a).await.unwrap();
        assert!(p.verify(&a, Some(&phc)).await.unwrap());
        assert!(!p.verify(&b, Some(&phc)).await.unwrap());
    }

    #[tokio::test]
    async fn garbage_hash_is_an_error_not_a_match() {
        let p = Passwords::new();
        assert_eq!(
            p.verify("pw", Some("$md5$nope")).await,
            Err(PasswordError::InvalidHash)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn hashing_does_not_block_the_executor() {
        // On a single-threaded runtime, a ticker keeps running while hashes are in flight.
        let p = Passwords::new().max_concurrent(1).unwrap();
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let hashes = futures_join(&p).await;
        ticker.abort();
        assert_eq!(hashes, 3);
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > 10,
            "the executor was blocked"
        );
    }

    #[test]
    fn one_core_is_left_to_the_request_path() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(Passwords::new().inner.max_concurrent, (cpus - 1).max(1));
    }

    #[tokio::test]
    async fn past_the_queue_a_call_is_busy_at_once() {
        let p = Passwords::new().max_concurrent(1).unwrap().max_queue(2);
        // One runs, two wait...
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move { p.hash(&format!("pw{i}")).await })
            })
            .collect();
        while p.inner.waiting.load(Ordering::Acquire) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // ...so a fourth is refused without waiting.
        assert_eq!(p.verify("pw", None).await, Err(PasswordError::Busy));
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        // Once the queue drains, calls are served again.
        assert!(p.hash("again").await.is_ok());
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_queue() {
        let p = Passwords::new().max_concurrent(1).unwrap().max_queue(1);
        let running = tokio::spawn({
            let p = p.clone();
            async move { p.hash("long").await }
        });
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.hash("waits").await }
        });
        while p.inner.waiting.load(Ordering::Acquire) < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(p.inner.waiting.load(Ordering::Acquire), 0);
        assert!(running.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn working_memory_is_reused_not_reallocated() {
        let p = Passwords::new().max_concurrent(2).unwrap();
        let phc = p.hash("pw").await.unwrap();
        for _ in 0..3 {
            let (a, b) = tokio::join!(p.verify("pw", Some(&phc)), p.verify("no", Some(&phc)));
            assert_eq!((a, b), (Ok(true), Ok(false)));
        }
        let buffers = p.inner.memory.lock().unwrap();
        assert!(
            buffers.len() <= 2,
            "{} buffers for 2 workers",
            buffers.len()
        );
        assert!(buffers.iter().all(|b| b.len() == 19 * 1024));
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings() {
        use argon2::{PasswordVerifier as _, password_hash::phc::PasswordHash};
        let p = Passwords::new();
        let phc = p.hash("wonderland").await.unwrap();
        // Any argon2 implementation verifies them, and ours verifies theirs.
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"wonderland", &parsed)
                .is_ok()
        );
        assert!(p.verify("wonderland", Some(&phc)).await.unwrap());
    }

    async fn futures_join(p: &Passwords) -> usize {
        let (a, b, c) = tokio::join!(p.hash("one"), p.hash("two"), p.hash("three"));
        [a, b, c].into_iter().filter(Result::is_ok).count()
    }
}
