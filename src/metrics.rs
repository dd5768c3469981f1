//! What the middleware records, on the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): install any recorder (`metrics-exporter-prometheus`, for one) and these
//! appear. Without a recorder the facade discards them, and without the feature none of this
//! is compiled.
//!
//! No label holds anything secret or per user: reasons, outcomes and results are the closed
//! sets below, `issuer` is a configured issuer (or a JWKS URL), never a token's claim.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `tower_jwt_auth_requests_total` | counter | `outcome`, `reason` | every decision: `accepted` (`reason="valid"`, or `"anonymous"` for a request an optional layer let through without a token) or `rejected` with a reason of [`REASONS`] |
//! | `tower_jwt_auth_duration_seconds` | histogram | `outcome` | the time one authentication takes, from the request's arrival at the layer to its decision, waits for keys and introspection included (sampled, see below) |
//! | `tower_jwt_auth_token_cache_total` | counter | `result` = `hit`, `miss` | the validated-token cache, per JWT looked up |
//! | `tower_jwt_auth_key_fetches_total` | counter | `issuer`, `result` = `success`, `failure`, `not_modified` | JWKS fetches (`not_modified`: the fetched keys were the ones held) |
//! | `tower_jwt_auth_key_fetch_duration_seconds` | histogram | `issuer` | one JWKS fetch, discovery included |
//! | `tower_jwt_auth_introspections_total` | counter | `result` = `active`, `inactive`, `failure` | calls to the introspection endpoint |
//! | `tower_jwt_auth_introspection_duration_seconds` | histogram | | one introspection call |
//! | `tower_jwt_auth_introspection_cache_total` | counter | `result` = `hit`, `miss` | the cache of introspection results |
//! | `tower_jwt_auth_revocations_in_sync` | gauge | | 1 while the revocation replica follows its shared backend, 0 when it has lost it |
//! | `tower_jwt_auth_revocations_lag_seconds` | gauge | | how long the replica has been out of sync (0 in sync) |
//! | `tower_jwt_auth_revocations` | gauge | | revocations the replica holds |
//! | `tower_jwt_auth_password_queue_depth` | gauge | | password hashes waiting for a worker |
//! | `tower_jwt_auth_password_busy_total` | counter | | hashes refused because the queue was full |
//! | `tower_jwt_auth_login_lockouts_total` | counter | | login attempts refused by the throttle |
//!
//! A `RequireScope` behind the layer counts its refusals in `requests_total` too
//! (`insufficient_scope`, `forbidden`): a request it refuses was first counted `accepted` by
//! the authentication layer, so `accepted` counts authentications, not requests served.
//!
//! The duration histogram times one authentication in 16 on each thread, whatever its
//! outcome, and every one that waits for the network (a key refresh, an introspection):
//! reading the clock twice would cost a cached request more than the rest of its metrics. Its
//! `_count` is therefore not a request count (`requests_total` is); its buckets are those of
//! the requests timed.
//!
//! A layer registers the handles of its per-request metrics when it is created (the
//! builder's `JwtAuthLayer::builder()`, `RequireScope::all`...): install the recorder
//! first, as a program does at the top of `main`. A layer created under
//! `metrics::with_local_recorder` records into that recorder.
//!
//! # Reasons
//!
//! [`AuthError::reason`](crate::AuthError::reason) gives each rejection's:
//!
//! | reason | status | [`AuthError`](crate::AuthError) |
//! |---|---|---|
//! | `missing_token` | 401 | `MissingToken` |
//! | `invalid_request` | 400 | `InvalidRequest` |
//! | `token_too_large` | 401 | `TokenTooLarge` |
//! | `malformed` | 401 | `MalformedToken` |
//! | `unsupported_algorithm` | 401 | `UnsupportedAlgorithm` |
//! | `unknown_key` | 401 | `UnknownKey` |
//! | `bad_signature` | 401 | `InvalidSignature` |
//! | `expired` | 401 | `Expired` |
//! | `not_yet_valid` | 401 | `NotYetValid` |
//! | `wrong_issuer` | 401 | `InvalidIssuer` |
//! | `wrong_audience` | 401 | `InvalidAudience`, `UnexpectedAudience` |
//! | `too_old` | 401 | `TooOld` |
//! | `wrong_type` | 401 | `InvalidType` |
//! | `missing_claim` | 401 | `MissingClaim` |
//! | `invalid_claims` | 401 | `InvalidClaims` |
//! | `insufficient_scope` | 403 | `InsufficientScope` |
//! | `forbidden` | 403 | `Forbidden` |
//! | `keys_unavailable` | 503 | `KeysUnavailable` |
//! | `revoked` | 401 | `Revoked` |
//! | `revocations_unavailable` | 503 | `RevocationsUnavailable` |
//! | `wrong_binding` | 401 | `Binding` |
//! | `dpop_proof_invalid` | 401 | `InvalidDpopProof` |
//! | `dpop_nonce_required` | 401 | `UseDpopNonce` |
//! | `dpop_unavailable` | 503 | `DpopUnavailable` |
//! | `inactive` | 401 | `Inactive` |
//! | `introspection_unavailable` | 503 | `IntrospectionUnavailable` |
//!
//! Each rejection is also one `tracing` event at `debug` with the same reason, the status,
//! and the token's `iss` and `kid` when it has them (as the token claims them, cut to 128
//! characters; never the token itself).

