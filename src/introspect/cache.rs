//! One layer's side of introspection: the results cache (by the SHA-256 of the token), the
//! single flight per token, and the checks an answer must pass before its claims are used.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use quick_cache::sync::Cache;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Introspection, Settings, remote::Remote};
use crate::{
    AuthError,
    claims::Confirmation,
    keys::RefreshWait,
    metrics,
    validate::{Policy, Registered, Validated, Verdict},
};

type TokenHash = [u8; 32];

/// What a revocation check needs of an introspected token, kept with its result.
#[cfg(feature = "revocation")]
pub(crate) type Revocable = Arc<crate::revoke::TokenId>;
/// Never made: without the `revocation` feature nothing is revoked.
#[cfg(not(feature = "revocation"))]
pub(crate) type Revocable = std::convert::Infallible;

/// A layer's introspection of opaque tokens; clones share the cache and the flights.
pub(crate) struct Introspector<C> {
    remote: Arc<Remote>,
    settings: Settings,
    /// The checks of the layer (leeway, audiences, `max_age`, DPoP mode), with the issuer
    /// fixed to the introspected one; and the same without the audience check, for answers
    /// without `aud`.
    policy: Arc<Policy>,
    policy_without_aud: Arc<Policy>,
    required: Arc<[Arc<str>]>,
    shared: Arc<Shared<C>>,
    /// The results of every instance, through Redis.
    #[cfg(feature = "redis")]
    fleet: Option<Arc<super::shared::SharedResults>>,
    meter: metrics::CacheMeter,
}

struct Shared<C> {
    results: Cache<TokenHash, Outcome<C>>,
    /// Introspections in flight; each waiter watches its sender, which the flight drops.
    flights: Mutex<HashMap<TokenHash, watch::Receiver<()>>>,
}

/// A cached answer, kept until `until` (seconds since the epoch, inclusive).
enum Outcome<C> {
    Active {
        validated: Validated<C>,
        revocable: Option<Revocable>,
        until: u64,
    },
    /// Inactive, refused by this layer's checks, or (for the rest of the second) no answer.
    Refused { error: AuthError, until: u64 },
}

impl<C> Clone for Outcome<C> {
    // Without revocations `Revocable` is `Infallible`, which is `Copy`.
    #[cfg_attr(not(feature = "revocation"), allow(clippy::clone_on_copy))]
    fn clone(&self) -> Self {
        match self {
            Self::Active {
                validated,
                revocable,
                until,
            } => Self::Active {
                validated: validated.clone(),
                revocable: revocable.clone(),
                until: *until,
            },
            Self::Refused { error, until } => Self::Refused {
                error: error.clone(),
                until: *until,
            },
        }
    }
}

impl<C> Introspector<C> {
    /// Whether the endpoint answers: its breaker is not holding calls back after failures.
    pub(crate) fn readiness(&self) -> crate::ready::Check {
        let check = crate::ready::Check::new("introspection", Some(&self.remote.issuer));
        match self.remote.may_call() {
            true => check,
            false => check.failing(
                "the introspection endpoint failed repeatedly; calls resume after a pause",
            ),
        }
    }

    /// `policy` is the layer's policy for the introspected issuer (or its only one).
    pub(crate) fn new(
        introspection: Introspection,
        policy: &Policy,
        required: &[Arc<str>],
    ) -> Self {
        let mut policy = policy.clone();
        policy.issuers = vec![introspection.remote.issuer.clone()];
        let mut without_aud = policy.clone();
        without_aud.audiences.clear();
        without_aud.any_audience = true;
        let capacity = introspection.settings.capacity;
        Self {
            #[cfg(feature = "redis")]
            fleet: introspection.shared,
            remote: introspection.remote,
            settings: introspection.settings,
            policy: Arc::new(policy),
            policy_without_aud: Arc::new(without_aud),
            required: required.into(),
            shared: Arc::new(Shared {
                results: Cache::new(capacity),
                flights: Mutex::default(),
            }),
            meter: metrics::CacheMeter::introspection(),
        }
    }
}

