//! The request a proxy asks about: for a forward-auth server behind nginx (`auth_request`),
//! Traefik (`ForwardAuth`) or Caddy (`forward_auth`).
//!
//! Such a proxy sends the auth server a request of its own and names the client's original
//! one in headers: nginx's configurations `X-Original-Method` and `X-Original-URI`, Traefik
//! and Caddy `X-Forwarded-Method`, `X-Forwarded-Host` and `X-Forwarded-Uri`.
//! [`OriginalRequest::apply`] puts that request in place of the proxy's, so that what
//! follows (route rules, [`RequireScope`](crate::RequireScope), DPoP's `htm` and `htu`)
//! judges the request the upstream will serve.

use std::{borrow::Cow, fmt, net::IpAddr, sync::Arc};

use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};

/// Reads the original request from the headers of trusted proxies; built with
/// [`OriginalRequest::trusting`].
///
/// ```
/// use http::{Method, Request};
/// use tower_jwt_auth::OriginalRequest;
///
/// let original = OriginalRequest::trusting([[127, 0, 0, 1].into()]);
/// let mut req = Request::get("/auth")
///     .header("x-original-method", "DELETE")
///     .header("x-original-uri", "/todos/7?force=1")
///     .body(())
///     .unwrap();
/// let path = original.apply([127, 0, 0, 1].into(), &mut req).unwrap();
/// assert_eq!((req.method(), req.uri().path()), (&Method::DELETE, "/todos/7"));
/// assert_eq!(path, "/todos/7");
/// ```
#[derive(Debug, Clone)]
pub struct OriginalRequest {
    proxies: Arc<[IpAddr]>,
}

/// Why [`OriginalRequest::apply`] cannot name the request to judge. A forward-auth server
/// answers it with `403`: nginx passes on only `401` and `403`, and turns anything else
/// into a `500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginalRequestError {
    /// A peer that is not a trusted proxy sent `X-Original-*` or `X-Forwarded-*` headers.
    Untrusted,
    /// A trusted proxy named no original method and URI.
    Missing,
    /// Both `X-Original-*` and `X-Forwarded-*` came, or one of them twice: one is a
    /// client's own, passed on by the proxy.
    Conflicting,
    /// The original method is not an HTTP method.
    Method,
    /// The original URI is not an origin-form URI (`/path?query`, no `#`), or the host not
    /// a host.
    Uri,
    /// The path reads two ways: dot segments (`/a/../b`, also percent-encoded), encoded or
    /// doubled slashes, a backslash, `;` parameters, a double encoding (`%25`) or a NUL. An
    /// upstream may read it as another route than the one a rule matched.
    AmbiguousPath,
}

impl fmt::Display for OriginalRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Untrusted => {
                "the original request is named by a peer that is not a trusted proxy"
            }
            Self::Missing => "the proxy named no original method and URI",
            Self::Conflicting => "the original request is named twice",
            Self::Method => "the original method is malformed",
            Self::Uri => "the original URI is malformed",
            Self::AmbiguousPath => "the path is not in normal form",
        })
    }
}

impl std::error::Error for OriginalRequestError {}

/// nginx's names (set in its configuration), then Traefik's and Caddy's.
const NGINX: [&str; 2] = ["x-original-method", "x-original-uri"];
const FORWARDED: [&str; 3] = ["x-forwarded-method", "x-forwarded-uri", "x-forwarded-host"];

impl OriginalRequest {
    /// Believes the headers of requests from these addresses only (an IPv4 address also
    /// as IPv6-mapped, as a dual-stack listener sees it).
    pub fn trusting(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            proxies: proxies.into_iter().map(|ip| ip.to_canonical()).collect(),
        }
    }

    /// Puts the original method, URI (and `X-Forwarded-Host` as `Host`) that a trusted
    /// `peer` names in place of `req`'s own, and returns the percent-decoded path that
    /// route rules match, which an upstream reads the same way.
    ///
    /// Fails closed: a trusted proxy must name both method and URI, in one family of
    /// headers, each once (a proxy sets its own and passes a client's others on); a peer
    /// that is not trusted must send none of them, and then its own request is judged.
    pub fn apply<B>(
        &self,
        peer: IpAddr,
        req: &mut Request<B>,
    ) -> Result<String, OriginalRequestError> {
        let headers = req.headers();
        let present = |names: &[&str]| names.iter().any(|n| headers.contains_key(*n));
        let (nginx, forwarded) = (present(&NGINX), present(&FORWARDED));
        if !self.proxies.contains(&peer.to_canonical()) {
            if nginx || forwarded {
                return Err(OriginalRequestError::Untrusted);
            }
        } else {
            let names = match (nginx, forwarded) {
                (true, true) => return Err(OriginalRequestError::Conflicting),
                (false, false) => return Err(OriginalRequestError::Missing),
                (true, false) => &NGINX[..],
                (false, true) => &FORWARDED[..],
            };
            let header = |i: usize| names.get(i).map_or(Ok(None), |name| once(headers, name));
            let (method, uri, host) = (header(0)?, header(1)?, header(2)?.cloned());
            let (Some(method), Some(uri)) = (method, uri) else {
                return Err(OriginalRequestError::Missing);
            };
            let method =
                Method::from_bytes(method.as_bytes()).map_err(|_| OriginalRequestError::Method)?;
            // Origin form only: an absolute URI would bring an authority of its own, and
            // the `#` a fragment that hides the rest of the path from the check below.
            let uri = Uri::try_from(uri.as_bytes())
                .ok()
                .filter(|u| u.scheme().is_none() && u.authority().is_none())
                .filter(|_| !uri.as_bytes().contains(&b'#'))
                .ok_or(OriginalRequestError::Uri)?;
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            if let Some(host) = host {
                host.to_str()
                    .ok()
                    .filter(|h| h.parse::<http::uri::Authority>().is_ok())
                    .ok_or(OriginalRequestError::Uri)?;
                req.headers_mut().insert(header::HOST, host);
            }
        }
        normal_path(req.uri().path())
            .map(Cow::into_owned)
            .ok_or(OriginalRequestError::AmbiguousPath)
    }
}

