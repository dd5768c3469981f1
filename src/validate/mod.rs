//! Token validation: choose the issuer's policy, pick the key, verify, check the claims.
//!
//! Everything configurable is precomputed when the layer is built: each policy holds one
//! `jsonwebtoken::Validation` per algorithm it allows (issuers, audiences, leeway and required
//! claims already set), so the request path only looks a key up and calls
//! `jsonwebtoken::decode`. Keys themselves are read from a lock-free snapshot and may change
//! at run time (rotation, JWKS refresh).

mod payload;
mod validator;

pub use validator::DEFAULT_LEEWAY;
pub(crate) use validator::{Check, Validated, Validator};
