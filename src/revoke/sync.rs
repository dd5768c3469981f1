//! Keeping every instance's replica current through Redis.
//!
//! Redis holds the whole set and a log of changes:
//! - `{prefix}:tokens`, a sorted set of revoked tokens (member: issuer and `jti`) scored by
//!   the second they can be forgotten; `{prefix}:subjects`, the same for subjects, with each
//!   one's `since` in the hash `{prefix}:since` (the latest wins). Each write also removes
//!   what has expired, so Redis stays as bounded as the replicas.
//! - `{prefix}:log`, a stream with one entry per revocation (trimmed to about [`LOG_LEN`]
//!   entries), which every instance reads with a blocking `XREAD`: a revocation reaches the
//!   other instances as soon as Redis has it, with no polling delay.
//!
//! Two tasks per set, each on its own connection, because a blocking `XREAD` holds its
//! connection:
//! - the **reader** connects, notes the log's last id, loads the sorted sets (with `ZSCAN`,
//!   in pages), then reads the log from that id (an entry written between the two is applied
//!   twice, which is harmless: applying is idempotent). After losing Redis it reconnects with
//!   backoff and does it all again, so nothing written meanwhile is missed. Revocations this
//!   instance holds that Redis lacks (Redis restarted without them) go back to the writer.
//! - the **writer** takes local revocations from a channel and keeps each one until Redis
//!   has stored it, retrying with backoff through outages: none is lost while the process
//!   lives. Whatever is pending goes in one pipeline, one atomic script per revocation.
//!
//! Reconnection is hand-written rather than left to redis' `ConnectionManager` because a
//! reconnect must trigger this resynchronisation, and the blocking reader needs its own
//! response timeout.
//!
//! The tasks hold the set weakly and end when the last [`Revocations`] clone is dropped.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    AsyncCommands, Client, RedisResult,
    aio::MultiplexedConnection,
    streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply},
};
use tokio::sync::mpsc;

use super::{
    OutOfSync, Revocations, RevocationsBuilder, Revoked, Shared,
    replica::{Key, Replica},
};

/// About how many entries the change log keeps: an instance away for longer than that many
/// revocations reloads the sorted sets, which it does after every reconnect anyway.
const LOG_LEN: usize = 100_000;
/// How long one `XREAD` blocks: the replica confirms it is in sync at least this often.
const BLOCK: Duration = Duration::from_millis(500);
/// The first and the longest wait between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

#[derive(Clone)]
struct RedisKeys {
    tokens: String,
    subjects: String,
    since: String,
    log: String,
}

/// Stores one revocation: its sorted set (and `since`, keeping the latest), expired members
/// out, and a log entry, atomically.
///
/// `KEYS`: tokens, subjects, since, log. `ARGV`: kind (`t` or `s`), member, iss, id, since,
/// until, log length. What has expired is judged by Redis' clock (`TIME`), not the writing
/// instance's: one instance with a clock ahead must not purge what the others still need.
const STORE: &str = r"
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

/// Where revocations go to be stored in Redis by the writer, with what is not stored yet.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::UnboundedSender<(Instant, Revoked)>,
    unsent: Arc<Unsent>,
}

/// The revocations made here that Redis does not have yet: how many, and since when the
/// oldest of them waits. Its age counts as being out of sync: a Redis that answers reads but
/// refuses writes (`maxmemory` with `noeviction`, a read-only replica after a failover) keeps
/// every replica loading, while this instance's revocations reach no other.
pub(super) struct Unsent {
    count: AtomicUsize,
    origin: Instant,
    /// Milliseconds since `origin` at which the oldest unsent revocation was made, or
    /// `u64::MAX` when none is known to wait.
    oldest: AtomicU64,
}

impl Unsent {
    const NONE: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            origin: Instant::now(),
            oldest: AtomicU64::new(Self::NONE),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(Self::NONE - 1)
    }

    fn added(&self, at: Instant) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let _ = self.oldest.compare_exchange(
            Self::NONE,
            self.ms(at),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// `n` were stored (or dropped as expired); `next` is when the oldest still waiting was
    /// made.
    fn stored(&self, n: usize, next: Option<Instant>) {
        self.count.fetch_sub(n, Ordering::SeqCst);
        let next = next.map_or(Self::NONE, |at| self.ms(at));
        self.oldest.store(next, Ordering::SeqCst);
    }

    /// How long the oldest revocation made here has waited for Redis (zero when none waits).
    pub(super) fn waiting_for(&self) -> Duration {
        let oldest = self.oldest.load(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 || oldest == Self::NONE {
            return Duration::ZERO;
        }
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(oldest))
    }
}

