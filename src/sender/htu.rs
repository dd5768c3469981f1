//! The URI a DPoP proof must name (`htu`, RFC 9449 section 4.3 check 9): the resource's
//! public origin followed by the request's path, without query and fragment, compared after
//! the syntax-based and scheme-based normalization of RFC 3986 sections 6.2.2 and 6.2.3
//! (done by `fluent-uri`).

use std::fmt;

use http::{HeaderMap, Uri, header};

use crate::ConfigError;

/// Where the public part of the request URI comes from.
pub(crate) enum Origin {
    /// Configured: `scheme://authority[/prefix]`, normalized, without a trailing `/`.
    Fixed(String),
    /// The request's `Host`, when it is one of these (lowercase), behind `scheme`.
    Hosts { scheme: String, hosts: Vec<String> },
}

impl Origin {
    pub(crate) fn fixed(origin: &str) -> Result<Self, ConfigError> {
        let invalid = ConfigError::InvalidValue(
            "the DPoP public origin must be an http or https URL with a host and no query, \
             such as https://api.example.com",
        );
        let uri = fluent_uri::Uri::parse(origin).map_err(|_| invalid.clone())?;
        let scheme = uri.scheme().as_str().to_ascii_lowercase();
        let plain = uri
            .authority()
            .is_some_and(|a| !a.host().is_empty() && a.userinfo().is_none());
        if !(scheme == "http" || scheme == "https")
            || !plain
            || uri.query().is_some()
            || uri.fragment().is_some()
        {
            return Err(invalid);
        }
        let normalized = uri.normalize();
        Ok(Self::Fixed(
            normalized.as_str().trim_end_matches('/').to_owned(),
        ))
    }

    pub(crate) fn hosts(scheme: &str, hosts: &[String]) -> Result<Self, ConfigError> {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(ConfigError::InvalidValue(
                "the DPoP scheme for allowed hosts must be http or https",
            ));
        }
        if hosts.is_empty() {
            return Err(ConfigError::InvalidValue(
                "`Dpop::for_hosts` needs at least one host",
            ));
        }
        let mut lowered = Vec::with_capacity(hosts.len());
        for host in hosts {
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
                return Err(ConfigError::InvalidValue(
                    "an allowed DPoP host is `host` or `host:port`, visible ASCII without `/`",
                ));
            }
            lowered.push(host.to_ascii_lowercase());
        }
        Ok(Self::Hosts {
            scheme,
            hosts: lowered,
        })
    }

    /// Whether `htu` names the request whose URI is `uri`: the public origin and the
    /// request's path, ignoring the query and fragment of both.
    pub(crate) fn matches(&self, htu: &str, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(target) = self.target(uri, headers) else {
            return false;
        };
        match (normalized(htu), normalized(&target)) {
            (Some(htu), Some(target)) => htu == target,
            _ => false,
        }
    }

    /// The request URI as clients see it, before normalization.
    fn target(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        let path = uri.path();
        match self {
            Self::Fixed(base) => Some(format!("{base}{path}")),
            Self::Hosts { scheme, hosts } => {
                // HTTP/1.1 puts the host in `Host`; HTTP/2 in `:authority`, which hyper
                // exposes as the URI's authority.
                let host = match headers.get(header::HOST) {
                    Some(host) => host.to_str().ok()?,
                    None => uri.authority()?.as_str(),
                };
                let host = host.to_ascii_lowercase();
                hosts
                    .contains(&host)
                    .then(|| format!("{scheme}://{host}{path}"))
            }
        }
    }
}

/// `uri` normalized (RFC 3986 sections 6.2.2, 6.2.3), without its query and fragment, and
/// with an empty path written `/`; `None` unless it is an absolute URI with a host.
fn normalized(uri: &str) -> Option<String> {
    let uri = fluent_uri::Uri::parse(uri).ok()?;
    uri.authority()?;
    let mut normal = uri.normalize().into_string();
    if let Some(end) = normal.find(['?', '#']) {
        normal.truncate(end);
    }
    // `scheme://authority` has an empty path: `http://a` and `http://a/` name one resource
    // (section 6.2.3).
    let after_scheme = normal.find("://").map_or(0, |i| i + 3);
    if !normal[after_scheme..].contains('/') {
        normal.push('/');
    }
    Some(normal)
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(origin) => f.debug_tuple("Fixed").field(origin).finish(),
            Self::Hosts { scheme, hosts } => f
                .debug_struct("Hosts")
                .field("scheme", scheme)
                .field("hosts", hosts)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(origin: &Origin, htu: &str, path: &str) -> bool {
        origin.matches(htu, &path.parse().unwrap(), &HeaderMap::new())
    }

    #[test]
    fn htu_is_compared_after_rfc_3986_normalization() {
        let origin = Origin::fixed("https://API.example.com:443").unwrap();
        for same in [
            "https://api.example.com/todos/1",
            "HTTPS://api.EXAMPLE.com:443/todos/1",
            "https://api.example.com/todos/%31",
            "https://api.example.com/a/../todos/./1",
            "https://api.example.com/todos/1?page=2#top",
        ] {
            assert!(matches(&origin, same, "/todos/1?x=y"), "{same}");
        }
        for other in [
            "http://api.example.com/todos/1",
            "https://api.example.com:8443/todos/1",
            "https://api.example.org/todos/1",
            "https://api.example.com/todos/2",
            "https://api.example.com/todos/1/",
            "/todos/1",
            "not a uri",
        ] {
            assert!(!matches(&origin, other, "/todos/1"), "{other}");
        }
        assert!(matches(&origin, "https://api.example.com", "/"));
        assert!(matches(&origin, "https://api.example.com/", "/"));
    }

    #[test]
    fn a_path_prefix_of_the_origin_comes_before_the_request_path() {
        let origin = Origin::fixed("https://example.com/api/").unwrap();
        assert!(matches(&origin, "https://example.com/api/todos", "/todos"));
        assert!(!matches(&origin, "https://example.com/todos", "/todos"));
    }

    #[test]
    fn the_host_is_believed_only_from_the_allowed_list() {
        let origin = Origin::hosts(
            "https",
            &["api.example.com".into(), "eu.example.com:8443".into()],
        )
        .unwrap();
        let check = |host: &str, htu: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            origin.matches(htu, &"/t".parse().unwrap(), &headers)
        };
        assert!(check("API.example.com", "https://api.example.com/t"));
        assert!(check(
            "eu.example.com:8443",
            "https://eu.example.com:8443/t"
        ));
        assert!(!check("evil.example", "https://evil.example/t"));
        assert!(!check("eu.example.com", "https://eu.example.com/t"));
    }

    #[test]
    fn an_origin_is_an_http_url_with_a_host() {
        for bad in [
            "api.example.com",
            "ftp://a",
            "https://",
            "https://u@a",
            "https://a/?q",
            "/x",
        ] {
            assert!(Origin::fixed(bad).is_err(), "{bad}");
        }
        assert!(Origin::hosts("ftp", &["a".into()]).is_err());
        assert!(Origin::hosts("https", &[]).is_err());
        assert!(Origin::hosts("https", &["a/b".into()]).is_err());
    }
}
