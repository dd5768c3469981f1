//! Issuers trusted by rule and discovered when a token first names one (feature `jwks`):
//! one issuer per customer (`https://login.example.com/{tenant}/v2.0`), not known at start.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jsonwebtoken::Algorithm;

use crate::{
    AuthError, ConfigError, DpopMode, KeySet, KeySource,
    jwks::{JwksBuilder, JwksSource},
    validate::{Policy, valid_typ},
};

type Rule = dyn Fn(&str) -> bool + Send + Sync;
type Configure = dyn Fn(JwksBuilder) -> JwksBuilder + Send + Sync;

/// Issuers a layer trusts by rule, each discovered (OpenID Connect discovery, then its JWKS)
/// when a token first names it; see
/// [`JwtAuthLayerBuilder::discover_issuers`](crate::JwtAuthLayerBuilder::discover_issuers).
///
/// - A token whose `iss` the rule refuses costs no outbound request at all: `401`, "the
///   token's issuer is not accepted".
/// - The first token naming an issuer the rule accepts starts its discovery; concurrent
///   requests wait for the same one, and a failed one is not retried within the JWKS
///   cooldown. Its discovery document's `issuer` must equal the token's `iss` exactly (the
///   mix-up defence of RFC 8414 section 3.3 and OpenID Connect Discovery section 4.3).
/// - At most [`capacity`](Self::capacity) issuers are held (default 1,000); one unused for
///   [`idle_timeout`](Self::idle_timeout) (default an hour) makes room for a new one. When
///   every slot is in use, a new issuer is answered `503` until one is idle: a flood of
///   tokens naming random tenants costs at most one discovery per slot, never memory
///   without bound, and never evicts an issuer in use.
///
/// Clones share the issuers held, so a clone kept aside reports them
/// ([`issuers`](Self::issuers)).
///
/// ```no_run
/// use tower_jwt_auth::{DiscoveredIssuers, JwtAuthLayer, StandardClaims};
///
/// # #[tokio::main] async fn main() -> Result<(), tower_jwt_auth::ConfigError> {
/// let tenants = ["acme", "globex"];
/// let layer = JwtAuthLayer::<StandardClaims>::builder()
///     .discover_issuers(
///         DiscoveredIssuers::template("https://login.example.com/{tenant}/v2.0", move |t| {
///             tenants.contains(&t)
///         })
///         .audience("api://todos"),
///     )
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DiscoveredIssuers {
    pub(crate) rule: Result<Arc<Rule>, ConfigError>,
    pub(crate) audiences: Vec<String>,
    pub(crate) any_audience: bool,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) typ: Option<String>,
    pub(crate) dpop: Option<DpopMode>,
    capacity: usize,
    idle: Duration,
    configure: Option<Arc<Configure>>,
    held: Arc<Mutex<HashMap<String, Slot>>>,
}

struct Slot {
    policy: Arc<Policy>,
    used: Instant,
}

impl DiscoveredIssuers {
    /// Trusts every issuer for which `rule` says yes. The rule sees the token's `iss` before
    /// anything of the token is verified: let it accept only issuers you would configure by
    /// hand (your identity provider's host, your tenants).
    pub fn matching(rule: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self::with_rule(Ok(Arc::new(rule)))
    }

    /// Trusts the issuers that `template` gives for a tenant `allowed` accepts. The template
    /// has one `{tenant}` placeholder and is an `https` URL (`http` only on a loopback host);
    /// a tenant is 1 to 64 characters of letters, digits, `-`, `_` and `.` (but not `..`).
    pub fn template(
        template: &str,
        allowed: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        let rule = parse_template(template).map(|(prefix, suffix)| {
            let rule = move |iss: &str| {
                iss.strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                    .is_some_and(|tenant| valid_tenant(tenant) && allowed(tenant))
            };
            Arc::new(rule) as Arc<Rule>
        });
        Self::with_rule(rule)
    }

