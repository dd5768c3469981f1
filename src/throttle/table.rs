//! A bounded table of failure counters that a flood cannot make forget one that still
//! counts.
//!
//! An evicting cache (the first version used one) lets an attacker flush a locked pair out
//! with enough cheap requests for other usernames, and guess on. Here the exact table never
//! evicts an entry that still counts; when it is full of them, new keys go to a fixed-size
//! count-min sketch instead: several rows of cells, each key in one cell per row, each cell
//! the component-wise maximum of the keys in it, and a key's state the minimum over its
//! cells. A key in the sketch can only be over-counted (when every one of its cells is shared
//! with a busier key), never forgotten, and the memory is fixed. Decrements (a success, a
//! refund) apply to exact entries only: in the sketch they would under-count the neighbours.
//!
//! Hand-written: the count-min sketches on crates.io count integers; these cells hold a
//! small state (counts and instants) with its own notion of expiry.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    time::{Duration, Instant},
};

use foldhash::fast::RandomState;

/// Rows of the sketch, and cells per row.
const ROWS: usize = 4;
const WIDTH: usize = 4096;

/// A counter's state, as the table needs to know it.
pub(super) trait Counter: Clone + Default {
    /// Whether this state still matters at `now`; one that does not may be forgotten (it
    /// reads as the default).
    fn counts(&self, now: Instant) -> bool;
    /// The component-wise minimum: what a key is at least, from the cells it is in.
    fn meet(&self, other: &Self) -> Self;
    /// The component-wise maximum: what a cell holds of all its keys.
    fn join(&self, other: &Self) -> Self;
}

pub(super) struct Table<K, V> {
    exact: HashMap<K, V, RandomState>,
    capacity: usize,
    /// `ROWS * WIDTH` cells, allocated on the first overflow.
    sketch: Vec<V>,
    hasher: RandomState,
    /// A full table is swept of entries that no longer count at most this often.
    next_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Clone, V: Counter> Table<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            exact: HashMap::with_hasher(RandomState::default()),
            capacity,
            sketch: Vec::new(),
            hasher: RandomState::default(),
            next_sweep: None,
        }
    }

    /// The cells of `key`, one per row (double hashing, Kirsch and Mitzenmacher).
    fn cells(&self, key: &K) -> [usize; ROWS] {
        let h = self.hasher.hash_one(key);
        let step = (h >> 32) | 1;
        std::array::from_fn(|row| {
            row * WIDTH + (h.wrapping_add(row as u64 * step) as usize % WIDTH)
        })
    }

    /// The state of `key` at `now` (the default when nothing counts for it).
    pub(super) fn get(&self, key: &K, now: Instant) -> V {
        if let Some(v) = self.exact.get(key) {
            return v.clone();
        }
        if self.sketch.is_empty() {
            return V::default();
        }
        let mut cells = self.cells(key).into_iter().map(|i| {
            let cell = &self.sketch[i];
            if cell.counts(now) {
                cell.clone()
            } else {
                V::default()
            }
        });
        let first = cells.next().unwrap_or_default();
        cells.fold(first, |a, b| a.meet(&b))
    }

    /// Records `value` as the state of `key`: exactly when the key is known or there is
    /// room (after sweeping out what no longer counts), else in the sketch.
    pub(super) fn set(&mut self, key: &K, value: V, now: Instant) {
        if let Some(slot) = self.exact.get_mut(key) {
            *slot = value;
            return;
        }
        if self.exact.len() >= self.capacity && self.next_sweep.is_none_or(|at| now >= at) {
            self.exact.retain(|_, v| v.counts(now));
            self.next_sweep = Some(now + Duration::from_secs(1));
        }
        if self.exact.len() < self.capacity {
            self.exact.insert(key.clone(), value);
            return;
        }
        if self.sketch.is_empty() {
            self.sketch = vec![V::default(); ROWS * WIDTH];
        }
        for i in self.cells(key) {
            let cell = &mut self.sketch[i];
            *cell = if cell.counts(now) {
                cell.join(&value)
            } else {
                value.clone()
            };
        }
    }

    /// Changes the exact entry of `key`, if there is one.
    pub(super) fn update(&mut self, key: &K, f: impl FnOnce(&mut V)) {
        if let Some(v) = self.exact.get_mut(key) {
            f(v);
        }
    }

    /// Forgets the exact entry of `key` (a sketch cell keeps what its keys made it).
    pub(super) fn remove(&mut self, key: &K) {
        self.exact.remove(key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.exact.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Count(u32);

    impl Counter for Count {
        fn counts(&self, _: Instant) -> bool {
            self.0 > 0
        }
        fn meet(&self, other: &Self) -> Self {
            Self(self.0.min(other.0))
        }
        fn join(&self, other: &Self) -> Self {
            Self(self.0.max(other.0))
        }
    }

    #[test]
    fn counting_entries_are_never_evicted_and_overflow_only_over_counts() {
        let now = Instant::now();
        let mut t = Table::new(100);
        t.set(&"locked".to_owned(), Count(10), now);
        for i in 0..50_000 {
            let key = format!("flood{i}");
            let seen = t.get(&key, now);
            t.set(&key, Count(seen.0 + 1), now);
        }
        assert_eq!(t.get(&"locked".to_owned(), now), Count(10));
        assert!(t.len() <= 100);
        // Every flood key reads at least what it was given.
        for i in 0..50_000 {
            assert!(t.get(&format!("flood{i}"), now).0 >= 1);
        }
        // Entries that no longer count make room again.
        let mut t = Table::new(2);
        t.set(&"a".to_owned(), Count(0), now);
        t.set(&"b".to_owned(), Count(0), now);
        t.set(&"c".to_owned(), Count(1), now);
        assert!(t.sketch.is_empty(), "swept instead of overflowing");
    }
}
