//! The reader task: load what Redis holds, then follow its log; reload after any gap.

use std::{sync::Weak, time::Duration};

use redis::{
    AsyncCommands, Client, RedisResult,
    aio::MultiplexedConnection,
    streams::{StreamRangeReply, StreamReadOptions, StreamReadReply},
};

use super::{
    Backoff, Warnings, connect,
    schema::{RedisKeys, parse, parse_member, stream_id},
    unix_now,
    writer::Outbox,
};
use crate::revoke::{
    OutOfSync, Revoked, Shared,
    replica::{Key, Replica},
};

/// How long one `XREAD` blocks: the replica confirms it is in sync at least this often.
pub(super) const BLOCK: Duration = Duration::from_millis(500);

/// The reader task: load, follow the log, and on any error reconnect and load again.
pub(super) async fn read(
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
        crate::metrics::revocations_sync(false, shared.out_of_sync_for());
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
pub(super) async fn follow(
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
        shared.confirm_sync();
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
        shared.confirm_sync();
    }
}

/// Every revocation in force in Redis, read in pages (`ZSCAN`) so that a large set neither
/// blocks Redis nor outlasts one response.
pub(super) async fn load(
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
pub(super) async fn trimmed_after(
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
