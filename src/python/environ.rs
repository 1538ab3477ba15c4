//! The PEP 3333 `environ` dict, built per request from a template.
//!
//! Constant entries (`wsgi.version`, `wsgi.errors`, ...) live in a template
//! dict that is copied per request; every key is an interned string, and the
//! `HTTP_*` key of each header name seen is cached, so the per-request work
//! is one dict copy plus one `set_item` per variable. Strings are "native
//! strings": bytes decoded as Latin-1, so every byte of a header survives.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyString, PyTuple};

use std::io::Read;

use crate::app::{Peer, Request};
use crate::http::response::format_u64;

/// Cached `HTTP_*` keys are bounded: header names are client-chosen.
const MAX_CACHED_KEYS: usize = 512;

struct Keys {
    request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    raw_uri: Py<PyString>,
    request_uri: Py<PyString>,
    server_protocol: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    content_length: Py<PyString>,
    url_scheme: Py<PyString>,
    input: Py<PyString>,
}

pub(crate) struct EnvironBuilder {
    template: Py<PyDict>,
    keys: Keys,
    /// Lower-case header name -> environ key (`None`: the header is dropped).
    header_keys: HashMap<Box<[u8]>, Option<Py<PyString>>>,
    /// Interned keys of the commonest headers, matched without hashing.
    common: Vec<(&'static str, Py<PyString>)>,
    /// Reused buffer for a header name's lower-case form.
    lower_buf: Vec<u8>,
    /// The last client address / port seen, as environ values (a
    /// keep-alive connection sends many requests from one peer).
    last_ip: Option<(std::net::IpAddr, Py<PyString>)>,
    last_port: Option<(u16, Py<PyString>)>,
    empty: Py<PyString>,
    /// Small strings that recur in every request (methods, protocols, "").
    values: HashMap<&'static str, Py<PyString>>,
    bytes_io: Py<PyAny>,
    root_path: String,
    /// SERVER_NAME / SERVER_PORT when the request has no Host.
    default_server: (String, String),
}

fn intern(py: Python<'_>, s: &str) -> Py<PyString> {
    PyString::intern(py, s).unbind()
}

/// Bytes as a Latin-1 native string.
pub(crate) fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    if b.is_ascii() {
        PyString::new(py, std::str::from_utf8(b).unwrap_or_default())
    } else {
        let s: String = b.iter().map(|&c| c as char).collect();
        PyString::new(py, &s)
    }
}

