//! Login throttling, after the OWASP authentication cheat sheet:
//!
//! - **Per (username, client)**: `max_failures` failed attempts lock the pair out for
//!   `lockout`; each further lockout of the same pair doubles, up to `max_lockout`. A
//!   successful login clears the pair.
//! - **Per account, across all clients**: more than `account_max_failures` failures within
//!   `account_window` lock the account for clients it has never logged in from, which bounds
//!   distributed guessing (a botnet, a rotating IPv6 range) without letting a stranger lock
//!   the owner out of an address the owner has used before.
//! - **Counted before verifying**: an attempt counts the moment it is admitted, so a burst of
//!   concurrent guesses cannot get more verifications than the budget (a refused or unverified
//!   attempt, say when the password workers are busy, is refunded).
//! - **Clients** are IPv4 addresses or IPv6 /64 prefixes (one subscriber's whole range);
//!   [`client_address`] trusts `X-Forwarded-For` only from configured proxies.
//!
//! Unknown usernames are tracked exactly like real ones, so the throttle says nothing about
//! which accounts exist. Every table is a bounded `quick_cache` (O(1) per attempt, the
//! least-used entries dropped first), behind one mutex held only for that O(1) work.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use http::HeaderMap;
use quick_cache::unsync::Cache;

/// How many (user, client) pairs, accounts and known logins each table holds at most.
pub const MAX_ENTRIES: usize = 100_000;

/// The throttle's budgets and durations.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_failures: u32,
    pub lockout: Duration,
    pub max_lockout: Duration,
    pub account_max_failures: u32,
    pub account_window: Duration,
}

/// An IPv4 address, or the /64 prefix of an IPv6 address (IPv4-mapped ones count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !((1u128 << 64) - 1),
                ))),
            },
            v4 => Self(v4),
        }
    }
}

/// The client a request comes from: the peer, or, when the peer is one of `trusted_proxies`,
/// the last address in `X-Forwarded-For` that is not a trusted proxy itself. Nothing a client
/// writes in that header is believed unless a trusted proxy put it there.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted_proxies.contains(&ip) => continue,
            Ok(ip) => return ip,
            // A hop we cannot read: stop at the last address we could trust.
            Err(_) => break,
        }
    }
    peer
}

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
    pairs: Cache<(String, Client), Pair>,
    accounts: Cache<String, Account>,
    /// (user, client) pairs that logged in successfully: exempt from the account lock.
    known: Cache<(String, Client), ()>,
}

pub struct Throttle {
    policy: Policy,
    tables: Mutex<Tables>,
}

/// An admitted login attempt, already counted as a failure: [`succeeded`](Self::succeeded)
/// clears it, [`refund`](Self::refund) takes it back when the password was never checked.
#[must_use]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    key: (String, Client),
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Self::with_capacity(policy, MAX_ENTRIES)
    }

    pub fn with_capacity(policy: Policy, capacity: usize) -> Self {
        Self {
            policy,
            tables: Mutex::new(Tables {
                pairs: Cache::new(capacity),
                accounts: Cache::new(capacity),
                known: Cache::new(capacity),
            }),
        }
    }

    /// Admits and counts an attempt for `user` from `client`, or says how long it is locked.
    pub fn begin(&self, user: &str, client: impl Into<Client>) -> Result<Attempt<'_>, Duration> {
        self.begin_at(user, client.into(), Instant::now())
    }

    fn begin_at(&self, user: &str, client: Client, now: Instant) -> Result<Attempt<'_>, Duration> {
        let key = (user.to_owned(), client);
        let p = &self.policy;
        let mut t = self.tables.lock().unwrap();

        let mut pair = t.pairs.get(&key).cloned().unwrap_or_default();
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
        if account.failures >= p.account_max_failures && t.known.get(&key).is_none() {
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
        Ok(Attempt {
            throttle: self,
            key,
        })
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize, usize) {
        let t = self.tables.lock().unwrap();
        (t.pairs.len(), t.accounts.len(), t.known.len())
    }
}

