//! Keeping every instance's replica current through Redis.
//!
//! Redis holds the whole set and a log of changes:
//! - `{prefix}:tokens`, a sorted set of revoked `jti`s scored by the second they can be
//!   forgotten; `{prefix}:subjects`, members `"{since}:{sub}"` scored the same way. Each write
//!   also removes what has expired, so Redis stays as bounded as the replicas.
//! - `{prefix}:log`, a stream with one entry per revocation (trimmed to about
//!   [`LOG_LEN`] entries), which every instance reads with a blocking `XREAD`: a revocation
//!   reaches the other instances as soon as Redis has it, with no polling delay.
//!
//! Two tasks per set, each on its own connection, because a blocking `XREAD` holds its
//! connection:
//! - the **reader** connects, notes the log's last id, loads the sorted sets, then reads the
//!   log from that id (an entry written between the two is applied twice, which is harmless:
//!   applying is idempotent). After losing Redis it reconnects with backoff and does it all
//!   again, so nothing written meanwhile is missed. Revocations this instance holds that
//!   Redis lacks (Redis restarted without them) go back to the writer.
//! - the **writer** takes local revocations from a channel and keeps each one until Redis
//!   has stored it, retrying with backoff through outages: none is lost.
//!
//! Reconnection is hand-written rather than left to redis' `ConnectionManager` because a
//! reconnect must trigger this resynchronisation, and the blocking reader needs its own
//! response timeout.
//!
//! The tasks hold the set weakly and end when the last [`Revocations`] clone is dropped.

use std::{
    collections::VecDeque,
    sync::{Arc, Weak},
    time::Duration,
};

use redis::{
    AsyncCommands, Client, RedisResult,
    aio::MultiplexedConnection,
    streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply},
};
use tokio::sync::mpsc;

use super::{OutOfSync, Revocation, Revocations, RevocationsBuilder, Shared, replica::Replica};

/// About how many entries the change log keeps: an instance away for longer than that many
/// revocations reloads the sorted sets, which it does after every reconnect anyway.
const LOG_LEN: usize = 100_000;
/// How long one `XREAD` blocks: the replica confirms it is in sync at least this often.
const BLOCK: Duration = Duration::from_millis(500);
/// The first and the longest wait between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// Scores are doubles: keep them exact.
const MAX_SCORE: u64 = 1 << 53;

#[derive(Clone)]
struct Keys {
    tokens: String,
    subjects: String,
    log: String,
}

impl RevocationsBuilder {
    /// A set shared through Redis by every instance built with the same client URL and
    /// [`key_prefix`](Self::key_prefix).
    ///
    /// Loads every revocation in force from Redis before returning (waiting at most about a
    /// second for Redis), then keeps the local replica current in the background. When Redis
    /// is unreachable, at start or later, the set keeps working from its replica: this
    /// instance's revocations apply here at once and reach Redis when it is back, and what
    /// other instances wrote meanwhile is loaded on reconnection. [`OutOfSync`] decides
    /// whether requests keep being served while the replica is out of sync.
    ///
    /// Spawns two tokio tasks; call it within a tokio runtime.
    ///
    /// Tracing events: `info` when the replica is loaded or reloaded, `warn` when Redis is
    /// lost or a write must wait, `error` when the replica has been out of sync for longer
    /// than the [`OutOfSync::Refuse`] bound (and `info` when it is back).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(self, client: Client) -> Revocations {
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let mut shared = self.shared(0);
        shared.outbox = Some(outbox.clone());
        let shared = Arc::new(shared);
        let keys = Keys {
            tokens: format!("{}:tokens", self.key_prefix),
            subjects: format!("{}:subjects", self.key_prefix),
            log: format!("{}:log", self.key_prefix),
        };
        let (loaded, first_sync) = tokio::sync::oneshot::channel();
        tokio::spawn(read(
            client.clone(),
            keys.clone(),
            Arc::downgrade(&shared),
            outbox,
            loaded,
        ));
        tokio::spawn(write(client, keys, outbox_rx));
        // The first load, or the first failure to connect: either way the set is usable.
        let _ = tokio::time::timeout(Duration::from_secs(2), first_sync).await;
        Revocations { shared }
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
    jsonwebtoken::get_current_timestamp()
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

/// The reader task: load, follow the log, and on any error reconnect and load again.
async fn read(
    client: Client,
    keys: Keys,
    set: Weak<Shared>,
    outbox: mpsc::UnboundedSender<Revocation>,
    loaded: tokio::sync::oneshot::Sender<()>,
) {
    let mut loaded = Some(loaded);
    let mut backoff = Backoff::new();
    let mut connected_once = false;
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
            connected_once = true;
            backoff = Backoff::new();
        })
        .await;
        let Some(shared) = set.upgrade() else { return };
        match result {
            Ok(()) => return,
            Err(error) => {
                if let Some(loaded) = loaded.take() {
                    let _ = loaded.send(());
                }
                let behind = shared.sync.out_of_sync_for();
                // Once per outage, not on every attempt.
                if backoff.0 == BACKOFF.0 {
                    tracing::warn!(
                        %error,
                        was_connected = connected_once,
                        "token revocations: Redis unreachable; serving from the local replica and reconnecting"
                    );
                }
                if let OutOfSync::Refuse { after } = shared.out_of_sync
                    && behind > after
                    && !refusing
                {
                    tracing::error!(
                        out_of_sync_for = ?behind,
                        "token revocations out of sync for longer than allowed; refusing requests with 503"
                    );
                    refusing = true;
                }
            }
        }
        drop(shared);
        backoff.wait().await;
    }
}

