//! Introspection results shared by every instance through Redis (feature `redis`): an
//! instance that misses its own cache asks Redis before the authorization server, so one
//! introspection per token serves the whole fleet.
//!
//! Keys are the prefix and the base64url SHA-256 of the token (never the token); values are
//! the authorization server's answer as it came, which each instance checks again with its
//! own layer's rules. Every entry expires with the bound its instance computed (the earlier
//! of `exp` and `cache_ttl`; `inactive_ttl` for an inactive one). Redis being unreachable
//! costs an introspection, never an answer: the authorization server stays the source of
//! truth.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde_json::{Map, Value};

use crate::ConfigError;

pub(crate) struct SharedResults {
    conn: ConnectionManager,
    prefix: String,
}

impl SharedResults {
    pub(crate) fn new(client: redis::Client, prefix: String) -> Result<Self, ConfigError> {
        let conn = crate::redis_conn::fail_fast(
            client,
            "the Redis client of the introspection cache is not usable",
        )?;
        Ok(Self { conn, prefix })
    }

    fn key(&self, hash: &[u8; 32]) -> String {
        format!("{}:{}", self.prefix, URL_SAFE_NO_PAD.encode(hash))
    }

    /// The answer another instance stored, if any (and Redis answers).
    pub(crate) async fn get(&self, hash: &[u8; 32]) -> Option<Map<String, Value>> {
        let mut conn = self.conn.clone();
        match conn.get::<_, Option<String>>(self.key(hash)).await {
            Ok(stored) => stored.and_then(|text| serde_json::from_str(&text).ok()),
            Err(error) => {
                tracing::warn!(%error, "the shared introspection cache is unreachable");
                None
            }
        }
    }

    /// Stores `answer` for `ttl` (at least a millisecond).
    pub(crate) async fn put(&self, hash: &[u8; 32], answer: &Map<String, Value>, ttl: Duration) {
        let Ok(text) = serde_json::to_string(answer) else {
            return;
        };
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let stored: Result<(), _> = conn.pset_ex(self.key(hash), text, millis).await;
        if let Err(error) = stored {
            tracing::warn!(%error, "an introspection result could not be shared");
        }
    }
}
