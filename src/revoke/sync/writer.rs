//! The writer task: this instance's revocations into Redis, held until Redis has them.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{Client, RedisResult, aio::MultiplexedConnection};
use tokio::sync::mpsc;

use super::{
    Backoff, Warnings, connect,
    schema::{LOG_LEN, RedisKeys, STORE, member},
    unix_now,
};
use crate::revoke::Revoked;

/// Where revocations go to be stored in Redis by the writer, with what is not stored yet.
#[derive(Clone)]
pub(in crate::revoke) struct Outbox {
    pub(super) tx: mpsc::UnboundedSender<(Instant, Revoked)>,
    pub(super) unsent: Arc<Unsent>,
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

    pub(super) fn new() -> Self {
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
    pub(in crate::revoke) fn send(&self, revocation: Revoked) {
        let now = Instant::now();
        self.unsent.added(now);
        if self.tx.send((now, revocation)).is_err() {
            self.unsent.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// How long the oldest revocation made here has waited for Redis.
    pub(in crate::revoke) fn waiting_for(&self) -> Duration {
        self.unsent.waiting_for()
    }

    pub(in crate::revoke) async fn flush(&self, within: Duration) -> bool {
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

/// The writer task: store the local revocations in Redis, retrying until it has them.
pub(super) async fn write(
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
pub(super) async fn store(
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