impl EnvironBuilder {
    pub(crate) fn new(
        py: Python<'_>,
        errors: Bound<'_, PyAny>,
        file_wrapper: Bound<'_, PyAny>,
        root_path: &str,
        binds: &[String],
    ) -> PyResult<EnvironBuilder> {
        let template = PyDict::new(py);
        template.set_item(intern(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        template.set_item(intern(py, "wsgi.errors"), errors)?;
        template.set_item(intern(py, "wsgi.multithread"), PyBool::new(py, false))?;
        template.set_item(intern(py, "wsgi.multiprocess"), PyBool::new(py, true))?;
        template.set_item(intern(py, "wsgi.run_once"), PyBool::new(py, false))?;
        template.set_item(intern(py, "wsgi.file_wrapper"), file_wrapper)?;
        // The body is always complete and ends at EOF (gunicorn's extension).
        template.set_item(intern(py, "wsgi.input_terminated"), PyBool::new(py, true))?;
        template.set_item(
            intern(py, "SERVER_SOFTWARE"),
            concat!("ferricorn/", env!("CARGO_PKG_VERSION")),
        )?;
        let keys = Keys {
            request_method: intern(py, "REQUEST_METHOD"),
            script_name: intern(py, "SCRIPT_NAME"),
            path_info: intern(py, "PATH_INFO"),
            query_string: intern(py, "QUERY_STRING"),
            raw_uri: intern(py, "RAW_URI"),
            request_uri: intern(py, "REQUEST_URI"),
            server_protocol: intern(py, "SERVER_PROTOCOL"),
            server_name: intern(py, "SERVER_NAME"),
            server_port: intern(py, "SERVER_PORT"),
            remote_addr: intern(py, "REMOTE_ADDR"),
            remote_port: intern(py, "REMOTE_PORT"),
            content_length: intern(py, "CONTENT_LENGTH"),
            url_scheme: intern(py, "wsgi.url_scheme"),
            input: intern(py, "wsgi.input"),
        };
        let mut values = HashMap::new();
        for v in [
            "", "GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "HTTP/1.1", "HTTP/1.0",
            "http", "https", "/", "80", "443",
        ] {
            values.insert(v, intern(py, v));
        }
        let common = COMMON_HEADERS
            .iter()
            .map(|&n| (n, intern(py, &environ_key(n).unwrap_or_default())))
            .collect();
        Ok(EnvironBuilder {
            template: template.unbind(),
            keys,
            header_keys: HashMap::new(),
            common,
            lower_buf: Vec::with_capacity(64),
            last_ip: None,
            last_port: None,
            empty: intern(py, ""),
            values,
            bytes_io: py.import("io")?.getattr("BytesIO")?.unbind(),
            root_path: root_path.to_string(),
            default_server: default_server(binds),
        })
    }

    fn value<'py>(&self, py: Python<'py>, s: &str) -> Bound<'py, PyString> {
        match self.values.get(s) {
            Some(v) => v.bind(py).clone(),
            None => PyString::new(py, s),
        }
    }

