//! `start_response`, `write`, `wsgi.errors`, and turning the app's iterable
//! into a [`Response`]: buffered (`Bytes`, with Content-Length) when the body
//! is known to be small, else pulled chunk by chunk as the client reads
//! (`Stream`: chunked on HTTP/1.1, close-delimited on HTTP/1.0), or, for a
//! `wsgi.file_wrapper` over a regular file, sent with `sendfile(2)` (`File`).

use std::io::{self, Read};

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};

use crate::app::{FileBody, Response, ResponseBody};

/// With a Content-Length up to this, the body is gathered and sent in one
/// piece; bigger bodies are streamed.
const BUFFER_LIMIT: u64 = 4 << 20;

/// Hop-by-hop headers belong to the server (PEP 3333, "Other HTTP Features").
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// The `start_response` callable of one request (it is also the `write`
/// callable's owner).
#[pyclass(module = "ferricorn")]
#[derive(Default)]
pub(crate) struct StartResponse {
    status: Option<u16>,
    headers: Vec<(String, Vec<u8>)>,
    content_length: Option<u64>,
    /// The first body byte was produced (by `write` or the iterable).
    headers_sent: bool,
    /// Bytes given to `write()`, not yet handed to the connection.
    written: Vec<u8>,
    /// A protocol error: the answer is a 500 whatever the app does next.
    error: Option<String>,
}

/// What a request is called in log lines ("GET /path"), formatted only
/// when something is logged.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
}

impl std::fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.target)
    }
}

fn native(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let s = v.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    // to_cow, not to_str: the abi3 build (pip package) supports Python 3.9, where
    // the stable ABI cannot borrow UTF-8 from a str. Borrowed in the embedded build.
    let s = s.to_cow()?;
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    s.chars()
        .map(|c| u8::try_from(c as u32))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| PyValueError::new_err(format!("{what} {s:?} is not Latin-1")))
}

fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

impl StartResponse {
    fn parse(&mut self, status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let st = native(status, "status")?;
        let code = match st.get(..3).map(std::str::from_utf8) {
            Some(Ok(d)) if d.bytes().all(|b| b.is_ascii_digit()) && st.get(3) == Some(&b' ') => {
                d.parse::<u16>().unwrap_or(0)
            }
            _ => 0,
        };
        if !(100..=999).contains(&code) {
            return Err(PyValueError::new_err(format!(
                "status {:?} is not 'NNN Reason'",
                String::from_utf8_lossy(&st)
            )));
        }
        let mut out = Vec::new();
        let mut content_length = None;
        for item in headers.try_iter()? {
            let item = item?;
            let pair = item
                .cast::<PyTuple>()
                .map_err(|_| PyTypeError::new_err("headers must be (name, value) tuples"))?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err("headers must be (name, value) tuples"));
            }
            let name = native(&pair.get_item(0)?, "header name")?;
            let value = native(&pair.get_item(1)?, "header value")?;
            if !is_token(&name) {
                return Err(PyValueError::new_err(format!(
                    "invalid header name {:?}",
                    String::from_utf8_lossy(&name)
                )));
            }
            let name = String::from_utf8(name).unwrap_or_default();
            if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(PyValueError::new_err(format!(
                    "header {name} contains CR, LF or NUL"
                )));
            }
            if HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                return Err(PyAssertionError::new_err(format!(
                    "hop-by-hop header {name} is not allowed from a WSGI app"
                )));
            }
            if name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(&value).unwrap_or("").trim();
                match v.parse::<u64>() {
                    Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => content_length = Some(n),
                    _ => {
                        return Err(PyValueError::new_err(format!(
                            "invalid Content-Length {v:?}"
                        )));
                    }
                }
                // The server writes its own framing headers.
                continue;
            }
            out.push((name, value));
        }
        self.status = Some(code);
        self.headers = out;
        self.content_length = content_length;
        Ok(())
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let mut me = slf.borrow_mut();
            match exc_info {
                // PEP 3333: too late to change the headers; re-raise.
                Some(exc) if me.headers_sent => {
                    drop(me);
                    return Err(PyErr::from_value(exc.get_item(1)?));
                }
                Some(_) => {}
                None if me.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info",
                    ));
                }
                None => {}
            }
            if let Err(e) = me.parse(status, headers) {
                let py = slf.py();
                me.error = Some(e.value(py).to_string());
                return Err(e);
            }
        }
        Ok(slf.getattr(pyo3::intern!(slf.py(), "write"))?.unbind())
    }

    /// The imperative `write(data)` callable returned by start_response.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let b = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() argument must be bytes"))?;
        if self.status.is_none() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let b = b.as_bytes();
        if !b.is_empty() {
            self.headers_sent = true;
            self.written.extend_from_slice(b);
        }
        Ok(())
    }
}

/// `wsgi.errors`: text written here goes to the error log, one line per record.
#[pyclass(module = "ferricorn")]
#[derive(Default)]
pub(crate) struct ErrorStream {
    line: String,
}

