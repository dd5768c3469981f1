//! The in-memory DPoP replay store (RFC 9449 section 11.1): every proof's (key, `jti`) is
//! remembered for as long as its `iat` could still be accepted, and a second use is refused.
//!
//! Written by hand rather than with a cache crate: a cache evicts under pressure, and an
//! evicted `jti` is a replay let through. Here nothing is evicted before its time. Proofs
//! are filed by the generation of their `iat` (`iat / window`, the window being the proof
//! lifetime plus the clock skew) in one of three tables per shard, so a replay, which
//! carries the same `iat`, is looked up in exactly one table: one probe of one hash set per
//! check. The proofs the server accepts at any moment span at most two generations; a table
//! is emptied when a proof three generations newer than its newest needs it, and by then
//! every proof in it is too old to be accepted again. When a table is full, new proofs are
//! refused with `503` until their generation passes.

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hasher},
    sync::Mutex,
    time::Duration,
};

use crate::AuthError;

const SHARDS: usize = 16;
/// Two generations are live at a time; the third is the one emptied next.
const TABLES: usize = 3;

pub(crate) struct ReplayCache {
    shards: Box<[Mutex<[Table; TABLES]>]>,
    per_table: usize,
    window: u64,
    /// Randomly seeded per store: a `jti` chosen to collide can only make a proof refused,
    /// never a replay accepted, and the seed makes even that a guess.
    hasher: foldhash::quality::RandomState,
}

#[derive(Default)]
struct Table {
    /// The newest `iat` generation filed here.
    generation: u64,
    seen: HashSet<u64, NoHash>,
}

impl ReplayCache {
    /// A store of up to `capacity` proofs per generation, for proofs accepted within
    /// `window` (lifetime plus skew).
    pub(crate) fn new(capacity: usize, window: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_table: capacity.div_ceil(SHARDS),
            window: window.as_secs().max(1),
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// Records the proof of key `jkt` with `jti`, issued at `iat` (already checked to be
    /// within the window); an error if it was seen before (`invalid_dpop_proof`) or there
    /// is no room left (`503`).
    pub(crate) fn first_use(&self, jkt: &str, jti: &str, iat: u64) -> Result<(), AuthError> {
        let key = self.hasher.hash_one((jkt, jti));
        let shard = &self.shards[(key >> 60) as usize % SHARDS];
        let generation = iat / self.window;
        // A panic elsewhere while holding the lock leaves sets that are still consistent.
        let mut tables = shard.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut tables[(generation % TABLES as u64) as usize];
        if generation > table.generation {
            // Three or more generations newer (same slot): everything here is too old to
            // be accepted. Clearing keeps the allocation for the next generation.
            table.seen.clear();
            table.generation = generation;
        }
        // An older generation than the table's (the clock went back) shares the table:
        // its proofs are cleared no earlier than the newer ones.
        if table.seen.len() >= self.per_table && !table.seen.contains(&key) {
            tracing::warn!(
                "the DPoP replay store is full; refusing DPoP requests until proofs expire"
            );
            return Err(AuthError::DpopUnavailable);
        }
        if !table.seen.insert(key) {
            return Err(AuthError::InvalidDpopProof(
                "the proof has been used before",
            ));
        }
        Ok(())
    }
}

/// The store as `benches/dpop.rs` measures it (through `__bench`, not public API).
pub struct ReplayStore(ReplayCache);

impl ReplayStore {
    /// A store of `capacity` proofs per generation of `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self(ReplayCache::new(capacity, window))
    }

    /// Whether the proof (`jkt`, `jti`) issued at `iat` is a first use with room to record it.
    pub fn first_use(&self, jkt: &str, jti: &str, iat: u64) -> bool {
        self.0.first_use(jkt, jti, iat).is_ok()
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

    const WINDOW: u64 = 60;

    fn store(capacity: usize) -> ReplayCache {
        ReplayCache::new(capacity, Duration::from_secs(WINDOW))
    }

    #[test]
    fn a_proof_is_refused_the_second_time() {
        let store = store(100);
        assert_eq!(store.first_use("k", "1", 1000), Ok(()));
        assert_eq!(
            store.first_use("k", "1", 1000),
            Err(AuthError::InvalidDpopProof(
                "the proof has been used before"
            ))
        );
        // Another key may use the same jti.
        assert_eq!(store.first_use("other", "1", 1000), Ok(()));
    }

    #[test]
    fn a_proof_is_remembered_while_newer_generations_come_and_go() {
        let store = store(1000);
        store.first_use("k", "old", 1000).unwrap();
        // Proofs of the next two generations, in every shard, do not clear it.
        for i in 0..200 {
            let iat = 1000 + (i % 2 + 1) * WINDOW;
            store.first_use("k", &i.to_string(), iat).unwrap();
        }
        assert!(store.first_use("k", "old", 1000).is_err());
        // Three generations on, its table is reused: by then it could not pass the `iat`
        // check, which runs first.
        for i in 0..200 {
            store
                .first_use("k", &i.to_string(), 1000 + 3 * WINDOW)
                .unwrap();
        }
        assert_eq!(store.first_use("k", "old", 1000), Ok(()));
    }

    #[test]
    fn an_older_generation_after_the_clock_went_back_clears_nothing() {
        let store = store(1000);
        let newer = 1000 + 3 * WINDOW;
        for i in 0..200 {
            store.first_use("k", &i.to_string(), newer).unwrap();
        }
        // Same slot, three generations older.
        for i in 200..400 {
            store.first_use("k", &i.to_string(), 1000).unwrap();
        }
        for i in 0..200 {
            assert!(store.first_use("k", &i.to_string(), newer).is_err(), "{i}");
        }
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting() {
        let store = store(SHARDS);
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
        // Every accepted proof is still refused as a replay, not as "full".
        for i in 0..200 {
            assert!(store.first_use("k", &i.to_string(), 1001).is_err());
        }
        let accepted = (0..200)
            .filter(|i| {
                store.first_use("k", &i.to_string(), 1001)
                    == Err(AuthError::InvalidDpopProof(
                        "the proof has been used before",
                    ))
            })
            .count();
        assert_eq!(accepted, 200 - refused);
    }
}
