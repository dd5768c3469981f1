//! Token validation: choose the issuer's policy, pick the key, verify, check the claims,
//! decode the claims type; remember tokens that passed when a cache is configured.
//!
//! Each token is decoded once: the header into a borrowed view ([`jws`]), the payload into
//! one buffer that the registered claims ([`registered`]) and then the claims type `C` are
//! read from. Everything configurable is fixed when the layer is built; keys are read from
//! a lock-free snapshot and may change at run time (rotation, JWKS refresh). Nothing here
//! knows about HTTP.

mod cache;
pub(crate) mod jws;
mod policy;
mod registered;
mod validator;

pub use policy::{DEFAULT_LEEWAY, MAX_LEEWAY};
pub(crate) use registered::OneOrMany;
pub(crate) use validator::{Pending, Validated, Validator, Verdict};
#[cfg(feature = "jwks")]
pub(crate) use {
    policy::{Policy, valid_typ},
    registered::Registered,
};
