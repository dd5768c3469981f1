//! The client certificate of a mutual-TLS connection, for certificate-bound tokens
//! (RFC 8705 section 3): from the TLS connection, or from a trusted proxy's `Client-Cert`
//! header (RFC 9440).

use std::{fmt, net::IpAddr, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
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

/// `Client-Cert` (RFC 9440 section 2.2): the client certificate a TLS-terminating proxy
/// forwards, as a structured-field byte sequence of its DER.
pub const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
/// `Client-Cert-Chain` (RFC 9440 section 2.3): the rest of the chain. The layer does not
/// read it; [`ForwardedCertificates`] removes it with `Client-Cert` from untrusted peers.
pub const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");

/// The TLS-terminating proxies whose `Client-Cert` header (RFC 9440) names the client
/// certificate of a request; none by default.
///
/// The server that accepts a connection calls [`apply`](Self::apply) with the peer's
/// address for each request: from a listed proxy a well-formed `Client-Cert` becomes the
/// request's [`ClientCertificate`]; from anyone else `Client-Cert` and `Client-Cert-Chain`
/// are removed, so that neither the layer nor a handler behind it can be fooled by a
/// header a client wrote (RFC 9440 section 4). A proxy must itself remove those headers
/// from what clients send; the certificate it forwards is the one it verified.
///
/// ```
/// use std::net::IpAddr;
///
/// use tower_jwt_auth::{ClientCertificate, ForwardedCertificates};
///
/// let proxy: IpAddr = "10.0.0.5".parse().unwrap();
/// let proxies = ForwardedCertificates::new([proxy]);
/// let forwarded = || {
///     http::Request::builder()
///         .header("client-cert", ":MAA=:") // the DER bytes 30 00
///         .body(())
///         .unwrap()
/// };
///
/// let mut req = forwarded();
/// proxies.apply(proxy, &mut req);
/// assert_eq!(req.extensions().get::<ClientCertificate>().unwrap().der(), [0x30, 0x00]);
///
/// let mut req = forwarded();
/// proxies.apply("192.0.2.1".parse().unwrap(), &mut req);
/// assert!(req.extensions().get::<ClientCertificate>().is_none());
/// assert!(req.headers().get("client-cert").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ForwardedCertificates {
    proxies: Arc<[IpAddr]>,
}

impl ForwardedCertificates {
    /// Believes `Client-Cert` from these addresses only.
    pub fn new(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            proxies: proxies.into_iter().collect(),
        }
    }

    /// Puts the certificate a trusted proxy forwarded into `req`'s extensions (replacing
    /// any the connection had: that one is the proxy's own), or strips the headers when
    /// `peer` is not a trusted proxy. A malformed `Client-Cert`, or more than one, from a
    /// trusted proxy gives no certificate, so a certificate-bound token is refused.
    pub fn apply<B>(&self, peer: IpAddr, req: &mut Request<B>) {
        let trusted = self.proxies.contains(&peer) || {
            let mapped = match peer {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            mapped.is_some_and(|ip| self.proxies.contains(&ip))
        };
        if !trusted {
            req.headers_mut().remove(CLIENT_CERT);
            req.headers_mut().remove(CLIENT_CERT_CHAIN);
            return;
        }
        let mut values = req.headers().get_all(CLIENT_CERT).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            if req.headers().contains_key(CLIENT_CERT) {
                tracing::warn!(%peer, "a trusted proxy sent more than one Client-Cert header");
            }
            return;
        };
        match ClientCertificate::from_client_cert(value) {
            Some(cert) => {
                req.extensions_mut().insert(cert);
            }
            None => tracing::warn!(%peer, "a trusted proxy sent a malformed Client-Cert header"),
        }
    }
}

impl ClientCertificate {
    /// The certificate in an RFC 9440 `Client-Cert` value (an RFC 9651 byte sequence,
    /// `:base64(DER):`, parameters ignored); `None` when it is not one, or is empty.
    pub fn from_client_cert(value: &HeaderValue) -> Option<Self> {
        let item: sfv::Item = sfv::Parser::new(value.as_bytes()).parse().ok()?;
        let der = item.bare_item.as_byte_sequence()?;
        (!der.is_empty()).then(|| Self::new(der.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: &str = "10.0.0.5";

    fn request(client_cert: &[&str]) -> Request<()> {
        let mut req = Request::new(());
        for value in client_cert {
            req.headers_mut()
                .append(CLIENT_CERT, HeaderValue::from_str(value).unwrap());
        }
        req.headers_mut()
            .insert(CLIENT_CERT_CHAIN, HeaderValue::from_static(":MAA=:"));
        req
    }

    fn forwarded(peer: &str, client_cert: &[&str]) -> Request<()> {
        let mut req = request(client_cert);
        ForwardedCertificates::new([PROXY.parse().unwrap()]).apply(peer.parse().unwrap(), &mut req);
        req
    }

    fn der(req: &Request<()>) -> Option<Vec<u8>> {
        req.extensions()
            .get::<ClientCertificate>()
            .map(|c| c.der().to_vec())
    }

    #[test]
    fn a_trusted_proxy_forwards_the_certificate_with_or_without_parameters() {
        assert_eq!(
            der(&forwarded(PROXY, &[":MIIB:"])),
            Some(vec![0x30, 0x82, 0x01])
        );
        assert_eq!(
            der(&forwarded(PROXY, &[":MAA=:;x=1"])),
            Some(vec![0x30, 0x00])
        );
        // Its IPv4-mapped IPv6 address is the same proxy.
        assert_eq!(
            der(&forwarded("::ffff:10.0.0.5", &[":MAA=:"])),
            Some(vec![0x30, 0x00])
        );
    }

    #[test]
    fn anyone_else_gets_the_headers_removed_and_no_certificate() {
        let req = forwarded("10.0.0.6", &[":MAA=:"]);
        assert_eq!(der(&req), None);
        assert!(req.headers().get(CLIENT_CERT).is_none());
        assert!(req.headers().get(CLIENT_CERT_CHAIN).is_none());
    }

    #[test]
    fn malformed_or_repeated_headers_from_a_trusted_proxy_give_no_certificate() {
        for values in [
            &["MAA="][..],       // a token, not a byte sequence
            &[":MAA=="],         // bad base64
            &["::"],             // empty
            &[":MAA=:, :MAA=:"], // a list, not an item
            &[":MAA=:", ":MAE=:"],
        ] {
            assert_eq!(der(&forwarded(PROXY, values)), None, "{values:?}");
        }
        // Without a header, a certificate the connection had stays.
        let mut req = request(&[]);
        req.extensions_mut().insert(ClientCertificate::new(vec![1]));
        ForwardedCertificates::new([PROXY.parse().unwrap()])
            .apply(PROXY.parse().unwrap(), &mut req);
        assert_eq!(der(&req), Some(vec![1]));
    }

    #[test]
    fn the_thumbprint_is_base64url_of_sha256_of_der() {
        // SHA-256 of the empty input.
        assert_eq!(
            ClientCertificate::new(Vec::new()).thumbprint(),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
