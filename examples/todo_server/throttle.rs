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
//! which accounts exist. In one process every table is a bounded `quick_cache` (O(1) per
//! attempt, the least-used entries dropped first), behind one mutex held only for that O(1)
//! work.
//!
//! **Shared** ([`Throttle::shared`]): with Redis, every instance counts against the same
//! budgets, with the same rules, each step one Lua script (atomic, on Redis' clock), keys
//! expiring with their windows. When Redis cannot be reached the throttle fails open to the
//! per-instance tables, with a warning: logins keep working, throttled per instance until
//! Redis is back.

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

/// The login throttle: in this process, or shared through Redis with a per-process
/// fallback.
pub struct Throttle {
    local: Local,
    shared: Option<shared::Shared>,
}

/// An admitted login attempt, already counted as a failure: [`succeeded`](Self::succeeded)
/// clears it, [`refund`](Self::refund) takes it back when the password was never checked.
#[must_use]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    key: (String, Client),
    /// Counted in Redis (else in this process).
    shared: bool,
}

impl Throttle {
    /// A throttle for this process only.
    pub fn new(policy: Policy) -> Self {
        Self {
            local: Local::with_capacity(policy, MAX_ENTRIES),
            shared: None,
        }
    }

    /// A throttle shared by every instance using `redis` (and `prefix`).
    pub fn shared(policy: Policy, redis: redis::Client, prefix: &str) -> Result<Self, String> {
        Ok(Self {
            shared: Some(shared::Shared::new(redis, prefix, &policy)?),
            local: Local::with_capacity(policy, MAX_ENTRIES),
        })
    }

    /// Admits and counts an attempt for `user` from `client`, or says how long it is locked.
    pub async fn begin(
        &self,
        user: &str,
        client: impl Into<Client>,
    ) -> Result<Attempt<'_>, Duration> {
        let key = (user.to_owned(), client.into());
        let shared = match &self.shared {
            Some(shared) => match shared.begin(&key).await {
                Some(Ok(())) => true,
                Some(Err(wait)) => return Err(wait),
                None => false, // Redis unreachable: count here
            },
            None => false,
        };
        if !shared {
            self.local.begin_at(&key, Instant::now())?;
        }
        Ok(Attempt {
            throttle: self,
            key,
            shared,
        })
    }
}

impl Attempt<'_> {
    /// The password was right: the pair starts afresh and the client becomes known.
    pub async fn succeeded(self) {
        match &self.throttle.shared {
            Some(shared) if self.shared => shared.succeeded(&self.key).await,
            _ => self.throttle.local.succeeded(self.key),
        }
    }

    /// The password was never checked (the server was busy): the attempt does not count.
    pub async fn refund(self) {
        match &self.throttle.shared {
            Some(shared) if self.shared => shared.refund(&self.key).await,
            _ => self.throttle.local.refund(&self.key),
        }
    }
}

/// The throttle's tables in this process.
struct Local {
    policy: Policy,
    tables: Mutex<Tables>,
}

impl Local {
    fn with_capacity(policy: Policy, capacity: usize) -> Self {
        Self {
            policy,
            tables: Mutex::new(Tables {
                pairs: Cache::new(capacity),
                accounts: Cache::new(capacity),
                known: Cache::new(capacity),
            }),
        }
    }

    #[cfg(test)]
    fn begin(&self, user: &str, client: impl Into<Client>) -> Result<(String, Client), Duration> {
        let key = (user.to_owned(), client.into());
        self.begin_at(&key, Instant::now())?;
        Ok(key)
    }

    fn begin_at(&self, key: &(String, Client), now: Instant) -> Result<(), Duration> {
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

    #[cfg(test)]
    fn len(&self) -> (usize, usize, usize) {
        let t = self.tables.lock().unwrap();
        (t.pairs.len(), t.accounts.len(), t.known.len())
    }
}

impl Local {
    fn succeeded(&self, key: (String, Client)) {
        let mut t = self.tables.lock().unwrap();
        t.pairs.remove(&key);
        if let Some(mut account) = t.accounts.get_mut(&key.0) {
            account.failures = account.failures.saturating_sub(1);
        }
        t.known.insert(key, ());
    }