/// Every reason a rejection can carry, in the order of the table above.
pub const REASONS: [&str; 26] = [
    "missing_token",
    "invalid_request",
    "token_too_large",
    "malformed",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "too_old",
    "wrong_type",
    "missing_claim",
    "invalid_claims",
    "insufficient_scope",
    "forbidden",
    "keys_unavailable",
    "revoked",
    "revocations_unavailable",
    "wrong_binding",
    "dpop_proof_invalid",
    "dpop_nonce_required",
    "dpop_unavailable",
    "inactive",
    "introspection_unavailable",
];

/// `tower_jwt_auth_requests_total`.
pub const REQUESTS_TOTAL: &str = "tower_jwt_auth_requests_total";
/// `tower_jwt_auth_duration_seconds`.
pub const DURATION_SECONDS: &str = "tower_jwt_auth_duration_seconds";
/// `tower_jwt_auth_token_cache_total`.
pub const TOKEN_CACHE_TOTAL: &str = "tower_jwt_auth_token_cache_total";
/// `tower_jwt_auth_key_fetches_total`.
pub const KEY_FETCHES_TOTAL: &str = "tower_jwt_auth_key_fetches_total";
/// `tower_jwt_auth_key_fetch_duration_seconds`.
pub const KEY_FETCH_DURATION_SECONDS: &str = "tower_jwt_auth_key_fetch_duration_seconds";
/// `tower_jwt_auth_introspections_total`.
pub const INTROSPECTIONS_TOTAL: &str = "tower_jwt_auth_introspections_total";
/// `tower_jwt_auth_introspection_duration_seconds`.
pub const INTROSPECTION_DURATION_SECONDS: &str = "tower_jwt_auth_introspection_duration_seconds";
/// `tower_jwt_auth_introspection_cache_total`.
pub const INTROSPECTION_CACHE_TOTAL: &str = "tower_jwt_auth_introspection_cache_total";
/// `tower_jwt_auth_revocations_in_sync`.
pub const REVOCATIONS_IN_SYNC: &str = "tower_jwt_auth_revocations_in_sync";
/// `tower_jwt_auth_revocations_lag_seconds`.
pub const REVOCATIONS_LAG_SECONDS: &str = "tower_jwt_auth_revocations_lag_seconds";
/// `tower_jwt_auth_revocations`.
pub const REVOCATIONS: &str = "tower_jwt_auth_revocations";
/// `tower_jwt_auth_password_queue_depth`.
pub const PASSWORD_QUEUE_DEPTH: &str = "tower_jwt_auth_password_queue_depth";
/// `tower_jwt_auth_password_busy_total`.
pub const PASSWORD_BUSY_TOTAL: &str = "tower_jwt_auth_password_busy_total";
/// `tower_jwt_auth_login_lockouts_total`.
pub const LOGIN_LOCKOUTS_TOTAL: &str = "tower_jwt_auth_login_lockouts_total";