#[pymethods]
impl ErrorStream {
    fn write(&mut self, s: &str) -> usize {
        self.line.push_str(s);
        while let Some(i) = self.line.find('\n') {
            let rest = self.line.split_off(i + 1);
            log::error!("{}", self.line.trim_end_matches('\n'));
            self.line = rest;
        }
        s.chars().count()
    }
    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for l in lines.try_iter()? {
            self.write(&l?.extract::<std::borrow::Cow<str>>()?);
        }
        Ok(())
    }
    fn flush(&mut self) {
        if !self.line.is_empty() {
            log::error!("{}", std::mem::take(&mut self.line));
        }
    }
}

/// `wsgi.file_wrapper` (PEP 3333 "Optional Platform-Specific File Handling").
/// Its instances over regular files never get iterated: [`file_response`]
/// sends the file by descriptor. The iteration below serves the rest.
pub(crate) const FILE_WRAPPER_SRC: &std::ffi::CStr = cr#"
class FileWrapper:
    """Iterate over a file-like object in blocks; close() closes it."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration
"#;

/// The body of a `wsgi.file_wrapper` over a regular file, sent from the
/// file's current position with `sendfile(2)` (as gunicorn does): up to the
/// app's Content-Length, else to the end of the file. The app's `close()`
/// runs once the body is sent or the connection ends. None (iterate the
/// wrapper instead) for anything else: an object without a descriptor
/// (BytesIO), a pipe or socket, `start_response` not called yet, or bytes
/// already given to `write()`.
pub(crate) fn file_response(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    wrapper: &Bound<'_, PyAny>,
    context: Context<'_>,
) -> Option<Response> {
    let (status, content_length) = {
        let me = sr.borrow();
        if me.error.is_some() || !me.written.is_empty() {
            return None;
        }
        (me.status?, me.content_length)
    };
    let filelike = wrapper.getattr(pyo3::intern!(py, "filelike")).ok()?;
    let fd: i32 = filelike
        .call_method0(pyo3::intern!(py, "fileno"))
        .ok()?
        .extract()
        .ok()?;
    // tell(), not the descriptor's offset: a buffered reader may have read
    // ahead of the position the app sees.
    let offset: u64 = filelike
        .call_method0(pyo3::intern!(py, "tell"))
        .ok()?
        .extract()
        .ok()?;
    let file = crate::sys::dup_file(fd).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let left = meta.len().saturating_sub(offset);
    let len = content_length.map_or(left, |n| n.min(left));
    let headers = std::mem::take(&mut sr.borrow_mut().headers);
    let closer = Closer::new(wrapper.clone().unbind(), &context);
    Some(Response {
        status,
        headers,
        body: ResponseBody::File(FileBody {
            file,
            offset,
            len,
            _guard: Some(Box::new(closer)),
        }),
    })
}

/// The app's iterable, whose `close()` (PEP 3333) is called once: by
/// [`Closer::close`], or when dropped at the latest.
struct Closer {
    iterable: Option<Py<PyAny>>,
    /// The request, for log lines.
    context: String,
}

impl Closer {
    fn new(iterable: Py<PyAny>, context: &dyn std::fmt::Display) -> Closer {
        Closer {
            iterable: Some(iterable),
            context: context.to_string(),
        }
    }

    fn is_open(&self) -> bool {
        self.iterable.is_some()
    }

    fn close(&mut self, py: Python<'_>) {
        if let Some(it) = self.iterable.take() {
            close(py, it.bind(py), &self.context);
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if self.is_open() {
            Python::attach(|py| self.close(py));
        }
    }
}

/// Log a Python exception with its traceback.
pub(crate) fn log_exception(py: Python<'_>, err: &PyErr, context: &dyn std::fmt::Display) {
    let text = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|l| l.concat())
        .unwrap_or_else(|_| err.to_string());
    log::error!("{context}:\n{}", text.trim_end());
}

fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>, context: &dyn std::fmt::Display) {
    // Plain lists and tuples (the common `return [body]`) have no close():
    // skip the lookup, which would raise and format an AttributeError on
    // every request.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return;
    }
    if let Ok(c) = iterable.getattr(pyo3::intern!(py, "close"))
        && let Err(e) = c.call0()
    {
        log_exception(py, &e, &format!("{context}: close() failed"));
    }
}

pub(crate) fn internal_error() -> Response {
    Response::text(500, "Internal Server Error\n")
}

fn chunk<'py>(item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "the app's iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// Turn what the app returned into a response. `context` names the request
/// in log lines.
pub(crate) fn finish(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    result: Bound<'_, PyAny>,
    context: Context<'_>,
) -> Response {
    let context: &dyn std::fmt::Display = &context;
    // Lists and tuples are in memory already: gather them (and send a
    // Content-Length even when the app gave none).
    let known = result.is_instance_of::<PyList>() || result.is_instance_of::<PyTuple>();
    let iter = match result.try_iter() {
        Ok(it) => it,
        Err(e) => {
            log_exception(
                py,
                &e,
                &format!("{context}: the app did not return an iterable"),
            );
            close(py, &result, context);
            return internal_error();
        }
    };
    let mut body: Vec<u8> = std::mem::take(&mut sr.borrow_mut().written);
    let mut iter = iter;
    // start_response may be called lazily, at the first iteration: pull
    // until the status is known and, unless the body is gathered, until the
    // first non-empty chunk.
    let mut exhausted = false;
    loop {
        let (status_known, gather) = {
            let me = sr.borrow();
            let gather = known || me.content_length.is_some_and(|n| n <= BUFFER_LIMIT);
            (me.status.is_some() && me.error.is_none(), gather)
        };
        if sr.borrow().error.is_some() {
            break;
        }
        if status_known && !gather && !body.is_empty() {
            break;
        }
        match iter.next() {
            None => {
                exhausted = true;
                break;
            }
            Some(Ok(item)) => match chunk(&item) {
                Ok(b) => {
                    let b = b.as_bytes();
                    if !b.is_empty() {
                        let mut me = sr.borrow_mut();
                        if me.status.is_none() {
                            drop(me);
                            log::error!(
                                "{context}: the app produced a body before calling start_response()"
                            );
                            close(py, &result, context);
                            return internal_error();
                        }
                        me.headers_sent = true;
                        body.append(&mut me.written);
                        body.extend_from_slice(b);
                    }
                }
                Err(e) => {
                    log_exception(py, &e, context);
                    close(py, &result, context);
                    return internal_error();
                }
            },
            Some(Err(e)) => {
                log_exception(py, &e, &format!("Error handling request {context}"));
                close(py, &result, context);
                return internal_error();
            }
        }
    }
    let mut me = sr.borrow_mut();
    if let Some(why) = me.error.take() {
        drop(me);
        log::error!("{context}: invalid response from the app: {why}");
        close(py, &result, context);
        return internal_error();
    }
    let Some(status) = me.status else {
        drop(me);
        log::error!("{context}: the app returned without calling start_response()");
        close(py, &result, context);
        return internal_error();
    };
    body.append(&mut me.written);
    let headers = std::mem::take(&mut me.headers);
    let limit = me.content_length;
    drop(me);
    if exhausted {
        close(py, &result, context);
        if let Some(n) = limit
            && (body.len() as u64) > n
        {
            body.truncate(n as usize);
        }
        return Response {
            status,
            headers,
            body: ResponseBody::Bytes(body),
        };
    }
    if let Some(n) = limit
        && (body.len() as u64) > n
    {
        body.truncate(n as usize);
    }
    let stream = PyStream {
        iter: Some(iter.unbind()),
        closer: Closer::new(result.unbind(), context),
        sr: sr.clone().unbind(),
        remaining: limit.map(|n| n - body.len() as u64),
        pending: body,
        pos: 0,
    };
    Response {
        status,
        headers,
        body: ResponseBody::Stream(Box::new(stream)),
    }
}

/// The rest of a streamed body: pulled from the iterator as the client
/// reads. close() is called at the end, on error, and when the connection
/// drops the stream early (client gone, HEAD).
struct PyStream {
    iter: Option<Py<PyIterator>>,
    /// Closes the iterable at the end, on error, or when the stream is
    /// dropped early.
    closer: Closer,
    sr: Py<StartResponse>,
    pending: Vec<u8>,
    pos: usize,
    /// Bytes left under the app's Content-Length (extra bytes are dropped).
    remaining: Option<u64>,
}

impl PyStream {
    fn close(&mut self, py: Python<'_>) {
        self.iter = None;
        self.closer.close(py);
    }

    /// Refill `pending`; Ok(false) at the end of the body.
    fn refill(&mut self, py: Python<'_>) -> io::Result<bool> {
        self.pending.clear();
        self.pos = 0;
        loop {
            {
                let mut me = self.sr.bind(py).borrow_mut();
                if !me.written.is_empty() {
                    std::mem::swap(&mut self.pending, &mut me.written);
                    return Ok(true);
                }
            }
            let Some(iter) = &self.iter else {
                return Ok(false);
            };
            let mut it = iter.bind(py).clone();
            match it.next() {
                None => {
                    self.close(py);
                    return Ok(false);
                }
                Some(Ok(item)) => match chunk(&item) {
                    Ok(b) if b.as_bytes().is_empty() => continue,
                    Ok(b) => {
                        self.pending.extend_from_slice(b.as_bytes());
                        return Ok(true);
                    }
                    Err(e) => {
                        log_exception(py, &e, &self.closer.context);
                        self.close(py);
                        return Err(io::Error::other("the app's iterable failed"));
                    }
                },
                Some(Err(e)) => {
                    log_exception(
                        py,
                        &e,
                        &format!("Error handling request {}", self.closer.context),
                    );
                    self.close(py);
                    return Err(io::Error::other("the app's iterable failed"));
                }
            }
        }
    }
}

impl Read for PyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == Some(0) {
            if self.closer.is_open() {
                Python::attach(|py| self.close(py));
            }
            return Ok(0);
        }
        if self.pos == self.pending.len() && !Python::attach(|py| self.refill(py))? {
            return Ok(0);
        }
        let mut n = (self.pending.len() - self.pos).min(buf.len());
        if let Some(r) = &mut self.remaining {
            n = n.min(*r as usize);
            *r -= n as u64;
        }
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
