//! Revoked: tokens refused before they expire (logout, "log out everywhere", a password
//! change, an account lock), on one instance or, through Redis, on all of them.
//!
//! [`Revocations`] is the set a [`JwtAuthLayer`](crate::JwtAuthLayer) consults after a token
//! has passed every other check, cached tokens included. The request path only reads a local
//! replica (two lock-free maps): it never waits on the network. With the `redis` feature each
//! instance keeps its replica current from a Redis stream and writes its own revocations
//! there; see [`RevocationsBuilder::redis`].
//!
//! Two kinds of revocation:
//! - [`revoke_token`](Revocations::revoke_token): the one token with this `jti`, remembered
//!   until its `exp` (plus the largest leeway a layer allows), then forgotten;
//! - [`revoke_subject`](Revocations::revoke_subject): every token of a `sub` issued (`iat`)
//!   up to now, the current second included, remembered for the longest token lifetime.

mod replica;
#[cfg(feature = "redis")]
mod sync;

/// A real `redis-server` for the unit tests of the Redis sync (the integration tests' helper).
#[cfg(all(test, feature = "redis"))]
#[path = "../../tests/support/redis_server.rs"]
mod test_redis;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[cfg(any(feature = "cache", feature = "jwks"))]
pub(crate) use replica::TokenId;
pub(crate) use replica::TokenRef;
use replica::{Key, Replica, Revoked};

use crate::{AuthError, MAX_LEEWAY, MAX_TTL};

/// What the layer does when the replica may be missing revocations: Redis has been
/// unreachable for longer than a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutOfSync {
    /// Keep accepting tokens the replica does not know to be revoked (the default): an outage
    /// of Redis is not an outage of the service. Revocations made meanwhile on this instance
    /// still apply here at once.
    #[default]
    Serve,
    /// After the replica has been out of sync for longer than `after`, answer every
    /// authenticated request `503 Service Unavailable` with `Retry-After` until it is back.
    Refuse {
        /// How long the replica may be out of sync before requests are refused.
        after: Duration,
    },
}

/// A set of revoked tokens that [`JwtAuthLayerBuilder::revocations`](crate::JwtAuthLayerBuilder::revocations)
/// consults on every request. Cloning is cheap and every clone is the same set.
///
/// ```
/// use tower_jwt_auth::{JwtAuthLayer, Revocations, StandardClaims};
///
/// # fn main() -> Result<(), tower_jwt_auth::ConfigError> {
/// let revocations = Revocations::in_memory();
/// let layer = JwtAuthLayer::<StandardClaims>::builder()
///     .hs256(b"an example secret of at least 32 bytes")
///     .revocations(revocations.clone())
///     .build()?;
/// // On logout, with the claims of the presented token:
/// revocations.revoke_token("https://issuer.example", "the token's jti", 1_900_000_000);
/// // On a password change:
/// revocations.revoke_subject("https://issuer.example", "alice");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Revocations {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    replica: Replica,
    /// How long a subject revocation is kept: the longest lifetime of a token it may cover.
    max_token_lifetime: u64,
    out_of_sync: OutOfSync,
    sync: SyncClock,
    /// Where local revocations go to reach the other instances (Redis), if anywhere.
    #[cfg(feature = "redis")]
    outbox: Option<sync::Outbox>,
}

impl Shared {
    /// The replica is complete as of now (a load, or a read of the log).
    #[cfg(feature = "redis")]
    fn confirm_sync(&self) {
        self.sync.confirm();
        crate::metrics::revocations_sync(true, Duration::ZERO);
        crate::metrics::revocations_held(self.replica.len());
    }

    /// How long this set may have been missing revocations, or keeping its own from the
    /// other instances: since the replica last confirmed it was complete, or since the oldest
    /// revocation made here that has not reached Redis, whichever is longer.
    fn out_of_sync_for(&self) -> Duration {
        let replica = self.sync.out_of_sync_for();
        #[cfg(feature = "redis")]
        if let Some(outbox) = &self.outbox {
            return replica.max(outbox.waiting_for());
        }
        replica
    }

    /// When a subject revocation made at `since` may be forgotten: every token it covers has
    /// expired by then.
    fn subject_until(&self, since: u64) -> u64 {
        since
            .saturating_add(self.max_token_lifetime)
            .saturating_add(MAX_LEEWAY.as_secs())
    }

