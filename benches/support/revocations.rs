//! The revocation set both benches measure against.

use jsonwebtoken::get_current_timestamp;
use tower_jwt_auth::Revocations;

/// 100k revoked `jti`s (32 hex digits, as `TokenIssuer` makes them) and 10k subjects, all of
/// issuer `todo-server`; the bench token is in neither.
pub fn revocations() -> Revocations {
    let revocations = Revocations::in_memory();
    let exp = get_current_timestamp() + 3600;
    for i in 0..100_000u128 {
        revocations.revoke_token(
            "todo-server",
            &format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            exp,
        );
    }
    for i in 0..10_000 {
        revocations.revoke_subject("todo-server", &format!("user-{i}"));
    }
    assert_eq!(revocations.len(), 110_000);
    revocations
}