/// The value of `name`, which must come at most once.
fn once<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a HeaderValue>, OriginalRequestError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (value, None) => Ok(value),
        (_, Some(_)) => Err(OriginalRequestError::Conflicting),
    }
}

/// `path` percent-decoded, when it reads one way: it starts with `/` and has no dot segment
/// (`.`, `..`, also encoded), no encoded slash, no empty segment, no backslash, no `;`
/// (path parameters, which Java servers strip), no `%` left after decoding (a double
/// encoding, which some servers decode twice) and no NUL.
/// Resolving such a path instead would guess at the upstream's normalization, which
/// differs between servers (merging slashes first or not, decoding `%2F` or not).
fn normal_path(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    let encoded_slash = path
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let ambiguous = encoded_slash
        || decoded.contains(['\\', '\0', ';', '%'])
        || decoded.contains("//")
        || decoded.split('/').any(|s| s == "." || s == "..");
    (!ambiguous).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn asked(headers: &[(&'static str, &str)]) -> Request<()> {
        let mut req = Request::get("/").body(()).unwrap();
        for (name, value) in headers {
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap();
            req.headers_mut().append(*name, value);
        }
        req
    }

    #[test]
    fn nginx_traefik_and_caddy_names_are_read_from_trusted_proxies() {
        let original = OriginalRequest::trusting([PROXY]);
        let mut req = asked(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/todos?x=1"),
        ]);
        assert_eq!(original.apply(PROXY, &mut req).unwrap(), "/todos");
        assert_eq!(
            (req.method(), req.uri().to_string()),
            (&Method::POST, "/todos?x=1".into())
        );

        let mut req = asked(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-uri", "/todos/%37"),
        ]);
        assert_eq!(original.apply(PROXY, &mut req).unwrap(), "/todos/7");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(req.headers()[header::HOST], "api.example.com");

        // A dual-stack listener sees loopback as ::ffff:127.0.0.1.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let mut req = asked(&[("x-original-method", "GET"), ("x-original-uri", "/a")]);
        assert_eq!(original.apply(mapped, &mut req).unwrap(), "/a");
    }

    #[test]
    fn everything_else_fails_closed() {
        use OriginalRequestError::*;
        let original = OriginalRequest::trusting([PROXY]);
        let nginx = [("x-original-method", "GET"), ("x-original-uri", "/a")];
        for (peer, headers, error) in [
            // A client names the request it wants judged, past an untrusted hop.
            (CLIENT, &nginx[..], Untrusted),
            (CLIENT, &[("x-forwarded-uri", "/public")][..], Untrusted),
            // The proxy's own request is never judged in place of the original.
            (PROXY, &[][..], Missing),
            (PROXY, &[("x-original-uri", "/a")][..], Missing),
            // Through Caddy or Traefik, a client's own X-Original-*; through nginx, its
            // own X-Forwarded-*; or a header twice.
            (
                PROXY,
                &[nginx[0], nginx[1], ("x-forwarded-method", "DELETE")][..],
                Conflicting,
            ),
            (
                PROXY,
                &[nginx[0], nginx[1], ("x-forwarded-host", "evil")][..],
                Conflicting,
            ),
            (
                PROXY,
                &[nginx[0], nginx[1], ("x-original-uri", "/b")][..],
                Conflicting,
            ),
            (PROXY, &[("x-original-method", "G(T"), nginx[1]][..], Method),
            (PROXY, &[nginx[0], ("x-original-uri", "/a b")][..], Uri),
            (
                PROXY,
                &[nginx[0], ("x-original-uri", "http://other/a")][..],
                Uri,
            ),
            (
                PROXY,
                &[nginx[0], ("x-original-uri", "/health#/../admin")][..],
                Uri,
            ),
            (
                PROXY,
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/"),
                    ("x-forwarded-host", "a/b"),
                ][..],
                Uri,
            ),
        ] {
            let mut req = asked(headers);
            assert_eq!(
                original.apply(peer, &mut req),
                Err(error),
                "{peer} {headers:?}"
            );
        }
        // A client that names nothing is judged as it came.
        let mut req = asked(&[]);
        *req.method_mut() = http::Method::DELETE;
        assert_eq!(original.apply(CLIENT, &mut req).unwrap(), "/");
        assert_eq!(req.method(), http::Method::DELETE);
    }

    #[test]
    fn only_paths_that_read_one_way_are_judged() {
        for path in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E./b",
            "/a%2fb",
            "/a%2F..%2Fb",
            "//a",
            "/a//b",
            "/a\\b",
            "/a/%5c../b",
            "/a%00",
            "/%ff",
            "/a/..",
            "/..",
            "/a;x/b",
            "/a%3bx",
            "/a%252fb",
            "/a%25",
        ] {
            assert_eq!(normal_path(path), None, "{path}");
        }
        for (path, decoded) in [
            ("/", "/"),
            ("/a/b/", "/a/b/"),
            ("/%61dmin", "/admin"),
            ("/a.b/..c", "/a.b/..c"),
        ] {
            assert_eq!(normal_path(path).as_deref(), Some(decoded), "{path}");
        }
    }
}