/// Gives every metric above its description and unit in the installed recorder (the
/// `# HELP` lines of a Prometheus scrape). Optional; call it once, after installing the
/// recorder.
#[cfg(feature = "metrics")]
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        "Authentication decisions, by outcome and reason"
    );
    describe_histogram!(
        DURATION_SECONDS,
        Unit::Seconds,
        "Time one authentication takes, by outcome (sampled)"
    );
    describe_counter!(TOKEN_CACHE_TOTAL, "Validated-token cache lookups");
    describe_counter!(KEY_FETCHES_TOTAL, "JWKS fetches, by issuer and result");
    describe_histogram!(
        KEY_FETCH_DURATION_SECONDS,
        Unit::Seconds,
        "Time one JWKS fetch takes"
    );
    describe_counter!(INTROSPECTIONS_TOTAL, "Token introspection calls, by result");
    describe_histogram!(
        INTROSPECTION_DURATION_SECONDS,
        Unit::Seconds,
        "Time one introspection call takes"
    );
    describe_counter!(
        INTROSPECTION_CACHE_TOTAL,
        "Introspection result cache lookups"
    );
    describe_gauge!(
        REVOCATIONS_IN_SYNC,
        "1 while the revocation replica follows its shared backend"
    );
    describe_gauge!(
        REVOCATIONS_LAG_SECONDS,
        Unit::Seconds,
        "How long the revocation replica has been out of sync"
    );
    describe_gauge!(REVOCATIONS, "Revocations held by the replica");
    describe_gauge!(PASSWORD_QUEUE_DEPTH, "Password hashes waiting for a worker");
    describe_counter!(
        PASSWORD_BUSY_TOTAL,
        "Password hashes refused because the queue was full"
    );
    describe_counter!(
        LOGIN_LOCKOUTS_TOTAL,
        "Login attempts refused by the throttle"
    );
}

pub(crate) use record::*;

/// The recording itself: functions the request path calls, empty without the feature.
#[cfg(feature = "metrics")]
mod record {
    use std::{
        cell::Cell,
        fmt,
        sync::Arc,
        time::{Duration, Instant},
    };

    use ::metrics::{Counter, Histogram, counter, gauge, histogram};

    use super::*;
    use crate::AuthError;

    /// One authentication in this many is timed.
    const SAMPLE_EVERY: u32 = 16;

    /// When a timed authentication started; `None` for one that is not timed.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Started(Option<Instant>);

    impl Started {
        /// A new authentication: timed one time in [`SAMPLE_EVERY`] on this thread.
        pub(crate) fn now() -> Self {
            thread_local!(static TICK: Cell<u32> = const { Cell::new(0) });
            let tick = TICK.with(|t| {
                let n = t.get().wrapping_add(1);
                t.set(n);
                n
            });
            Self(tick.is_multiple_of(SAMPLE_EVERY).then(Instant::now))
        }

        /// Not timed (a refusal of another layer than the authentication).
        pub(crate) fn none() -> Self {
            Self(None)
        }

        /// About to wait for the network: timed from here if it was not already.
        pub(crate) fn waiting(self) -> Self {
            Self(self.0.or_else(|| Some(Instant::now())))
        }
    }

    /// The per-request handles of one layer, registered when it is created: looking a
    /// metric up by name and labels on every request would cost more than a cached
    /// authentication.
    #[derive(Clone)]
    pub(crate) struct Meter(Arc<Handles>);

    struct Handles {
        accepted: Counter,
        anonymous: Counter,
        rejected: [Counter; REASONS.len()],
        accepted_seconds: Histogram,
        rejected_seconds: Histogram,
    }

    impl Meter {
        /// Handles in the recorder in effect now.
        pub(crate) fn new() -> Self {
            let outcome = |outcome: &'static str, reason: &'static str| counter!(REQUESTS_TOTAL, "outcome" => outcome, "reason" => reason);
            Self(Arc::new(Handles {
                accepted: outcome("accepted", "valid"),
                anonymous: outcome("accepted", "anonymous"),
                rejected: REASONS.map(|reason| outcome("rejected", reason)),
                accepted_seconds: histogram!(DURATION_SECONDS, "outcome" => "accepted"),
                rejected_seconds: histogram!(DURATION_SECONDS, "outcome" => "rejected"),
            }))
        }

        pub(crate) fn accepted(&self, started: Started) {
            self.0.accepted.increment(1);
            timed(&self.0.accepted_seconds, started);
        }

        pub(crate) fn anonymous(&self, started: Started) {
            self.0.anonymous.increment(1);
            timed(&self.0.accepted_seconds, started);
        }

        pub(crate) fn rejected(&self, error: &AuthError, started: Started) {
            self.0.rejected[error.reason_index()].increment(1);
            timed(&self.0.rejected_seconds, started);
        }
    }

    impl Default for Meter {
        fn default() -> Self {
            Self::new()
        }
    }

