//! The client certificate of a mutual-TLS connection, for certificate-bound tokens
//! (RFC 8705 section 3).

use std::{fmt, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The certificate the client presented on this request's TLS connection, in DER.
///
/// The server that terminates TLS inserts it into every request of the connection (with
/// tokio-rustls: the first certificate of `ServerConnection::peer_certificates`); the
/// layer then accepts a token with `cnf.x5t#S256` only when it is this certificate's
/// SHA-256 thumbprint. Without it, such a token is refused.
///
/// ```
/// use tower_jwt_auth::ClientCertificate;
///
/// let mut req = http::Request::new(());
/// # let der: Vec<u8> = vec![0x30, 0x00];
/// req.extensions_mut().insert(ClientCertificate::new(der));
/// ```
#[derive(Clone)]
pub struct ClientCertificate {
    der: Bytes,
    thumbprint: Arc<str>,
}

impl ClientCertificate {
    /// The certificate with these DER bytes.
    pub fn new(der: impl Into<Bytes>) -> Self {
        let der = der.into();
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(&der)).into();
        Self { der, thumbprint }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `x5t#S256`: base64url(SHA-256(DER)), as a bound token's `cnf` carries it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}
