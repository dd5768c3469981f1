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
    /// The original method is not an HTTP method.
    Method,
    /// The original URI is not an origin-form URI (`/path?query`), or the host not a host.
    Uri,
    /// The path reads two ways: it has dot segments (`/a/../b`, also percent-encoded),
    /// encoded or doubled slashes, backslashes or a NUL, and an upstream may normalize it
    /// into another route than the one a rule matched.
    AmbiguousPath,
}

impl fmt::Display for OriginalRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Method => "the original method is malformed",
            Self::Uri => "the original URI is malformed",
            Self::AmbiguousPath => "the path is not in normal form",
        })
    }
}

impl std::error::Error for OriginalRequestError {}

impl OriginalRequest {
    /// Believes the headers of requests from these addresses only; from any other, the
    /// request is judged as it came.
    pub fn trusting(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            proxies: proxies.into_iter().collect(),
        }
    }

    /// From a trusted `peer`, puts the original method, URI and host in `req` (the first of
    /// `X-Original-*` and `X-Forwarded-*` present; one that is absent leaves `req`'s own), and
    /// returns the percent-decoded path that route rules match, which an upstream reads the
    /// same way. From any other peer, only the path check.
    pub fn apply<B>(
        &self,
        peer: IpAddr,
        req: &mut Request<B>,
    ) -> Result<String, OriginalRequestError> {
        if self.proxies.contains(&peer) {
            let headers = req.headers();
            let method = first(headers, &["x-original-method", "x-forwarded-method"])
                .map(|v| Method::from_bytes(v.as_bytes()))
                .transpose()
                .map_err(|_| OriginalRequestError::Method)?;
            let uri = first(headers, &["x-original-uri", "x-forwarded-uri"])
                .map(|v| Uri::try_from(v.as_bytes()))
                .transpose()
                .map_err(|_| OriginalRequestError::Uri)?;
            let host = first(headers, &["x-forwarded-host"]).cloned();
            if let Some(method) = method {
                *req.method_mut() = method;
            }
            if let Some(uri) = uri {
                // Origin form only: an absolute URI would bring an authority of its own.
                if uri.scheme().is_some() || uri.authority().is_some() {
                    return Err(OriginalRequestError::Uri);
                }
                *req.uri_mut() = uri;
            }
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

fn first<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a HeaderValue> {
    names.iter().find_map(|name| headers.get(*name))
}

/// `path` percent-decoded, when it reads one way: it starts with `/` and has no dot segment
/// (`.`, `..`, also encoded), no encoded slash, no empty segment, no backslash and no NUL.
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
        || decoded.contains(['\\', '\0'])
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

        // nginx's names first, when a proxy sends both.
        let mut req = asked(&[("x-forwarded-uri", "/b"), ("x-original-uri", "/a")]);
        assert_eq!(original.apply(PROXY, &mut req).unwrap(), "/a");
    }

    #[test]
    fn anyone_else_is_judged_as_they_came() {
        let original = OriginalRequest::trusting([PROXY]);
        let mut req = asked(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/public"),
            ("x-forwarded-host", "evil.example"),
        ]);
        *req.method_mut() = Method::DELETE;
        assert_eq!(original.apply(CLIENT, &mut req).unwrap(), "/");
        assert_eq!(req.method(), Method::DELETE);
        assert!(req.headers().get(header::HOST).is_none());
    }

    #[test]
    fn malformed_originals_are_refused() {
        let original = OriginalRequest::trusting([PROXY]);
        for (headers, error) in [
            (
                &[("x-original-method", "G(T")][..],
                OriginalRequestError::Method,
            ),
            (&[("x-original-uri", "/a b")][..], OriginalRequestError::Uri),
            (
                &[("x-original-uri", "http://other/a")][..],
                OriginalRequestError::Uri,
            ),
            (
                &[("x-forwarded-host", "a/b")][..],
                OriginalRequestError::Uri,
            ),
        ] {
            let mut req = asked(headers);
            assert_eq!(original.apply(PROXY, &mut req), Err(error), "{headers:?}");
        }
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
