//! How one issuer's tokens are checked: its keys, the algorithms it may use, and the
//! registered claims (`exp`, `nbf`, `iss`, `aud`) against the clock and the configuration.

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::registered::Registered;
use crate::{AuthError, ConfigError, keys::Keys};

/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The largest leeway a layer accepts: clocks that disagree by more are a fault to fix, and
/// a larger allowance would keep expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(10 * 60);

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
    /// Accept tokens for any audience when none is configured (otherwise a token that names
    /// an audience is refused: RFC 7519 section 4.1.3).
    pub(crate) any_audience: bool,
    /// The `typ` header required, without an `application/` prefix.
    pub(crate) typ: Option<Box<str>>,
    /// The oldest `iat` accepted, in seconds before now.
    pub(crate) max_age: Option<u64>,
    /// Refuse an `iat` in the future (beyond the leeway) even without `max_age`: with
    /// revocations, a token claiming to be issued after a "log out everywhere" escapes it.
    pub(crate) refuse_future_iat: bool,
    /// `None`: whatever algorithm each key is bound to (asymmetric only for remote keys).
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    /// Whole seconds, as NumericDates are compared.
    pub(crate) leeway: u64,
    /// This issuer's DPoP mode, when it overrides the layer's.
    pub(crate) dpop: Option<crate::DpopMode>,
}

impl Policy {
    pub(crate) fn new(keys: Keys) -> Self {
        Self {
            keys,
            issuers: Vec::new(),
            audiences: Vec::new(),
            any_audience: false,
            typ: None,
            max_age: None,
            refuse_future_iat: false,
            algorithms: None,
            leeway: DEFAULT_LEEWAY.as_secs(),
            dpop: None,
        }
    }

    /// Whether tokens signed with `alg` may be accepted (the key must also be bound to it).
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        match &self.algorithms {
            Some(list) => list.contains(&alg),
            None => !self.keys.is_remote() || alg.family() != AlgorithmFamily::Hmac,
        }
    }

    /// Checks the `typ` header (RFC 7515 section 4.1.9; `application/` is implied).
    pub(crate) fn check_typ(&self, typ: Option<&str>) -> Result<(), AuthError> {
        match &self.typ {
            Some(expected)
                if !typ
                    .map(strip_media_prefix)
                    .is_some_and(|t| t.eq_ignore_ascii_case(expected)) =>
            {
                Err(AuthError::InvalidType)
            }
            _ => Ok(()),
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
        if self.audiences.is_empty() {
            // RFC 7519 section 4.1.3: a recipient that does not identify itself with a value
            // of `aud` must reject the token; without a configured audience, none matches.
            if !self.any_audience && claims.aud.as_ref().is_some_and(|aud| !aud.is_empty()) {
                return Err(AuthError::UnexpectedAudience);
            }
        } else if !claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains_any(&self.audiences))
        {
            return Err(AuthError::InvalidAudience);
        }
        if (self.refuse_future_iat || self.max_age.is_some())
            && claims
                .iat
                .is_some_and(|iat| iat > now.saturating_add(self.leeway))
        {
            return Err(AuthError::NotYetValid);
        }
        let Some(max_age) = self.max_age else {
            return Ok(valid_until);
        };
        let iat = claims
            .iat
            .ok_or_else(|| AuthError::MissingClaim("iat".into()))?;
        let too_old_after = iat.saturating_add(max_age).saturating_add(self.leeway);
        if too_old_after < now {
            return Err(AuthError::TooOld);
        }
        Ok(valid_until.min(too_old_after))
    }
}

/// `application/at+jwt` and `at+jwt` name the same type (RFC 7515 section 4.1.9).
pub(crate) fn strip_media_prefix(typ: &str) -> &str {
    match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    }
}

/// A `typ` to require, without its optional `application/` prefix: one or more visible
/// ASCII characters and no space (a media type, RFC 7515 4.1.9).
pub(crate) fn valid_typ(typ: &str) -> Result<&str, ConfigError> {
    let bare = strip_media_prefix(typ);
    if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::InvalidType(typ.to_owned()));
    }
    Ok(bare)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, VerificationKey};

    fn policy() -> Policy {
        let key = VerificationKey::hmac(jsonwebtoken::Algorithm::HS256, &[7; 32]).unwrap();
        Policy::new(KeySource::from(key).0)
    }

    fn claims(json: &str) -> Registered<'_> {
        Registered::read(json.as_bytes(), &[]).unwrap()
    }

    #[test]
    fn a_token_is_acceptable_until_exp_plus_leeway_or_its_maximum_age() {
        let mut p = policy();
        p.leeway = 5;
        let c = claims(r#"{"exp":1000,"iat":900}"#);
        assert_eq!(p.check_claims(&c, 1005), Ok(1005));
        assert_eq!(p.check_claims(&c, 1006), Err(AuthError::Expired));
        // The cache keeps an entry until the earlier of the two ends.
        p.max_age = Some(50);
        assert_eq!(p.check_claims(&c, 940), Ok(955));
        assert_eq!(p.check_claims(&c, 956), Err(AuthError::TooOld));
    }

    #[test]
    fn clock_arithmetic_saturates() {
        let mut p = policy();
        p.leeway = u64::MAX;
        let c = claims(r#"{"exp":18446744073709551615,"nbf":18446744073709551615}"#);
        assert_eq!(p.check_claims(&c, u64::MAX), Ok(u64::MAX));
    }

    #[test]
    fn media_type_prefix_is_ignored() {
        assert_eq!(strip_media_prefix("application/at+jwt"), "at+jwt");
        assert_eq!(strip_media_prefix("Application/AT+JWT"), "AT+JWT");
        assert_eq!(strip_media_prefix("JWT"), "JWT");
    }
}
