//! The throttle's tables in Redis: each step one Lua script, run atomically with Redis'
//! clock, so concurrent attempts on several instances see one count.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};

use sha2::{Digest, Sha256};

use super::{Client, login::Policy};
use crate::ConfigError;

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
/// A key back at nothing is deleted, so an attempt refunded (the password workers were busy)
/// leaves nothing in Redis.
const REFUND: &str = r"
    local p = redis.call('HMGET', KEYS[1], 'failures', 'locked_until', 'lockouts')
    local failures, locked, lockouts = tonumber(p[1]) or 0, tonumber(p[2]) or 0, tonumber(p[3]) or 0
    if failures > 0 and locked == 0 then
        failures = failures - 1
        if failures == 0 and lockouts == 0 then
            redis.call('DEL', KEYS[1])
        else
            redis.call('HSET', KEYS[1], 'failures', failures)
        end
    end
    local account = tonumber(redis.call('HGET', KEYS[2], 'failures')) or 0
    if account > 1 then
        redis.call('HINCRBY', KEYS[2], 'failures', -1)
    elseif account == 1 then
        redis.call('DEL', KEYS[2])
    end
";

pub(super) struct Shared {
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
    pub(super) fn new(
        client: redis::Client,
        prefix: &str,
        p: &Policy,
    ) -> Result<Self, ConfigError> {
        // Fail fast: a login waits on this, and an outage falls back to local counting.
        let conn = crate::redis_conn::fail_fast(
            client,
            "LoginThrottleBuilder::redis: the Redis client cannot make a connection manager",
        )?;
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

    /// The pair's, the account's and the "known" key, of fixed size whatever the username
    /// (up to 256 bytes, and anything in it): the username appears only as a hash, SHA-256
    /// over the prefix and the name, truncated to 128 bits. Every instance with the same
    /// prefix derives the same keys.
    fn keys(&self, (user, client): &(String, Client)) -> [String; 3] {
        let p = &self.prefix;
        let mut hash = Sha256::new();
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
        hash.update(user.as_bytes());
        let digest = hash.finalize();
        let user: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let ip = client.ip();
        [
            format!("{p}:pair:{user}:{ip}"),
            format!("{p}:account:{user}"),
            format!("{p}:known:{user}:{ip}"),
        ]
    }

    /// `None` when Redis could not answer: the caller counts locally.
    pub(super) async fn begin(&self, key: &(String, Client)) -> Option<Result<(), Duration>> {
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

    pub(super) async fn succeeded(&self, key: &(String, Client)) {
        let mut invocation = self.succeeded.prepare_invoke();
        for k in self.keys(key) {
            invocation.key(k);
        }
        invocation.arg(KNOWN_FOR_MS);
        let _: Option<()> = self.outcome(invocation.invoke_async(&mut self.conn.clone()).await);
    }

    pub(super) async fn refund(&self, key: &(String, Client)) {
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
