use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};

use crate::ConfigError;

/// A key that verifies tokens signed with exactly one algorithm.
///
/// `Debug` shows the algorithm and `kid`, never key material.
#[derive(Clone)]
pub struct VerificationKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
    pub(crate) kid: Option<Arc<str>>,
    /// A serial number (not the `kid`) that identifies this key (its material and algorithm) for as long as the process runs:
    /// clones share it, and no other key ever gets it. Caches of verified tokens and of
    /// verifiers are keyed by it, so they cannot outlive a rotated-out key.
    pub(crate) serial: u64,
}

impl VerificationKey {
    /// An HMAC secret for `HS256`, `HS384` or `HS512`.
    ///
    /// The secret must be at least as long as the hash output (32, 48 or 64 bytes,
    /// RFC 7518 section 3.2); a shorter one is [`ConfigError::WeakSecret`].
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        check_hmac_secret(algorithm, secret)?;
        let key = DecodingKey::from_secret(secret)
            .map_err(|_| ConfigError::InvalidKey("empty secret"))?;
        Ok(Self::new(key, algorithm))
    }

    /// A PEM-encoded public key (`-----BEGIN PUBLIC KEY-----`, or `BEGIN RSA PUBLIC KEY`, or
    /// a certificate) for an RSA, ECDSA or EdDSA algorithm.
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        crate::crypto::ensure_provider();
        let key = match algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::InvalidKey(
                    "an HMAC algorithm takes a secret, not a PEM key",
                ));
            }
        }
        .map_err(|_| {
            ConfigError::InvalidKey("the PEM does not hold a public key of this algorithm's family")
        })?;
        Self::checked(key, algorithm)
    }

    /// A DER-encoded public key: PKCS#1 `RSAPublicKey` for RSA, the SEC1 point for ECDSA, the
    /// raw 32 bytes for Ed25519.
    pub fn from_der(algorithm: Algorithm, der: &[u8]) -> Result<Self, ConfigError> {
        crate::crypto::ensure_provider();
        if der.is_empty() {
            return Err(ConfigError::InvalidKey("empty DER key"));
        }
        let key = match algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_der(der),
            AlgorithmFamily::Ec => DecodingKey::from_ec_der(der),
            AlgorithmFamily::Ed => DecodingKey::from_ed_der(der),
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::InvalidKey(
                    "an HMAC algorithm takes a secret, not a DER key",
                ));
            }
        };
        Self::checked(key, algorithm)
    }

    /// A public key from a JWK (RFC 7517). The algorithm is the JWK's `alg`, or is derived
    /// from its key type and curve when `alg` is absent (RSA keys then default to `RS256`);
    /// its `kid` becomes the key's `kid`. Symmetric (`oct`) JWKs must name their `alg`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        crate::crypto::ensure_provider();
        let algorithm = match (jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(alg), _) => Algorithm::try_from(alg).map_err(|_| {
                ConfigError::InvalidKey("the JWK's `alg` is not a signature algorithm")
            })?,
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(ConfigError::InvalidKey("unsupported elliptic curve")),
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            (None, _) => {
                return Err(ConfigError::InvalidKey(
                    "the JWK has no `alg` and no key type that implies one",
                ));
            }
        };
        let family_matches = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), _) => algorithm.family() == AlgorithmFamily::Rsa,
            // The curve decides the algorithm: a P-256 key labelled ES384 verifies nothing.
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => {
                p.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => {
                p.curve == EllipticCurve::P384
            }
            (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
                p.curve == EllipticCurve::Ed25519
            }
            (AlgorithmParameters::OctetKey(_), _) => algorithm.family() == AlgorithmFamily::Hmac,
            _ => false,
        };
        if !family_matches {
            return Err(ConfigError::InvalidKey(
                "the JWK's key type or curve does not match its `alg`",
            ));
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|_| ConfigError::InvalidKey("the JWK's key parameters are invalid"))?;
        if algorithm.family() == AlgorithmFamily::Hmac {
            check_hmac_secret(algorithm, key.try_get_as_bytes().unwrap_or_default())?;
        }
        let key = Self::checked(key, algorithm)?;
        Ok(match &jwk.common.key_id {
            Some(kid) => key.with_kid(kid.as_str()),
            None => key,
        })
    }

    /// A public key, refused when it is too weak to sign with: an RSA modulus under
    /// [`MIN_RSA_BITS`] (NIST SP 800-131A; such keys can be factored).
    fn checked(key: DecodingKey, algorithm: Algorithm) -> Result<Self, ConfigError> {
        if algorithm.family() == AlgorithmFamily::Rsa && rsa_modulus_bits(&key) < MIN_RSA_BITS {
            return Err(ConfigError::InvalidKey(
                "RSA keys shorter than 2048 bits are refused",
            ));
        }
        Ok(Self::new(key, algorithm))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        crate::crypto::ensure_provider();
        static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
        Self {
            key,
            algorithm,
            kid: None,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets the key id this key is selected by (the token header's `kid`).
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Whether `other` is this key under another identity: same algorithm, `kid` and key
    /// material. A refreshed JWKS keeps such keys as they were, so what was verified with
    /// them (cached tokens, built verifiers) stays valid.
    #[cfg(feature = "jwks")]
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        use jsonwebtoken::DecodingKeyKind::{RsaModulusExponent, SecretOrDer};
        self.algorithm == other.algorithm
            && self.kid == other.kid
            && match (self.key.kind(), other.key.kind()) {
                (SecretOrDer(a), SecretOrDer(b)) => a == b,
                (RsaModulusExponent { n, e }, RsaModulusExponent { n: n2, e: e2 }) => {
                    n == n2 && e == e2
                }
                _ => false,
            }
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The shortest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The size of an RSA public key's modulus (0 when it cannot be read).
fn rsa_modulus_bits(key: &DecodingKey) -> usize {
    use jsonwebtoken::{DecodingKeyKind, crypto::CryptoProvider};
    let n = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => n.clone(),
        DecodingKeyKind::SecretOrDer(der) => CryptoProvider::try_get_default()
            .and_then(|p| (p.key_utils.rsa_pub_components_from_public_key)(der).ok())
            .map(|(n, _)| n)
            .unwrap_or_default(),
    };
    match n.iter().position(|&b| b != 0) {
        Some(first) => (n.len() - first) * 8 - n[first].leading_zeros() as usize,
        None => 0,
    }
}

/// RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
pub(crate) fn check_hmac_secret(algorithm: Algorithm, secret: &[u8]) -> Result<(), ConfigError> {
    let min_len = match algorithm {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => return Err(ConfigError::InvalidKey("not an HMAC algorithm")),
    };
    if secret.len() < min_len {
        return Err(ConfigError::WeakSecret {
            min_len,
            len: secret.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_shorter_than_the_hash_are_refused() {
        assert_eq!(
            VerificationKey::hmac(Algorithm::HS256, &[1; 31]).unwrap_err(),
            ConfigError::WeakSecret {
                min_len: 32,
                len: 31
            }
        );
        assert!(VerificationKey::hmac(Algorithm::HS384, &[1; 47]).is_err());
        assert!(VerificationKey::hmac(Algorithm::HS512, &[1; 64]).is_ok());
    }

    #[test]
    fn hmac_secret_cannot_be_used_with_an_asymmetric_algorithm() {
        assert!(VerificationKey::hmac(Algorithm::RS256, &[1; 64]).is_err());
        assert!(
            VerificationKey::from_pem(Algorithm::HS256, b"-----BEGIN PUBLIC KEY-----").is_err()
        );
    }

    #[test]
    fn unparsable_pem_is_a_config_error() {
        let err = VerificationKey::from_pem(Algorithm::RS256, b"not a pem").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey(_)));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key =
            VerificationKey::hmac(Algorithm::HS256, b"super-secret-key-that-is-32-byte").unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(debug.contains("HS256"));
    }

    #[test]
    fn short_rsa_keys_and_mismatched_curves_are_refused() {
        let tiny: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "alg": "RS256", "e": "AQAB",
            "n": "wH3wGbCRpqyqs5K9H5CUzz0VqpsxTFQ7cW1yZ7qV1Ts"
        }))
        .unwrap();
        assert_eq!(
            VerificationKey::from_jwk(&tiny).unwrap_err(),
            ConfigError::InvalidKey("RSA keys shorter than 2048 bits are refused")
        );
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rsa.pub.pem"
        ))
        .unwrap();
        assert!(
            VerificationKey::from_pem(Algorithm::RS256, &pem).is_ok(),
            "2048 bits pass"
        );
        let x448: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "X448", "x": "AAAA"
        }))
        .unwrap();
        assert!(VerificationKey::from_jwk(&x448).is_err());
    }

    #[test]
    fn jwk_algorithm_must_match_key_type() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "oct", "alg": "RS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
        }))
        .unwrap();
        assert!(VerificationKey::from_jwk(&jwk).is_err());
    }
}
