//! argon2id password hashing that never blocks the async executor (feature `password`).
//!
//! [`Passwords`] hashes and verifies PHC strings with argon2id at no less than the OWASP
//! minimum (m = 19456 KiB, t = 2, p = 1). Every hash runs on tokio's blocking pool behind a
//! semaphore, so a login storm queues there instead of stalling the runtime's workers.
//! Verifying for a user that does not exist runs against a dummy hash with the same
//! parameters, so "no such user" and "wrong password" cost the same time. Passwords longer
//! than [`MAX_PASSWORD_LEN`] are refused before hashing; none is ever truncated.
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

use std::{fmt, sync::Arc};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::{OnceCell, Semaphore};

/// The longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// OWASP's minimum for argon2id: 19 MiB of memory, two passes, one lane.
const OWASP_MIN: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Hashes and verifies passwords off the async executor. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Arc<Semaphore>,
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
    /// argon2id at the OWASP minimum, at most as many hashes at once as there are CPUs.
    pub fn new() -> Self {
        let (m, t, p) = OWASP_MIN;
        Self::with_params(m, t, p).expect("the OWASP parameters are valid")
    }

    /// argon2id with `m_cost` KiB of memory, `t_cost` passes and `p_cost` lanes; each must be
    /// at least the OWASP minimum.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, PasswordError> {
        let (m, t, p) = OWASP_MIN;
        if m_cost < m || t_cost < t || p_cost < p {
            return Err(PasswordError::Hasher(
                "parameters below the OWASP minimum (m=19456, t=2, p=1)",
            ));
        }
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|_| PasswordError::Hasher("invalid argon2 parameters"))?;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                permits: Arc::new(Semaphore::new(cpus)),
                dummy: OnceCell::new(),
            }),
        })
    }

    /// Runs at most `n` hashes at once (default: the number of CPUs). Each takes
    /// `m_cost` KiB of memory while it runs.
    ///
    /// # Panics
    ///
    /// When `n` is zero.
    pub fn max_concurrent(self, n: usize) -> Self {
        assert!(n > 0, "at least one hash must be allowed to run");
        let inner = Inner {
            params: self.inner.params.clone(),
            permits: Arc::new(Semaphore::new(n)),
            dummy: OnceCell::new(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Hashes `password` into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        check_len(password)?;
        let params = self.inner.params.clone();
        let password = password.to_owned();
        self.blocking(move || {
            argon2id(params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| PasswordError::Hasher("argon2 failed"))
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
        let params = self.inner.params.clone();
        let password = password.to_owned();
        let matched = self
            .blocking(move || {
                match argon2id(params).verify_password(password.as_bytes(), phc.as_str()) {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                    Err(_) => Err(PasswordError::InvalidHash),
                }
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

    /// Runs `f` on the blocking pool once a permit is free.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Hasher("closed"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|_| PasswordError::Hasher("the hashing task panicked"))?
    }
}

fn argon2id(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
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
            .field("available_permits", &self.inner.permits.available_permits())
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
        let p = Passwords::new().max_concurrent(1);
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

    async fn futures_join(p: &Passwords) -> usize {
        let (a, b, c) = tokio::join!(p.hash("one"), p.hash("two"), p.hash("three"));
        [a, b, c].into_iter().filter(Result::is_ok).count()
    }
}