    fn with_rule(rule: Result<Arc<Rule>, ConfigError>) -> Self {
        Self {
            rule,
            audiences: Vec::new(),
            any_audience: false,
            algorithms: None,
            typ: None,
            dpop: None,
            capacity: 1000,
            idle: Duration::from_secs(3600),
            configure: None,
            held: Arc::default(),
        }
    }

    /// Requires this audience of every discovered issuer's tokens (call again for several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts any audience (when none is configured).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Requires this `typ` (for instance `at+jwt`, RFC 9068).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// The discovered issuers' DPoP mode, overriding the layer's.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop = Some(mode);
        self
    }

    /// Restricts the algorithms (default: the asymmetric ones each JWK names).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The most issuers held at once (default 1,000).
    pub fn capacity(mut self, issuers: usize) -> Self {
        self.capacity = issuers;
        self
    }

    /// How long an issuer no token named is kept before a new one may take its place
    /// (default an hour).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Adjusts each issuer's [`JwksSource`] (its cooldown, timeouts, HTTP client).
    pub fn jwks(
        mut self,
        configure: impl Fn(JwksBuilder) -> JwksBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// The issuers held now.
    pub fn issuers(&self) -> Vec<String> {
        self.held.lock().unwrap().keys().cloned().collect()
    }

    /// The rule, and the capacity checked; for the layer's `build`.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        self.rule.as_ref().map_err(Clone::clone)?;
        if let Some(typ) = &self.typ {
            valid_typ(typ)?;
        }
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::NoAlgorithms);
        }
        if self.capacity == 0 {
            return Err(ConfigError::OutOfRange(
                "the capacity of discovered issuers must be positive",
            ));
        }
        Ok(())
    }

    /// The policy every discovered issuer starts from: these settings, no keys yet.
    pub(crate) fn template_policy(&self) -> Policy {
        let empty = KeySet::new([]).expect("an empty set has no duplicate kid");
        let mut policy = Policy::new(KeySource::from(empty).0);
        policy.audiences = self.audiences.clone();
        policy.any_audience = self.any_audience;
        policy.algorithms = self.algorithms.clone();
        policy.dpop = self.dpop;
        // Checked by `check`.
        policy.typ = self
            .typ
            .as_deref()
            .and_then(|t| valid_typ(t).ok())
            .map(Into::into);
        policy
    }
}

/// A layer's discovered issuers: the rule, and the policy each new issuer is given.
pub(crate) struct Discovered {
    issuers: DiscoveredIssuers,
    pub(crate) template: Policy,
}

impl Discovered {
    pub(crate) fn new(issuers: DiscoveredIssuers, template: Policy) -> Self {
        Self { issuers, template }
    }

    /// The policy for `iss`: held, or new (its discovery starts with the first key
    /// lookup). `InvalidIssuer` when the rule refuses it; `KeysUnavailable` when every slot
    /// is in use.
    pub(crate) fn policy(&self, iss: &str) -> Result<Arc<Policy>, AuthError> {
        let rule = self
            .issuers
            .rule
            .as_ref()
            .map_err(|_| AuthError::InvalidIssuer)?;
        if !rule(iss) {
            return Err(AuthError::InvalidIssuer);
        }
        let now = Instant::now();
        let mut held = self.issuers.held.lock().unwrap();
        if let Some(slot) = held.get_mut(iss) {
            slot.used = now;
            return Ok(slot.policy.clone());
        }
        if held.len() >= self.issuers.capacity {
            let idle = self.issuers.idle;
            held.retain(|_, slot| now.duration_since(slot.used) < idle);
            if held.len() >= self.issuers.capacity {
                tracing::warn!(
                    capacity = self.issuers.capacity,
                    "every discovered-issuer slot is in use: a new issuer waits"
                );
                return Err(AuthError::KeysUnavailable);
            }
        }
        let mut jwks = JwksSource::discover(iss);
        if let Some(configure) = &self.issuers.configure {
            jwks = configure(jwks);
        }
        let jwks = jwks.build().map_err(|error| {
            tracing::warn!(%error, "a discovered issuer cannot be fetched from");
            AuthError::KeysUnavailable
        })?;
        tracing::info!(issuer = %iss, "discovering a new trusted issuer");
        let mut policy = self.template.clone();
        policy.keys = KeySource::from(jwks).0;
        policy.issuers = vec![iss.to_owned()];
        let policy = Arc::new(policy);
        held.insert(
            iss.to_owned(),
            Slot {
                policy: policy.clone(),
                used: now,
            },
        );
        Ok(policy)
    }
}

