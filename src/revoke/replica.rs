//! The local set of revocations the request path reads: lock-free maps (papaya) from `jti`
//! and from `sub`, each entry dropped once every token it covers has expired.

use std::{
    hash::{Hash, Hasher},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use foldhash::fast::RandomState;
use papaya::{Equivalent, HashMap, ResizeMode};
use seize::Collector;

/// A `jti` or a `sub`, with the issuer it belongs to: both are unique only within their
/// issuer (RFC 7519 4.1.2, 4.1.7), and a layer may trust several. A token without `iss` has
/// the empty issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) iss: Box<str>,
    pub(crate) id: Box<str>,
}

impl Key {
    pub(crate) fn new(iss: &str, id: &str) -> Self {
        Self {
            iss: iss.into(),
            id: id.into(),
        }
    }

    #[cfg(any(test, feature = "redis"))]
    fn as_ref(&self) -> KeyRef<'_> {
        KeyRef(&self.iss, &self.id)
    }
}

/// Hashes the id alone: ids are what differ from key to key (one service trusts a handful
/// of issuers), and the request path then hashes a `jti` or `sub` and no issuer URL.
/// Equality still compares both.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// A [`Key`] borrowed from a token, to look one up without allocating; hashed as `Key` is.
struct KeyRef<'k>(&'k str, &'k str);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.1.hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.0 == *key.iss && *self.1 == *key.id
    }
}

/// One revocation, as kept locally and as written to (and read from) Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// The token with this `jti` is refused until `until` (its `exp` plus the largest
    /// leeway a layer may allow).
    Token { jti: Key, until: u64 },
    /// Every token of `sub` with an `iat` at or before `since` is refused, until `until`
    /// (when every such token has expired).
    Subject { sub: Key, since: u64, until: u64 },
}

impl Revoked {
    /// The last second at which this revocation still matters.
    pub(crate) fn until(&self) -> u64 {
        match self {
            Self::Token { until, .. } | Self::Subject { until, .. } => *until,
        }
    }
}

/// What the request path asks about: the token's `iss` (empty when it has none), `jti`,
/// `sub` and `iat`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenRef<'t> {
    pub(crate) iss: &'t str,
    pub(crate) jti: Option<&'t str>,
    pub(crate) sub: Option<&'t str>,
    pub(crate) iat: Option<u64>,
}

/// A [`TokenRef`] kept beside a cached token (or an introspection's result).
#[cfg(any(feature = "cache", feature = "jwks"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenId {
    iss: Box<str>,
    jti: Option<Box<str>>,
    sub: Option<Box<str>>,
    iat: Option<u64>,
}

#[cfg(any(feature = "cache", feature = "jwks"))]
impl TokenId {
    pub(crate) fn token_ref(&self) -> TokenRef<'_> {
        TokenRef {
            iss: &self.iss,
            jti: self.jti.as_deref(),
            sub: self.sub.as_deref(),
            iat: self.iat,
        }
    }
}

#[cfg(any(feature = "cache", feature = "jwks"))]
impl From<TokenRef<'_>> for TokenId {
    fn from(t: TokenRef<'_>) -> Self {
        Self {
            iss: t.iss.into(),
            jti: t.jti.map(Into::into),
            sub: t.sub.map(Into::into),
            iat: t.iat,
        }
    }
}

/// Sweep expired entries at most this often (seconds). Entries past their `until` no longer
/// count anyway; the sweep only returns their memory, so it need not run often (it walks
/// every entry, on the thread that happens to add a revocation or follow the log).
const SWEEP_EVERY: u64 = 30;

#[derive(Debug)]
pub(crate) struct Replica {
    /// (`iss`, `jti`) -> until.
    tokens: HashMap<Key, u64, RandomState>,
    /// (`iss`, `sub`) -> (since, until).
    subjects: HashMap<Key, (u64, u64), RandomState>,
    next_sweep: AtomicU64,
}

impl Default for Replica {
    fn default() -> Self {
        // Blocking resizes: an incremental resize that no later write finishes would leave
        // every lookup searching two tables. Writes are rare here; lookups are every request.
        // One collector for both maps, so that a lookup in each enters one guard.
        let collector = Arc::new(Collector::new());
        fn map<V: Send + 'static>(collector: &Arc<Collector>) -> HashMap<Key, V, RandomState> {
            HashMap::builder()
                .hasher(RandomState::default())
                .resize_mode(ResizeMode::Blocking)
                .shared_collector(collector.clone())
                .build()
        }
        Self {
            tokens: map(&collector),
            subjects: map(&collector),
            next_sweep: AtomicU64::new(0),
        }
    }
}

