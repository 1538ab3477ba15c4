//! The raw client: connect over TCP or a Unix socket, write bytes, read one
//! HTTP response (or everything until the server closes).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    pub fn bind_arg(&self) -> String {
        match self {
            Addr::Tcp(a) => a.to_string(),
            Addr::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

/// A client connection of either family.
pub enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Client {
    pub fn connect(addr: &Addr) -> io::Result<Client> {
        let c = match addr {
            Addr::Tcp(a) => Client::Tcp(TcpStream::connect_timeout(a, Duration::from_secs(5))?),
            Addr::Unix(p) => Client::Unix(UnixStream::connect(p)?),
        };
        c.set_timeout(Some(Duration::from_secs(10)));
        Ok(c)
    }
    pub fn set_timeout(&self, t: Option<Duration>) {
        match self {
            Client::Tcp(s) => {
                s.set_read_timeout(t).unwrap();
                s.set_write_timeout(t).unwrap();
            }
            Client::Unix(s) => {
                s.set_read_timeout(t).unwrap();
                s.set_write_timeout(t).unwrap();
            }
        }
    }
    pub fn shutdown_write(&self) {
        let _ = match self {
            Client::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Client::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
    /// Read until EOF (or the read timeout), returning what arrived.
    pub fn read_to_end_lossy(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        out
    }
    /// Read exactly one HTTP response (head + Content-Length or chunked body).
    pub fn read_response(&mut self) -> io::Result<HttpResponse> {
        read_response(self, false)
    }
    /// Read the response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> io::Result<HttpResponse> {
        read_response(self, true)
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Tcp(s) => s.read(buf),
            Client::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Tcp(s) => s.write(buf),
            Client::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact bytes of this response as received.
    pub raw: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Buffered reader state is kept per call: tests read responses one at a
/// time, byte by byte where needed, so pipelined responses stay separate.
pub(super) fn read_response(c: &mut impl Read, head_only: bool) -> io::Result<HttpResponse> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = c.read(&mut byte)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside response head: {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            ));
        }
        raw.push(byte[0]);
        if raw.len() > 1 << 20 {
            return Err(io::Error::other("response head too large"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    if !no_body {
        if let Some(len) = find("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::other("bad Content-Length"))?;
            body.resize(len, 0);
            c.read_exact(&mut body)?;
            raw.extend_from_slice(&body);
        } else if find("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut line = Vec::new();
                while !line.ends_with(b"\r\n") {
                    c.read_exact(&mut byte)?;
                    line.push(byte[0]);
                }
                raw.extend_from_slice(&line);
                let size_text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                        .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
                let mut chunk = vec![0u8; size + 2];
                c.read_exact(&mut chunk)?;
                raw.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            // Delimited by close.
            let mut rest = Vec::new();
            c.read_to_end(&mut rest)?;
            raw.extend_from_slice(&rest);
            body = rest;
        }
    }
    Ok(HttpResponse {
        status,
        status_line,
        headers,
        body,
        raw,
    })
}

/// Read until the server closes the connection, for at most `within`.
/// `Ok(bytes)` on a clean EOF (the bytes that arrived before it); `Err` if the
/// connection is still open at the deadline, or was reset.
pub fn read_to_eof(c: &mut Client, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let res = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!(
                "connection still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        c.set_timeout(Some(left));
        match c.read(&mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                break Err(format!(
                    "read failed ({e}) instead of EOF; got {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    };
    c.set_timeout(Some(Duration::from_secs(10)));
    res
}

/// True if nothing arrives and the connection stays open for `wait`.
pub fn stays_silent(c: &mut Client, wait: Duration) -> bool {
    c.set_timeout(Some(wait));
    let mut b = [0u8; 1];
    let silent = matches!(c.read(&mut b), Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));
    c.set_timeout(Some(Duration::from_secs(10)));
    silent
}

/// One `GET` on a fresh connection with `Connection: close`; the response or an error.
pub fn get(addr: &Addr, target: &str) -> io::Result<HttpResponse> {
    let mut c = Client::connect(addr)?;
    c.set_timeout(Some(Duration::from_secs(10)));
    c.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    c.read_response()
}

/// Connect to `addr` (TCP) from the local address `from` (e.g. 127.0.0.2,
/// so nginx sees a client that is not in ferricorn's trusted proxy list).
pub fn connect_from(from: std::net::IpAddr, addr: &Addr) -> io::Result<Client> {
    let Addr::Tcp(to) = addr else {
        return Err(io::Error::other("connect_from: TCP only"));
    };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&(*to).into(), Duration::from_secs(5))?;
    let c = Client::Tcp(s.into());
    c.set_timeout(Some(Duration::from_secs(10)));
    Ok(c)
}