    impl fmt::Debug for Meter {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Meter")
        }
    }

    fn timed(histogram: &Histogram, started: Started) {
        if let Some(at) = started.0 {
            histogram.record(at.elapsed().as_secs_f64());
        }
    }

    /// A cache's hits and misses, registered once per cache.
    #[derive(Clone)]
    #[cfg_attr(not(any(feature = "cache", feature = "jwks")), allow(dead_code))]
    pub(crate) struct CacheMeter {
        hit: Counter,
        miss: Counter,
    }

    #[cfg_attr(not(any(feature = "cache", feature = "jwks")), allow(dead_code))]
    impl CacheMeter {
        /// The validated-token cache's.
        #[cfg_attr(not(feature = "cache"), allow(dead_code))]
        pub(crate) fn new() -> Self {
            Self::named(TOKEN_CACHE_TOTAL)
        }

        /// The introspection results cache's.
        #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
        pub(crate) fn introspection() -> Self {
            Self::named(INTROSPECTION_CACHE_TOTAL)
        }

        fn named(name: &'static str) -> Self {
            Self {
                hit: counter!(name, "result" => "hit"),
                miss: counter!(name, "result" => "miss"),
            }
        }

        pub(crate) fn lookup(&self, hit: bool) {
            match hit {
                true => self.hit.increment(1),
                false => self.miss.increment(1),
            }
        }
    }

    /// One JWKS fetch of `issuer` (`success`, `failure` or `not_modified`).
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn key_fetch(issuer: &str, result: &'static str, took: Duration) {
        let issuer = issuer.to_owned();
        counter!(KEY_FETCHES_TOTAL, "issuer" => issuer.clone(), "result" => result).increment(1);
        histogram!(KEY_FETCH_DURATION_SECONDS, "issuer" => issuer).record(took.as_secs_f64());
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    /// One introspection call (`active`, `inactive` or `failure`).
    pub(crate) fn introspection(result: &'static str, took: Duration) {
        counter!(INTROSPECTIONS_TOTAL, "result" => result).increment(1);
        histogram!(INTROSPECTION_DURATION_SECONDS).record(took.as_secs_f64());
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// The revocation replica after a sync attempt: in sync, or out of it for `lag`.
    pub(crate) fn revocations_sync(in_sync: bool, lag: Duration) {
        gauge!(REVOCATIONS_IN_SYNC).set(if in_sync { 1.0 } else { 0.0 });
        gauge!(REVOCATIONS_LAG_SECONDS).set(lag.as_secs_f64().min(1e9));
    }

    /// How many revocations the replica holds.
    #[cfg_attr(not(feature = "revocation"), allow(dead_code))]
    pub(crate) fn revocations_held(size: usize) {
        gauge!(REVOCATIONS).set(size as f64);
    }

    #[cfg_attr(not(feature = "password"), allow(dead_code))]
    pub(crate) fn password_queue(depth: usize) {
        gauge!(PASSWORD_QUEUE_DEPTH).set(depth as f64);
    }

    #[cfg_attr(not(feature = "password"), allow(dead_code))]
    pub(crate) fn password_busy() {
        counter!(PASSWORD_BUSY_TOTAL).increment(1);
    }

    #[cfg_attr(not(feature = "password"), allow(dead_code))]
    pub(crate) fn login_lockout() {
        counter!(LOGIN_LOCKOUTS_TOTAL).increment(1);
    }
}

/// Without the feature: the same calls, compiled to nothing.
#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod record {
    use std::time::Duration;

    use crate::AuthError;

    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Started;

    impl Started {
        pub(crate) fn now() -> Self {
            Self
        }
        pub(crate) fn none() -> Self {
            Self
        }
        pub(crate) fn waiting(self) -> Self {
            self
        }
    }

    #[derive(Debug, Clone, Default)]
    pub(crate) struct Meter;

    impl Meter {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn accepted(&self, _: Started) {}
        pub(crate) fn anonymous(&self, _: Started) {}
        pub(crate) fn rejected(&self, _: &AuthError, _: Started) {}
    }

    #[derive(Debug, Clone)]
    pub(crate) struct CacheMeter;

    impl CacheMeter {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn introspection() -> Self {
            Self
        }
        pub(crate) fn lookup(&self, _: bool) {}
    }

    pub(crate) fn key_fetch(_: &str, _: &'static str, _: Duration) {}
    pub(crate) fn introspection(_: &'static str, _: Duration) {}
    pub(crate) fn revocations_sync(_: bool, _: Duration) {}
    pub(crate) fn revocations_held(_: usize) {}
    pub(crate) fn password_queue(_: usize) {}
    pub(crate) fn password_busy() {}
    pub(crate) fn login_lockout() {}
}
