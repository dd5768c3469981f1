//! The in-memory DPoP replay store (RFC 9449 section 11.1): every proof's (key, `jti`) is
//! remembered for as long as its `iat` could still be accepted, and a second use is refused.
//!
//! Written by hand rather than with a cache crate: a cache evicts under pressure, and an
//! evicted `jti` is a replay let through. Here nothing is evicted before its time: entries
//! live in two generations per shard, each one window long (the proof lifetime plus the
//! clock skew); a generation is dropped whole when the one after it is a window old, so an
//! entry lives between one and two windows. When a shard is full, new proofs are refused
//! with `503` until it rotates.

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hasher},
    sync::Mutex,
    time::Duration,
};

use crate::AuthError;

const SHARDS: usize = 16;

pub(crate) struct ReplayCache {
    shards: Box<[Mutex<Generations>]>,
    per_shard: usize,
    window: u64,
    /// Randomly seeded per store: a `jti` chosen to collide can only make a proof refused,
    /// never a replay accepted, and the seed makes even that a guess.
    hasher: foldhash::quality::RandomState,
}

#[derive(Default)]
struct Generations {
    /// When `current` began, in seconds since the epoch.
    started: u64,
    current: HashSet<u64, NoHash>,
    previous: HashSet<u64, NoHash>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize, window: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            window: window.as_secs().max(1),
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// Records the proof of key `jkt` with `jti`; an error if it was seen within the
    /// window (`invalid_dpop_proof`) or there is no room left (`503`).
    pub(crate) fn first_use(&self, jkt: &str, jti: &str, now: u64) -> Result<(), AuthError> {
        let key = self.hasher.hash_one((jkt, jti));
        let shard = &self.shards[(key >> 60) as usize % SHARDS];
        // A panic elsewhere while holding the lock leaves sets that are still consistent.
        let mut g = shard.lock().unwrap_or_else(|e| e.into_inner());
        if now >= g.started + self.window {
            let two_windows = now >= g.started + 2 * self.window;
            g.previous = if two_windows {
                HashSet::default()
            } else {
                std::mem::take(&mut g.current)
            };
            g.current.clear();
            g.started = now;
        }
        if g.current.contains(&key) || g.previous.contains(&key) {
            return Err(AuthError::InvalidDpopProof(
                "the proof has been used before",
            ));
        }
        if g.current.len() >= self.per_shard {
            tracing::warn!(
                "the DPoP replay store is full; refusing DPoP requests until proofs expire"
            );
            return Err(AuthError::DpopUnavailable);
        }
        g.current.insert(key);
        Ok(())
    }
}

/// The keys are already hashes.
#[derive(Default, Clone, Copy)]
struct NoHash;

impl BuildHasher for NoHash {
    type Hasher = Passthrough;
    fn build_hasher(&self) -> Passthrough {
        Passthrough(0)
    }
}

struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_refused_the_second_time_within_its_window() {
        let store = ReplayCache::new(100, Duration::from_secs(60));
        assert_eq!(store.first_use("k", "1", 1000), Ok(()));
        assert!(store.first_use("k", "1", 1000).is_err());
        // Another key may use the same jti.
        assert_eq!(store.first_use("other", "1", 1000), Ok(()));
        // Still refused one rotation later, until a whole window has passed after it.
        assert!(store.first_use("k", "1", 1059).is_err());
        assert!(store.first_use("k", "1", 1060 + 30).is_err());
        // Two windows on, the proof is long past its lifetime and forgotten.
        assert_eq!(store.first_use("k", "1", 1000 + 4 * 60), Ok(()));
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting() {
        let store = ReplayCache::new(SHARDS, Duration::from_secs(60));
        let mut refused = 0;
        for i in 0..200 {
            match store.first_use("k", &i.to_string(), 1000) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e, AuthError::DpopUnavailable);
                    refused += 1;
                }
            }
        }
        assert!(refused > 0);
        // Every accepted proof is still refused as a replay.
        for i in 0..200 {
            assert!(store.first_use("k", &i.to_string(), 1001).is_err());
        }
    }
}
