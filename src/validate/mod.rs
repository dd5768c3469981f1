//! Token validation: choose the issuer's policy, pick the key, verify, check the claims,
//! decode the claims type; remember tokens that passed when a cache is configured.
//!
//! Each token is decoded once: the header into a view of the members used ([`jws`]), which a
//! thread remembers for the next token with the same header; the payload, once the signature
//! verifies, into a reused buffer, from which the claims type `C` is decoded while the
//! registered claims ([`registered`]) are read from its members as they go by ([`tap`]).
//! Everything configurable is fixed when the layer is built; keys are read from
//! a lock-free snapshot and may change at run time (rotation, JWKS refresh). Nothing here
//! knows about HTTP.

mod cache;
pub(crate) mod jws;
mod policy;
mod registered;
mod tap;
mod validator;

pub use policy::{DEFAULT_LEEWAY, MAX_LEEWAY};
pub(crate) use registered::OneOrMany;
pub(crate) use validator::{Pending, Validated, Validator, Verdict};
#[cfg(feature = "jwks")]
pub(crate) use {
    policy::{Policy, valid_typ},
    registered::Registered,
};