impl Attempt<'_> {
    /// The password was right: the pair starts afresh and the client becomes known.
    pub fn succeeded(self) {
        let mut t = self.throttle.tables.lock().unwrap();
        t.pairs.remove(&self.key);
        if let Some(mut account) = t.accounts.get_mut(&self.key.0) {
            account.failures = account.failures.saturating_sub(1);
        }
        t.known.insert(self.key, ());
    }

    /// The password was never checked (the server was busy): the attempt does not count.
    pub fn refund(self) {
        let mut t = self.throttle.tables.lock().unwrap();
        if let Some(mut pair) = t.pairs.get_mut(&self.key)
            && pair.locked_until.is_none()
        {
            pair.failures = pair.failures.saturating_sub(1);
        }
        if let Some(mut account) = t.accounts.get_mut(&self.key.0) {
            account.failures = account.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn ipv6_clients_are_grouped_by_64_prefix_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            Client::from(ip("2001:db8::1")),
            Client::from(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            Client::from(ip("2001:db8::1")),
            Client::from(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Client::from(ip("::ffff:10.0.0.1")),
            Client::from(ip("10.0.0.1"))
        );
        assert_ne!(Client::from(ip("10.0.0.1")), Client::from(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.5".parse().unwrap());
        let proxy = ip("10.0.0.5");
        // Not a trusted proxy: the peer is the client.
        assert_eq!(client_address(proxy, &headers, &[]), proxy);
        // Trusted: the last hop that is not a trusted proxy.
        assert_eq!(client_address(proxy, &headers, &[proxy]), ip("203.0.113.9"));
        // Garbage in the header: no further than what can be read.
        headers.insert("x-forwarded-for", "nonsense, 10.0.0.5".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &[proxy]), proxy);
        headers.remove("x-forwarded-for");
        assert_eq!(client_address(proxy, &headers, &[proxy]), proxy);
    }

    #[test]
    fn attempts_count_before_verification_and_lockouts_back_off() {
        let t = Throttle::new(Policy {
            account_max_failures: 1000,
            ..policy()
        });
        let c = Client::from(ip("192.0.2.1"));
        let start = Instant::now();
        // Three admitted (none verified yet), then locked for the base lockout.
        let pending: Vec<_> = (0..3)
            .map(|_| t.begin_at("alice", c, start).unwrap())
            .collect();
        assert_eq!(
            t.begin_at("alice", c, start).err(),
            Some(Duration::from_secs(60))
        );
        drop(pending);
        // After it: three more, and the next lockout is twice as long, then four times...
        let later = start + Duration::from_secs(61);
        for _ in 0..3 {
            let _ = t.begin_at("alice", c, later).unwrap();
        }
        assert_eq!(
            t.begin_at("alice", c, later).err(),
            Some(Duration::from_secs(120))
        );
        let later = later + Duration::from_secs(121);
        for _ in 0..3 {
            let _ = t.begin_at("alice", c, later).unwrap();
        }
        assert_eq!(
            t.begin_at("alice", c, later).err(),
            Some(Duration::from_secs(240))
        );
        // ...up to the maximum.
        let mut at = later;
        for _ in 0..5 {
            at += Duration::from_secs(601);
            for _ in 0..3 {
                let _ = t.begin_at("alice", c, at).unwrap();
            }
        }
        assert_eq!(
            t.begin_at("alice", c, at).err(),
            Some(Duration::from_secs(600))
        );
        // A pair quiet for long enough starts afresh.
        let quiet = at + Duration::from_secs(1201) + Duration::from_secs(600);
        for _ in 0..3 {
            let _ = t.begin_at("alice", c, quiet).unwrap();
        }
        assert_eq!(
            t.begin_at("alice", c, quiet).err(),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_success_clears_the_pair_and_a_refund_gives_the_attempt_back() {
        let t = Throttle::new(policy());
        let c = ip("192.0.2.1");
        let _ = t.begin("alice", c).unwrap();
        t.begin("alice", c).unwrap().succeeded();
        for _ in 0..2 {
            t.begin("alice", c).unwrap().refund();
        }
        // Neither the success nor the refunds used the budget.
        for _ in 0..3 {
            let _ = t.begin("alice", c).unwrap();
        }
        assert!(t.begin("alice", c).is_err());
    }

    #[test]
    fn the_account_budget_spans_clients_but_spares_known_ones() {
        let t = Throttle::new(policy());
        let home = ip("198.51.100.7");
        t.begin("alice", home).unwrap().succeeded();
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
        let t = Throttle::with_capacity(policy(), 1000);
        for i in 0..20_000u32 {
            let _ = t.begin(&format!("user{i}"), IpAddr::from(i.to_be_bytes()));
        }
        let (pairs, accounts, known) = t.len();
        assert!(pairs <= 1000 && accounts <= 1000 && known <= 1000);
    }
}
