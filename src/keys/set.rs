use std::{collections::HashMap, fmt, future::Future, pin::Pin, sync::Arc, time::Instant};

use arc_swap::{ArcSwap, Guard};
use jsonwebtoken::Algorithm;

use super::VerificationKey;
use crate::{AuthError, ConfigError};

/// An immutable set of keys, indexed by `kid`.
#[derive(Default)]
pub(crate) struct KeySnapshot {
    keys: Vec<VerificationKey>,
    by_kid: HashMap<Arc<str>, usize>,
    /// For fetched sets: when the keys arrived, and when they should be refreshed by.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fetched: Option<(Instant, Instant)>,
}

impl KeySnapshot {
    pub(crate) fn new(keys: Vec<VerificationKey>) -> Result<Self, ConfigError> {
        let mut by_kid = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid
                && by_kid.insert(kid.clone(), i).is_some()
            {
                return Err(ConfigError::DuplicateKeyId);
            }
        }
        Ok(Self {
            keys,
            by_kid,
            fetched: None,
        })
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// The key when there is exactly one and it has no `kid`: nothing to choose, so the
    /// token header need not be read before `decode`.
    pub(crate) fn only_unkeyed(&self) -> Option<&VerificationKey> {
        match self.keys.as_slice() {
            [only] if only.kid.is_none() => Some(only),
            _ => None,
        }
    }

    /// By exact `kid`; a token without `kid` takes the first key of its `alg`. An unknown
    /// `kid` is rejected without trying other keys.
    pub(crate) fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&VerificationKey, AuthError> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|&i| &self.keys[i])
                .ok_or(AuthError::UnknownKey),
            None => self
                .keys
                .iter()
                .find(|k| k.algorithm == alg)
                .ok_or(AuthError::UnsupportedAlgorithm),
        }
    }
}

/// A rotatable set of verification keys, shared by every layer built from it.
///
/// Cloning gives another handle to the same set. Changes are published as a new immutable
/// snapshot (`arc-swap`), so the request path reads keys without taking a lock.
///
/// # Overview
///
/// Keys: each bound to the one algorithm it may verify, grouped in sets picked by `kid`,
/// static and rotatable ([`KeySet`]) or fetched from a JWKS endpoint
/// ([`JwksSource`](crate::jwks::JwksSource), feature `jwks`).
///
/// A [`VerificationKey`] pairs a `jsonwebtoken` `DecodingKey` with an
/// [`Algorithm`](crate::jsonwebtoken::Algorithm) and an optional `kid`. The layer's algorithm allow-list is
/// derived from its keys, so a key is never used with an algorithm of another family (an RSA
/// public key is never an HMAC secret), and `none` is never accepted: it is no key's algorithm.
///
/// ```
/// use tower_jwt_auth::{KeySet, VerificationKey, jsonwebtoken::Algorithm};
///
/// let key = VerificationKey::hmac(Algorithm::HS256, &[7; 32]).unwrap().with_kid("2026-11");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert_eq!(key.kid(), Some("2026-11"));
///
/// // A 10-byte secret is refused when the key is built, not when the first token arrives.
/// assert!(VerificationKey::hmac(Algorithm::HS256, b"0123456789").is_err());
///
/// // Rotation: add the next key, later retire the old one; layers built from the set see
/// // each change at once, and the request path takes no lock.
/// let keys = KeySet::new([key]).unwrap();
/// keys.insert(VerificationKey::hmac(Algorithm::HS256, &[8; 32]).unwrap().with_kid("2026-12")).unwrap();
/// assert!(keys.remove("2026-11"));
/// assert_eq!(keys.kids(), ["2026-12"]);
/// ```
#[derive(Clone)]
pub struct KeySet {
    snapshot: Arc<ArcSwap<KeySnapshot>>,
}

