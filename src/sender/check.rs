//! The sender check: after a token is valid, whether the request that presented it may use
//! it. One function decides for every combination of scheme, binding and proof (the table
//! in the [module docs](super)).

use std::sync::Arc;

use http::{HeaderValue, Request};

use super::{
    ClientCertificate,
    dpop::{DpopMode, DpopVerifier},
};
use crate::{
    AuthError,
    claims::Confirmation,
    token::{Credential, Scheme},
    validate::{Pending, Verdict},
};

/// How the request proved it may use its token, inserted into the request's extensions
/// beside the claims; absent for a plain bearer token.
///
/// A handler can log it, or refuse bearer tokens on one route:
/// `req.extensions().get::<SenderConstraint>().is_some()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SenderConstraint {
    /// A DPoP-bound token with a valid proof of the key with this RFC 7638 thumbprint.
    Dpop {
        /// The key's SHA-256 thumbprint, as in the token's `cnf.jkt`.
        jkt: Arc<str>,
    },
    /// A certificate-bound token on a connection with the client certificate of this
    /// SHA-256 thumbprint (RFC 8705).
    Certificate {
        /// The certificate's thumbprint, as in the token's `cnf.x5t#S256`.
        x5t_s256: Arc<str>,
    },
}

/// What the sender check adds to a valid token.
#[derive(Clone, Default)]
pub(crate) struct Admission {
    pub(crate) constraint: Option<SenderConstraint>,
    /// A fresher server nonce for the response's `DPoP-Nonce`.
    pub(crate) nonce: Option<HeaderValue>,
}

/// The layer's sender-constraint configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Senders {
    pub(crate) dpop: Option<Arc<DpopVerifier>>,
}

impl Senders {
    /// Whether a token presented with `scheme` is read at all: `DPoP` only when DPoP is
    /// configured; otherwise it is an unsupported scheme, answered like no token.
    pub(crate) fn accepts(&self, scheme: Scheme) -> bool {
        match scheme {
            Scheme::Bearer => true,
            Scheme::Dpop => self.dpop.is_some(),
        }
    }

    /// The layer-wide mode: [`DpopMode::Off`] when DPoP is not configured.
    pub(crate) fn mode(&self) -> DpopMode {
        self.dpop.as_ref().map_or(DpopMode::Off, |d| d.mode)
    }

    /// The verdict on a request: a valid token stays valid only if the request may use it.
    pub(crate) fn check<C, B>(
        &self,
        verdict: Verdict<C>,
        credential: &Credential<'_>,
        req: &Request<B>,
    ) -> Verdict<C> {
        let Verdict::Valid(mut validated) = verdict else {
            return verdict;
        };
        let mode = validated.dpop.unwrap_or_else(|| self.mode());
        match self.admit(mode, validated.confirmation.as_ref(), credential, req) {
            Ok((admission, pending)) => {
                validated.admission = admission;
                match pending {
                    Some(pending) => Verdict::WaitForReplay(pending, validated),
                    None => Verdict::Valid(validated),
                }
            }
            Err(error) => Verdict::Invalid(error),
        }
    }

    fn admit<B>(
        &self,
        mode: DpopMode,
        confirmation: Option<&Confirmation>,
        credential: &Credential<'_>,
        req: &Request<B>,
    ) -> Result<(Admission, Option<Pending>), AuthError> {
        use Confirmation::{CertificateThumbprint, Jkt, Unsupported};
        match (credential.scheme, confirmation) {
            (_, Some(Unsupported)) => Err(AuthError::Binding(
                "the token is bound by a confirmation method this server cannot check",
            )),
            (Scheme::Bearer, Some(Jkt(_))) => Err(AuthError::Binding(
                "the token is bound to a DPoP key: send it with the DPoP scheme and a proof",
            )),
            (Scheme::Bearer, _) if mode == DpopMode::Required => Err(AuthError::Binding(
                "this resource accepts only DPoP-bound tokens",
            )),
            (Scheme::Bearer, Some(CertificateThumbprint(x5t))) => {
                match req.extensions().get::<ClientCertificate>() {
                    Some(cert) if cert.thumbprint() == &**x5t => Ok((
                        Admission {
                            constraint: Some(SenderConstraint::Certificate {
                                x5t_s256: x5t.clone(),
                            }),
                            nonce: None,
                        },
                        None,
                    )),
                    _ => Err(AuthError::Binding(
                        "the token is bound to a client certificate this connection did not present",
                    )),
                }
            }
            (Scheme::Bearer, None) => Ok((Admission::default(), None)),
            (Scheme::Dpop, _) if mode == DpopMode::Off => Err(AuthError::Binding(
                "tokens of this issuer are not accepted with the DPoP scheme",
            )),
            (Scheme::Dpop, Some(Jkt(jkt))) => {
                // Reachable only when DPoP is configured (`accepts`).
                let Some(dpop) = &self.dpop else {
                    return Err(AuthError::MissingToken);
                };
                let now = jsonwebtoken::get_current_timestamp();
                let proof = dpop.check(
                    req.method(),
                    req.uri(),
                    req.headers(),
                    Some(&credential.token),
                    now,
                )?;
                // RFC 9449 section 4.3 check 12: the proof's key is the token's.
                if proof.jkt != **jkt {
                    return Err(AuthError::InvalidDpopProof(
                        "the proof is signed by another key than the token is bound to",
                    ));
                }
                let admission = Admission {
                    constraint: Some(SenderConstraint::Dpop { jkt: jkt.clone() }),
                    nonce: proof.next_nonce,
                };
                Ok((admission, proof.claim))
            }
            (Scheme::Dpop, _) => Err(AuthError::Binding(
                "the token is not bound to a DPoP key: send it with the Bearer scheme",
            )),
        }
    }
}
