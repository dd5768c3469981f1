use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use quick_cache::unsync::Cache;

use super::{
    Client,
    login::Policy,
    table::{Counter, Table},
};

/// A (username, client) pair.
pub(super) type Key = (String, Client);

/// One (user, client) pair's failures and lockouts.
#[derive(Debug, Clone, Default)]
struct Pair {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
    /// When a quiet pair starts its backoff afresh: twice the longest lockout after its last
    /// failure.
    forget_at: Option<Instant>,
}

impl Counter for Pair {
    fn counts(&self, now: Instant) -> bool {
        self.forget_at.is_some_and(|at| at > now)
    }
    fn meet(&self, o: &Self) -> Self {
        Self {
            failures: self.failures.min(o.failures),
            lockouts: self.lockouts.min(o.lockouts),
            locked_until: self.locked_until.min(o.locked_until),
            forget_at: self.forget_at.min(o.forget_at),
        }
    }
    fn join(&self, o: &Self) -> Self {
        Self {
            failures: self.failures.max(o.failures),
            lockouts: self.lockouts.max(o.lockouts),
            locked_until: self.locked_until.max(o.locked_until),
            forget_at: self.forget_at.max(o.forget_at),
        }
    }
}

/// One account's failures, from every client, in its current window.
#[derive(Debug, Clone, Default)]
struct Account {
    failures: u32,
    window_end: Option<Instant>,
}

impl Counter for Account {
    fn counts(&self, now: Instant) -> bool {
        self.window_end.is_some_and(|end| end > now)
    }
    fn meet(&self, o: &Self) -> Self {
        Self {
            failures: self.failures.min(o.failures),
            window_end: self.window_end.min(o.window_end),
        }
    }
    fn join(&self, o: &Self) -> Self {
        Self {
            failures: self.failures.max(o.failures),
            window_end: self.window_end.max(o.window_end),
        }
    }
}

struct Tables {
    /// Never evicted while they count; overflow goes to a sketch (see `table`).
    pairs: Table<Key, Pair>,
    accounts: Table<String, Account>,
    /// (user, client) pairs that logged in successfully: exempt from the account lock. Only
    /// a successful login adds one, so no anonymous flood can evict them.
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
                pairs: Table::new(capacity),
                accounts: Table::new(capacity),
                known: Cache::new(capacity),
            }),
        }
    }

    pub(super) fn begin_at(&self, key: &Key, now: Instant) -> Result<(), Duration> {
        let user = &key.0;
        let p = &self.policy;
        let mut t = self.tables.lock().unwrap();

        // A pair quiet for twice the longest lockout reads as new (it no longer counts).
        let mut pair = t.pairs.get(key, now);
        if !pair.counts(now) {
            pair = Pair::default();
        }
        if let Some(until) = pair.locked_until.filter(|&until| until > now) {
            return Err(until - now);
        }
        let mut account = t.accounts.get(user, now);
        if !account.counts(now) {
            account = Account {
                failures: 0,
                window_end: Some(now + p.account_window),
            };
        }
        if account.failures >= p.account_max_failures && t.known.get(key).is_none() {
            let end = account.window_end.unwrap_or(now);
            return Err(end.saturating_duration_since(now));
        }

        pair.failures += 1;
        pair.forget_at = Some(now + p.max_lockout * 2);
        pair.locked_until = None;
        if pair.failures >= p.max_failures {
            let backoff = 2u32.saturating_pow(pair.lockouts.min(16));
            pair.locked_until = Some(now + (p.lockout * backoff).min(p.max_lockout));
            pair.lockouts += 1;
            pair.failures = 0;
        }
        account.failures += 1;
        t.pairs.set(key, pair, now);
        t.accounts.set(user, account, now);
        Ok(())
    }

    pub(super) fn succeeded(&self, key: Key) {
        let mut t = self.tables.lock().unwrap();
        t.pairs.remove(&key);
        t.accounts
            .update(&key.0, |a| a.failures = a.failures.saturating_sub(1));
        t.known.insert(key, ());
    }

    pub(super) fn refund(&self, key: &Key) {
        let mut t = self.tables.lock().unwrap();
        t.pairs.update(key, |pair| {
            if pair.locked_until.is_none() {
                pair.failures = pair.failures.saturating_sub(1);
            }
        });
        t.accounts
            .update(&key.0, |a| a.failures = a.failures.saturating_sub(1));
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

    /// Security review 3, finding 3: the bounded cache evicted a locked pair's and a locked
    /// account's entries under a flood of other usernames, and guessing resumed. Here both
    /// stay locked after two rounds of (capacity + 10,000) attempts for other usernames.
    #[test]
    fn locks_survive_a_flood_of_other_usernames() {
        let capacity = 1000;
        let t = Local::with_capacity(
            Policy {
                account_max_failures: 5,
                ..policy()
            },
            capacity,
        );
        let now = Instant::now();
        let attacker = Client::from(ip("203.0.113.66"));
        // The pair (alice, attacker) locked by three failures...
        for _ in 0..3 {
            t.begin_at(&("alice".into(), attacker), now).unwrap();
        }
        assert!(t.begin_at(&("alice".into(), attacker), now).is_err());
        // ...and bob's account locked by five failures from five addresses.
        for i in 0..5 {
            let bot = Client::from(ip(&format!("198.51.100.{i}")));
            t.begin_at(&("bob".into(), bot), now).unwrap();
        }
        let stranger = Client::from(ip("192.0.2.200"));
        assert!(t.begin_at(&("bob".into(), stranger), now).is_err());

        for round in 0..2 {
            // Each other username is tried twice: as hot, to a frequency-aware cache, as the
            // locked entries.
            for i in 0..capacity + 10_000 {
                let user = format!("flood-{round}-{i}");
                for _ in 0..2 {
                    let _ = t.begin_at(&(user.clone(), attacker), now);
                }
            }
            let later = now + Duration::from_secs(1);
            assert!(
                t.begin_at(&("alice".into(), attacker), later).is_err(),
                "round {round}: the locked pair was forgotten"
            );
            assert!(
                t.begin_at(&("bob".into(), stranger), later).is_err(),
                "round {round}: the locked account was forgotten"
            );
        }
        let (pairs, accounts, _) = t.len();
        assert!(pairs <= capacity && accounts <= capacity);
        // Others are still throttled, if anything more strictly: never less.
        let flooded = ("flood-1-20000".to_owned(), attacker);
        for _ in 0..3 {
            let _ = t.begin_at(&flooded, now);
        }
        assert!(t.begin_at(&flooded, now).is_err());
    }
}
