//! Whether a layer can serve now: what a readiness probe (`GET /ready`) answers.

use std::{borrow::Cow, fmt};

use serde::Serialize;

/// How far behind its last confirmation the revocation replica may be and still count as in
/// sync: it confirms at least every half second while it follows Redis.
#[cfg(feature = "revocation")]
pub(crate) const IN_SYNC_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`JwtAuthLayer::readiness`](crate::JwtAuthLayer::readiness) found: one [`Check`] per
/// part the layer depends on, each ready or saying why not.
///
/// Serialized, it is the body a readiness endpoint answers with:
///
/// ```json
/// {"ready":false,"checks":[
///   {"part":"keys","issuer":"https://id.example.com","ready":false,
///    "detail":"the keys to verify the token are unavailable; try again later"},
///   {"part":"revocations","ready":true}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    ready: bool,
    checks: Vec<Check>,
}

/// One part of a [`Readiness`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Check {
    /// `keys` (one per trusted issuer), `revocations` or `introspection`.
    pub part: &'static str,
    /// The issuer whose keys or introspection endpoint this is, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Whether this part can serve.
    pub ready: bool,
    /// Why it cannot, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'static, str>>,
}

impl Check {
    pub(crate) fn new(part: &'static str, issuer: Option<&str>) -> Self {
        Self {
            part,
            issuer: issuer.map(str::to_owned),
            ready: true,
            detail: None,
        }
    }

    /// Not ready, because of `detail`.
    pub(crate) fn failing(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.ready = false;
        self.detail = Some(detail.into());
        self
    }
}

impl Readiness {
    pub(crate) fn new(checks: Vec<Check>) -> Self {
        Self {
            ready: checks.iter().all(|c| c.ready),
            checks,
        }
    }

    /// Whether every part can serve.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Every part, in the order the layer depends on them.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The parts that cannot serve.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ready)
    }

    /// This readiness and `other`'s (several layers, or a check of the application's own).
    pub fn and(mut self, other: Readiness) -> Self {
        self.ready &= other.ready;
        self.checks.extend(other.checks);
        self
    }

    /// The JSON body of the example above.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Readiness always serializes")
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ready {
            return f.write_str("ready");
        }
        f.write_str("not ready:")?;
        for check in self.failing() {
            write!(f, " {}", check.part)?;
            if let Some(issuer) = &check.issuer {
                write!(f, " of {issuer}")?;
            }
            if let Some(detail) = &check.detail {
                write!(f, " ({detail})")?;
            }
        }
        Ok(())
    }
}
