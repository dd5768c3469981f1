//! The validated-token cache: a token that passed every check is remembered, by its whole
//! text, until it expires, so a client that presents the same token again costs a hash
//! lookup instead of a signature check and a JSON parse.
//!
//! Built on `quick_cache` (sharded, CLOCK-Pro eviction, no global lock). Properties:
//!
//! - Keyed by the whole token: a changed header, payload or signature is another key.
//! - Only tokens that passed every check are stored, and a hit returns the same
//!   [`Validated`] (claims shared through an `Arc`, not copied).
//! - An entry is used only up to its token's `exp` plus the leeway, and only while the key
//!   that verified it is still in its key set (rotation, JWKS refresh); otherwise it is
//!   dropped and the token is checked afresh.
//! - Bounded in entries; each holds the token text and its decoded claims.

#[cfg(feature = "cache")]
use std::sync::Arc;

#[cfg(feature = "cache")]
use quick_cache::sync::Cache;

use super::Validated;
use crate::keys::Keys;
#[cfg(feature = "cache")]
use crate::metrics;
#[cfg(all(feature = "cache", feature = "revocation"))]
use crate::revoke::TokenId;

#[cfg(feature = "cache")]
pub(crate) struct TokenCache<C> {
    /// Each entry behind an `Arc`: a hit clones that one pointer, not the entry's `Keys`,
    /// whose count every token of the issuer shares (two threads would fight over it).
    entries: Arc<Cache<Box<str>, Arc<Entry<C>>>>,
    capacity: usize,
    meter: metrics::CacheMeter,
}

/// A token that passed: what a cached token is valid for, besides its claims.
#[cfg_attr(not(feature = "cache"), allow(dead_code))] // read by the cache
pub(crate) struct Entry<C> {
    pub(crate) validated: Validated<C>,
    /// The last second (since the epoch) the token is acceptable: `exp` plus the leeway.
    pub(crate) valid_until: u64,
    /// The keys of the issuer whose policy accepted it.
    pub(crate) keys: Keys,
    /// The serial number of the key that verified it (not its `kid`).
    pub(crate) key_serial: u64,
    /// What a revocation check needs (when the layer checks revocations).
    #[cfg(all(feature = "cache", feature = "revocation"))]
    pub(crate) revocable: Option<Arc<TokenId>>,
}

#[cfg(feature = "cache")]
impl<C> TokenCache<C> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Arc::new(Cache::new(capacity.max(1))),
            capacity,
            meter: metrics::CacheMeter::new(),
        }
    }

    /// The cached result for `token`, if it is still valid at `now` and the key that
    /// verified it is still in its issuer's set.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Arc<Entry<C>>> {
        let found = self.lookup(token, now);
        self.meter.lookup(found.is_some());
        found
    }

    fn lookup(&self, token: &str, now: u64) -> Option<Arc<Entry<C>>> {
        let entry = self.entries.get(token)?;
        if entry.valid_until >= now && entry.keys.contains(entry.key_serial) {
            Some(entry)
        } else {
            self.entries.remove(token);
            None
        }
    }

    pub(crate) fn insert(&self, token: &str, entry: Entry<C>) {
        self.entries.insert(token.into(), Arc::new(entry));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(feature = "cache")]
impl<C> Clone for TokenCache<C> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            capacity: self.capacity,
            meter: self.meter.clone(),
        }
    }
}

#[cfg(feature = "cache")]
impl<C> std::fmt::Debug for TokenCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves: they are bearer credentials.
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish()
    }
}