impl<C: DeserializeOwned + Send + Sync + 'static> Introspector<C> {
    /// The verdict on an opaque `token`: from the cache, or wait for its introspection (one
    /// per token, however many requests carry it) and ask again.
    /// With a valid verdict, what a revocation check needs of the token (when `revocable`:
    /// the layer checks revocations), which the validator then runs.
    pub(crate) fn check(
        &self,
        token: &str,
        now: u64,
        revocable: bool,
    ) -> (Verdict<C>, Option<Revocable>) {
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        if let Some(outcome) = self.shared.results.get(&hash) {
            match outcome {
                Outcome::Active {
                    validated,
                    revocable,
                    until,
                } if until >= now => {
                    self.meter.lookup(true);
                    return (Verdict::Valid(validated), revocable);
                }
                Outcome::Refused { error, until } if until >= now => {
                    self.meter.lookup(true);
                    return (Verdict::Invalid(error), None);
                }
                _ => {
                    self.shared.results.remove(&hash);
                }
            }
        }
        self.meter.lookup(false);
        let verdict = match self.join_or_start(hash, token, revocable) {
            Some(wait) => Verdict::WaitForRemote(wait, AuthError::IntrospectionUnavailable),
            None => Verdict::Invalid(AuthError::IntrospectionUnavailable),
        };
        (verdict, None)
    }

    /// A wait for the introspection of `token`: the one in flight, or a new one. `None` when
    /// none may start (the breaker is open, too many are in flight, no Tokio runtime).
    fn join_or_start(&self, hash: TokenHash, token: &str, revocable: bool) -> Option<RefreshWait> {
        let mut flights = self.shared.flights.lock().unwrap();
        let waiter = match flights.get(&hash) {
            Some(waiter) => waiter.clone(),
            None => {
                if flights.len() >= self.settings.max_in_flight || !self.remote.may_call() {
                    return None;
                }
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                let (done, waiter) = watch::channel(());
                flights.insert(hash, waiter.clone());
                let this = self.clone();
                let token = token.to_owned();
                runtime.spawn(async move {
                    let (answer, fresh) = match this.fleet_get(&hash).await {
                        Some(answer) => (Ok(answer), false),
                        None => (this.remote.introspect(&token).await, true),
                    };
                    let now = jsonwebtoken::get_current_timestamp();
                    let outcome = match answer {
                        Ok(answer) if fresh && this.shares() => {
                            let outcome = this.judge(answer.clone(), now, revocable);
                            // Kept by Redis as long as here, to the second.
                            let until = match &outcome {
                                Outcome::Active { until, .. } | Outcome::Refused { until, .. } => {
                                    *until
                                }
                            };
                            let ttl = Duration::from_secs(until.saturating_sub(now) + 1);
                            this.fleet_put(&hash, &answer, ttl).await;
                            outcome
                        }
                        Ok(answer) => this.judge(answer, now, revocable),
                        // Waiters and requests in this second get 503; the next one asks.
                        Err(()) => Outcome::Refused {
                            error: AuthError::IntrospectionUnavailable,
                            until: now,
                        },
                    };
                    this.shared.results.insert(hash, outcome);
                    this.shared.flights.lock().unwrap().remove(&hash);
                    drop(done);
                });
                waiter
            }
        };
        drop(flights);
        // The flight ends within its timeout; the bound is for the waiter alone.
        let limit = self.remote.timeout() + Duration::from_millis(100);
        let mut waiter = waiter;
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(limit, waiter.changed()).await;
        }))
    }

    /// Whether results are shared with other instances.
    fn shares(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.fleet.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The answer another instance got for this token, if results are shared.
    async fn fleet_get(&self, hash: &TokenHash) -> Option<Map<String, Value>> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            return fleet.get(hash).await;
        }
        let _ = hash;
        None
    }

    async fn fleet_put(&self, hash: &TokenHash, answer: &Map<String, Value>, ttl: Duration) {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            fleet.put(hash, answer, ttl).await;
        }
        let _ = (hash, answer, ttl);
    }

    /// RFC 7662 section 2.2 and this layer's checks, on one answer.
    fn judge(&self, mut answer: Map<String, Value>, now: u64, revocable: bool) -> Outcome<C> {
        let refused = |error| Outcome::Refused {
            error,
            until: now.saturating_add(self.settings.inactive_ttl.as_secs()),
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return refused(AuthError::Inactive);
        }
        // What a JWT access token of this issuer would say (RFC 9068 section 2.2).
        if answer.get("iss").is_none_or(Value::is_null) {
            answer.insert("iss".into(), Value::String(self.remote.issuer.clone()));
        }
        if answer.get("sub").is_none_or(Value::is_null)
            && let Some(client_id) = answer.get("client_id").filter(|c| c.is_string()).cloned()
        {
            answer.insert("sub".into(), client_id);
        }
        let dpop_type = answer
            .get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
        let Ok(payload) = serde_json::to_vec(&answer) else {
            return refused(AuthError::InvalidClaims);
        };
        let mut registered = match Registered::read(&payload, &self.required) {
            Ok(registered) => registered,
            Err(error) => return refused(error),
        };
        if dpop_type && !matches!(registered.cnf, Some(Confirmation::Jkt(_))) {
            return refused(AuthError::Binding(
                "the token is of type DPoP but names no key (`cnf.jkt`)",
            ));
        }
        if let Some(missing) = registered.missing.clone() {
            return refused(AuthError::MissingClaim(missing));
        }
        // `exp` is optional here (RFC 7662 section 2.2); without one the cache bound applies.
        if registered.exp.is_none() {
            registered.exp = Some(u64::MAX);
        }
        let policy = match &registered.aud {
            Some(_) => &self.policy,
            None => &self.policy_without_aud,
        };
        let valid_until = match policy.check_claims(&registered, now) {
            Ok(until) => until,
            Err(error) => return refused(error),
        };
        let Ok(claims) = serde_json::from_slice::<C>(&payload) else {
            return refused(AuthError::InvalidClaims);
        };
        #[cfg(feature = "revocation")]
        let revocable =
            revocable.then(|| Arc::new(crate::revoke::TokenId::from(registered.token_ref())));
        #[cfg(not(feature = "revocation"))]
        let revocable: Option<Revocable> = {
            let _ = revocable; // always false: nothing is revoked without the feature
            None
        };
        let bound = now.saturating_add(self.settings.cache_ttl.as_secs());
        Outcome::Active {
            validated: Validated::new(claims, registered, policy.dpop),
            revocable,
            until: valid_until.min(bound),
        }
    }
}

impl<C> Clone for Introspector<C> {
    fn clone(&self) -> Self {
        Self {
            remote: self.remote.clone(),
            settings: self.settings.clone(),
            policy: self.policy.clone(),
            policy_without_aud: self.policy_without_aud.clone(),
            required: self.required.clone(),
            shared: self.shared.clone(),
            #[cfg(feature = "redis")]
            fleet: self.fleet.clone(),
            meter: self.meter.clone(),
        }
    }
}

impl<C> fmt::Debug for Introspector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never a token: the cache is keyed by hashes, and only its size is shown.
        f.debug_struct("Introspector")
            .field("issuer", &self.remote.issuer)
            .field("settings", &self.settings)
            .field("cached", &self.shared.results.len())
            .finish_non_exhaustive()
    }
}
