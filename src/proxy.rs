//! Who the client really is, when ferricorn sits behind a proxy.
//!
//! - [`TrustedProxies`]: `--forwarded-allow-ips`. Only a trusted peer's
//!   `X-Forwarded-For` and scheme headers (`--secure-scheme-headers`) are
//!   believed; from anyone else they change nothing. A Unix-socket peer is
//!   trusted, as in gunicorn: only local processes can reach it.
//! - [`parse_proxy_protocol`]: the PROXY protocol v1 (text) and v2 (binary)
//!   header that HAProxy and nginx's `proxy_protocol on;` put in front of a
//!   connection, accepted only from `--proxy-allow-from`.
//!
//! The client address is taken from `X-Forwarded-For` the way nginx's
//! `real_ip_recursive on` does: walk the list from the right, skipping
//! addresses that are themselves trusted proxies; the first untrusted one is
//! the client. Taking the leftmost entry (which the client itself can write)
//! would let anyone claim any address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::app::Peer;

/// One allowed address or network.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4 for trust decisions.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A list of trusted peers: `127.0.0.1,::1`, `10.0.0.0/8`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    nets: Vec<Net>,
}

impl TrustedProxies {
    /// Parse a comma-separated list; the error names the bad entry.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut t = TrustedProxies {
            any: false,
            nets: Vec::new(),
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                t.any = true;
                continue;
            }
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("'{item}' is not an IP address or network"))?;
            let addr = canonical(addr);
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or_else(|| format!("'{item}' has a bad prefix length"))?,
                None => max,
            };
            t.nets.push(Net { addr, prefix });
        }
        Ok(t)
    }

    pub fn trusts_ip(&self, ip: IpAddr) -> bool {
        self.any || self.nets.iter().any(|n| n.contains(ip))
    }

    /// Unix-socket peers are trusted (only local processes reach them).
    pub fn trusts(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Unix => true,
            Peer::Tcp(a) => self.trusts_ip(a.ip()),
        }
    }
}

/// Scheme headers believed from trusted peers: (header, value meaning https).
/// gunicorn's default `secure_scheme_headers`.
pub const DEFAULT_SECURE_SCHEME_HEADERS: &str =
    "X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on";

/// Parse `NAME=value,NAME=value` (the `--secure-scheme-headers` syntax).
pub fn parse_scheme_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("'{p}' is not NAME=value"))
        })
        .collect()
}

/// What the request really came from, after the trust rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (`None` for a Unix-socket peer with no header).
    pub addr: Option<IpAddr>,
    pub https: bool,
}

/// Apply `X-Forwarded-For` and the scheme headers of a request from `peer`.
pub fn client_info(
    peer: &Peer,
    headers: &[(String, Vec<u8>)],
    trusted: &TrustedProxies,
    scheme_headers: &[(String, String)],
) -> ClientInfo {
    let direct = match peer {
        Peer::Tcp(a) => Some(a.ip()),
        Peer::Unix => None,
    };
    if !trusted.trusts(peer) {
        return ClientInfo {
            addr: direct,
            https: false,
        };
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("X-Forwarded-For") {
            for part in String::from_utf8_lossy(value).split(',') {
                match parse_forwarded_ip(part.trim()) {
                    Some(ip) => chain.push(ip),
                    // A garbled chain cannot be trusted past this point.
                    None => chain.clear(),
                }
            }
        }
    }
    let mut addr = direct;
    for ip in chain.iter().rev() {
        addr = Some(*ip);
        if !trusted.trusts_ip(*ip) {
            break;
        }
    }
    // https only if a scheme header says so and none contradicts it. A proxy
    // sets one of them (nginx: X-Forwarded-Proto) and passes the client's
    // others through untouched, so believing any single one let a client of
    // a plain-http site claim https with `X-Forwarded-Ssl: on`. gunicorn
    // refuses contradictory scheme headers; here they resolve to http.
    let mut https = false;
    for (hname, want) in scheme_headers {
        for (n, v) in headers {
            if n.eq_ignore_ascii_case(hname) {
                if String::from_utf8_lossy(v).trim().eq_ignore_ascii_case(want) {
                    https = true;
                } else {
                    return ClientInfo { addr, https: false };
                }
            }
        }
    }
    ClientInfo { addr, https }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

// ---------------------------------------------------------------------------
// PROXY protocol.

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The addresses a PROXY header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy's own health check (`UNKNOWN` / `LOCAL`): keep the real peer.
    Local,
    Proxied {
        source: SocketAddr,
        dest: SocketAddr,
    },
}