    /// Applies a revocation another instance made. Its subject entries are kept at least as
    /// long as this instance's own lifetime setting asks, should the two differ.
    #[cfg(feature = "redis")]
    fn apply_remote(&self, revocation: &Revoked, now: u64) {
        match revocation {
            Revoked::Subject { sub, since, until } => {
                let until = (*until).max(self.subject_until(*since));
                let revocation = Revoked::Subject {
                    sub: sub.clone(),
                    since: *since,
                    until,
                };
                self.replica.apply(&revocation, now)
            }
            token => self.replica.apply(token, now),
        };
    }
}

/// When the replica last knew it was complete: a backend that is always complete (in
/// memory) never falls behind.
struct SyncClock {
    origin: Instant,
    /// Milliseconds since `origin` of the last confirmation; [`ALWAYS`](Self::ALWAYS) or
    /// [`NEVER`](Self::NEVER).
    synced_at: AtomicU64,
}

impl SyncClock {
    /// Always in sync: nothing to be out of sync with.
    const ALWAYS: u64 = u64::MAX;
    /// Not loaded yet: out of sync for as long as one can be.
    #[cfg(feature = "redis")]
    const NEVER: u64 = u64::MAX - 1;

    fn out_of_sync_for(&self) -> Duration {
        let at = self.synced_at.load(Ordering::Relaxed);
        match at {
            Self::ALWAYS => return Duration::ZERO,
            #[cfg(feature = "redis")]
            Self::NEVER => return Duration::MAX,
            _ => {}
        }
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(at))
    }

    #[cfg(feature = "redis")]
    fn confirm(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 2);
        self.synced_at.store(ms, Ordering::Relaxed);
    }
}

/// Settings of a [`Revocations`] set, then its backend.
#[derive(Debug, Clone)]
pub struct RevocationsBuilder {
    max_token_lifetime: Duration,
    out_of_sync: OutOfSync,
    #[cfg(feature = "redis")]
    key_prefix: String,
}

impl Default for RevocationsBuilder {
    fn default() -> Self {
        Self {
            max_token_lifetime: MAX_TTL,
            out_of_sync: OutOfSync::Serve,
            #[cfg(feature = "redis")]
            key_prefix: "tower-jwt-auth:revocations".into(),
        }
    }
}

impl RevocationsBuilder {
    /// The longest lifetime (`exp - iat`) of the tokens the layer accepts; a subject
    /// revocation is kept that long (plus the largest leeway), after which every token it
    /// covers has expired. Defaults to [`MAX_TTL`](crate::MAX_TTL), the longest lifetime
    /// [`TokenIssuer`](crate::TokenIssuer) issues; raise it for an identity provider that
    /// issues longer-lived tokens, or bound the tokens the layer accepts to it with
    /// [`JwtAuthLayerBuilder::max_age`](crate::JwtAuthLayerBuilder::max_age).
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = lifetime;
        self
    }

    /// What to do when the replica has been out of sync for too long; see [`OutOfSync`].
    /// Only a shared backend can fall out of sync. A [`Refuse`](OutOfSync::Refuse) bound
    /// under one second is taken as one second: an idle replica confirms it is in sync twice
    /// a second, and a shorter bound would refuse requests between two confirmations.
    pub fn when_out_of_sync(mut self, policy: OutOfSync) -> Self {
        self.out_of_sync = match policy {
            OutOfSync::Refuse { after } => OutOfSync::Refuse {
                after: after.max(Duration::from_secs(1)),
            },
            serve => serve,
        };
        self
    }

    /// A set held in this process only.
    pub fn in_memory(self) -> Revocations {
        Revocations {
            shared: Arc::new(self.shared(SyncClock::ALWAYS)),
        }
    }

    fn shared(&self, synced_at: u64) -> Shared {
        Shared {
            replica: Replica::default(),
            max_token_lifetime: self.max_token_lifetime.as_secs(),
            out_of_sync: self.out_of_sync,
            sync: SyncClock {
                origin: Instant::now(),
                synced_at: AtomicU64::new(synced_at),
            },
            #[cfg(feature = "redis")]
            outbox: None,
        }
    }
}

impl Revocations {
    /// Settings for a set, then its backend.
    pub fn builder() -> RevocationsBuilder {
        RevocationsBuilder::default()
    }

    /// A set held in this process only, with the default settings.
    pub fn in_memory() -> Self {
        Self::builder().in_memory()
    }

