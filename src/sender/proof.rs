//! One DPoP proof JWT (RFC 9449 section 4.2): its syntax, its key and its signature.
//!
//! The JWS is split by the validator's own [`Jws`], and the signature is checked by
//! `jsonwebtoken`'s crypto provider with a key built from the proof's `jwk` header; the
//! RFC 7638 thumbprint is `jsonwebtoken`'s too. What this module adds is what a DPoP proof
//! requires beyond a JWS: `typ`, an asymmetric algorithm from an allow-list that matches the
//! key's type, and a public key with no private member.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    AuthError, MIN_RSA_BITS,
    claims::NumericDate,
    validate::jws::{Jws, Object},
};

/// The longest proof read: an RSA-4096 `jwk` makes a proof of about 1.5 KiB.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// The members of a JWK that only a private (or symmetric) key has (RFC 7518 section 6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// An algorithm a proof may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofAlg {
    Es256,
    Es384,
    Rs256,
    Ps256,
    /// `EdDSA` (RFC 8037) or `Ed25519` (RFC 9864), with an Ed25519 key.
    Ed25519,
}

impl ProofAlg {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "RS256" => Self::Rs256,
            "PS256" => Self::Ps256,
            "EdDSA" | "Ed25519" => Self::Ed25519,
            _ => return None,
        })
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Es384 => Algorithm::ES384,
            Self::Rs256 => Algorithm::RS256,
            Self::Ps256 => Algorithm::PS256,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// Whether `key` is of the type and size this algorithm signs with.
    fn fits(self, key: &AlgorithmParameters) -> bool {
        match (self, key) {
            (Self::Es256, AlgorithmParameters::EllipticCurve(ec)) => {
                ec.curve == EllipticCurve::P256
            }
            (Self::Es384, AlgorithmParameters::EllipticCurve(ec)) => {
                ec.curve == EllipticCurve::P384
            }
            (Self::Rs256 | Self::Ps256, AlgorithmParameters::RSA(rsa)) => URL_SAFE_NO_PAD
                .decode(&rsa.n)
                .is_ok_and(|n| n.len() * 8 >= MIN_RSA_BITS),
            (Self::Ed25519, AlgorithmParameters::OctetKeyPair(okp)) => {
                okp.curve == EllipticCurve::Ed25519
            }
            _ => false,
        }
    }
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
    jwk: serde_json::Map<String, serde_json::Value>,
    /// No JWS extension is understood in a proof (RFC 7515 section 4.1.11).
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    htm: String,
    htu: String,
    iat: NumericDate,
    jti: String,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// A proof whose signature verifies with the key it carries; its claims are not checked
/// against the request yet.
pub(crate) struct Proof {
    pub(crate) htm: String,
    pub(crate) htu: String,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) ath: Option<String>,
    pub(crate) nonce: Option<String>,
    /// The RFC 7638 SHA-256 thumbprint of the proof's key.
    pub(crate) jkt: String,
}

/// Reads and verifies `proof` (RFC 9449 section 4.3, checks 2 to 7).
pub(crate) fn verify(proof: &str, algorithms: &[(String, ProofAlg)]) -> Result<Proof, AuthError> {
    let malformed = || AuthError::InvalidDpopProof("the DPoP proof is not a well-formed JWT");
    if proof.len() > MAX_PROOF_LEN {
        return Err(AuthError::InvalidDpopProof("the DPoP proof is too large"));
    }
    let jws = Jws::split(proof).map_err(|_| malformed())?;
    let Object::<Header>(header) =
        serde_json::from_slice(&jws.header_bytes().map_err(|_| malformed())?)
            .map_err(|_| malformed())?;
    let payload = jws.payload().map_err(|_| malformed())?;
    let Object::<Claims>(claims) = serde_json::from_slice(&payload).map_err(|_| {
        AuthError::InvalidDpopProof(
            "the DPoP proof lacks htm, htu, iat or jti, or one is malformed",
        )
    })?;
    if header.crit.is_some() {
        return Err(malformed());
    }
    if header.typ != "dpop+jwt" {
        return Err(AuthError::InvalidDpopProof(
            "the proof's typ is not dpop+jwt",
        ));
    }
    let alg = algorithms
        .iter()
        .find(|(name, _)| *name == header.alg)
        .map(|(_, alg)| *alg)
        .ok_or(AuthError::InvalidDpopProof(
            "the proof's algorithm is not accepted",
        ))?;
    if PRIVATE_MEMBERS.iter().any(|m| header.jwk.contains_key(*m)) {
        return Err(AuthError::InvalidDpopProof(
            "the proof's jwk is not a public key",
        ));
    }
    let jwk: Jwk = serde_json::from_value(serde_json::Value::Object(header.jwk))
        .map_err(|_| AuthError::InvalidDpopProof("the proof's jwk is not a valid key"))?;
    if !alg.fits(&jwk.algorithm) {
        return Err(AuthError::InvalidDpopProof(
            "the proof's jwk does not fit its algorithm",
        ));
    }
    crate::crypto::ensure_provider();
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|_| AuthError::InvalidDpopProof("the proof's jwk is not a valid key"))?;
    let verified = jsonwebtoken::crypto::verify(
        jws.signature(),
        jws.signing_input().as_bytes(),
        &key,
        alg.jwt(),
    );
    if !verified.unwrap_or(false) {
        return Err(AuthError::InvalidDpopProof(
            "the proof's signature does not verify with its jwk",
        ));
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| AuthError::InvalidDpopProof("the proof's jwk is not a valid key"))?;
    Ok(Proof {
        htm: claims.htm,
        htu: claims.htu,
        iat: claims.iat.0,
        jti: claims.jti,
        ath: claims.ath,
        nonce: claims.nonce,
        jkt,
    })
}

/// `ath`: base64url(SHA-256(the access token)), RFC 9449 section 4.2.
pub(crate) fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_hash_is_that_of_rfc_9449_section_7_1() {
        // The access token and its `ath` from the examples of RFC 9449 (figures 13 and 14).
        assert_eq!(
            token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn algorithms_fit_only_their_key_type() {
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
        }))
        .unwrap();
        assert!(ProofAlg::Es256.fits(&ec.algorithm));
        assert!(!ProofAlg::Es384.fits(&ec.algorithm));
        assert!(!ProofAlg::Ed25519.fits(&ec.algorithm));
        assert!(!ProofAlg::Rs256.fits(&ec.algorithm));
        assert_eq!(ProofAlg::parse("Ed25519"), ProofAlg::parse("EdDSA"));
        assert_eq!(ProofAlg::parse("HS256"), None);
        assert_eq!(ProofAlg::parse("none"), None);
    }
}
