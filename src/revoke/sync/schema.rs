//! What Redis holds: the key names, the storing script, and how members and log entries are
//! written.

use redis::streams::StreamId;

use crate::revoke::{Revoked, replica::Key};

/// About how many entries the change log keeps: an instance away for longer than that many
/// revocations reloads the sorted sets, which it does after every reconnect anyway.
pub(super) const LOG_LEN: usize = 100_000;

#[derive(Clone)]
pub(super) struct RedisKeys {
    pub(super) tokens: String,
    pub(super) subjects: String,
    pub(super) since: String,
    pub(super) log: String,
}

/// Stores one revocation: its sorted set (and `since`, keeping the latest), expired members
/// out, and a log entry, atomically.
///
/// `KEYS`: tokens, subjects, since, log. `ARGV`: kind (`t` or `s`), member, iss, id, since,
/// until, log length. What has expired is judged by Redis' clock (`TIME`), not the writing
/// instance's: one instance with a clock ahead must not purge what the others still need.
pub(super) const STORE: &str = r"
    local kind, member, since, untilv =
        ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
    local now = tonumber(redis.call('TIME')[1])
    local set = KEYS[1]
    if kind == 's' then
        set = KEYS[2]
        local old = tonumber(redis.call('HGET', KEYS[3], member))
        if not old or since > old then redis.call('HSET', KEYS[3], member, ARGV[5]) end
    end
    redis.call('ZADD', set, 'GT', untilv, member)
    local gone = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. now, 'LIMIT', 0, 1000)
    for _, m in ipairs(gone) do
        redis.call('ZREM', set, m)
        if kind == 's' then redis.call('HDEL', KEYS[3], m) end
    end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',
        'k', kind, 'i', ARGV[3], 'v', ARGV[4], 's', ARGV[5], 'u', ARGV[6])
    return 1
";

/// A member of a sorted set: the issuer's length, the issuer, then the id, so that no
/// issuer or id can be confused with another split of the same characters.
pub(super) fn member(key: &Key) -> String {
    format!("{}:{}{}", key.iss.len(), key.iss, key.id)
}

pub(super) fn parse_member(member: &str) -> Option<Key> {
    let (len, rest) = member.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let (iss, id) = (rest.get(..len)?, rest.get(len..)?);
    Some(Key::new(iss, id))
}

/// A stream id, `{milliseconds}-{sequence}`, for comparing.
pub(super) fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// A log entry: `k` (`t` for a token, `s` for a subject), `i` (the issuer), `v` (the `jti`
/// or `sub`), `s` (since, for a subject) and `u` (until). Anything else is skipped.
pub(super) fn parse(entry: &StreamId) -> Option<Revoked> {
    let key = Key::new(&entry.get::<String>("i")?, &entry.get::<String>("v")?);
    let until: u64 = entry.get("u")?;
    match entry.get::<String>("k")?.as_str() {
        "t" => Some(Revoked::Token { jti: key, until }),
        "s" => Some(Revoked::Subject {
            sub: key,
            since: entry.get("s")?,
            until,
        }),
        _ => None,
    }
}
