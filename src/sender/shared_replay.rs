//! The DPoP replay store shared by every instance through Redis (feature `redis`): a proof's
//! (key, `jti`) is claimed with one `SET key 1 NX PX window`, which only the first instance
//! to see the proof wins. The local store ([`ReplayCache`](super::replay::ReplayCache)) is
//! asked first, so a replay on the same instance costs no round trip.

use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::{AuthError, ConfigError, validate::Pending};

/// What a DPoP request gets while the shared replay store cannot be asked (Redis down or
/// slower than its timeout): [`Dpop::when_redis_unavailable`](crate::Dpop::when_redis_unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplayFallback {
    /// `503` with `Retry-After` (the default): a proof used on another instance could
    /// otherwise be replayed here, which is what a shared store is for.
    #[default]
    Refuse,
    /// Accept on this instance's own replay check, with a warning in the log: a proof can
    /// then be replayed once on each other instance, within its lifetime.
    Local,
}

pub(crate) struct SharedReplay {
    conn: ConnectionManager,
    prefix: String,
    window_ms: u64,
    fallback: ReplayFallback,
}

impl SharedReplay {
    pub(crate) fn new(
        client: redis::Client,
        prefix: String,
        window: Duration,
        fallback: ReplayFallback,
    ) -> Result<Self, ConfigError> {
        // A request waits on this: fail fast, and let the fallback decide.
        let conn = crate::redis_conn::fail_fast(
            client,
            "Dpop::redis: the Redis client cannot make a connection manager",
        )?;
        Ok(Self {
            conn,
            prefix,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            fallback,
        })
    }

    /// Claims the proof of key `jkt` with `jti` for every instance. The key is a hash, of
    /// fixed size whatever the client sends; every instance with the prefix derives the same.
    pub(crate) fn claim(&self, jkt: &str, jti: &str) -> Pending {
        let mut hash = Sha256::new();
        hash.update(jkt.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("{}:{hex}", self.prefix);
        let mut conn = self.conn.clone();
        let (window_ms, fallback) = (self.window_ms, self.fallback);
        Box::pin(async move {
            let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(window_ms)
                .query_async(&mut conn)
                .await;
            match set {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(AuthError::InvalidDpopProof(
                    "the proof has been used before",
                )),
                Err(error) => match fallback {
                    ReplayFallback::Refuse => {
                        tracing::warn!(%error, "the shared DPoP replay store is unreachable: refusing DPoP requests");
                        Err(AuthError::DpopUnavailable)
                    }
                    ReplayFallback::Local => {
                        tracing::warn!(%error, "the shared DPoP replay store is unreachable: checking replays on this instance only");
                        Ok(())
                    }
                },
            }
        })
    }
}
