//! Server-provided DPoP nonces (RFC 9449 section 9), stateless: a nonce is the time step it
//! was made in and an HMAC of that step under the layer's secret, so any instance with the
//! secret accepts any instance's nonce, and nothing is stored.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::{AuthError, ConfigError};

pub(crate) struct Nonces {
    key: EncodingKey,
    step: u64,
}

impl Nonces {
    pub(crate) fn new(secret: &[u8], rotation: Duration) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::WeakSecret {
                min_len: 32,
                len: secret.len(),
            });
        }
        if rotation.as_secs() == 0 {
            return Err(ConfigError::OutOfRange(
                "the DPoP nonce rotation must be at least 1 second",
            ));
        }
        crate::crypto::ensure_provider();
        let key = EncodingKey::from_secret(secret)
            .map_err(|_| ConfigError::InvalidKey("the DPoP nonce secret is not usable"))?;
        Ok(Self {
            key,
            step: rotation.as_secs(),
        })
    }

    fn make(&self, step: u64) -> String {
        let tag = jsonwebtoken::crypto::sign(&step.to_be_bytes(), &self.key, Algorithm::HS256)
            .unwrap_or_default();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(step.to_be_bytes()), tag)
    }

    pub(crate) fn current(&self, now: u64) -> HeaderValue {
        // base64url and `.`: always a valid header value.
        HeaderValue::try_from(self.make(now / self.step)).unwrap_or(HeaderValue::from_static(""))
    }

    /// Checks a proof's `nonce`: this step's or the previous one's. A good nonce from the
    /// previous step is answered with the current one (to send on the response); a missing,
    /// forged or stale one is `use_dpop_nonce` with a fresh nonce.
    pub(crate) fn check(
        &self,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let current = now / self.step;
        let fresh = || AuthError::UseDpopNonce {
            nonce: self.make(current).into(),
        };
        let nonce = nonce.ok_or_else(fresh)?;
        let step = nonce
            .split_once('.')
            .and_then(|(step, _)| URL_SAFE_NO_PAD.decode(step).ok())
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(fresh)?;
        if step != current && step + 1 != current {
            return Err(fresh());
        }
        if !constant_time_eq(nonce.as_bytes(), self.make(step).as_bytes()) {
            return Err(fresh());
        }
        Ok((step != current).then(|| self.current(now)))
    }
}

/// Compares without an early exit, so the time taken does not say how much of a forged
/// nonce was right. Written by hand: one loop, where `subtle` would be a dependency.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces() -> Nonces {
        Nonces::new(&[9; 32], Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn a_nonce_is_good_for_its_step_and_the_next() {
        let n = nonces();
        let nonce = n.current(6_000);
        let nonce = nonce.to_str().unwrap();
        assert_eq!(n.check(Some(nonce), 6_059), Ok(None));
        // The next step: accepted, and the response carries the new nonce.
        let next = n.check(Some(nonce), 6_060).unwrap().unwrap();
        assert_eq!(next, n.current(6_060));
        assert!(matches!(
            n.check(Some(nonce), 6_120),
            Err(AuthError::UseDpopNonce { .. })
        ));
    }

    #[test]
    fn another_secrets_or_a_forged_nonce_is_refused_with_a_fresh_one() {
        let n = nonces();
        let other = Nonces::new(&[8; 32], Duration::from_secs(60)).unwrap();
        let theirs = other.current(6_000);
        for bad in [
            Some(theirs.to_str().unwrap()),
            Some("AAAAAAAAF3A.x"),
            Some("x"),
            None,
        ] {
            match n.check(bad, 6_000) {
                Err(AuthError::UseDpopNonce { nonce }) => {
                    assert_eq!(n.check(Some(&nonce), 6_000), Ok(None));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Any instance with the same secret accepts it.
        let twin = nonces();
        assert_eq!(
            twin.check(Some(n.current(6_000).to_str().unwrap()), 6_001),
            Ok(None)
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            Nonces::new(b"short", Duration::from_secs(60)),
            Err(ConfigError::WeakSecret { .. })
        ));
    }
}
