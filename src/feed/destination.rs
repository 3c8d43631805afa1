//! Where a webhook may be sent: an `http(s)` URL whose host resolves only to public addresses,
//! unless `--webhook-allow-private`. Checked when the endpoint is created, and again by the
//! resolver of the delivery client on every connection, so a name that later resolves to a
//! private address (DNS rebinding) reaches nothing: the address that is checked is the address
//! that is dialled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// Longest accepted endpoint URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// How long a name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("the URL is not valid: {0}")]
    Invalid(&'static str),
    /// The host is (or resolves to) a private, loopback, link-local or otherwise non-public address.
    #[error("the destination {0} is not a public address")]
    Private(IpAddr),
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
}

/// Parses an endpoint URL: absolute `http` or `https` with a host, no fragment, bounded length.
pub fn parse(text: &str) -> Result<Url, DestinationError> {
    if text.len() > MAX_URL_LEN {
        return Err(DestinationError::Invalid("longer than 2048 bytes"));
    }
    let url = Url::parse(text).map_err(|_| DestinationError::Invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DestinationError::Invalid(
            "the scheme must be http or https",
        ));
    }
    if url.host().is_none() {
        return Err(DestinationError::Invalid("no host"));
    }
    if url.fragment().is_some() {
        return Err(DestinationError::Invalid("a fragment is never sent"));
    }
    Ok(url)
}

/// Checks that `url`'s host is, or resolves only to, public addresses (always `Ok` when
/// private destinations are allowed).
pub async fn check(url: &Url, allow_private: bool) -> Result<(), DestinationError> {
    if allow_private {
        return Ok(());
    }
    match url.host() {
        Some(Host::Domain(name)) => resolve(name, false).await.map(drop),
        Some(_) => check_literal(url),
        None => Err(DestinationError::Invalid("no host")),
    }
}

/// Refuses a URL whose host is a literal non-public address; names pass (they are checked
/// when resolved).
pub fn check_literal(url: &Url) -> Result<(), DestinationError> {
    match url.host() {
        Some(Host::Ipv4(ip)) => public(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => public(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// The addresses of `name`; with `allow_private` false, refused when any of them is not public.
pub async fn resolve(name: &str, allow_private: bool) -> Result<Vec<SocketAddr>, DestinationError> {
    let lookup = tokio::net::lookup_host((name, 0));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => return Err(DestinationError::Unresolvable(name.to_owned())),
    };
    if addrs.is_empty() {
        return Err(DestinationError::Unresolvable(name.to_owned()));
    }
    if !allow_private {
        for addr in &addrs {
            public(addr.ip())?;
        }
    }
    Ok(addrs)
}

fn public(ip: IpAddr) -> Result<(), DestinationError> {
    if is_forbidden(ip) {
        Err(DestinationError::Private(ip))
    } else {
        Ok(())
    }
}

/// True for every address a webhook must not reach without `--webhook-allow-private`:
/// loopback, private (RFC 1918, unique local), link-local, unspecified, shared (CGNAT),
/// multicast, broadcast, reserved, documentation and benchmarking ranges, and IPv6 forms that
/// embed such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0..6] == [0; 6] && forbidden_v4(embedded_v4(s[6], s[7]))) // IPv4-compatible
        || (s[0] == 0x0064 && s[1] == 0xff9b && forbidden_v4(embedded_v4(s[6], s[7]))) // NAT64
        || (s[0] == 0x2002 && forbidden_v4(embedded_v4(s[1], s[2]))) // 6to4
}

/// The delivery client's resolver: every connection's addresses pass [`is_forbidden`] first.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&name, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_forbidden_in_both_families() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(ip(text)), "{text} must be refused");
        }
        for text in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_forbidden(ip(text)), "{text} is public");
        }
    }

    #[test]
    fn urls_must_be_absolute_http_with_a_host() {
        assert!(parse("https://hooks.example.com/reel?x=1").is_ok());
        assert!(parse("http://[::1]:8080/").is_ok());
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https://example.com/#frag",
            "mailto:a@b.c",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[tokio::test]
    async fn literal_and_named_private_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://localhost:8080/",
        ] {
            let url = parse(url).expect("url");
            assert!(
                matches!(check(&url, false).await, Err(DestinationError::Private(_))),
                "{url}"
            );
            assert!(check(&url, true).await.is_ok());
        }
    }
}
