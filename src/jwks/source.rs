use std::{
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::{ArcSwap, Guard};
use http::Uri;
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    HttpClient,
    client::default_client,
    document::{max_age, parse_discovery, parse_jwks},
};
use crate::{
    AuthError, ConfigError, KeySource, VerificationKey,
    keys::{KeyProvider, KeySnapshot, Keys, RefreshWait},
    metrics,
};

/// A cached, self-refreshing JWKS; see the [module docs](super). Cheap to clone: clones share
/// the cache, and the background refresher stops when the last clone is dropped.
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

/// Configures a [`JwksSource`].
pub struct JwksBuilder {
    location: Result<Location, ConfigError>,
    client: Option<Arc<dyn HttpClient>>,
    settings: Settings,
}

#[derive(Clone, Debug)]
struct Settings {
    timeout: Duration,
    cooldown: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
    max_stale: Duration,
    max_body: usize,
    /// Accept `http://` URLs that are not loopback.
    allow_http: bool,
}

#[derive(Debug)]
enum Location {
    Jwks(Uri),
    Discovery { issuer: String, config: Uri },
}

impl Location {
    /// Whose keys these are, for metrics and logs: the issuer, or the JWKS URL when a bare
    /// JWKS does not say.
    fn issuer(&self) -> String {
        match self {
            Self::Jwks(uri) => uri.to_string(),
            Self::Discovery { issuer, .. } => issuer.clone(),
        }
    }
}

struct Inner {
    location: Location,
    client: Arc<dyn HttpClient>,
    settings: Settings,
    keys: ArcSwap<KeySnapshot>,
    /// The `jwks_uri` found by discovery.
    resolved: Mutex<Option<Uri>>,
    state: Mutex<RefreshState>,
    /// Bumped after every fetch attempt; waiting requests watch it.
    done: watch::Sender<u64>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct RefreshState {
    in_flight: bool,
    last_start: Option<Instant>,
    last_ok: bool,
}

impl JwksSource {
    /// Fetches keys from the JWKS at `jwks_uri`.
    pub fn builder(jwks_uri: &str) -> JwksBuilder {
        let location = jwks_uri
            .parse()
            .map(Location::Jwks)
            .map_err(|_| ConfigError::InvalidValue("the JWKS URL does not parse"));
        JwksBuilder::new(location)
    }

    /// Finds the JWKS through OpenID Connect discovery at
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must be exactly `issuer`.
    pub fn discover(issuer: &str) -> JwksBuilder {
        let config = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let location = config
            .parse()
            .map(|config| Location::Discovery {
                issuer: issuer.to_owned(),
                config,
            })
            .map_err(|_| ConfigError::InvalidValue("the issuer URL does not parse"));
        JwksBuilder::new(location)
    }

    /// The `kid`s of the cached keys.
    pub fn kids(&self) -> Vec<String> {
        self.inner
            .keys
            .load()
            .keys()
            .iter()
            .filter_map(|k| k.kid().map(String::from))
            .collect()
    }

    /// Waits (up to the fetch timeout) until keys are available; whether they are.
    pub async fn ready(&self) -> bool {
        if self.load().is_ok() {
            return true;
        }
        if let Some(wait) = self.refresh() {
            wait.await;
        }
        self.load().is_ok()
    }

    /// The cached keys, unless there are none yet or they are staler than allowed.
    pub(crate) fn load(&self) -> Result<Guard<Arc<KeySnapshot>>, AuthError> {
        let snapshot = self.inner.keys.load();
        match snapshot.fetched {
            Some((_, expires)) if Instant::now() <= expires + self.inner.settings.max_stale => {
                Ok(snapshot)
            }
            _ => Err(AuthError::KeysUnavailable),
        }
    }

    /// Starts a refresh, or joins the one in flight; `None` while cooling down.
    pub(crate) fn refresh(&self) -> Option<RefreshWait> {
        let mut done = self.start_refresh()?;
        let limit = self.inner.settings.timeout + Duration::from_millis(100);
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(limit, done.changed()).await;
        }))
    }

    /// Single flight: at most one fetch runs, and a new one starts at most once per cooldown.
    fn start_refresh(&self) -> Option<watch::Receiver<u64>> {
        let done = self.inner.done.subscribe();
        let mut state = self.inner.state.lock().unwrap();
        if state.in_flight {
            return Some(done);
        }
        let now = Instant::now();
        if state
            .last_start
            .is_some_and(|t| now.duration_since(t) < self.inner.settings.cooldown)
        {
            return None;
        }
        state.in_flight = true;
        state.last_start = Some(now);
        drop(state);
        tokio::spawn(self.inner.clone().fetch_and_store());
        Some(done)
    }

    /// When the background task should next refresh: shortly before expiry after a good
    /// fetch, one cooldown after a failed one.
    fn next_refresh_in(&self) -> Duration {
        let settings = &self.inner.settings;
        let last_ok = self.inner.state.lock().unwrap().last_ok;
        match self.inner.keys.load().fetched {
            Some((fetched, expires)) if last_ok => {
                let refresh_at = fetched + (expires - fetched).mul_f64(0.9);
                refresh_at
                    .saturating_duration_since(Instant::now())
                    .max(settings.cooldown)
            }
            _ => settings.cooldown,
        }
    }
}

