use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use quick_cache::unsync::Cache;

use super::{Client, login::Policy};

/// A (username, client) pair.
pub(super) type Key = (String, Client);

#[derive(Debug, Clone, Default)]
struct Pair {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Account {
    window_start: Instant,
    failures: u32,
}

struct Tables {
    pairs: Cache<Key, Pair>,
    accounts: Cache<String, Account>,
    /// (user, client) pairs that logged in successfully: exempt from the account lock.
    known: Cache<Key, ()>,
}

/// The throttle's tables in this process.
pub(super) struct Local {
    policy: Policy,
    tables: Mutex<Tables>,
}

impl Local {
    pub(super) fn with_capacity(policy: Policy, capacity: usize) -> Self {
        Self {
            policy,
            tables: Mutex::new(Tables {
                pairs: Cache::new(capacity),
                accounts: Cache::new(capacity),
                known: Cache::new(capacity),
            }),
        }
    }

    pub(super) fn begin_at(&self, key: &Key, now: Instant) -> Result<(), Duration> {
        let user = &key.0;
        let p = &self.policy;
        let mut t = self.tables.lock().unwrap();

        let mut pair = t.pairs.get(key).cloned().unwrap_or_default();
        if let Some(until) = pair.locked_until.filter(|&until| until > now) {
            return Err(until - now);
        }
        // A pair quiet for longer than the longest lockout starts its backoff afresh.
        if pair
            .last_failure
            .is_some_and(|last| now.duration_since(last) > p.max_lockout * 2)
        {
            pair = Pair::default();
        }
        let mut account = t
            .accounts
            .get(user)
            .filter(|a| now.duration_since(a.window_start) < p.account_window)
            .cloned()
            .unwrap_or(Account {
                window_start: now,
                failures: 0,
            });
        if account.failures >= p.account_max_failures && t.known.get(key).is_none() {
            return Err((account.window_start + p.account_window).saturating_duration_since(now));
        }

        pair.failures += 1;
        pair.last_failure = Some(now);
        pair.locked_until = None;
        if pair.failures >= p.max_failures {
            let backoff = 2u32.saturating_pow(pair.lockouts.min(16));
            pair.locked_until = Some(now + (p.lockout * backoff).min(p.max_lockout));
            pair.lockouts += 1;
            pair.failures = 0;
        }
        account.failures += 1;
        t.pairs.insert(key.clone(), pair);
        t.accounts.insert(user.to_owned(), account);
        Ok(())
    }

    pub(super) fn succeeded(&self, key: Key) {
        let mut t = self.tables.lock().unwrap();
        t.pairs.remove(&key);
        if let Some(mut account) = t.accounts.get_mut(&key.0) {
            account.failures = account.failures.saturating_sub(1);
        }
        t.known.insert(key, ());
    }

    pub(super) fn refund(&self, key: &Key) {
        let mut t = self.tables.lock().unwrap();
        if let Some(mut pair) = t.pairs.get_mut(key)
            && pair.locked_until.is_none()
        {
            pair.failures = pair.failures.saturating_sub(1);
        }
        if let Some(mut account) = t.accounts.get_mut(&key.0) {
            account.failures = account.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::throttle::login::DEFAULT_CAPACITY;

    fn policy() -> Policy {
        Policy {
            max_failures: 3,
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
            account_max_failures: 10,
            account_window: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    impl Local {
        fn begin(&self, user: &str, client: impl Into<Client>) -> Result<Key, Duration> {
            let key = (user.to_owned(), client.into());
            self.begin_at(&key, Instant::now())?;
            Ok(key)
        }

        fn len(&self) -> (usize, usize, usize) {
            let t = self.tables.lock().unwrap();
            (t.pairs.len(), t.accounts.len(), t.known.len())
        }
    }

    #[test]
    fn attempts_count_before_verification_and_lockouts_back_off() {
        let t = Local::with_capacity(
            Policy {
                account_max_failures: 1000,
                ..policy()
            },
            DEFAULT_CAPACITY,
        );
        let c = Client::from(ip("192.0.2.1"));
        let start = Instant::now();
        // Three admitted (none verified yet), then locked for the base lockout.
        for _ in 0..3 {
            t.begin_at(&("alice".into(), c), start).unwrap();
        }
        assert_eq!(
            t.begin_at(&("alice".into(), c), start).err(),
            Some(Duration::from_secs(60))
        );
        // After it: three more, and the next lockout is twice as long, then four times...
        let later = start + Duration::from_secs(61);
        for _ in 0..3 {
            t.begin_at(&("alice".into(), c), later).unwrap();
        }
        assert_eq!(
            t.begin_at(&("alice".into(), c), later).err(),
            Some(Duration::from_secs(120))
        );
        let later = later + Duration::from_secs(121);
        for _ in 0..3 {
            t.begin_at(&("alice".into(), c), later).unwrap();
        }
        assert_eq!(
            t.begin_at(&("alice".into(), c), later).err(),
            Some(Duration::from_secs(240))
        );
        // ...up to the maximum.
        let mut at = later;
        for _ in 0..5 {
            at += Duration::from_secs(601);
            for _ in 0..3 {
                t.begin_at(&("alice".into(), c), at).unwrap();
            }
        }
        assert_eq!(
            t.begin_at(&("alice".into(), c), at).err(),
            Some(Duration::from_secs(600))
        );
        // A pair quiet for long enough starts afresh.
        let quiet = at + Duration::from_secs(1201) + Duration::from_secs(600);
        for _ in 0..3 {
            t.begin_at(&("alice".into(), c), quiet).unwrap();
        }
        assert_eq!(
            t.begin_at(&("alice".into(), c), quiet).err(),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_success_clears_the_pair_and_a_refund_gives_the_attempt_back() {
        let t = Local::with_capacity(policy(), DEFAULT_CAPACITY);
        let c = ip("192.0.2.1");
        let _ = t.begin("alice", c).unwrap();
        t.succeeded(t.begin("alice", c).unwrap());
        for _ in 0..2 {
            t.refund(&t.begin("alice", c).unwrap());
        }
        // Neither the success nor the refunds used the budget.
        for _ in 0..3 {
            let _ = t.begin("alice", c).unwrap();
        }
        assert!(t.begin("alice", c).is_err());
    }

    #[test]
    fn the_account_budget_spans_clients_but_spares_known_ones() {
        let t = Local::with_capacity(policy(), DEFAULT_CAPACITY);
        let home = ip("198.51.100.7");
        t.succeeded(t.begin("alice", home).unwrap());
        // Ten failures from ten different addresses (two each: under the pair limit).
        for i in 0..5 {
            let bot = ip(&format!("203.0.113.{i}"));
            let _ = t.begin("alice", bot).unwrap();
            let _ = t.begin("alice", bot).unwrap();
        }
        // A new address is refused for the rest of the window...
        assert!(t.begin("alice", ip("203.0.113.200")).is_err());
        // ...the owner's address is not, and other accounts are untouched.
        assert!(t.begin("alice", home).is_ok());
        assert!(t.begin("bob", ip("203.0.113.200")).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let t = Local::with_capacity(policy(), 1000);
        for i in 0..20_000u32 {
            let _ = t.begin(&format!("user{i}"), IpAddr::from(i.to_be_bytes()));
        }
        let (pairs, accounts, known) = t.len();
        assert!(pairs <= 1000 && accounts <= 1000 && known <= 1000);
    }
}