/// Parse a PROXY protocol header at the start of `buf`.
/// `Ok(None)`: need more bytes. `Ok(Some((header, n)))`: it took `buf[..n]`.
pub fn parse_proxy_protocol(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    if buf[0] == b'\r' {
        return parse_v2(buf);
    }
    Err("connection does not start with a PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    // "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", at most 107 bytes.
    let prefix = b"PROXY ";
    let n = prefix.len().min(buf.len());
    if buf[..n] != prefix[..n] {
        return Err("malformed PROXY v1 header");
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= 107 {
            Err("PROXY v1 header too long")
        } else {
            Ok(None)
        };
    };
    if end + 2 > 107 {
        return Err("PROXY v1 header too long");
    }
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| "malformed PROXY v1 header")?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["UNKNOWN", ..] => ProxyHeader::Local,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| "bad PROXY v1 source address")?;
            let dst: IpAddr = dst
                .parse()
                .map_err(|_| "bad PROXY v1 destination address")?;
            if (*proto == "TCP4") != (src.is_ipv4() && dst.is_ipv4()) {
                return Err("PROXY v1 address family mismatch");
            }
            let port = |p: &str| -> Result<u16, &'static str> {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("bad PROXY v1 port");
                }
                p.parse().map_err(|_| "bad PROXY v1 port")
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(src, port(sport)?),
                dest: SocketAddr::new(dst, port(dport)?),
            }
        }
        _ => return Err("malformed PROXY v1 header"),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err("malformed PROXY v2 signature");
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err("unsupported PROXY protocol version");
    }
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let total = 16 + len;
    match ver_cmd & 0x0f {
        0 => return Ok(Some((ProxyHeader::Local, total))),
        1 => {}
        _ => return Err("unsupported PROXY v2 command"),
    }
    let header = match fam {
        0x11 => {
            if body.len() < 12 {
                return Err("short PROXY v2 IPv4 block");
            }
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(src.into(), u16::from_be_bytes([body[8], body[9]])),
                dest: SocketAddr::new(dst.into(), u16::from_be_bytes([body[10], body[11]])),
            }
        }
        0x21 => {
            if body.len() < 36 {
                return Err("short PROXY v2 IPv6 block");
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(
                    Ipv6Addr::from(s).into(),
                    u16::from_be_bytes([body[32], body[33]]),
                ),
                dest: SocketAddr::new(
                    Ipv6Addr::from(d).into(),
                    u16::from_be_bytes([body[34], body[35]]),
                ),
            }
        }
        // UNSPEC, or Unix addresses: nothing useful to report.
        _ => ProxyHeader::Local,
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Peer {
        Peer::Tcp(s.parse().unwrap())
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn trust_list_parses_addresses_networks_and_star() {
        let t = TrustedProxies::parse("127.0.0.1, ::1, 10.0.0.0/8").unwrap();
        assert!(t.trusts_ip("10.1.2.3".parse().unwrap()));
        assert!(t.trusts_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.trusts_ip("11.0.0.1".parse().unwrap()));
        assert!(
            TrustedProxies::parse("*")
                .unwrap()
                .trusts_ip("8.8.8.8".parse().unwrap())
        );
        assert!(TrustedProxies::parse("1.2.3.4/33").is_err());
        assert!(TrustedProxies::parse("nope").unwrap_err().contains("nope"));
        assert!(t.trusts(&Peer::Unix));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let sh = parse_scheme_headers(DEFAULT_SECURE_SCHEME_HEADERS).unwrap();
        let hdr = h(&[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
        ]);
        let c = client_info(&tcp("127.0.0.1:5000"), &hdr, &t, &sh);
        assert_eq!(c.addr, Some("203.0.113.7".parse().unwrap()));
        assert!(c.https);
        let c = client_info(&tcp("198.51.100.1:5000"), &hdr, &t, &sh);
        assert_eq!(c.addr, Some("198.51.100.1".parse().unwrap()));
        assert!(!c.https);
    }

    #[test]
    fn contradictory_scheme_headers_mean_http() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let sh = parse_scheme_headers(DEFAULT_SECURE_SCHEME_HEADERS).unwrap();
        // nginx set X-Forwarded-Proto from its own $scheme; the client added
        // X-Forwarded-Ssl, which nginx passed through.
        let hdr = h(&[("X-Forwarded-Proto", "http"), ("X-Forwarded-Ssl", "on")]);
        assert!(!client_info(&tcp("127.0.0.1:1"), &hdr, &t, &sh).https);
        let hdr = h(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]);
        assert!(client_info(&tcp("127.0.0.1:1"), &hdr, &t, &sh).https);
    }

    #[test]
    fn forwarded_for_skips_trusted_hops_from_the_right() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let hdr = h(&[("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        let c = client_info(&tcp("127.0.0.1:1"), &hdr, &t, &[]);
        // 1.1.1.1 was written by the client; 203.0.113.9 is what our proxy saw.
        assert_eq!(c.addr, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn proxy_v1_and_v2_parse_and_reject_garbage() {
        let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /";
        let (hdr, n) = parse_proxy_protocol(v1).unwrap().unwrap();
        assert_eq!(&v1[n..], b"GET /");
        assert_eq!(
            hdr,
            ProxyHeader::Proxied {
                source: "192.0.2.1:56324".parse().unwrap(),
                dest: "192.0.2.2:443".parse().unwrap()
            }
        );
        assert_eq!(parse_proxy_protocol(b"PROXY TCP4 1.2").unwrap(), None);
        assert!(parse_proxy_protocol(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").is_err());
        assert!(parse_proxy_protocol(b"GET / HTTP/1.1\r\n").is_err());
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 192, 0, 2, 2, 0x1f, 0x90, 0, 80,
        ]);
        let (hdr, n) = parse_proxy_protocol(&v2).unwrap().unwrap();
        assert_eq!(n, 28);
        assert_eq!(
            hdr,
            ProxyHeader::Proxied {
                source: "192.0.2.1:8080".parse().unwrap(),
                dest: "192.0.2.2:80".parse().unwrap()
            }
        );
        assert_eq!(parse_proxy_protocol(&v2[..20]).unwrap(), None);
        let mut bad = v2.clone();
        bad[12] = 0x31;
        assert!(parse_proxy_protocol(&bad).is_err());
    }
}
