//! Where the token comes from (RFC 6750 section 2), and under which scheme.
//!
//! The default source is the `Authorization` header (section 2.1) with the `Bearer` scheme,
//! or the `DPoP` scheme of RFC 9449 section 7.1 for sender-constrained tokens. A layer can
//! instead read a named cookie, a custom header carrying the bare token, or anything a closure
//! finds in the request head. Whatever the source, a token longer than the configured limit
//! is refused before any decoding happens.

use std::{borrow::Cow, fmt, sync::Arc};

use http::{HeaderMap, HeaderName, Uri, header};

use crate::AuthError;

/// The default limit on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// The authentication scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer`, or any source other than the `Authorization` header.
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 section 7.1): the request must carry a proof.
    Dpop,
}

/// A token as the request presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential<'a> {
    pub(crate) scheme: Scheme,
    pub(crate) token: Cow<'a, str>,
}

impl Credential<'_> {
    pub(crate) fn into_owned(self) -> Credential<'static> {
        Credential {
            scheme: self.scheme,
            token: Cow::Owned(self.token.into_owned()),
        }
    }
}

type ExtractFn = dyn Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync;

/// Where a layer looks for the token.
#[derive(Clone, Default)]
pub(crate) enum TokenSource {
    /// `Authorization: Bearer <token>`.
    #[default]
    Authorization,
    /// A header whose whole value is the token.
    Header(HeaderName),
    /// A cookie with this name.
    Cookie(Arc<str>),
    /// A user-supplied function.
    Custom(Arc<ExtractFn>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authorization => f.write_str("Authorization"),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Cookie(name) => f.debug_tuple("Cookie").field(name).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl TokenSource {
    pub(crate) fn custom<F>(f: F) -> Self
    where
        F: Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// Finds the token: `Ok(None)` when the request carries none, an error when the request
    /// is malformed or the token is too long.
    pub(crate) fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &Uri,
        max_len: usize,
    ) -> Result<Option<Credential<'a>>, AuthError> {
        let (scheme, token) = match self {
            Self::Authorization => match from_authorization(headers)? {
                Some((scheme, token)) => (scheme, Cow::Borrowed(token)),
                None => return Ok(None),
            },
            Self::Header(name) => match single_header(headers, name)? {
                Some(token) => (Scheme::Bearer, Cow::Borrowed(token)),
                None => return Ok(None),
            },
            Self::Cookie(name) => match cookie(headers, name)? {
                Some(token) => (Scheme::Bearer, Cow::Borrowed(token)),
                None => return Ok(None),
            },
            Self::Custom(f) => match f(headers, uri) {
                Some(token) => (Scheme::Bearer, Cow::Owned(token)),
                None => return Ok(None),
            },
        };
        // Only the length is checked here. The token's syntax is the validator's: a JWS is
        // three base64url parts, a subset of RFC 6750's `b64token`, and a token outside it is
        // `401 invalid_token` (section 3.1: malformed), not a malformed request.
        if token.len() > max_len {
            return Err(AuthError::TokenTooLarge);
        }
        Ok(Some(Credential { scheme, token }))
    }
}

/// Reads exactly one header value as visible ASCII; several values are a malformed request.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one credentials header",
        ));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AuthError::InvalidRequest("the credentials header is not visible ASCII"))
}

/// `credentials = ("Bearer" / "DPoP") 1*SP token`, the scheme matched case-insensitively
/// (RFC 9110 section 11.1).
///
/// Another scheme (say `Basic`) counts as no token: RFC 6750 section 3.1 asks for a challenge
/// without an error code when the client used an unsupported authentication method. Whether
/// `DPoP` is supported is the layer's decision, made after extraction.
fn from_authorization(headers: &HeaderMap) -> Result<Option<(Scheme, &str)>, AuthError> {
    let Some(value) = single_header(headers, &header::AUTHORIZATION)? else {
        return Ok(None);
    };
    let (name, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if name.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if name.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest(match scheme {
            Scheme::Bearer => "the Bearer scheme carries no token",
            Scheme::Dpop => "the DPoP scheme carries no token",
        }));
    }
    Ok(Some((scheme, token)))
}

