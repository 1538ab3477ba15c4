//! The ASGI `http` scope, built per request from a template dict (the
//! constant entries), with interned keys and cached lower-case header names.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::app::{Peer, Request};

/// Cached header names are bounded: they are client-chosen.
const MAX_CACHED_NAMES: usize = 512;

/// The ASGI version and the HTTP spec version this server implements.
pub(crate) const ASGI_VERSION: &str = "3.0";
pub(crate) const SPEC_VERSION: &str = "2.4";

/// Scope values common enough to keep one interned str each.
const RECURRING: [&str; 12] = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "1.1", "1.0", "http", "https", "/",
];

struct Keys {
    method: Py<PyString>,
    http_version: Py<PyString>,
    scheme: Py<PyString>,
    path: Py<PyString>,
    raw_path: Py<PyString>,
    query_string: Py<PyString>,
    headers: Py<PyString>,
    client: Py<PyString>,
    state: Py<PyString>,
}

pub(crate) struct ScopeBuilder {
    template: Py<PyDict>,
    keys: Keys,
    /// Header name as received -> its lower-case bytes.
    names: HashMap<Box<str>, Py<PyBytes>>,
    /// Recurring values ([`RECURRING`]: methods, versions, schemes), in
    /// that order.
    values: Vec<Py<PyString>>,
    root_path: String,
    empty_bytes: Py<PyBytes>,
    /// The last client address as a str: one proxy, or a few clients on
    /// keep-alive, send many requests from the same address in a row.
    last_ip: Option<(std::net::IpAddr, Py<PyString>)>,
}

fn intern(py: Python<'_>, s: &str) -> Py<PyString> {
    PyString::intern(py, s).unbind()
}

/// The scope's `server`: `(host, port)`, `(path, None)`, or `None`.
fn server<'py>(
    py: Python<'py>,
    addr: Option<(String, Option<u16>)>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match addr {
        Some(a) => a.into_pyobject(py)?.into_any(),
        None => py.None().into_bound(py),
    })
}

impl ScopeBuilder {
    pub(crate) fn new(
        py: Python<'_>,
        root_path: &str,
        server_addr: Option<(String, Option<u16>)>,
    ) -> PyResult<ScopeBuilder> {
        let template = PyDict::new(py);
        template.set_item(intern(py, "type"), intern(py, "http"))?;
        let asgi = PyDict::new(py);
        asgi.set_item("version", ASGI_VERSION)?;
        asgi.set_item("spec_version", SPEC_VERSION)?;
        template.set_item(intern(py, "asgi"), asgi)?;
        template.set_item(intern(py, "root_path"), root_path)?;
        template.set_item(intern(py, "server"), server(py, server_addr)?)?;
        // Only what is supported: no `http.response.trailers`, no
        // `http.response.zerocopysend` (pathsend covers files), no TLS.
        let ext = PyDict::new(py);
        ext.set_item("http.response.pathsend", PyDict::new(py))?;
        template.set_item(intern(py, "extensions"), ext)?;
        let keys = Keys {
            method: intern(py, "method"),
            http_version: intern(py, "http_version"),
            scheme: intern(py, "scheme"),
            path: intern(py, "path"),
            raw_path: intern(py, "raw_path"),
            query_string: intern(py, "query_string"),
            headers: intern(py, "headers"),
            client: intern(py, "client"),
            state: intern(py, "state"),
        };
        let values = RECURRING.iter().map(|v| intern(py, v)).collect();
        Ok(ScopeBuilder {
            template: template.unbind(),
            keys,
            names: HashMap::new(),
            values,
            root_path: root_path.to_string(),
            empty_bytes: PyBytes::new(py, b"").unbind(),
            last_ip: None,
        })
    }

    fn value<'py>(&self, py: Python<'py>, s: &str) -> Bound<'py, PyString> {
        // A few short strings: comparing them is cheaper than hashing.
        match RECURRING.iter().position(|v| *v == s) {
            Some(i) => self.values[i].bind(py).clone(),
            None => PyString::new(py, s),
        }
    }

    fn name<'py>(&mut self, py: Python<'py>, name: &str) -> Bound<'py, PyBytes> {
        if let Some(n) = self.names.get(name) {
            return n.bind(py).clone();
        }
        let lower = name.to_ascii_lowercase();
        let b = PyBytes::new(py, lower.as_bytes());
        if self.names.len() < MAX_CACHED_NAMES {
            self.names.insert(name.into(), b.clone().unbind());
        }
        b
    }

    /// The scope for `req`, or `None` when its path is outside `--root-path`
    /// (answered 404, as for WSGI).
    pub(crate) fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &Request,
        state: &Bound<'py, PyDict>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let raw_path = req.path().as_bytes();
        // The path as sent: ASGI's `path` includes `root_path`.
        if !self.root_path.is_empty() {
            match raw_path.strip_prefix(self.root_path.as_bytes()) {
                Some(rest) if rest.is_empty() || rest[0] == b'/' || rest[0] == b'?' => {}
                _ => return Ok(None),
            }
        }
        let scope = self.template.bind(py).copy()?;
        let k = &self.keys;
        scope.set_item(k.method.bind(py), self.value(py, req.method()))?;
        let version = match req.version() {
            crate::http::Version::Http10 => "1.0",
            crate::http::Version::Http11 => "1.1",
        };
        scope.set_item(k.http_version.bind(py), self.value(py, version))?;
        scope.set_item(k.scheme.bind(py), self.value(py, req.scheme()))?;
        let path = if raw_path.contains(&b'%') {
            String::from_utf8_lossy(&crate::python::environ::percent_decode(raw_path)).into_owned()
        } else {
            String::from_utf8_lossy(raw_path).into_owned()
        };
        if path == "/" {
            scope.set_item(k.path.bind(py), self.value(py, "/"))?;
        } else {
            scope.set_item(k.path.bind(py), path)?;
        }
        scope.set_item(k.raw_path.bind(py), PyBytes::new(py, raw_path))?;
        let q = req.query().as_bytes();
        if q.is_empty() {
            scope.set_item(k.query_string.bind(py), self.empty_bytes.bind(py))?;
        } else {
            scope.set_item(k.query_string.bind(py), PyBytes::new(py, q))?;
        }
        let headers = PyList::empty(py);
        for (name, value) in req.headers() {
            let n = self.name(py, name);
            headers.append(PyTuple::new(
                py,
                [n.into_any(), PyBytes::new(py, value).into_any()],
            )?)?;
        }
        let k = &self.keys;
        scope.set_item(k.headers.bind(py), headers)?;
        // The client: the peer, or what a trusted proxy reported (its port
        // is then unknown: 0).
        let client = match (req.remote_addr(), req.peer()) {
            (Some(ip), Peer::Tcp(a)) if ip == a.ip() => Some((ip, a.port())),
            (Some(ip), _) => Some((ip, 0)),
            (None, _) => None,
        };
        match client {
            Some((ip, port)) => {
                let host = match &self.last_ip {
                    Some((last, s)) if *last == ip => s.bind(py).clone(),
                    _ => {
                        let s = PyString::new(py, &ip.to_string());
                        self.last_ip = Some((ip, s.clone().unbind()));
                        s
                    }
                };
                let k = &self.keys;
                scope.set_item(k.client.bind(py), (host, port))?
            }
            None => scope.set_item(self.keys.client.bind(py), py.None())?,
        }
        scope.set_item(k.state.bind(py), state.copy()?)?;
        Ok(Some(scope))
    }
}
