//! Every supported algorithm: a valid token passes; the same token with a corrupted
//! signature, signed with the wrong key, or with its algorithm swapped is rejected.

mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, VerificationKey};

/// One algorithm's material: the signing key, a second key of the same kind, and the
/// verification key (from the public PEM, or the secret).
struct Case {
    alg: Algorithm,
    signer: EncodingKey,
    other: EncodingKey,
    verifier: VerificationKey,
    /// The bytes an attacker would misuse as an HMAC secret.
    public_bytes: Vec<u8>,
}

fn private(alg: Algorithm, name: &str) -> EncodingKey {
    let pem = fixture(name);
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => unreachable!(),
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let secret = [42u8; 64];
        cases.push(Case {
            alg,
            signer: EncodingKey::from_secret(&secret).unwrap(),
            other: EncodingKey::from_secret(&[43u8; 64]).unwrap(),
            verifier: VerificationKey::hmac(alg, &secret).unwrap(),
            public_bytes: Vec::new(),
        });
    }
    let asymmetric = [
        (Algorithm::RS256, "rsa", "rsa2"),
        (Algorithm::RS384, "rsa", "rsa2"),
        (Algorithm::RS512, "rsa", "rsa2"),
        (Algorithm::PS256, "rsa", "rsa2"),
        (Algorithm::PS384, "rsa", "rsa2"),
        (Algorithm::PS512, "rsa", "rsa2"),
        (Algorithm::ES256, "ec-256", "ec-256-b"),
        (Algorithm::ES384, "ec-384", "ec-384-b"),
        (Algorithm::EdDSA, "ed25519", "ed25519-b"),
    ];
    for (alg, key, other) in asymmetric {
        let public = fixture(&format!("{key}.pub.pem"));
        cases.push(Case {
            alg,
            signer: private(alg, &format!("{key}.pem")),
            other: private(alg, &format!("{other}.pem")),
            verifier: VerificationKey::from_pem(alg, &public).unwrap(),
            public_bytes: public,
        });
    }
    cases
}

async fn status(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> (StatusCode, usize) {
    let (res, calls) = through(layer, token).await;
    (res.status, calls)
}

fn corrupt_signature(token: &str) -> String {
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 0x01;
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The same message re-labelled with another `alg`, signature kept.
fn relabel(token: &str, alg: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[0] = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    parts.join(".")
}

#[tokio::test]
async fn every_algorithm_accepts_good_and_rejects_forged_tokens() {
    for case in cases() {
        let layer = JwtAuthLayer::<StandardClaims>::builder()
            .key(case.verifier.clone())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()
            .unwrap();
        let name = format!("{:?}", case.alg);
        let token = mint_with(&Header::new(case.alg), &good_claims(), &case.signer);
        assert_eq!(
            status(&layer, &token).await,
            (StatusCode::OK, 1),
            "{name}: valid token"
        );

        let corrupted = corrupt_signature(&token);
        assert_eq!(
            status(&layer, &corrupted).await,
            (StatusCode::UNAUTHORIZED, 0),
            "{name}: corrupted signature"
        );

        let wrong_key = mint_with(&Header::new(case.alg), &good_claims(), &case.other);
        assert_eq!(
            status(&layer, &wrong_key).await,
            (StatusCode::UNAUTHORIZED, 0),
            "{name}: wrong key"
        );

        // Swapped to another algorithm, same family or not, with the signature kept.
        for other in ["HS256", "RS256", "PS256", "ES256", "EdDSA", "none"] {
            if other != name {
                let swapped = relabel(&token, other);
                assert_eq!(
                    status(&layer, &swapped).await,
                    (StatusCode::UNAUTHORIZED, 0),
                    "{name} relabelled {other}"
                );
            }
        }

        // The public key misused as an HMAC secret (algorithm confusion).
        if !case.public_bytes.is_empty() {
            let hs = mint_with(
                &Header::new(Algorithm::HS256),
                &good_claims(),
                &EncodingKey::from_secret(&case.public_bytes).unwrap(),
            );
            assert_eq!(
                status(&layer, &hs).await,
                (StatusCode::UNAUTHORIZED, 0),
                "{name}: HS256 with the public key"
            );
        }
    }
}

#[tokio::test]
async fn keys_from_jwk_verify_like_keys_from_pem() {
    for (alg, pem) in [
        (Algorithm::RS256, "rsa.pem"),
        (Algorithm::ES256, "ec-256.pem"),
        (Algorithm::EdDSA, "ed25519.pem"),
    ] {
        let signer = private(alg, pem);
        let mut jwk = Jwk::from_encoding_key(&signer, alg).unwrap();
        jwk.common.key_id = Some("k1".into());
        let key = VerificationKey::from_jwk(&jwk).unwrap();
        assert_eq!((key.algorithm(), key.kid()), (alg, Some("k1")));
        let layer = JwtAuthLayer::<StandardClaims>::builder()
            .key(key)
            .audience(AUDIENCE)
            .build()
            .unwrap();
        let mut header = Header::new(alg);
        header.kid = Some("k1".into());
        let token = mint_with(&header, &good_claims(), &signer);
        assert_eq!(status(&layer, &token).await.0, StatusCode::OK, "{alg:?}");
    }
}

#[tokio::test]
async fn key_set_picks_by_kid_and_rejects_unknown_kid() {
    let rsa = private(Algorithm::RS256, "rsa.pem");
    let ed = private(Algorithm::EdDSA, "ed25519.pem");
    let keys = tower_jwt_auth::KeySet::new([
        VerificationKey::from_pem(Algorithm::RS256, &fixture("rsa.pub.pem"))
            .unwrap()
            .with_kid("rsa-1"),
        VerificationKey::from_pem(Algorithm::EdDSA, &fixture("ed25519.pub.pem"))
            .unwrap()
            .with_kid("ed-1"),
    ])
    .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(keys.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let with_kid = |alg, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        mint_with(&header, &good_claims(), key)
    };
    assert_eq!(
        status(&layer, &with_kid(Algorithm::RS256, "rsa-1", &rsa))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        status(&layer, &with_kid(Algorithm::EdDSA, "ed-1", &ed))
            .await
            .0,
        StatusCode::OK
    );
    // The right key under the wrong kid: the named key is used, and it does not verify.
    assert_eq!(
        status(&layer, &with_kid(Algorithm::EdDSA, "rsa-1", &ed))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (res, _) = through(&layer, &with_kid(Algorithm::EdDSA, "nope", &ed)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's key id is not known"
    );

    // Rotation: retire rsa-1; the same layer refuses its tokens at once.
    assert!(keys.remove("rsa-1"));
    assert_eq!(
        status(&layer, &with_kid(Algorithm::RS256, "rsa-1", &rsa))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    keys.insert(
        VerificationKey::from_pem(Algorithm::RS256, &fixture("rsa.pub.pem"))
            .unwrap()
            .with_kid("rsa-2"),
    )
    .unwrap();
    assert_eq!(
        status(&layer, &with_kid(Algorithm::RS256, "rsa-2", &rsa))
            .await
            .0,
        StatusCode::OK
    );
}