/// Finds the first cookie called `name` in any `Cookie` header.
///
/// Written by hand: a lookup of one name needs no jar, and the `cookie` crate would bring
/// percent-decoding and date parsing that a bearer token never uses.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    for value in headers.get_all(header::COOKIE) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidRequest("the Cookie header is not visible ASCII"))?;
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                return Ok(Some(v.trim_matches('"')));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn extract(
        source: &TokenSource,
        headers: &[(&str, &[u8])],
    ) -> Result<Option<String>, AuthError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        source
            .extract(&map, &Uri::from_static("/"), DEFAULT_MAX_TOKEN_LEN)
            .map(|t| t.map(|c| c.token.into_owned()))
    }

    fn bearer(value: &[u8]) -> Result<Option<String>, AuthError> {
        extract(&TokenSource::Authorization, &[("authorization", value)])
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_may_repeat() {
        assert_eq!(bearer(b"bEaReR   a.b.c").unwrap().as_deref(), Some("a.b.c"));
    }

    #[test]
    fn the_dpop_scheme_is_told_apart_from_bearer() {
        let mut map = HeaderMap::new();
        map.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("dpop  a.b.c"),
        );
        let got = TokenSource::Authorization
            .extract(&map, &Uri::from_static("/"), DEFAULT_MAX_TOKEN_LEN)
            .unwrap()
            .unwrap();
        assert_eq!((got.scheme, &*got.token), (Scheme::Dpop, "a.b.c"));
        assert!(matches!(bearer(b"Bearer a.b.c"), Ok(Some(_))));
        assert_eq!(
            extract(&TokenSource::Authorization, &[("authorization", b"DPoP")]),
            Err(AuthError::InvalidRequest(
                "the DPoP scheme carries no token"
            ))
        );
    }

    #[test]
    fn no_header_is_no_token() {
        assert_eq!(extract(&TokenSource::Authorization, &[]).unwrap(), None);
    }

    #[test]
    fn other_scheme_is_no_token() {
        assert_eq!(bearer(b"Basic YWxpY2U6d29uZGVybGFuZA==").unwrap(), None);
    }

    #[test]
    fn bare_bearer_is_invalid_request() {
        assert!(matches!(
            bearer(b"Bearer"),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            bearer(b"Bearer   "),
            Err(AuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn two_authorization_headers_are_invalid_request() {
        let r = extract(
            &TokenSource::Authorization,
            &[
                ("authorization", b"Bearer a.b.c"),
                ("authorization", b"Bearer d.e.f"),
            ],
        );
        assert!(matches!(r, Err(AuthError::InvalidRequest(_))));
    }

    #[test]
    fn non_ascii_value_is_invalid_request() {
        assert!(matches!(
            bearer(b"Bearer a.b.\xff"),
            Err(AuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn the_token_syntax_is_left_to_the_validator() {
        // Not a malformed request: a malformed token, which validation answers with
        // `invalid_token` (RFC 6750 section 3.1).
        assert_eq!(bearer(b"Bearer a.b c").unwrap().as_deref(), Some("a.b c"));
        assert_eq!(bearer(b"Bearer a*b").unwrap().as_deref(), Some("a*b"));
    }

    #[test]
    fn oversized_token_is_refused() {
        let long = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1));
        assert_eq!(bearer(long.as_bytes()), Err(AuthError::TokenTooLarge));
    }

    #[test]
    fn cookie_source_finds_named_cookie() {
        let src = TokenSource::Cookie("jwt".into());
        let r = extract(&src, &[("cookie", b"theme=dark; jwt=a.b.c; x=y")]).unwrap();
        assert_eq!(r.as_deref(), Some("a.b.c"));
        assert_eq!(extract(&src, &[("cookie", b"jwtx=a.b.c")]).unwrap(), None);
    }

    #[test]
    fn custom_header_source_reads_the_bare_value() {
        let src = TokenSource::Header(HeaderName::from_static("x-api-token"));
        assert_eq!(
            extract(&src, &[("x-api-token", b"a.b.c")])
                .unwrap()
                .as_deref(),
            Some("a.b.c")
        );
    }

    #[test]
    fn custom_fn_source_is_checked_too() {
        let src = TokenSource::custom(|_, uri| uri.query().map(str::to_owned));
        let map = HeaderMap::new();
        let got = src.extract(&map, &Uri::from_static("/?a.b.c"), 16).unwrap();
        assert_eq!(got.map(|c| c.token).as_deref(), Some("a.b.c"));
        let err = src
            .extract(&map, &Uri::from_static("/?aaaaaaaa.bbbbbbbb.c"), 16)
            .unwrap_err();
        assert_eq!(err, AuthError::TokenTooLarge);
    }
}