impl Replica {
    /// Adds `revocation` (idempotent: applying one twice, or in any order with others, gives
    /// the same set). Returns whether it changed anything.
    pub(crate) fn apply(&self, revocation: &Revoked, now: u64) -> bool {
        if revocation.until() < now {
            return false;
        }
        let before = match revocation {
            Revoked::Token { jti, until } => {
                let tokens = self.tokens.pin();
                let before = tokens.get(jti).copied();
                tokens.update_or_insert(jti.clone(), |&old| old.max(*until), *until);
                before != Some((*until).max(before.unwrap_or(0)))
            }
            Revoked::Subject { sub, since, until } => {
                let subjects = self.subjects.pin();
                let before = subjects.get(sub).copied();
                let merge = |&(s, u): &(u64, u64)| (s.max(*since), u.max(*until));
                subjects.update_or_insert(sub.clone(), merge, (*since, *until));
                before.is_none_or(|old| merge(&old) != old)
            }
        };
        self.sweep_if_due(now);
        before
    }

    /// Whether the token is revoked at `now`. Entries past their `until` no longer count,
    /// even before a sweep removes them.
    ///
    /// A subject revocation covers tokens issued at or before its `since`, the same second
    /// included: `iat` has one-second resolution, and a token minted in the second of a "log
    /// out everywhere", possibly just before it, must not survive it. A token without `iat`
    /// cannot show it is newer, so it is covered too.
    #[inline]
    pub(crate) fn is_revoked(&self, token: TokenRef<'_>, now: u64) -> bool {
        // One guard for both maps (they share a collector).
        let guard = self.tokens.guard();
        if let Some(jti) = token.jti
            && self
                .tokens
                .get(&KeyRef(token.iss, jti), &guard)
                .is_some_and(|&until| until >= now)
        {
            return true;
        }
        if let Some(sub) = token.sub
            && let Some(&(since, until)) = self.subjects.get(&KeyRef(token.iss, sub), &guard)
        {
            return until >= now && token.iat.is_none_or(|iat| iat <= since);
        }
        false
    }

    /// Every entry still in force at `now`.
    #[cfg(any(test, feature = "redis"))]
    pub(crate) fn entries(&self, now: u64) -> Vec<Revoked> {
        let tokens = self.tokens.pin();
        let subjects = self.subjects.pin();
        let tokens = tokens
            .iter()
            .filter(|&(_, &until)| until >= now)
            .map(|(jti, &until)| Revoked::Token {
                jti: jti.clone(),
                until,
            });
        let subjects = subjects
            .iter()
            .filter(|&(_, &(_, until))| until >= now)
            .map(|(sub, &(since, until))| Revoked::Subject {
                sub: sub.clone(),
                since,
                until,
            });
        tokens.chain(subjects).collect()
    }

    /// Whether `revocation` is already covered here.
    #[cfg(any(test, feature = "redis"))]
    pub(crate) fn covers(&self, revocation: &Revoked) -> bool {
        match revocation {
            Revoked::Token { jti, until } => self
                .tokens
                .pin()
                .get(&jti.as_ref())
                .is_some_and(|u| u >= until),
            Revoked::Subject { sub, since, until } => self
                .subjects
                .pin()
                .get(&sub.as_ref())
                .is_some_and(|(s, u)| s >= since && u >= until),
        }
    }

    /// Drops expired entries, at most once a second.
    pub(crate) fn sweep_if_due(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(due, now + SWEEP_EVERY, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.tokens.pin().retain(|_, &until| until >= now);
            self.subjects.pin().retain(|_, &(_, until)| until >= now);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://issuer.example";

    fn token(jti: &str, until: u64) -> Revoked {
        Revoked::Token {
            jti: Key::new(ISS, jti),
            until,
        }
    }

    fn subject(sub: &str, since: u64, until: u64) -> Revoked {
        Revoked::Subject {
            sub: Key::new(ISS, sub),
            since,
            until,
        }
    }

    fn jti(jti: &str) -> TokenRef<'_> {
        TokenRef {
            iss: ISS,
            jti: Some(jti),
            ..TokenRef::default()
        }
    }

    fn of(sub: &str, iat: Option<u64>) -> TokenRef<'_> {
        TokenRef {
            iss: ISS,
            sub: Some(sub),
            iat,
            ..TokenRef::default()
        }
    }

