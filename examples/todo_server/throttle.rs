//! Login throttling: after `max_failures` consecutive failures for one (username, client
//! address) the pair is locked out for `lockout`, then starts afresh.
//!
//! Unknown usernames are tracked exactly like real ones, so the throttle says nothing about
//! which accounts exist. The table is bounded: when it grows past `MAX_ENTRIES`, entries
//! that are neither locked nor recently failed are dropped.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

const MAX_ENTRIES: usize = 100_000;

type Key = (String, Option<IpAddr>);

#[derive(Debug)]
pub struct Throttle {
    max_failures: u32,
    lockout: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Throttle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long the pair is still locked out, if it is.
    pub fn locked_for(&self, user: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let mut entries = self.entries.lock().unwrap();
        let key = (user.to_owned(), ip);
        let until = entries.get(&key)?.locked_until?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            // The lockout expired on its own: start counting afresh.
            entries.remove(&key);
            None
        }
    }

    pub fn record_failure(&self, user: &str, ip: Option<IpAddr>) {
        let mut entries = self.entries.lock().unwrap();
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES {
            let lockout = self.lockout;
            entries.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now) || now - e.last_failure < lockout
            });
        }
        let entry = entries.entry((user.to_owned(), ip)).or_insert(Entry {
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures >= self.max_failures {
            entry.locked_until = Some(now + self.lockout);
        }
    }

    pub fn record_success(&self, user: &str, ip: Option<IpAddr>) {
        self.entries.lock().unwrap().remove(&(user.to_owned(), ip));
    }
}