impl KeySet {
    /// A set of `keys`; fails when two share a `kid`.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Result<Self, ConfigError> {
        let snapshot = KeySnapshot::new(keys.into_iter().collect())?;
        Ok(Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        })
    }

    /// Adds `key`, replacing the key with the same `kid` if there is one. A key without `kid`
    /// is refused once the set has any other key: it could not be picked reliably.
    pub fn insert(&self, key: VerificationKey) -> Result<(), ConfigError> {
        let mut result = Ok(());
        self.snapshot.rcu(|current| {
            let mut keys: Vec<_> = current.keys.clone();
            match &key.kid {
                Some(kid) => keys.retain(|k| k.kid.as_deref() != Some(&**kid)),
                None if !keys.is_empty() => {
                    result = Err(ConfigError::InvalidKey(
                        "a key added to a non-empty set needs a `kid`",
                    ));
                    return current.clone();
                }
                None => {}
            }
            keys.push(key.clone());
            result = Ok(());
            Arc::new(KeySnapshot::new(keys).expect("kids are unique after retain"))
        });
        result
    }

    /// Retires the key with this `kid`; whether there was one.
    pub fn remove(&self, kid: &str) -> bool {
        let mut removed = false;
        self.snapshot.rcu(|current| {
            let keys: Vec<_> = current
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() != Some(kid))
                .cloned()
                .collect();
            removed = keys.len() != current.keys.len();
            Arc::new(KeySnapshot::new(keys).expect("a subset of unique kids is unique"))
        });
        removed
    }

    /// Replaces every key at once.
    pub fn replace(
        &self,
        keys: impl IntoIterator<Item = VerificationKey>,
    ) -> Result<(), ConfigError> {
        self.snapshot
            .store(Arc::new(KeySnapshot::new(keys.into_iter().collect())?));
        Ok(())
    }

    /// The `kid`s in the set, in insertion order.
    pub fn kids(&self) -> Vec<String> {
        self.snapshot
            .load()
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref().map(String::from))
            .collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.snapshot.load().keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn load(&self) -> Guard<Arc<KeySnapshot>> {
        self.snapshot.load()
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.snapshot.load().keys.iter())
            .finish()
    }
}

/// Where a layer gets its keys: one key, a [`KeySet`], or (feature `jwks`) a
/// [`JwksSource`](crate::jwks::JwksSource). Built with `From`/`Into`.
#[derive(Clone, Debug)]
pub struct KeySource(pub(crate) Keys);

#[derive(Clone, Debug)]
pub(crate) enum Keys {
    Static(KeySet),
    /// Keys that an identity provider serves: the `jwks` module implements the seam, so this
    /// module does not depend on it.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    Remote(Arc<dyn KeyProvider>),
}

/// The seam between the request path and a remote key set (a JWKS): current keys, and a
/// refresh to wait for when a token names a key not seen yet.
pub(crate) trait KeyProvider: fmt::Debug + Send + Sync + 'static {
    /// The current keys, or why there are none to use.
    fn load(&self) -> Result<Guard<Arc<KeySnapshot>>, AuthError>;
    /// Starts (or joins) a refresh, unless the provider is cooling down.
    fn refresh(&self) -> Option<RefreshWait>;
}

/// Completes when a key refresh that a request is waiting for has finished (or timed out).
pub(crate) type RefreshWait = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Keys {
    /// The current keys, or why there are none to use.
    pub(crate) fn load(&self) -> Result<Guard<Arc<KeySnapshot>>, AuthError> {
        match self {
            Self::Static(set) => Ok(set.load()),
            Self::Remote(provider) => provider.load(),
        }
    }

    /// Starts (or joins) a refresh, unless this source never refreshes or is cooling down.
    pub(crate) fn refresh(&self) -> Option<RefreshWait> {
        match self {
            Self::Static(_) => None,
            Self::Remote(provider) => provider.refresh(),
        }
    }

    /// Whether the key with this [`VerificationKey::serial`] is still in the set (and the set is
    /// usable): a cached verdict is only as good as the key behind it.
    #[cfg(feature = "cache")]
    pub(crate) fn contains(&self, serial: u64) -> bool {
        self.load()
            .is_ok_and(|snapshot| snapshot.keys.iter().any(|k| k.serial == serial))
    }

    /// Whether the keys come from an identity provider (then HMAC is not allowed by default).
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Self::Static(_))
    }
}

impl From<VerificationKey> for KeySource {
    fn from(key: VerificationKey) -> Self {
        Self(Keys::Static(
            KeySet::new([key]).expect("one key has unique kids"),
        ))
    }
}

impl From<KeySet> for KeySource {
    fn from(set: KeySet) -> Self {
        Self(Keys::Static(set))
    }
}