impl Outbox {
    pub(super) fn send(&self, revocation: Revoked) {
        let now = Instant::now();
        self.unsent.added(now);
        if self.tx.send((now, revocation)).is_err() {
            self.unsent.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// How long the oldest revocation made here has waited for Redis.
    pub(super) fn waiting_for(&self) -> Duration {
        self.unsent.waiting_for()
    }

    pub(super) async fn flush(&self, within: Duration) -> bool {
        // `Duration::MAX` means no deadline.
        let deadline = Instant::now().checked_add(within);
        while self.unsent.count.load(Ordering::SeqCst) > 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl RevocationsBuilder {
    /// A set shared through Redis by every instance built with the same client URL and
    /// [`key_prefix`](Self::key_prefix).
    ///
    /// Loads every revocation in force from Redis before returning (waiting at most about
    /// two seconds for Redis), then keeps the local replica current in the background. When
    /// Redis is unreachable, at start or later, the set keeps working from its replica: this
    /// instance's revocations apply here at once and reach Redis when it is back, and what
    /// other instances wrote meanwhile is loaded on reconnection. [`OutOfSync`] decides
    /// whether requests are served while the replica is out of sync (a set that could not
    /// load at all is out of sync from the start).
    ///
    /// Give Redis persistence (`appendonly yes`): revocations not held by a running instance
    /// are lost with Redis' data. A revocation still waiting for Redis is lost if its process
    /// ends first.
    ///
    /// Spawns two tokio tasks: outside a tokio runtime this is
    /// [`ConfigError::InvalidValue`](crate::ConfigError::InvalidValue). Needs Redis 6.2 or
    /// later (`ZADD GT`).
    ///
    /// Tracing events: `info` when the replica is loaded or reloaded, `warn` when Redis is
    /// lost or a write must wait (again every 30 s while it must), `error` when the replica
    /// has been out of sync for longer than the [`OutOfSync::Refuse`] bound (and `info` when
    /// it is back).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(self, client: Client) -> Result<Revocations, crate::ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(crate::ConfigError::InvalidValue(
                "a Redis revocation set must be built inside a Tokio runtime",
            ));
        }
        let (tx, outbox_rx) = mpsc::unbounded_channel();
        let unsent = Arc::new(Unsent::new());
        let outbox = Outbox {
            tx,
            unsent: unsent.clone(),
        };
        let mut shared = self.shared(super::SyncClock::NEVER);
        shared.outbox = Some(outbox.clone());
        let shared = Arc::new(shared);
        let p = &self.key_prefix;
        let keys = RedisKeys {
            tokens: format!("{p}:tokens"),
            subjects: format!("{p}:subjects"),
            since: format!("{p}:since"),
            log: format!("{p}:log"),
        };
        let (loaded, first_sync) = tokio::sync::oneshot::channel();
        tokio::spawn(read(
            client.clone(),
            keys.clone(),
            Arc::downgrade(&shared),
            outbox,
            loaded,
        ));
        tokio::spawn(write(client, keys, outbox_rx, unsent));
        // The first load; without Redis the set starts out of sync and loads when it can.
        let _ = tokio::time::timeout(Duration::from_secs(2), first_sync).await;
        Ok(Revocations { shared })
    }

    /// The prefix of the Redis keys (default `tower-jwt-auth:revocations`): services that
    /// must not share revocations use different prefixes (or databases).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }
}

fn unix_now() -> u64 {
    let now = jsonwebtoken::get_current_timestamp();
    #[cfg(test)]
    let now = now.saturating_add_signed(tests::CLOCK_AHEAD.get());
    now
}

struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF.0)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF.1);
    }
}

/// Warns on the first failure of an outage, then every 30 s while it lasts.
struct Warnings(Option<Instant>);