    /// Revokes the token of issuer `iss` whose `jti` is `jti` and whose `exp` is `exp`
    /// (seconds since the epoch), as in the token; `iss` is `""` for a token without one
    /// (a `jti` is unique only within its issuer). It is refused from now on, here at once
    /// and on the other instances as soon as they hear of it; the entry is dropped once the
    /// token would have expired anyway, and at the latest after the [longest token
    /// lifetime](RevocationsBuilder::max_token_lifetime) (plus the leeway): an external
    /// provider's token with a distant `exp` cannot leave an entry that never goes away. A
    /// layer with the same bound as [`max_age`](crate::JwtAuthLayerBuilder::max_age) refuses
    /// such a token by then anyway.
    pub fn revoke_token(&self, iss: &str, jti: &str, exp: u64) {
        let now = jsonwebtoken::get_current_timestamp();
        let until = exp
            .saturating_add(MAX_LEEWAY.as_secs())
            .min(self.shared.subject_until(now));
        self.add(Revoked::Token {
            jti: Key::new(iss, jti),
            until,
        });
    }

    /// Revokes every token of subject `sub` of issuer `iss` (`""` for tokens without one)
    /// issued up to now ("log out everywhere"). A token issued in this very second is revoked
    /// too (`iat` has one-second resolution); a token issued from the next second on is not.
    ///
    /// The entry is kept for the [longest token
    /// lifetime](RevocationsBuilder::max_token_lifetime): a token of `sub` that lives longer
    /// than that would be accepted again once it is gone. To make that impossible, give the
    /// layer the same bound with [`max_age`](crate::JwtAuthLayerBuilder::max_age): it then refuses
    /// every token older than the entries last (and every token without `iat`). "Now" is this machine's clock and
    /// `iat` the issuer's: keep them synchronised (NTP), or use
    /// [`revoke_subject_issued_until`](Self::revoke_subject_issued_until) with a margin.
    ///
    /// Returns how long until the current second ends. `iat` counts whole seconds and the
    /// revocation covers this one, so a token issued before then (a new login right after
    /// the logout) is refused too: a "log out everywhere" endpoint waits that long before it
    /// answers, and a login after its answer gets a token that works.
    pub fn revoke_subject(&self, iss: &str, sub: &str) -> Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.revoke_subject_issued_until(iss, sub, now.as_secs());
        Duration::from_secs(1).saturating_sub(Duration::from_nanos(now.subsec_nanos().into()))
    }

    /// Revokes every token of subject `sub` of issuer `iss` whose `iat` is at or before
    /// `since` (seconds since the epoch), and every token of that subject without an `iat`.
    pub fn revoke_subject_issued_until(&self, iss: &str, sub: &str, since: u64) {
        self.add(Revoked::Subject {
            sub: Key::new(iss, sub),
            since,
            until: self.shared.subject_until(since),
        });
    }

    fn add(&self, mut revocation: Revoked) {
        // Kept exact where Redis stores it (a double): beyond 2^53 s nothing expires anyway.
        let (Revoked::Token { until, .. } | Revoked::Subject { until, .. }) = &mut revocation;
        *until = (*until).min(1 << 53);
        let now = jsonwebtoken::get_current_timestamp();
        if !self.shared.replica.apply(&revocation, now) {
            return;
        }
        tracing::debug!(kind = revocation.kind(), "token revocation added");
        crate::metrics::revocations_held(self.shared.replica.len());
        #[cfg(feature = "redis")]
        if let Some(outbox) = &self.shared.outbox {
            // The writer keeps it until Redis has it, through outages.
            outbox.send(revocation);
        }
    }

    /// Waits until every revocation made here has reached the shared backend, or `within`
    /// has passed; returns whether it did. Call it when the process shuts down: a revocation
    /// made while Redis was unreachable is held in memory until Redis has it. Without a
    /// shared backend there is nothing to wait for.
    pub async fn flush(&self, within: Duration) -> bool {
        #[cfg(feature = "redis")]
        if let Some(outbox) = &self.shared.outbox {
            return outbox.flush(within).await;
        }
        let _ = within;
        true
    }

    /// How many revocations are held locally (entries still in force, and expired ones not
    /// yet swept, at most a second old).
    pub fn len(&self) -> usize {
        self.shared.replica.len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long this set has been out of sync with the shared backend: since the replica
    /// last confirmed it holds everything, or since the oldest revocation made here that the
    /// backend has not stored ([`unpublished_for`](Self::unpublished_for)), whichever is
    /// longer. Zero when in sync, or without a shared backend. [`OutOfSync::Refuse`] compares
    /// this with its bound.
    pub fn out_of_sync_for(&self) -> Duration {
        self.shared.out_of_sync_for()
    }

    /// How long the oldest revocation made here has waited to reach the shared backend
    /// (zero without one, or when none waits). It counts toward
    /// [`out_of_sync_for`](Self::out_of_sync_for): an instance whose revocations Redis will
    /// not store (out of memory, a read-only replica) is out of sync too, although it keeps
    /// reading what the others wrote.
    pub fn unpublished_for(&self) -> Duration {
        #[cfg(feature = "redis")]
        if let Some(outbox) = &self.shared.outbox {
            return outbox.waiting_for();
        }
        Duration::ZERO
    }

    /// Whether a token with these claims is revoked now (`iss` is `""` for a token without
    /// one): what the layer asks after every other check, for code that checks tokens
    /// elsewhere (a WebSocket that outlives its upgrade request, say). A local lookup; it
    /// never waits on the network.
    pub fn is_revoked(
        &self,
        iss: &str,
        jti: Option<&str>,
        sub: Option<&str>,
        iat: Option<u64>,
    ) -> bool {
        let token = TokenRef { iss, jti, sub, iat };
        let now = jsonwebtoken::get_current_timestamp();
        self.shared.replica.is_revoked(token, now)
    }

    /// The request path's question, after every other check has passed: is this token
    /// revoked, or can that not be known?
    #[inline]
    pub(crate) fn check(&self, token: TokenRef<'_>, now: u64) -> Result<(), AuthError> {
        let shared = &*self.shared;
        if let OutOfSync::Refuse { after } = shared.out_of_sync
            && shared.out_of_sync_for() > after
        {
            return Err(AuthError::RevocationsUnavailable);
        }
        if shared.replica.is_revoked(token, now) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }
}

