use std::{fmt, marker::PhantomData, sync::Arc};

use http::Extensions;

use super::layer::AuthorizeLayer;
use crate::{AuthError, Claims, Scopes, validate::is_scope_token};

/// A check on what [`JwtAuth`](crate::JwtAuth) injected into a request's extensions.
///
/// Return [`AuthError::MissingToken`] when there are no claims (`401`), and
/// [`AuthError::Forbidden`] or [`AuthError::InsufficientScope`] when the claims do not grant
/// access (`403`). Implemented for every `Fn(&Extensions) -> Result<(), AuthError>`.
pub trait Requirement: Send + Sync + 'static {
    /// Checks the request's extensions.
    fn check(&self, extensions: &Extensions) -> Result<(), AuthError>;
}

impl<F> Requirement for F
where
    F: Fn(&Extensions) -> Result<(), AuthError> + Send + Sync + 'static,
{
    fn check(&self, extensions: &Extensions) -> Result<(), AuthError> {
        self(extensions)
    }
}

/// Requires scopes granted by the token's `scope` (or `scp`) claim.
#[derive(Debug)]
pub struct RequireScope {
    scopes: Box<[Box<str>]>,
    all: bool,
    /// The required scopes as sent in the `scope` attribute of the challenge.
    challenge: Arc<str>,
}

impl RequireScope {
    /// A layer that requires every one of `scopes`.
    ///
    /// # Panics
    ///
    /// When `scopes` is empty or a scope is not a valid RFC 6749 `scope-token` (visible
    /// ASCII except `"` and `\`).
    pub fn all<I>(scopes: I) -> AuthorizeLayer<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        AuthorizeLayer::new(Self::new(scopes, true))
    }

    /// A layer that requires at least one of `scopes`.
    ///
    /// # Panics
    ///
    /// As [`all`](Self::all).
    pub fn any<I>(scopes: I) -> AuthorizeLayer<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        AuthorizeLayer::new(Self::new(scopes, false))
    }

    fn new<I>(scopes: I, all: bool) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scopes: Box<[Box<str>]> = scopes.into_iter().map(|s| Box::from(s.as_ref())).collect();
        assert!(!scopes.is_empty(), "RequireScope needs at least one scope");
        for scope in &scopes {
            assert!(is_scope_token(scope), "invalid scope-token: {scope:?}");
        }
        let challenge = scopes.join(" ").into();
        Self {
            scopes,
            all,
            challenge,
        }
    }
}

impl Requirement for RequireScope {
    fn check(&self, extensions: &Extensions) -> Result<(), AuthError> {
        let granted = extensions.get::<Scopes>().ok_or(AuthError::MissingToken)?;
        let mut required = self.scopes.iter();
        let ok = if self.all {
            required.all(|s| granted.contains(s))
        } else {
            required.any(|s| granted.contains(s))
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.challenge.clone(),
            })
        }
    }
}

/// A predicate on the typed claims; built by [`require`].
pub struct RequireClaims<C, F> {
    predicate: F,
    _claims: PhantomData<fn(&C)>,
}

/// A layer that admits a request only when `predicate` holds for its [`Claims<C>`]; otherwise
/// it answers `403 insufficient_scope` (or `401` when there are no claims).
///
/// ```
/// use tower_jwt_auth::{StandardClaims, require};
///
/// let admins_only = require(|c: &StandardClaims| c.extra.get("role").is_some_and(|r| r == "admin"));
/// ```
pub fn require<C, F>(predicate: F) -> AuthorizeLayer<RequireClaims<C, F>>
where
    C: Send + Sync + 'static,
    F: Fn(&C) -> bool + Send + Sync + 'static,
{
    AuthorizeLayer::new(RequireClaims {
        predicate,
        _claims: PhantomData,
    })
}

impl<C, F> Requirement for RequireClaims<C, F>
where
    C: Send + Sync + 'static,
    F: Fn(&C) -> bool + Send + Sync + 'static,
{
    fn check(&self, extensions: &Extensions) -> Result<(), AuthError> {
        let claims = extensions
            .get::<Claims<C>>()
            .ok_or(AuthError::MissingToken)?;
        if (self.predicate)(claims) {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }
}

impl<C, F> fmt::Debug for RequireClaims<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireClaims")
            .field("claims", &std::any::type_name::<C>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_scopes(scopes: &[&str]) -> Extensions {
        let mut ext = Extensions::new();
        ext.insert(Scopes::from_iter(scopes.iter().copied()));
        ext
    }

    #[test]
    fn all_needs_every_scope() {
        let req = RequireScope::new(["a", "b"], true);
        assert!(req.check(&with_scopes(&["a", "b", "c"])).is_ok());
        assert_eq!(
            req.check(&with_scopes(&["a"])),
            Err(AuthError::InsufficientScope {
                required: "a b".into()
            })
        );
    }

    #[test]
    fn any_needs_one_scope() {
        let req = RequireScope::new(["a", "b"], false);
        assert!(req.check(&with_scopes(&["b"])).is_ok());
        assert!(req.check(&with_scopes(&["c"])).is_err());
    }

    #[test]
    fn no_claims_is_unauthenticated() {
        let req = RequireScope::new(["a"], true);
        assert_eq!(req.check(&Extensions::new()), Err(AuthError::MissingToken));
    }

    #[test]
    #[should_panic(expected = "invalid scope-token")]
    fn scope_with_space_panics() {
        RequireScope::new(["a b"], true);
    }

    #[test]
    #[should_panic(expected = "at least one scope")]
    fn empty_scope_list_panics() {
        RequireScope::new(Vec::<String>::new(), true);
    }
}
