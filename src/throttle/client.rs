use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

/// Who a login attempt comes from, as the throttle counts it: an IPv4 address, or the /64
/// prefix of an IPv6 address (one subscriber's whole range). IPv4-mapped IPv6 addresses count
/// as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !((1u128 << 64) - 1),
                ))),
            },
            v4 => Self(v4),
        }
    }
}

impl Client {
    /// The address (or /64 prefix) this client is counted as.
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

/// The proxies whose `X-Forwarded-For` names the client; none by default, so that nothing a
/// client writes is believed.
///
/// ```
/// use std::net::IpAddr;
///
/// use http::HeaderMap;
/// use tower_jwt_auth::throttle::TrustedProxies;
///
/// let proxy: IpAddr = "10.0.0.5".parse().unwrap();
/// let proxies = TrustedProxies::new([proxy]);
/// let mut headers = HeaderMap::new();
/// // The client wrote the first element itself; the proxy appended what it saw.
/// headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9:41234".parse().unwrap());
/// assert_eq!(proxies.client_ip(proxy, &headers), "203.0.113.9".parse::<IpAddr>().unwrap());
/// // From anyone else the header is ignored.
/// let peer: IpAddr = "192.0.2.1".parse().unwrap();
/// assert_eq!(proxies.client_ip(peer, &headers), peer);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    /// Trusts `X-Forwarded-For` from these addresses.
    pub fn new(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self(proxies.into_iter().collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// The client a request comes from: the peer, or, when the peer is a trusted proxy, the
    /// last hop in `X-Forwarded-For` that is not a trusted proxy itself (each proxy appends
    /// the address it saw, so that is the one the last trusted proxy wrote).
    ///
    /// Each comma-separated element is read on its own, as an address, `ip:port` or
    /// `[v6]:port`: an unreadable element further left (a client may write anything there)
    /// changes nothing. When the hop the trusted proxy wrote cannot be read, the peer is the
    /// answer.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<&[u8]> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            hops.extend(value.as_bytes().split(|&b| b == b','));
        }
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return ip,
                None => break,
            }
        }
        peer
    }
}

/// One `X-Forwarded-For` element: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64_prefix_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            Client::from(ip("2001:db8::1")),
            Client::from(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            Client::from(ip("2001:db8::1")),
            Client::from(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Client::from(ip("::ffff:10.0.0.1")),
            Client::from(ip("10.0.0.1"))
        );
        assert_ne!(Client::from(ip("10.0.0.1")), Client::from(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.5".parse().unwrap());
        let proxy = ip("10.0.0.5");
        // Not a trusted proxy: the peer is the client.
        assert_eq!(TrustedProxies::default().client_ip(proxy, &headers), proxy);
        // Trusted: the last hop that is not a trusted proxy.
        let trusted = TrustedProxies::new([proxy]);
        assert_eq!(trusted.client_ip(proxy, &headers), ip("203.0.113.9"));
        // The hop the proxy wrote is garbage: no further than what can be read.
        headers.insert("x-forwarded-for", "203.0.113.9, nonsense".parse().unwrap());
        assert_eq!(trusted.client_ip(proxy, &headers), proxy);
        headers.remove("x-forwarded-for");
        assert_eq!(trusted.client_ip(proxy, &headers), proxy);
    }

    /// Security review 3, finding 8: one unreadable byte anywhere in the header made the
    /// whole header unreadable, and every client behind the proxy became the proxy.
    #[test]
    fn an_unreadable_element_the_client_wrote_does_not_hide_the_hop_the_proxy_wrote() {
        let proxy = ip("10.0.0.5");
        let trusted = TrustedProxies::new([proxy]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"caf\xe9, 203.0.113.9").unwrap(),
        );
        assert_eq!(trusted.client_ip(proxy, &headers), ip("203.0.113.9"));
        // Two header lines read as one list, in order.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.10".parse().unwrap());
        assert_eq!(trusted.client_ip(proxy, &headers), ip("203.0.113.10"));
    }

    /// Security review 3, finding 8: a proxy that writes `ip:port` collapsed every client
    /// onto the proxy's address (one attacker then locked everyone out).
    #[test]
    fn hops_with_ports_are_read() {
        let proxy = ip("10.0.0.5");
        let trusted = TrustedProxies::new([proxy]);
        for (written, client) in [
            ("203.0.113.9:41234", "203.0.113.9"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::8]", "2001:db8::8"),
            ("2001:db8::9", "2001:db8::9"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", written.parse().unwrap());
            assert_eq!(trusted.client_ip(proxy, &headers), ip(client), "{written}");
        }
        // A chain of trusted proxies, with ports, is skipped to the client.
        let inner = ip("10.0.0.6");
        let chain = TrustedProxies::new([proxy, inner]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9:1000, 10.0.0.6:2000".parse().unwrap(),
        );
        assert_eq!(chain.client_ip(proxy, &headers), ip("203.0.113.9"));
    }
}
