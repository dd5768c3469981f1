//! DPoP proofs as a client makes them (RFC 9449 section 4.2), signed with `jsonwebtoken`'s
//! crypto: a P-256 key from rcgen or an Ed25519 key, the public half as a JWK.
#![allow(dead_code)]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey,
    jwk::{Jwk, ThumbprintHash},
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// A client's proof key.
pub struct ProofKey {
    key: EncodingKey,
    alg: Algorithm,
    /// The `alg` the proofs name.
    pub name: &'static str,
    pub jwk: Value,
    /// Its RFC 7638 thumbprint, as a bound token's `cnf.jkt`.
    pub jkt: String,
}

impl ProofKey {
    pub fn es256() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::new(
            EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            Algorithm::ES256,
            "ES256",
        )
    }

    /// An Ed25519 key whose proofs name `alg` (`EdDSA` or `Ed25519`).
    pub fn ed25519(name: &'static str) -> Self {
        // A PKCS#8 v1 document around 32 random bytes (RFC 8410 section 7).
        let mut der = hex("302e020100300506032b657004220420");
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        der.extend_from_slice(&seed);
        Self::new(EncodingKey::from_ed_der(&der), Algorithm::EdDSA, name)
    }

    fn new(key: EncodingKey, alg: Algorithm, name: &'static str) -> Self {
        // Building any key installs the crate's crypto provider, which signing needs.
        let _ = tower_jwt_auth::VerificationKey::hmac(Algorithm::HS256, &[0; 32]);
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_algorithm = None;
        let jkt = jwk.thumbprint(ThumbprintHash::SHA256).unwrap();
        Self {
            key,
            alg,
            name,
            jwk: serde_json::to_value(&jwk).unwrap(),
            jkt,
        }
    }

    /// A proof for `htm htu` (with `ath` when there is a `token`), after `edit` changed its
    /// header and claims.
    pub fn proof_for(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        let mut jti = [0u8; 12];
        getrandom::fill(&mut jti).unwrap();
        let mut header = json!({"typ": "dpop+jwt", "alg": self.name, "jwk": self.jwk});
        let mut claims = json!({
            "htm": htm,
            "htu": htu,
            "iat": jsonwebtoken::get_current_timestamp(),
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        if let Some(token) = token {
            claims["ath"] = json!(ath(token));
        }
        edit(
            header.as_object_mut().unwrap(),
            claims.as_object_mut().unwrap(),
        );
        self.sign(&header, &claims)
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg).unwrap();
        format!("{input}.{signature}")
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `ath`: base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}
