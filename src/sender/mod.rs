//! Sender-constrained tokens: a token bound to a key that whoever presents it must prove
//! to hold, so that a stolen token is useless on its own.
//!
//! - DPoP (RFC 9449): the token carries `cnf.jkt`, the thumbprint of the client's public
//!   key; each request sends `Authorization: DPoP <token>` and a `DPoP` header with a fresh
//!   proof JWT signed by that key, over the request's method and URI. Configured with
//!   [`Dpop`] on [`JwtAuthLayerBuilder::dpop`](crate::JwtAuthLayerBuilder::dpop).
//! - Certificate-bound tokens (RFC 8705 section 3): the token carries `cnf.x5t#S256`, the
//!   thumbprint of the client's TLS certificate, which the server puts into the request as a
//!   [`ClientCertificate`] extension: from its own TLS connection, or, through
//!   [`ForwardedCertificates`], from the `Client-Cert` header (RFC 9440) of a trusted
//!   TLS-terminating proxy.
//!
//! Whatever the configuration, a bound token is never accepted as a plain bearer token: a
//! token with `cnf.jkt` needs a valid proof, one with `cnf.x5t#S256` the certificate, and
//! one bound by any other `cnf` method is refused. A request that passed records how it was
//! bound in a [`SenderConstraint`] extension.
//!
//! | scheme | token | `DPoP` proof | answer |
//! |---|---|---|---|
//! | `Bearer` | not bound | ignored | accepted (unless the issuer's [`DpopMode`] is `Required`) |
//! | `Bearer` | `cnf.jkt` | any | `401 invalid_token`: send it with the `DPoP` scheme |
//! | `Bearer` | `cnf.x5t#S256` | ignored | accepted with the matching [`ClientCertificate`], else `401 invalid_token` |
//! | `DPoP` | `cnf.jkt` | valid, same key | accepted |
//! | `DPoP` | `cnf.jkt` | missing, two, or invalid | `401 invalid_dpop_proof` |
//! | `DPoP` | `cnf.jkt` | another key | `401 invalid_dpop_proof` |
//! | `DPoP` | not bound | any | `401 invalid_token`: send it with the `Bearer` scheme |
//! | `DPoP` | any | — (DPoP not configured) | `401` without an error code: an unsupported scheme |

mod certificate;
mod check;
mod dpop;
mod htu;
mod nonce;
mod proof;
mod replay;
#[cfg(feature = "redis")]
mod shared_replay;

pub use certificate::{CLIENT_CERT, CLIENT_CERT_CHAIN, ClientCertificate, ForwardedCertificates};
pub use check::SenderConstraint;
pub(crate) use check::{Admission, Senders};
pub(crate) use dpop::DPOP_NONCE;
pub use dpop::{DEFAULT_DPOP_ALGORITHMS, Dpop, DpopMode, DpopVerifier};
pub use replay::ReplayStore;
#[cfg(feature = "redis")]
pub use shared_replay::ReplayFallback;