impl Clone for Discovered {
    fn clone(&self) -> Self {
        Self {
            issuers: self.issuers.clone(),
            template: self.template.clone(),
        }
    }
}

/// The parts of `template` around its one `{tenant}`, once the URL form is checked.
fn parse_template(template: &str) -> Result<(String, String), ConfigError> {
    let invalid = ConfigError::InvalidValue(
        "the issuer template must be an https URL with one `{tenant}`, such as \
         https://login.example.com/{tenant}/v2.0",
    );
    let (prefix, suffix) = template.split_once("{tenant}").ok_or(invalid.clone())?;
    if suffix.contains("{tenant}") {
        return Err(invalid);
    }
    let example: http::Uri = format!("{prefix}tenant{suffix}")
        .parse()
        .map_err(|_| invalid.clone())?;
    // The tenant goes in the path: it must not choose the host.
    let in_path = prefix
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if example.host().is_none() || !in_path {
        return Err(invalid);
    }
    crate::jwks::check_transport(&example, false).map_err(ConfigError::InsecureUrl)?;
    Ok((prefix.to_owned(), suffix.to_owned()))
}

fn valid_tenant(tenant: &str) -> bool {
    (1..=64).contains(&tenant.len())
        && !tenant.contains("..")
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Debug for DiscoveredIssuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveredIssuers")
            .field("audiences", &self.audiences)
            .field("capacity", &self.capacity)
            .field("idle", &self.idle)
            .field("held", &self.held.lock().unwrap().len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Discovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.issuers.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_its_tenants_only() {
        let rule = DiscoveredIssuers::template("https://login.example.com/{tenant}/v2.0", |t| {
            t != "blocked"
        })
        .rule
        .unwrap();
        assert!(rule("https://login.example.com/acme/v2.0"));
        assert!(rule("https://login.example.com/a.b-c_d/v2.0"));
        for iss in [
            "https://login.example.com/blocked/v2.0",
            "https://login.example.com//v2.0",
            "https://login.example.com/a/b/v2.0",
            "https://login.example.com/../v2.0",
            "https://login.example.com/acme/v2.0/",
            "https://login.example.com/acme/v2.0?x",
            "https://login.example.com/ac%2Fme/v2.0",
            "https://evil.example/acme/v2.0",
            "http://login.example.com/acme/v2.0",
        ] {
            assert!(!rule(iss), "{iss}");
        }
        let long = format!("https://login.example.com/{}/v2.0", "a".repeat(65));
        assert!(!rule(&long));
    }

    #[test]
    fn a_template_that_is_not_an_https_url_with_one_tenant_is_refused() {
        for template in [
            "https://login.example.com/v2.0",
            "https://login.example.com/{tenant}/{tenant}",
            "https://{tenant}.example.com/v2.0",
            "http://login.example.com/{tenant}",
            "not a url {tenant}",
        ] {
            assert!(
                DiscoveredIssuers::template(template, |_| true)
                    .check()
                    .is_err(),
                "{template}"
            );
        }
        assert!(
            DiscoveredIssuers::template("http://127.0.0.1:8080/{tenant}", |_| true)
                .check()
                .is_ok()
        );
    }
}
