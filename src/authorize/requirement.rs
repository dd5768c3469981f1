use std::{fmt, marker::PhantomData, sync::Arc};

use http::Extensions;

use crate::{AuthError, Claims, ConfigError, Scopes, claims::is_scope_token};

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
    pub(super) fn new<I>(scopes: I, all: bool) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scopes: Box<[Box<str>]> = scopes.into_iter().map(|s| Box::from(s.as_ref())).collect();
        if scopes.is_empty() {
            return Err(ConfigError::NoScopes);
        }
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(ConfigError::InvalidScope(bad.to_string()));
        }
        let challenge = scopes.join(" ").into();
        Ok(Self {
            scopes,
            all,
            challenge,
        })
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

/// A predicate on the typed claims; built by [`require`](crate::require).
pub struct RequireClaims<C, F> {
    predicate: F,
    _claims: PhantomData<fn(&C)>,
}

impl<C, F> RequireClaims<C, F> {
    pub(super) fn new(predicate: F) -> Self {
        Self {
            predicate,
            _claims: PhantomData,
        }
    }
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
        let req = RequireScope::new(["a", "b"], true).unwrap();
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
        let req = RequireScope::new(["a", "b"], false).unwrap();
        assert!(req.check(&with_scopes(&["b"])).is_ok());
        assert!(req.check(&with_scopes(&["c"])).is_err());
    }

    #[test]
    fn no_claims_is_unauthenticated() {
        let req = RequireScope::new(["a"], true).unwrap();
        assert_eq!(req.check(&Extensions::new()), Err(AuthError::MissingToken));
    }

    #[test]
    fn bad_scope_lists_are_config_errors_not_panics() {
        for bad in ["a b", "", "caf\u{e9}", "a\"b"] {
            let err = RequireScope::try_all(["ok", bad]).unwrap_err();
            assert_eq!(err, ConfigError::InvalidScope(bad.to_owned()));
            assert!(err.to_string().contains("not a valid scope"), "{err}");
        }
        let err = RequireScope::try_any(Vec::<String>::new()).unwrap_err();
        assert_eq!(err, ConfigError::NoScopes);
        assert_eq!(
            err.to_string(),
            "RequireScope needs at least one scope: without one it would require nothing"
        );
    }
}