impl Revoked {
    fn kind(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Subject { .. } => "subject",
        }
    }
}

impl fmt::Debug for Revocations {
    /// Counts and settings only: a `jti` or a subject is nobody's business in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("len", &self.len())
            .field("out_of_sync", &self.shared.out_of_sync)
            .field("out_of_sync_for", &self.out_of_sync_for())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token<'t>(jti: &'t str, sub: &'t str, iat: u64) -> TokenRef<'t> {
        TokenRef {
            iss: "iss",
            jti: Some(jti),
            sub: Some(sub),
            iat: Some(iat),
        }
    }

    #[test]
    fn revoking_a_token_refuses_it_with_the_leeway_added() {
        let r = Revocations::in_memory();
        let now = jsonwebtoken::get_current_timestamp();
        r.revoke_token("iss", "t1", now + 60);
        assert_eq!(r.check(token("t1", "a", now), now), Err(AuthError::Revoked));
        assert_eq!(r.check(token("t2", "a", now), now), Ok(()));
        // Still refused after `exp` while a lenient layer could accept it...
        let late = now + 60 + MAX_LEEWAY.as_secs();
        assert_eq!(
            r.check(token("t1", "a", now), late),
            Err(AuthError::Revoked)
        );
        // ...and forgotten after that.
        assert_eq!(r.check(token("t1", "a", now), late + 1), Ok(()));
    }

    #[test]
    fn revoking_a_subject_covers_its_older_tokens_for_the_longest_lifetime() {
        let r = Revocations::builder()
            .max_token_lifetime(Duration::from_secs(100))
            .in_memory();
        let t = jsonwebtoken::get_current_timestamp();
        r.revoke_subject_issued_until("iss", "alice", t);
        assert_eq!(r.check(token("x", "alice", t), t), Err(AuthError::Revoked));
        assert_eq!(r.check(token("x", "alice", t + 1), t + 1), Ok(()));
        let last = t + 100 + MAX_LEEWAY.as_secs();
        assert_eq!(
            r.check(token("x", "alice", t - 1), last),
            Err(AuthError::Revoked)
        );
        assert_eq!(r.check(token("x", "alice", t - 1), last + 1), Ok(()));
    }

    #[test]
    fn in_memory_is_never_out_of_sync_and_debug_shows_no_identifiers() {
        let r = Revocations::builder()
            .when_out_of_sync(OutOfSync::Refuse {
                after: Duration::ZERO,
            })
            .in_memory();
        r.revoke_token("iss", "secret-jti", u64::MAX);
        r.revoke_subject("iss", "secret-subject");
        assert_eq!(r.out_of_sync_for(), Duration::ZERO);
        assert_eq!(r.check(TokenRef::default(), 0), Ok(()));
        let debug = format!("{r:?}");
        assert!(debug.contains("len: 2"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