    #[test]
    fn identifiers_are_scoped_by_issuer() {
        let r = Replica::default();
        r.apply(&token("same-jti", 1_000), 0);
        r.apply(&subject("alice", 900, 1_000), 0);
        let elsewhere = |t: TokenRef<'static>| TokenRef {
            iss: "https://other.example",
            ..t
        };
        assert!(r.is_revoked(jti("same-jti"), 0));
        assert!(!r.is_revoked(elsewhere(jti("same-jti")), 0));
        assert!(r.is_revoked(of("alice", Some(1)), 0));
        assert!(!r.is_revoked(elsewhere(of("alice", Some(1))), 0));
        // The boundary between issuer and id is not a place to smuggle a match through.
        let shifted = TokenRef {
            iss: "https://issuer.exampl",
            jti: Some("esame-jti"),
            ..TokenRef::default()
        };
        assert!(!r.is_revoked(shifted, 0));
    }

    #[test]
    fn a_revoked_jti_is_refused_until_its_entry_expires_then_forgotten() {
        let r = Replica::default();
        assert!(r.apply(&token("a", 1_000), 900));
        assert!(r.is_revoked(jti("a"), 900));
        assert!(
            r.is_revoked(jti("a"), 1_000),
            "the last second still counts"
        );
        assert!(!r.is_revoked(jti("b"), 900));
        // Past `until` it no longer counts, even before a sweep...
        assert!(!r.is_revoked(jti("a"), 1_001));
        assert_eq!(r.len(), 1);
        // ...and the next sweep removes it.
        r.sweep_if_due(1_001);
        assert_eq!(r.len(), 0);
        // An entry that is already over is not added at all.
        assert!(!r.apply(&token("c", 10), 900));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn sweeps_keep_what_is_in_force_and_run_at_most_once_a_second() {
        let r = Replica::default();
        for i in 0..100u64 {
            r.apply(&token(&i.to_string(), 1_000 + i), 1_000);
        }
        r.apply(&subject("s", 900, 1_050), 1_000);
        assert_eq!(r.len(), 101);
        r.sweep_if_due(1_050);
        assert_eq!(r.len(), 51, "jtis 50..99 and the subject remain");
        // Until SWEEP_EVERY has passed, another sweep does nothing...
        r.sweep_if_due(1_060);
        assert_eq!(r.len(), 51);
        assert!(
            !r.is_revoked(jti("55"), 1_060),
            "...though what expired no longer counts"
        );
        r.sweep_if_due(1_050 + SWEEP_EVERY);
        assert_eq!(r.len(), 20);
        assert!(r.is_revoked(jti("99"), 1_080));
        assert!(!r.is_revoked(of("s", Some(900)), 1_080));
    }

    #[test]
    fn a_subject_revocation_covers_tokens_issued_up_to_and_including_its_second() {
        let r = Replica::default();
        r.apply(&subject("alice", 1_000, 5_000), 1_000);
        assert!(r.is_revoked(of("alice", Some(999)), 1_000));
        assert!(
            r.is_revoked(of("alice", Some(1_000)), 1_000),
            "issued in the same second as the revocation: revoked"
        );
        assert!(!r.is_revoked(of("alice", Some(1_001)), 1_001));
        assert!(r.is_revoked(of("alice", None), 1_001), "no iat: revoked");
        assert!(!r.is_revoked(of("bob", Some(1)), 1_001));
        // A later revocation moves `since` forward; an earlier one never moves it back.
        r.apply(&subject("alice", 2_000, 6_000), 2_000);
        r.apply(&subject("alice", 1_500, 5_500), 2_000);
        assert!(r.is_revoked(of("alice", Some(2_000)), 2_000));
        assert!(!r.is_revoked(of("alice", Some(2_001)), 2_001));
        assert!(r.is_revoked(of("alice", Some(1_999)), 6_000));
        assert!(!r.is_revoked(of("alice", Some(1_999)), 6_001), "expired");
    }

    #[test]
    fn applying_is_idempotent_and_order_free() {
        let all = [
            token("a", 100),
            token("a", 200),
            subject("s", 10, 100),
            subject("s", 20, 90),
        ];
        let forward = Replica::default();
        let backward = Replica::default();
        for r in &all {
            forward.apply(r, 0);
        }
        for r in all.iter().rev() {
            backward.apply(r, 0);
            backward.apply(r, 0);
        }
        let sorted = |r: &Replica| {
            let mut e = r.entries(0);
            e.sort_by_key(|r| format!("{r:?}"));
            e
        };
        assert_eq!(sorted(&forward), sorted(&backward));
        assert_eq!(
            sorted(&forward),
            vec![subject("s", 20, 100), token("a", 200)]
        );
        assert!(forward.covers(&token("a", 150)));
        assert!(!forward.covers(&token("a", 250)));
        assert!(!forward.apply(&token("a", 150), 0), "nothing new");
    }
}
