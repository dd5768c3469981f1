//! What every [`JwtAuth`](super::JwtAuth) built from one layer shares: where the token is,
//! how it is validated, whether it is optional, and how rejections are answered.

use std::fmt;

use crate::{rejection::Rejecter, sender::Senders, token::TokenSource, validate::Validator};

pub(crate) struct Config<C> {
    pub(crate) validator: Validator<C>,
    pub(crate) source: TokenSource,
    /// Requests without a token pass through without claims.
    pub(crate) optional: bool,
    pub(crate) rejecter: Rejecter,
    /// Whether the request may use a valid token: DPoP proofs, client certificates.
    pub(crate) senders: Senders,
}

impl<C> Clone for Config<C> {
    fn clone(&self) -> Self {
        Self {
            validator: self.validator.clone(),
            source: self.source.clone(),
            optional: self.optional,
            rejecter: self.rejecter.clone(),
            senders: self.senders.clone(),
        }
    }
}

impl<C> fmt::Debug for Config<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("validator", &self.validator)
            .field("source", &self.source)
            .field("optional", &self.optional)
            .field("rejecter", &self.rejecter)
            .field("senders", &self.senders)
            .finish()
    }
}