    fn refund(&self, key: &(String, Client)) {
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

/// The throttle's tables in Redis: each step one Lua script, run atomically with Redis'
/// clock, so concurrent attempts on several instances see one count.
mod shared {
    use std::{
        sync::atomic::{AtomicBool, Ordering},
        time::Duration,
    };

    use redis::{
        Script,
        aio::{ConnectionManager, ConnectionManagerConfig},
    };

    use super::{Client, Policy};

    /// A known (user, client) pair is remembered this long.
    const KNOWN_FOR_MS: u64 = 30 * 24 * 60 * 60 * 1000;

    /// `begin`: the same rules as `Local::begin_at`. Returns `{1, 0}` when admitted (and
    /// counted), `{0, ms}` when locked for `ms` more milliseconds.
    const BEGIN: &str = r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local max_failures, lockout, max_lockout, account_max, window =
            tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
        local p = redis.call('HMGET', KEYS[1], 'failures', 'lockouts', 'locked_until')
        local failures, lockouts, locked = tonumber(p[1]) or 0, tonumber(p[2]) or 0, tonumber(p[3]) or 0
        if locked > now then return {0, locked - now} end
        local a = redis.call('HMGET', KEYS[2], 'start', 'failures')
        local start, account = tonumber(a[1]), tonumber(a[2]) or 0
        if not start or now - start >= window then start, account = now, 0 end
        if account >= account_max and redis.call('EXISTS', KEYS[3]) == 0 then
            return {0, start + window - now}
        end
        failures, locked = failures + 1, 0
        if failures >= max_failures then
            locked = now + math.min(lockout * 2 ^ math.min(lockouts, 16), max_lockout)
            lockouts, failures = lockouts + 1, 0
        end
        redis.call('HSET', KEYS[1], 'failures', failures, 'lockouts', lockouts, 'locked_until', locked)
        -- A pair quiet for twice the longest lockout starts its backoff afresh.
        redis.call('PEXPIRE', KEYS[1], max_lockout * 2)
        redis.call('HSET', KEYS[2], 'start', start, 'failures', account + 1)
        redis.call('PEXPIREAT', KEYS[2], start + window)
        return {1, 0}
    ";

    /// `succeeded`: the pair starts afresh, the account gets its attempt back, the client is known.
    const SUCCEEDED: &str = r"
        redis.call('DEL', KEYS[1])
        if (tonumber(redis.call('HGET', KEYS[2], 'failures')) or 0) > 0 then
            redis.call('HINCRBY', KEYS[2], 'failures', -1)
        end
        redis.call('SET', KEYS[3], 1, 'PX', ARGV[1])
    ";

    /// `refund`: the attempt does not count (unless it locked the pair).
    const REFUND: &str = r"
        local p = redis.call('HMGET', KEYS[1], 'failures', 'locked_until')
        if (tonumber(p[1]) or 0) > 0 and (tonumber(p[2]) or 0) == 0 then
            redis.call('HINCRBY', KEYS[1], 'failures', -1)
        end
        if (tonumber(redis.call('HGET', KEYS[2], 'failures')) or 0) > 0 then
            redis.call('HINCRBY', KEYS[2], 'failures', -1)
        end
    ";

    pub struct Shared {
        conn: ConnectionManager,
        prefix: String,
        /// `[max_failures, lockout, max_lockout, account_max, window]`, milliseconds.
        args: [u64; 5],
        begin: Script,
        succeeded: Script,
        refund: Script,
        /// Whether the last call failed (to warn once per outage, not per login).
        down: AtomicBool,
    }

    impl Shared {
        pub fn new(client: redis::Client, prefix: &str, p: &Policy) -> Result<Self, String> {
            // Fail fast: a login waits on this, and an outage falls back to local counting.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(250)))
                .set_response_timeout(Some(Duration::from_millis(500)))
                .set_number_of_retries(0);
            let conn = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| format!("REDIS_URL: {e}"))?;
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            Ok(Self {
                conn,
                prefix: prefix.to_owned(),
                args: [
                    u64::from(p.max_failures),
                    ms(p.lockout),
                    ms(p.max_lockout),
                    u64::from(p.account_max_failures),
                    ms(p.account_window),
                ],
                begin: Script::new(BEGIN),
                succeeded: Script::new(SUCCEEDED),
                refund: Script::new(REFUND),
                down: AtomicBool::new(false),
            })
        }

        /// The pair's, the account's and the "known" key. Lengths first: a user name may
        /// contain anything, the separator included.
        fn keys(&self, (user, client): &(String, Client)) -> [String; 3] {
            let p = &self.prefix;
            let n = user.len();
            [
                format!("{p}:pair:{n}:{user}:{}", client.0),
                format!("{p}:account:{n}:{user}"),
                format!("{p}:known:{n}:{user}:{}", client.0),
            ]
        }

        /// `None` when Redis could not answer: the caller counts locally.
        pub async fn begin(&self, key: &(String, Client)) -> Option<Result<(), Duration>> {
            let mut invocation = self.begin.prepare_invoke();
            for k in self.keys(key) {
                invocation.key(k);
            }
            for a in self.args {
                invocation.arg(a);
            }
            let (admitted, wait_ms): (u8, u64) =
                self.outcome(invocation.invoke_async(&mut self.conn.clone()).await)?;
            Some(if admitted == 1 {
                Ok(())
            } else {
                Err(Duration::from_millis(wait_ms))
            })
        }

        pub async fn succeeded(&self, key: &(String, Client)) {
            let mut invocation = self.succeeded.prepare_invoke();
            for k in self.keys(key) {
                invocation.key(k);
            }
            invocation.arg(KNOWN_FOR_MS);
            let _: Option<()> = self.outcome(invocation.invoke_async(&mut self.conn.clone()).await);
        }

        pub async fn refund(&self, key: &(String, Client)) {
            let mut invocation = self.refund.prepare_invoke();
            for k in self.keys(key) {
                invocation.key(k);
            }
            let _: Option<()> = self.outcome(invocation.invoke_async(&mut self.conn.clone()).await);
        }

        /// The result, logging the transitions between reachable and not.
        fn outcome<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
            match result {
                Ok(value) => {
                    if self.down.swap(false, Ordering::Relaxed) {
                        tracing::info!("login throttle: Redis is back; budgets are shared again");
                    }
                    Some(value)
                }
                Err(error) => {
                    if !self.down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            %error,
                            "login throttle: Redis unreachable; throttling per instance until it is back"
                        );
                    }
                    None
                }
            }
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
        let t = Local::with_capacity(
            Policy {
                account_max_failures: 1000,
                ..policy()
            },
            MAX_ENTRIES,
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
        let t = Local::with_capacity(policy(), MAX_ENTRIES);
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
        let t = Local::with_capacity(policy(), MAX_ENTRIES);
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