impl Warnings {
    fn due(&mut self) -> bool {
        match self.0 {
            Some(at) if at.elapsed() < Duration::from_secs(30) => false,
            _ => {
                self.0 = Some(Instant::now());
                true
            }
        }
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

async fn connect(
    client: &Client,
    response_timeout: Duration,
) -> RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A member of a sorted set: the issuer's length, the issuer, then the id, so that no
/// issuer or id can be confused with another split of the same characters.
fn member(key: &Key) -> String {
    format!("{}:{}{}", key.iss.len(), key.iss, key.id)
}

fn parse_member(member: &str) -> Option<Key> {
    let (len, rest) = member.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let (iss, id) = (rest.get(..len)?, rest.get(len..)?);
    Some(Key::new(iss, id))
}

/// The reader task: load, follow the log, and on any error reconnect and load again.
async fn read(
    client: Client,
    keys: RedisKeys,
    set: Weak<Shared>,
    outbox: Outbox,
    loaded: tokio::sync::oneshot::Sender<()>,
) {
    let mut loaded = Some(loaded);
    let mut backoff = Backoff::new();
    let mut warnings = Warnings(None);
    let mut refusing = false;
    loop {
        let result = follow(&client, &keys, &set, &outbox, &mut || {
            if let Some(loaded) = loaded.take() {
                let _ = loaded.send(());
            }
            if refusing {
                tracing::info!("token revocations back in sync; requests are served again");
                refusing = false;
            }
            backoff = Backoff::new();
            warnings.reset();
        })
        .await;
        let Some(shared) = set.upgrade() else { return };
        let Err(error) = result else { return };
        if warnings.due() {
            tracing::warn!(
                %error,
                out_of_sync_for = ?shared.out_of_sync_for(),
                "token revocations: Redis unreachable; serving from the local replica and reconnecting"
            );
        }
        if let OutOfSync::Refuse { after } = shared.out_of_sync
            && shared.out_of_sync_for() > after
            && !refusing
        {
            tracing::error!(
                "token revocations out of sync for longer than allowed; refusing requests with 503"
            );
            refusing = true;
        }
        drop(shared);
        backoff.wait().await;
    }
}

/// One connection's life: load everything, then follow the log until an error (or until
/// the set is dropped: `Ok`).
async fn follow(
    client: &Client,
    keys: &RedisKeys,
    set: &Weak<Shared>,
    outbox: &Outbox,
    on_sync: &mut impl FnMut(),
) -> RedisResult<()> {
    let mut conn = connect(client, BLOCK + Duration::from_secs(1)).await?;
    // 1. Where the log ends now; everything after it will be read from the log.
    let last: StreamRangeReply = conn.xrevrange_count(&keys.log, "+", "-", 1).await?;
    let mut last_id = last
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
    // 2. Everything in force.
    let now = unix_now();
    let snapshot = load(&mut conn, keys, now).await?;
    {
        let Some(shared) = set.upgrade() else {
            return Ok(());
        };
        for revocation in &snapshot {
            shared.apply_remote(revocation, now);
        }
        // What this instance holds and Redis lacks (Redis lost it, or the writer has not
        // stored it yet) goes (back) to the writer, so that Redis ends up with the union.
        let from_redis = Replica::default();
        for revocation in &snapshot {
            from_redis.apply(revocation, now);
        }
        let missing: Vec<_> = shared
            .replica
            .entries(now)
            .into_iter()
            .filter(|r| !from_redis.covers(r))
            .collect();
        for revocation in &missing {
            outbox.send(revocation.clone());
        }
        shared.sync.confirm();
        tracing::info!(
            loaded = snapshot.len(),
            republished = missing.len(),
            held = shared.replica.len(),
            "token revocations in sync with Redis"
        );
    }
    on_sync();
    // 3. The log, from where it ended before the load.
    let options = StreamReadOptions::default()
        .block(BLOCK.as_millis() as usize)
        .count(1000);
    loop {
        let before = last_id.clone();
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&keys.log], &[&last_id], &options)
            .await?;
        let Some(shared) = set.upgrade() else {
            return Ok(());
        };
        let now = unix_now();
        let mut read_any = false;
        for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
            if let Some(revocation) = parse(entry) {
                shared.apply_remote(&revocation, now);
            }
            last_id.clone_from(&entry.id);
            read_any = true;
        }
        // A reader that fell more than the log's length behind missed entries that were
        // trimmed after `before` (the id it asked from, not the one it advanced to): load
        // everything again.
        if read_any && trimmed_after(&mut conn, &keys.log, &before).await? {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "fell behind the trimmed revocation log; reloading",
            )));
        }
        shared.replica.sweep_if_due(now);
        shared.sync.confirm();
    }
}