    fn header_key<'py>(&mut self, py: Python<'py>, name: &str) -> Option<Bound<'py, PyString>> {
        for (n, k) in &self.common {
            if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                return Some(k.bind(py).clone());
            }
        }
        self.lower_buf.clear();
        self.lower_buf
            .extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        if let Some(k) = self.header_keys.get(&self.lower_buf[..]) {
            return k.as_ref().map(|k| k.bind(py).clone());
        }
        let key = environ_key(name).map(|k| intern(py, &k));
        if self.header_keys.len() < MAX_CACHED_KEYS {
            self.header_keys.insert(
                self.lower_buf[..].into(),
                key.as_ref().map(|k| k.clone_ref(py)),
            );
        }
        key.map(|k| k.into_bound(py))
    }

    fn ip<'py>(&mut self, py: Python<'py>, ip: std::net::IpAddr) -> Bound<'py, PyString> {
        match &self.last_ip {
            Some((i, s)) if *i == ip => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, &ip.to_string());
                self.last_ip = Some((ip, s.clone().unbind()));
                s
            }
        }
    }

    fn port<'py>(&mut self, py: Python<'py>, port: u16) -> Bound<'py, PyString> {
        match &self.last_port {
            Some((p, s)) if *p == port => s.bind(py).clone(),
            _ => {
                let mut buf = [0u8; 20];
                let s = PyString::new(py, format_u64(port.into(), &mut buf));
                self.last_port = Some((port, s.clone().unbind()));
                s
            }
        }
    }

    /// The environ for `req`, or `None` when the path is outside `--root-path`.
    pub(crate) fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &mut Request,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let raw_path = req.path().as_bytes();
        let path: std::borrow::Cow<'_, [u8]> = if raw_path.contains(&b'%') {
            percent_decode(raw_path).into()
        } else {
            raw_path.into()
        };
        let (script_name, path_info) = if self.root_path.is_empty() {
            ("", &path[..])
        } else {
            match path.strip_prefix(self.root_path.as_bytes()) {
                Some(rest) if rest.is_empty() || rest[0] == b'/' => (self.root_path.as_str(), rest),
                _ => return Ok(None),
            }
        };
        let env = self.template.bind(py).copy()?;
        let empty = self.empty.bind(py).clone();
        let k = &self.keys;
        env.set_item(k.request_method.bind(py), self.value(py, req.method()))?;
        env.set_item(k.script_name.bind(py), self.value(py, script_name))?;
        env.set_item(k.path_info.bind(py), latin1(py, path_info))?;
        env.set_item(k.query_string.bind(py), latin1(py, req.query().as_bytes()))?;
        let target = latin1(py, req.target().as_bytes());
        env.set_item(k.raw_uri.bind(py), &target)?;
        env.set_item(k.request_uri.bind(py), &target)?;
        env.set_item(
            k.server_protocol.bind(py),
            self.value(py, req.version_str()),
        )?;
        // The client: the peer, or the address a trusted proxy reported
        // (--forwarded-allow-ips); its port only when it is the peer itself.
        let (addr, port) = match (req.remote_addr(), req.peer()) {
            (Some(ip), Peer::Tcp(a)) if ip == a.ip() => (self.ip(py, ip), self.port(py, a.port())),
            (Some(ip), _) => (self.ip(py, ip), empty.clone()),
            (None, _) => (empty.clone(), empty.clone()),
        };
        let k = &self.keys;
        env.set_item(k.remote_addr.bind(py), addr)?;
        env.set_item(k.remote_port.bind(py), port)?;
        let scheme = req.scheme();
        env.set_item(k.url_scheme.bind(py), self.value(py, scheme))?;

        // The body: read (memory or spooled file) straight into one bytes
        // object; BytesIO shares its buffer instead of copying it again.
        let body = req.body();
        let len = body.len();
        let input = if len == 0 {
            // BytesIO() and BytesIO(b"") are the same; skip the argument.
            self.bytes_io.bind(py).call0()?
        } else {
            let data = PyBytes::new_with(py, len as usize, |buf| {
                body.read_exact(buf).map_err(PyErr::from)
            })?;
            self.bytes_io.bind(py).call1((data,))?
        };
        env.set_item(self.keys.input.bind(py), input)?;

        let mut has_length = false;
        let mut host: Option<&[u8]> = None;
        let req: &Request = req;
        for (name, value) in req.headers() {
            let Some(key) = self.header_key(py, name) else {
                continue;
            };
            let key = &key;
            if name.eq_ignore_ascii_case("content-length") {
                has_length = true;
            } else if host.is_none() && name.eq_ignore_ascii_case("host") {
                host = Some(value);
            }
            match env.get_item(key)? {
                Some(prev) => {
                    // prev came from latin1(): each char is one byte.
                    let prev: String = prev.extract()?;
                    let mut joined: Vec<u8> = prev.chars().map(|c| c as u32 as u8).collect();
                    joined.push(b',');
                    joined.extend_from_slice(value);
                    env.set_item(key, latin1(py, &joined))?;
                }
                None => env.set_item(key, latin1(py, value))?,
            }
        }
        if !has_length && len > 0 {
            // A chunked body was decoded: frameworks read CONTENT_LENGTH bytes.
            env.set_item(self.keys.content_length.bind(py), len.to_string())?;
        }
        let (name, port) = match host.and_then(split_host) {
            Some((n, p)) => (
                latin1(py, n),
                match p {
                    Some(p) => latin1(py, p),
                    None => self.value(py, if scheme == "https" { "443" } else { "80" }),
                },
            ),
            None => (
                PyString::new(py, &self.default_server.0),
                PyString::new(py, &self.default_server.1),
            ),
        };
        env.set_item(self.keys.server_name.bind(py), name)?;
        env.set_item(self.keys.server_port.bind(py), port)?;
        // Request id and X-Request-Start queue time (issue 16), when known.
        if let Some(id) = req.request_id() {
            env.set_item(pyo3::intern!(py, "ferricorn.request_id"), id)?;
        }
        if let (Some(start), Some(q)) = (req.request_start_us(), req.queue_time()) {
            env.set_item(
                pyo3::intern!(py, "ferricorn.request_start"),
                start as f64 / 1_000_000.0,
            )?;
            env.set_item(pyo3::intern!(py, "ferricorn.queue_time"), q.as_secs_f64())?;
        }
        Ok(Some(env))
    }
}

