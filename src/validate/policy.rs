//! How one issuer's tokens are checked: its keys, the algorithms it may use, and the
//! registered claims (`exp`, `nbf`, `iss`, `aud`) against the clock and the configuration.

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::registered::Registered;
use crate::{AuthError, keys::Keys};

/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Every signature algorithm `jsonwebtoken` implements.
pub(crate) const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) keys: Keys,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    /// `None`: whatever algorithm each key is bound to (asymmetric only for remote keys).
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    /// Whole seconds, as NumericDates are compared.
    pub(crate) leeway: u64,
}

impl Policy {
    pub(crate) fn new(keys: Keys) -> Self {
        Self {
            keys,
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: None,
            leeway: DEFAULT_LEEWAY.as_secs(),
        }
    }

    /// Whether tokens signed with `alg` may be accepted (the key must also be bound to it).
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        match &self.algorithms {
            Some(list) => list.contains(&alg),
            None => !self.keys.is_remote() || alg.family() != AlgorithmFamily::Hmac,
        }
    }

    /// Checks the time and identity claims of a verified token at `now` (seconds since the
    /// epoch); returns the last second at which the token is still acceptable.
    pub(crate) fn check_claims(&self, claims: &Registered<'_>, now: u64) -> Result<u64, AuthError> {
        let exp = claims
            .exp
            .ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
        let valid_until = exp.saturating_add(self.leeway);
        if valid_until < now {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(AuthError::NotYetValid);
        }
        if !self.issuers.is_empty()
            && !claims
                .iss
                .as_deref()
                .is_some_and(|iss| self.issuers.iter().any(|i| i == iss))
        {
            return Err(AuthError::InvalidIssuer);
        }
        if !self.audiences.is_empty()
            && !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains_any(&self.audiences))
        {
            return Err(AuthError::InvalidAudience);
        }
        Ok(valid_until)
    }
}
