//! The client's address behind trusted proxies (`X-Forwarded-For`).
//!
//! A proxy appends the address it received the request from to `X-Forwarded-For`, so the
//! header reads `client, proxy1, proxy2` and the TCP peer is the last proxy. Only entries added
//! by proxies we trust can be believed: anything to their left may have been written by the
//! client. So the client is found by walking from the right, starting with the TCP peer, past
//! every trusted address; the first untrusted one is the client. With no trusted proxies the
//! header is ignored and the peer is the client.
//!
//! What it does not do: no `Forwarded` (RFC 7239) parsing, no IO. Malformed entries stop the
//! walk at the last address known good.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range: an address and a prefix length (`10.0.0.0/8`, `::1/128`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpNet { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` is in this range. An IPv4-mapped IPv6 address matches IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client address of a request whose TCP peer is `peer`, given the values of its
/// `X-Forwarded-For` headers in order (several headers count as one list) and the trusted
/// proxy ranges.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    if !trusted.iter().any(|t| t.contains(peer)) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for.into_iter().flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            // Garbage from here on leftwards: the last good address is as far as we can see.
            return client;
        };
        client = ip;
        if !trusted.iter().any(|t| t.contains(ip)) {
            return ip;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    e.rsplit_once(':')
        .and_then(|(a, port)| port.parse::<u16>().ok().and(a.parse::<std::net::Ipv4Addr>().ok()))
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in ["10.0.0.0/33", "nope", "::1/129", "1.2.3.4/x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client_ip(ip("203.0.113.9"), ["1.1.1.1"], &[]), ip("203.0.113.9"));
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("203.0.113.9"), ["1.1.1.1"], &trusted), ip("203.0.113.9"), "untrusted peer");
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        // The client forged the first entry; our proxies appended the rest.
        let xff = ["6.6.6.6, 198.51.100.7", "10.0.0.2"];
        assert_eq!(client_ip(ip("127.0.0.1"), xff, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("127.0.0.1"), ["198.51.100.7:4711"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("127.0.0.1"), ["[2001:db8::1]:443"], &trusted), ip("2001:db8::1"));
    }

    #[test]
    fn all_trusted_or_garbage_stops_at_the_last_good_address() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(client_ip(ip("127.0.0.1"), ["10.0.0.5, 10.0.0.2"], &trusted), ip("10.0.0.5"));
        assert_eq!(client_ip(ip("127.0.0.1"), ["junk, 10.0.0.2"], &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("127.0.0.1"), std::iter::empty(), &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), [""], &trusted), ip("127.0.0.1"));
    }
}