/// Headers whose environ key is interned up front (matched case-insensitively
/// without hashing).
const COMMON_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "cookie",
    "content-type",
    "content-length",
    "referer",
    "origin",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "cache-control",
    "authorization",
];

/// `X-Forwarded-For` -> `HTTP_X_FORWARDED_FOR`; names with `_` are dropped
/// (as gunicorn does: `X_Forwarded_For` would otherwise spoof the same key).
pub(crate) fn environ_key(name: &str) -> Option<String> {
    if name.contains('_') {
        return None;
    }
    if name.eq_ignore_ascii_case("content-type") {
        return Some("CONTENT_TYPE".into());
    }
    if name.eq_ignore_ascii_case("content-length") {
        return Some("CONTENT_LENGTH".into());
    }
    let mut k = String::with_capacity(5 + name.len());
    k.push_str("HTTP_");
    k.extend(name.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    Some(k)
}

/// `host[:port]`, `[v6][:port]`.
fn split_host(h: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if h.is_empty() {
        return None;
    }
    if h[0] == b'[' {
        let end = h.iter().position(|&b| b == b']')?;
        let (name, rest) = h.split_at(end + 1);
        return Some((name, rest.strip_prefix(b":").filter(|p| !p.is_empty())));
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(i) => Some((&h[..i], Some(&h[i + 1..]).filter(|p| !p.is_empty()))),
        None => Some((h, None)),
    }
}

fn default_server(binds: &[String]) -> (String, String) {
    let Some(first) = binds.first() else {
        return ("localhost".into(), "80".into());
    };
    if let Some(path) = first.strip_prefix("unix:") {
        // gunicorn reports a Unix socket's path as the server name.
        return (path.trim_start_matches("//").to_string(), "80".into());
    }
    if first.starts_with("fd://") {
        return ("localhost".into(), "80".into());
    }
    match split_host(first.as_bytes()) {
        Some((n, p)) => (
            String::from_utf8_lossy(n).into_owned(),
            p.map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "8000".into()),
        ),
        None => ("localhost".into(), "80".into()),
    }
}

/// `%XX` -> byte (CGI's PATH_INFO is decoded); malformed escapes stay as they are.
pub(crate) fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_cgi_and_drop_underscores() {
        assert_eq!(
            environ_key("X-Forwarded-For").unwrap(),
            "HTTP_X_FORWARDED_FOR"
        );
        assert_eq!(environ_key("content-type").unwrap(), "CONTENT_TYPE");
        assert_eq!(environ_key("Content-Length").unwrap(), "CONTENT_LENGTH");
        assert_eq!(environ_key("X_Forwarded_For"), None);
    }

    #[test]
    fn hosts_split() {
        assert_eq!(split_host(b"a.b:81"), Some((&b"a.b"[..], Some(&b"81"[..]))));
        assert_eq!(split_host(b"a.b"), Some((&b"a.b"[..], None)));
        assert_eq!(
            split_host(b"[::1]:8000"),
            Some((&b"[::1]"[..], Some(&b"8000"[..])))
        );
        assert_eq!(split_host(b"[::1]"), Some((&b"[::1]"[..], None)));
        assert_eq!(
            default_server(&["127.0.0.1:9000".into()]),
            ("127.0.0.1".into(), "9000".into())
        );
        assert_eq!(
            default_server(&["unix:/run/x.sock".into()]).0,
            "/run/x.sock"
        );
    }

    #[test]
    fn ports_format() {
        for n in [0u16, 7, 10, 80, 443, 8000, 65535] {
            let mut b = [0; 20];
            assert_eq!(format_u64(n.into(), &mut b), n.to_string());
        }
    }

    #[test]
    fn paths_decode() {
        assert_eq!(percent_decode(b"/a%20b/%e9%zz%"), b"/a b/\xe9%zz%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%41"), b"A");
    }
}