impl Inner {
    async fn fetch_and_store(self: Arc<Self>) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let issuer = self.location.issuer();
        let span = tracing::debug_span!("key_fetch", %issuer);
        let started = Instant::now();
        let fetched = tokio::time::timeout(self.settings.timeout, self.fetch_once());
        let outcome = match fetched.instrument(span).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
        };
        let mut result = "failure";
        let ok = match outcome {
            Ok((keys, ttl)) => {
                let count = keys.len();
                // Unchanged keys stay the same keys: tokens cached as verified by them
                // remain cached across a routine refresh.
                let current = self.keys.load();
                let mut kept = 0;
                let keys = keys
                    .into_iter()
                    .map(
                        |key| match current.keys().iter().find(|old| old.same_as(&key)) {
                            Some(old) => {
                                kept += 1;
                                old.clone()
                            }
                            None => key,
                        },
                    )
                    .collect();
                // Every key kept and none gone: the metrics' `not_modified`.
                let unchanged = kept == count && count == current.len();
                drop(current);
                match KeySnapshot::new(keys) {
                    Ok(mut snapshot) => {
                        let now = Instant::now();
                        snapshot.fetched = Some((now, now + ttl));
                        self.keys.store(Arc::new(snapshot));
                        result = if unchanged { "not_modified" } else { "success" };
                        tracing::info!(location = ?self.location, keys = count, ttl_secs = ttl.as_secs(), "JWKS refreshed");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(location = ?self.location, error = %e, "JWKS refused");
                        false
                    }
                }
            }
            Err(error) => {
                let cached = self.keys.load().len();
                tracing::warn!(location = ?self.location, %error, cached_keys = cached, "JWKS refresh failed; keeping the cached keys");
                false
            }
        };
        metrics::key_fetch(&issuer, result, started.elapsed());
        {
            let mut state = self.state.lock().unwrap();
            state.in_flight = false;
            state.last_ok = ok;
        }
        self.done.send_modify(|generation| *generation += 1);
    }

    async fn fetch_once(&self) -> Result<(Vec<VerificationKey>, Duration), String> {
        let uri = self.jwks_uri().await?;
        let res = self
            .client
            .get(uri.clone(), self.settings.max_body)
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {uri}: status {}", res.status()));
        }
        let keys = parse_jwks(res.body()).map_err(|e| format!("{uri}: {e}"))?;
        if keys.is_empty() {
            return Err(format!("{uri}: the JWKS has no usable key"));
        }
        let s = &self.settings;
        let ttl = max_age(res.headers())
            .unwrap_or(s.default_ttl)
            .clamp(s.min_ttl, s.max_ttl);
        Ok((keys, ttl))
    }

    async fn jwks_uri(&self) -> Result<Uri, String> {
        let (issuer, config) = match &self.location {
            Location::Jwks(uri) => return Ok(uri.clone()),
            Location::Discovery { issuer, config } => (issuer, config),
        };
        if let Some(uri) = self.resolved.lock().unwrap().clone() {
            return Ok(uri);
        }
        let res = self
            .client
            .get(config.clone(), self.settings.max_body)
            .await
            .map_err(|e| format!("GET {config}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {config}: status {}", res.status()));
        }
        let jwks_uri = parse_discovery(res.body(), issuer).map_err(|e| format!("{config}: {e}"))?;
        let uri: Uri = jwks_uri
            .parse()
            .map_err(|_| format!("{config}: `jwks_uri` does not parse"))?;
        check_transport(&uri, self.settings.allow_http)
            .map_err(|why| format!("{config}: `jwks_uri` {uri}: {why}"))?;
        *self.resolved.lock().unwrap() = Some(uri.clone());
        Ok(uri)
    }
}

/// Keys must come over HTTPS: plain HTTP only to a loopback address (local development), or
/// when explicitly allowed.
pub(crate) fn check_transport(uri: &Uri, allow_http: bool) -> Result<(), &'static str> {
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || is_loopback(uri.host().unwrap_or_default()) => Ok(()),
        Some("http") => Err(
            "plain HTTP can be read and altered by anyone on the path: use https://, a loopback \
             address for local development, or `allow_http`",
        ),
        _ => Err("the URL must be https:// (or http:// to a loopback address)"),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Keeps the keys fresh until the last handle is dropped.
