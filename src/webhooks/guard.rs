//! SSRF care: where a webhook may be sent, checked when it is registered and again at
//! every connection (a name that resolved to a public address at registration may resolve
//! to a private one later: DNS rebinding).
//!
//! Only `http` and `https`; every address the name resolves to must be public, unless it
//! is in `webhooks.allow_cidrs`. Redirects are never followed (the client's policy), and
//! no proxy from the environment is used (it would resolve the name instead of us).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;

/// How long a registration waits for the name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Special-purpose IPv4 ranges (RFC 6890 and friends) besides what `Ipv4Addr` names.
fn special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240 // reserved
}

fn special_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: could reach anything
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// May a webhook be sent to this address?
pub fn permitted(ip: IpAddr, allowed: &[IpNet]) -> bool {
    if allowed.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => !special_v4(v4),
        IpAddr::V6(v6) => !special_v6(v6),
    }
}

/// Why a URL is refused, for the problem's detail (never the URL's query or user info).
pub type Refusal = String;

/// The URL, parsed, if its form is one we send to.
pub fn parse(url: &str) -> Result<Url, Refusal> {
    let u = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("only http and https URLs".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".into());
    }
    Ok(u)
}

/// The host of a URL as an address, when it is one (`[::1]` unbracketed).
fn literal(u: &Url) -> Option<IpAddr> {
    match u.host()? {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    }
}

/// A registration's check: the form, then every address the host resolves to.
pub async fn check(url: &str, allowed: &[IpNet]) -> Result<(), Refusal> {
    let u = parse(url)?;
    if let Some(ip) = literal(&u) {
        return if permitted(ip, allowed) { Ok(()) } else { Err(format!("{ip} is not a public address")) };
    }
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("{host} did not resolve in time"))?
        .map_err(|e| format!("{host} does not resolve: {e}"))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    match addrs.iter().find(|a| !permitted(a.ip(), allowed)) {
        Some(a) => Err(format!("{host} resolves to {}, not a public address", a.ip())),
        None => Ok(()),
    }
}

/// A delivery's check of a URL whose host is an address (names are checked by `Resolver`
/// when the client connects).
pub fn check_literal(u: &Url, allowed: &[IpNet]) -> Result<(), Refusal> {
    match literal(u) {
        Some(ip) if !permitted(ip, allowed) => Err(format!("{ip} is not a public address")),
        _ => Ok(()),
    }
}

/// The client's resolver: the system's, keeping only the permitted addresses; none left is
/// an error, so the connection is never made.
pub struct Resolver {
    pub allowed: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = found.into_iter().filter(|a| permitted(a.ip(), &allowed)).collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_unless_allowed() {
        let none: Vec<IpNet> = vec![];
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!permitted(a.parse().unwrap(), &none), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(permitted(a.parse().unwrap(), &none), "{a}");
        }
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(permitted("127.0.0.1".parse().unwrap(), &allowed));
        assert!(!permitted("10.0.0.1".parse().unwrap(), &allowed));
    }

    #[test]
    fn only_http_and_https_urls_with_a_host() {
        assert!(parse("https://hooks.example/x").is_ok());
        assert!(parse("http://127.0.0.1:9/x").is_ok());
        for bad in ["ftp://x/y", "file:///etc/passwd", "gopher://x", "not a url", "http://"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