/// Every revocation in force in Redis, read in pages (`ZSCAN`) so that a large set neither
/// blocks Redis nor outlasts one response.
async fn load(
    conn: &mut MultiplexedConnection,
    keys: &RedisKeys,
    now: u64,
) -> RedisResult<Vec<Revoked>> {
    let mut all = Vec::new();
    for (set, subjects) in [(&keys.tokens, false), (&keys.subjects, true)] {
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("ZSCAN")
                .arg(set)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            let live: Vec<(Key, String, u64)> = page
                .chunks_exact(2)
                .filter_map(|pair| {
                    let until = pair[1].parse::<f64>().ok()? as u64;
                    if until < now {
                        return None;
                    }
                    Some((parse_member(&pair[0])?, pair[0].clone(), until))
                })
                .collect();
            if subjects && !live.is_empty() {
                let members: Vec<&str> = live.iter().map(|(_, m, _)| m.as_str()).collect();
                let since: Vec<Option<u64>> = redis::cmd("HMGET")
                    .arg(&keys.since)
                    .arg(&members)
                    .query_async(conn)
                    .await?;
                for ((sub, _, until), since) in live.into_iter().zip(since) {
                    if let Some(since) = since {
                        all.push(Revoked::Subject { sub, since, until });
                    }
                }
            } else if !subjects {
                all.extend(
                    live.into_iter()
                        .map(|(jti, _, until)| Revoked::Token { jti, until }),
                );
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(all)
}

/// Whether entries of `log` after `before` may have been trimmed away: the oldest entry left
/// is younger than `before`. `XREAD` returns the entries after `before` that still exist, so
/// the first one it returned is then the oldest, and whatever stood between was trimmed, or
/// never existed: at worst this costs a needless reload (Redis 7's `max-deleted-entry-id`
/// does not count trimming, so it cannot tell either).
async fn trimmed_after(
    conn: &mut MultiplexedConnection,
    log: &str,
    before: &str,
) -> RedisResult<bool> {
    let oldest: StreamRangeReply = conn.xrange_count(log, "-", "+", 1).await?;
    Ok(oldest
        .ids
        .first()
        .is_some_and(|oldest| stream_id(&oldest.id) > stream_id(before)))
}

/// A stream id, `{milliseconds}-{sequence}`, for comparing.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// A log entry: `k` (`t` for a token, `s` for a subject), `i` (the issuer), `v` (the `jti`
/// or `sub`), `s` (since, for a subject) and `u` (until). Anything else is skipped.
fn parse(entry: &StreamId) -> Option<Revoked> {
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

/// The writer task: store the local revocations in Redis, retrying until it has them.
async fn write(
    client: Client,
    keys: RedisKeys,
    mut outbox: mpsc::UnboundedReceiver<(Instant, Revoked)>,
    unsent: Arc<Unsent>,
) {
    let mut pending: VecDeque<(Instant, Revoked)> = VecDeque::new();
    let mut conn: Option<(MultiplexedConnection, String)> = None;
    let mut backoff = Backoff::new();
    let mut warnings = Warnings(None);
    loop {
        if pending.is_empty() {
            match outbox.recv().await {
                Some(revocation) => pending.push_back(revocation),
                None => return, // the set was dropped
            }
        }
        while let Ok(revocation) = outbox.try_recv() {
            pending.push_back(revocation);
        }
        let now = unix_now();
        let before = pending.len();
        pending.retain(|(_, r)| r.until() >= now);
        unsent.stored(before - pending.len(), pending.front().map(|(at, _)| *at));
        let result = async {
            let (conn, sha) = match &mut conn {
                Some(c) => c,
                None => {
                    let mut c = connect(&client, Duration::from_secs(5)).await?;
                    let sha: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(STORE)
                        .query_async(&mut c)
                        .await?;
                    conn.insert((c, sha))
                }
            };
            while !pending.is_empty() {
                let batch = pending.len().min(500);
                store(conn, sha, &keys, pending.range(..batch).map(|(_, r)| r)).await?;
                pending.drain(..batch);
                unsent.stored(batch, pending.front().map(|(at, _)| *at));
            }
            RedisResult::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                backoff = Backoff::new();
                warnings.reset();
            }
            Err(error) => {
                conn = None;
                if warnings.due() {
                    // An unreachable Redis is an outage; anything else (a Redis older
                    // than 6.2, a key of another type under the prefix) needs a person.
                    if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
                        tracing::warn!(
                            %error,
                            pending = pending.len(),
                            "token revocations: cannot reach Redis; held here and retried until stored"
                        );
                    } else {
                        tracing::error!(
                            %error,
                            pending = pending.len(),
                            "token revocations: Redis refuses to store them; held here and retried"
                        );
                    }
                }
                backoff.wait().await;
            }
        }
    }
}

/// Stores `batch` in one round trip: one atomic script per revocation, pipelined.
async fn store(
    conn: &mut MultiplexedConnection,
    sha: &str,
    keys: &RedisKeys,
    batch: impl Iterator<Item = &Revoked>,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    for revocation in batch {
        let (kind, key, since) = match revocation {
            Revoked::Token { jti, .. } => ("t", jti, 0),
            Revoked::Subject { sub, since, .. } => ("s", sub, *since),
        };
        pipe.cmd("EVALSHA")
            .arg(sha)
            .arg(4)
            .arg(&keys.tokens)
            .arg(&keys.subjects)
            .arg(&keys.since)
            .arg(&keys.log)
            .arg(kind)
            .arg(member(key))
            .arg(&*key.iss)
            .arg(&*key.id)
            .arg(since)
            .arg(revocation.until())
            .arg(LOG_LEN)
            .ignore();
    }
    pipe.query_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Seconds this thread's instance clock runs ahead of the real one.
        pub(super) static CLOCK_AHEAD: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
    }

    use crate::revoke::test_redis as redis_server;

    /// Security review 3, finding 9: the purge of expired revocations judged by the writing
    /// instance's clock, so one instance whose clock ran two hours ahead deleted from Redis
    /// the revocations every other instance still needed (and a restarted instance then
    /// loaded a set without them). Redis' `TIME` decides now.
    #[test]
    fn a_writer_with_its_clock_ahead_purges_nothing_still_in_force() {
        let Some(redis) = redis_server::RedisServer::start("purge by Redis' clock") else {
            return;
        };
        // One thread: the writer task sees this thread's clock.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = Client::open(redis.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys = RedisKeys {
                tokens: "t:tokens".into(),
                subjects: "t:subjects".into(),
                since: "t:since".into(),
                log: "t:log".into(),
            };
            let real_now = jsonwebtoken::get_current_timestamp();
            let live = member(&Key::new("iss", "live-for-an-hour"));
            let dead = member(&Key::new("iss", "expired"));
            let _: () = conn
                .zadd(&keys.tokens, &live, real_now + 3600)
                .await
                .unwrap();
            let _: () = conn.zadd(&keys.tokens, &dead, real_now - 10).await.unwrap();

            CLOCK_AHEAD.set(2 * 3600);
            let (tx, rx) = mpsc::unbounded_channel();
            let unsent = Arc::new(Unsent::new());
            let outbox = Outbox {
                tx,
                unsent: unsent.clone(),
            };
            tokio::spawn(write(client, keys.clone(), rx, unsent));
            outbox.send(Revoked::Token {
                jti: Key::new("iss", "new"),
                until: real_now + 4 * 3600,
            });
            assert!(outbox.flush(Duration::from_secs(5)).await, "stored");
            CLOCK_AHEAD.set(0);

            let left: Vec<String> = conn.zrange(&keys.tokens, 0, -1).await.unwrap();
            assert!(
                left.contains(&live),
                "a revocation in force was purged: {left:?}"
            );
            assert!(!left.contains(&dead), "{left:?}");
            assert!(left.contains(&member(&Key::new("iss", "new"))));
        });
    }

    #[test]
    fn members_keep_issuer_and_id_apart() {
        for (iss, id) in [("", "a"), ("https://i", "x:y"), ("1:", "2"), ("é", "ü:")] {
            let key = Key::new(iss, id);
            assert_eq!(parse_member(&member(&key)), Some(key));
        }
        assert_ne!(member(&Key::new("ab", "c")), member(&Key::new("a", "bc")));
        for bad in ["", "x", "5:ab", "1:é", "-1:a"] {
            assert_eq!(parse_member(bad), None, "{bad}");
        }
    }
}