async fn keep_fresh(source: Weak<Inner>) {
    loop {
        let Some(inner) = source.upgrade() else {
            return;
        };
        let handle = JwksSource { inner };
        if let Some(mut done) = handle.start_refresh() {
            let _ = done.changed().await;
        }
        let delay = handle.next_refresh_in();
        drop(handle);
        tokio::time::sleep(delay).await;
    }
}

impl JwksBuilder {
    fn new(location: Result<Location, ConfigError>) -> Self {
        Self {
            location,
            client: None,
            settings: Settings {
                timeout: Duration::from_secs(5),
                cooldown: Duration::from_secs(10),
                min_ttl: Duration::from_secs(60),
                max_ttl: Duration::from_secs(24 * 3600),
                default_ttl: Duration::from_secs(600),
                max_stale: Duration::from_secs(6 * 3600),
                max_body: 1024 * 1024,
                allow_http: false,
            },
        }
    }

    /// Fetches with `client` instead of the built-in one.
    pub fn client(mut self, client: impl HttpClient) -> Self {
        self.client = Some(Arc::new(client));
        self
    }

    /// Gives up on a fetch (discovery and JWKS together) after `timeout` (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Starts at most one fetch per `cooldown` (default 10 s), however many unknown `kid`s
    /// arrive; also the retry interval after a failed fetch.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.settings.cooldown = cooldown;
        self
    }

    /// Bounds the `Cache-Control: max-age` honoured (default 60 s to 24 h).
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.settings.min_ttl = min;
        self.settings.max_ttl = max.max(min);
        self
    }

    /// The lifetime assumed when the response has no `max-age` (default 10 min).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.settings.default_ttl = ttl;
        self
    }

    /// How long past their expiry cached keys keep serving while refreshes fail
    /// (default 6 h). After that, tokens are answered `503` until a fetch succeeds.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.settings.max_stale = max_stale;
        self
    }

    /// Accepts `http://` URLs for the JWKS, the discovery document and its `jwks_uri` even
    /// when they are not loopback addresses. Without it such a URL is refused: anyone on the
    /// path could replace the keys, and with them sign any token.
    pub fn allow_http(mut self) -> Self {
        self.settings.allow_http = true;
        self
    }

    /// Starts the source: the first fetch and the background refresher begin at once, and
    /// the source is usable while they run (requests wait for keys up to the timeout).
    ///
    /// Fails on an unparsable URL, a plain-HTTP URL that is not loopback (unless
    /// [`allow_http`](Self::allow_http)), or when called outside a Tokio runtime.
    pub fn build(self) -> Result<JwksSource, ConfigError> {
        let location = self.location?;
        let url = match &location {
            Location::Jwks(uri) => uri,
            Location::Discovery { config, .. } => config,
        };
        check_transport(url, self.settings.allow_http).map_err(ConfigError::InsecureUrl)?;
        tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::InvalidValue("a JwksSource must be built inside a Tokio runtime")
        })?;
        let client = self
            .client
            .unwrap_or_else(|| default_client(self.settings.timeout));
        let inner = Arc::new(Inner {
            location,
            client,
            settings: self.settings,
            keys: ArcSwap::from_pointee(KeySnapshot::default()),
            resolved: Mutex::new(None),
            state: Mutex::new(RefreshState::default()),
            done: watch::Sender::new(0),
            fetches: AtomicU64::new(0),
        });
        tokio::spawn(keep_fresh(Arc::downgrade(&inner)));
        Ok(JwksSource { inner })
    }
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("location", &self.inner.location)
            .field("kids", &self.kids())
            .field("fetches", &self.inner.fetches.load(Ordering::Relaxed))
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// The request path reaches a JWKS through this seam only.
impl KeyProvider for JwksSource {
    fn load(&self) -> Result<Guard<Arc<KeySnapshot>>, AuthError> {
        JwksSource::load(self)
    }

    fn refresh(&self) -> Option<RefreshWait> {
        JwksSource::refresh(self)
    }
}

impl From<JwksSource> for KeySource {
    fn from(source: JwksSource) -> Self {
        Self(Keys::Remote(Arc::new(source)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_over_https_or_loopback_http_only() {
        let ok = |url: &str, allow| check_transport(&url.parse().unwrap(), allow).is_ok();
        assert!(ok("https://idp.example.com/jwks", false));
        assert!(ok("http://127.0.0.1:8080/jwks", false));
        assert!(ok("http://[::1]:8080/jwks", false));
        assert!(ok("http://localhost/jwks", false));
        assert!(!ok("http://idp.example.com/jwks", false));
        assert!(!ok("http://10.0.0.1/jwks", false));
        assert!(ok("http://idp.example.com/jwks", true));
        assert!(!ok("ftp://idp.example.com/jwks", true));
    }
}
