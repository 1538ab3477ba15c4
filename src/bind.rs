//! `--bind` grammar: `HOST:PORT`, `HOST` (port 8000), `[v6]:PORT`, `[v6]` (port 8000),
//! `unix:PATH` (or `unix://PATH`), `fd://N`; and gunicorn's shorthands: `:PORT`
//! (every interface, as gunicorn reads an empty host), a bare `PORT`, and a
//! `tcp://` prefix.
//!
//! Pure parsing; the only I/O is resolving a hostname other than `localhost`
//! (through [`std::net::ToSocketAddrs`], first address wins), as gunicorn does.
//! OWNER: config helper.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// gunicorn's port when a bind address gives only a host.
pub const DEFAULT_PORT: u16 = 8000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
}

impl BindAddr {
    /// Parse one `--bind` value; the error is a one-line reason.
    pub fn parse(s: &str) -> Result<BindAddr, String> {
        if s.is_empty() {
            return Err("empty address".into());
        }
        let s = s.strip_prefix("tcp://").unwrap_or(s);
        // gunicorn reads `:8000` as an empty host, which binds every interface.
        // A bare `8000` it would hand to the resolver as a host (inet_aton turns
        // it into 0.0.31.64, which cannot be bound): what is meant is the port.
        if let Some(port) = s
            .strip_prefix(':')
            .or_else(|| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s))
        {
            return Ok(BindAddr::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                parse_port(port)?,
            )));
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/app.sock".into());
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("fd://") {
            return match rest.parse::<i32>() {
                Ok(n) if n >= 0 && !rest.starts_with('+') => Ok(BindAddr::Fd(n)),
                _ => Err(format!(
                    "fd://N needs a non-negative integer file descriptor, got '{rest}'"
                )),
            };
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err("missing ']' after IPv6 address".into());
            };
            let port = if after.is_empty() {
                DEFAULT_PORT
            } else if let Some(p) = after.strip_prefix(':') {
                parse_port(p)?
            } else {
                return Err(format!("unexpected '{after}' after ']'"));
            };
            // Goes through SocketAddr so a scope id (`[fe80::1%2]`) is accepted too.
            return match format!("[{inside}]:{port}").parse::<SocketAddr>() {
                Ok(a) => Ok(BindAddr::Tcp(a)),
                Err(_) => Err(format!("'{inside}' is not an IPv6 address")),
            };
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            return Err(format!(
                "IPv6 addresses must be in brackets, e.g. [{s}]:{DEFAULT_PORT}"
            ));
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err("too many ':' (IPv6 addresses must be in brackets)".into());
                }
                (h, parse_port(p)?)
            }
            None => (s, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err("missing host before ':' (use 0.0.0.0 for all interfaces)".into());
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(BindAddr::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(BindAddr::Tcp(SocketAddr::new(IpAddr::V4(ip), port)));
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            // Not a valid dotted quad; don't let the resolver read `80` as 0.0.0.80.
            return Err(format!("'{host}' is not a valid IPv4 address"));
        }
        let plausible = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !plausible || host.starts_with(['-', '.']) {
            return Err(format!("'{host}' is not an IP address or host name"));
        }
        match (host, port).to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => Ok(BindAddr::Tcp(a)),
                None => Err(format!("host name '{host}' has no addresses")),
            },
            Err(e) => Err(format!("cannot resolve host name '{host}': {e}")),
        }
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{p}' must be a number from 0 to 65535"));
    }
    p.parse::<u16>()
        .map_err(|_| format!("port '{p}' must be a number from 0 to 65535"))
}

impl fmt::Display for BindAddr {
    /// Formats back to the `--bind` grammar (`127.0.0.1:8000`, `[::1]:80`, `unix:/p`, `fd://3`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr's Display already brackets IPv6 addresses.
            BindAddr::Tcp(a) => write!(f, "{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(n) => write!(f, "fd://{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        BindAddr::parse(s).unwrap().to_string()
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(ok("127.0.0.1:8000"), "127.0.0.1:8000");
        assert_eq!(ok("0.0.0.0:80"), "0.0.0.0:80");
        assert_eq!(ok("localhost:5000"), "127.0.0.1:5000");
        assert_eq!(ok("localhost"), "127.0.0.1:8000");
        assert_eq!(ok("10.1.2.3"), "10.1.2.3:8000");
        assert_eq!(ok("1.2.3.4:0"), "1.2.3.4:0");
        assert_eq!(ok("1.2.3.4:65535"), "1.2.3.4:65535");
        assert_eq!(ok("[::1]:80"), "[::1]:80");
        assert_eq!(ok("[::]"), "[::]:8000");
        assert_eq!(ok("[2001:db8::1]:443"), "[2001:db8::1]:443");
    }

    #[test]
    fn gunicorn_shorthands() {
        assert_eq!(ok(":8000"), "0.0.0.0:8000");
        assert_eq!(ok("8000"), "0.0.0.0:8000");
        assert_eq!(ok("tcp://127.0.0.1:81"), "127.0.0.1:81");
        assert_eq!(ok("tcp://:82"), "0.0.0.0:82");
    }

    #[test]
    fn unix_and_fd() {
        assert_eq!(
            BindAddr::parse("unix:/run/app.sock").unwrap(),
            BindAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            BindAddr::parse("unix:///run/app.sock").unwrap(),
            BindAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            BindAddr::parse("unix:app.sock").unwrap(),
            BindAddr::Unix("app.sock".into())
        );
        assert_eq!(ok("unix:/tmp/x"), "unix:/tmp/x");
        assert_eq!(BindAddr::parse("fd://3").unwrap(), BindAddr::Fd(3));
        assert_eq!(BindAddr::parse("fd://0").unwrap(), BindAddr::Fd(0));
        assert_eq!(ok("fd://7"), "fd://7");
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            ":",
            ":http",
            "99999",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "1.2.3.4:-1",
            "1.2.3.4:+80",
            "localhost:http",
            "unix:",
            "unix://",
            "fd://x",
            "fd://-1",
            "fd://",
            "::1",
            "[::1",
            "[::1]80",
            "[1.2.3.4]:80",
            "a:b:c",
            "bad host:80",
            "1.2.3:80",
            "256.1.1.1",
        ] {
            let e = BindAddr::parse(bad).expect_err(bad);
            assert!(!e.is_empty() && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["1.2.3.4:5", "[::1]:80", "unix:/a/b", "unix:rel", "fd://3"] {
            assert_eq!(ok(&ok(s)), ok(s));
        }
    }
}