/// One connection's life: load everything, then follow the log until an error (or until
/// the set is dropped: `Ok`).
async fn follow(
    client: &Client,
    keys: &Keys,
    set: &Weak<Shared>,
    outbox: &mpsc::UnboundedSender<Revocation>,
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
    let tokens: Vec<(String, f64)> = conn
        .zrangebyscore_withscores(&keys.tokens, now, "+inf")
        .await?;
    let subjects: Vec<(String, f64)> = conn
        .zrangebyscore_withscores(&keys.subjects, now, "+inf")
        .await?;
    let snapshot: Vec<Revocation> = tokens
        .into_iter()
        .map(|(jti, until)| Revocation::Token {
            jti: jti.into(),
            until: until as u64,
        })
        .chain(subjects.into_iter().filter_map(|(member, until)| {
            let (since, sub) = member.split_once(':')?;
            Some(Revocation::Subject {
                sub: sub.into(),
                since: since.parse().ok()?,
                until: until as u64,
            })
        }))
        .collect();
    {
        let Some(shared) = set.upgrade() else {
            return Ok(());
        };
        for revocation in &snapshot {
            shared.replica.apply(revocation, now);
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
            let _ = outbox.send(revocation.clone());
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
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&keys.log], &[&last_id], &options)
            .await?;
        let Some(shared) = set.upgrade() else {
            return Ok(());
        };
        let now = unix_now();
        for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
            if let Some(revocation) = parse(entry) {
                shared.replica.apply(&revocation, now);
            }
            last_id.clone_from(&entry.id);
        }
        shared.replica.sweep_if_due(now);
        shared.sync.confirm();
    }
}

/// A log entry: `k` (`t` for a token, `s` for a subject), `v` (the `jti` or `sub`), `u`
/// (until) and, for a subject, `s` (since). Anything else is skipped.
fn parse(entry: &StreamId) -> Option<Revocation> {
    let value: String = entry.get("v")?;
    let until: u64 = entry.get("u")?;
    match entry.get::<String>("k")?.as_str() {
        "t" => Some(Revocation::Token {
            jti: value.into(),
            until,
        }),
        "s" => Some(Revocation::Subject {
            sub: value.into(),
            since: entry.get("s")?,
            until,
        }),
        _ => None,
    }
}

/// The writer task: store each local revocation in Redis, in order, retrying until it is.
async fn write(client: Client, keys: Keys, mut outbox: mpsc::UnboundedReceiver<Revocation>) {
    let mut pending = VecDeque::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new();
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
        pending.retain(|r: &Revocation| r.until() >= now);
        let result = async {
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(connect(&client, Duration::from_secs(2)).await?),
            };
            while let Some(revocation) = pending.front() {
                store(conn, &keys, revocation, now).await?;
                pending.pop_front();
            }
            RedisResult::Ok(())
        }
        .await;
        match result {
            Ok(()) => backoff = Backoff::new(),
            Err(error) => {
                conn = None;
                if backoff.0 == BACKOFF.0 {
                    tracing::warn!(
                        %error,
                        pending = pending.len(),
                        "token revocations: cannot reach Redis; held here and retried until stored"
                    );
                }
                backoff.wait().await;
            }
        }
    }
}

/// Adds one revocation to its sorted set and to the log, and drops expired members, in one
/// transaction.
async fn store(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    revocation: &Revocation,
    now: u64,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    let (set, member, fields): (_, String, Vec<(&str, String)>) = match revocation {
        Revocation::Token { jti, until } => (
            &keys.tokens,
            jti.to_string(),
            vec![
                ("k", "t".into()),
                ("v", jti.to_string()),
                ("u", until.min(&MAX_SCORE).to_string()),
            ],
        ),
        Revocation::Subject { sub, since, until } => (
            &keys.subjects,
            format!("{since}:{sub}"),
            vec![
                ("k", "s".into()),
                ("v", sub.to_string()),
                ("s", since.to_string()),
                ("u", until.min(&MAX_SCORE).to_string()),
            ],
        ),
    };
    let score = revocation.until().min(MAX_SCORE);
    pipe.cmd("ZADD")
        .arg(set)
        .arg("GT")
        .arg(score)
        .arg(member)
        .ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(set)
        .arg("-inf")
        .arg(format!("({now}"))
        .ignore();
    pipe.cmd("XADD")
        .arg(&keys.log)
        .arg("MAXLEN")
        .arg("~")
        .arg(LOG_LEN)
        .arg("*")
        .arg(fields)
        .ignore();
    pipe.query_async(conn).await
}
