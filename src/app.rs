//! The application interface: the Rust counterpart of a WSGI callable.
//!
//! An [`App`] is built once in every worker, after fork, by a factory
//! (`Fn(&WorkerContext) -> impl App`), so each worker owns its own state
//! (connection pools, caches) and nothing is shared by accident across fork.
//! A plain closure `FnMut(&mut Request) -> Response` is an `App` too.
//!
//! The worker reads the whole request body before it calls the app (memory,
//! or a temporary file for large bodies), so [`Request::body`] never blocks on
//! the network and the time a slow client takes to upload is never counted as
//! time spent in the app.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;

use crate::http::{Head, Version};

/// Who is on the other end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix-socket client has no address (gunicorn reports "").
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{}", a.ip()),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// What a worker knows about itself when it builds its app.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// This worker's process id.
    pub pid: u32,
    /// 1-based age: the n-th worker the master has forked.
    pub age: u64,
    /// Number of workers the master is configured to run.
    pub workers: usize,
    /// The `--bind` addresses, as given.
    pub binds: Vec<String>,
    /// `--name`, or "ferricorn".
    pub name: String,
}

/// The request body: an in-memory buffer or a spooled temporary file.
pub struct Body {
    inner: BodyInner,
    len: u64,
}

enum BodyInner {
    Memory(io::Cursor<Vec<u8>>),
    File(io::BufReader<std::fs::File>),
}

impl Body {
    pub fn empty() -> Body {
        Body::from_vec(Vec::new())
    }
    pub fn from_vec(v: Vec<u8>) -> Body {
        Body {
            len: v.len() as u64,
            inner: BodyInner::Memory(io::Cursor::new(v)),
        }
    }
    pub fn from_file(f: std::fs::File, len: u64) -> Body {
        Body {
            inner: BodyInner::File(io::BufReader::new(f)),
            len,
        }
    }
    /// Total body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Read the rest of the body into a vector.
    pub fn to_vec(&mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(self.len.min(1 << 24) as usize);
        self.read_to_end(&mut v)?;
        Ok(v)
    }
    /// Give the buffer back for reuse once the request is done (memory bodies).
    pub(crate) fn into_vec(self) -> Option<Vec<u8>> {
        match self.inner {
            BodyInner::Memory(c) => Some(c.into_inner()),
            BodyInner::File(_) => None,
        }
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            BodyInner::Memory(c) => c.read(buf),
            BodyInner::File(f) => f.read(buf),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.len)
    }
}

/// One HTTP request as the app sees it.
#[derive(Debug)]
pub struct Request {
    pub(crate) head: Head,
    pub(crate) peer: Peer,
    pub(crate) body: Body,
    pub(crate) trailers: Vec<(String, Vec<u8>)>,
    pub(crate) scheme: &'static str,
    pub(crate) remote: Option<std::net::IpAddr>,
    /// Request id and `X-Request-Start` queue time ([`crate::reqmeta`]).
    pub(crate) meta: crate::reqmeta::RequestMeta,
}

impl Request {
    /// Build a request by hand (for unit-testing an app).
    pub fn new(head: Head, peer: Peer, body: Body) -> Request {
        Request {
            head,
            peer,
            body,
            trailers: Vec::new(),
            scheme: "http",
            remote: match peer {
                Peer::Tcp(a) => Some(a.ip()),
                Peer::Unix => None,
            },
            meta: Default::default(),
        }
    }
    /// The request id (`--request-id-header`): the one the client or proxy
    /// sent, else a generated one; `None` when request ids are off.
    pub fn request_id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }
    /// When the proxy received the request (`X-Request-Start` from a
    /// trusted peer), in microseconds since the Unix epoch.
    pub fn request_start_us(&self) -> Option<u64> {
        self.meta.start_us
    }
    /// Time between the proxy receiving the request and the app getting it.
    pub fn queue_time(&self) -> Option<std::time::Duration> {
        self.meta.queue_us.map(std::time::Duration::from_micros)
    }
    pub fn method(&self) -> &str {
        &self.head.method
    }
    /// The request target exactly as sent (`/p?x=1`, or absolute-form).
    pub fn target(&self) -> &str {
        &self.head.target
    }
    pub fn path(&self) -> &str {
        &self.head.path
    }
    /// The query string without `?`, "" when absent.
    pub fn query(&self) -> &str {
        &self.head.query
    }
    pub fn version(&self) -> Version {
        self.head.version
    }
    /// "HTTP/1.0" or "HTTP/1.1".
    pub fn version_str(&self) -> &'static str {
        match self.head.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
    /// Header fields in received order, names with their original case.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.head.headers
    }
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// The socket peer (the proxy, when there is one).
    pub fn peer(&self) -> Peer {
        self.peer
    }
    /// The client's address: the peer, or what a trusted proxy reported in
    /// `X-Forwarded-For` (see `--forwarded-allow-ips`). None for a Unix-socket
    /// peer that forwarded nothing.
    pub fn remote_addr(&self) -> Option<std::net::IpAddr> {
        self.remote
    }
    /// "http" or "https" (from a trusted proxy's headers).
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }
    pub fn body(&mut self) -> &mut Body {
        &mut self.body
    }
    /// Trailer fields of a chunked body, in received order.
    pub fn trailers(&self) -> &[(String, Vec<u8>)] {
        &self.trailers
    }
}

/// A response body.
pub enum ResponseBody {
    /// Sent with `Content-Length`.
    Bytes(Vec<u8>),
    /// Pulled as the client reads, sent chunked (HTTP/1.1) or until close (1.0).
    Stream(Box<dyn Read>),
    /// A slice of an open file, sent with `Content-Length` by `sendfile(2)`:
    /// the bytes go from the page cache to the socket without being copied
    /// through the worker (nginx's `sendfile on`).
    File(FileBody),
}

/// `len` bytes of `file` from `offset` ([`Response::file`]).
pub struct FileBody {
    pub(crate) file: std::fs::File,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Dropped once the body is sent or the connection ends (the WSGI layer
    /// calls the app's `close()` from it).
    pub(crate) _guard: Option<Box<dyn std::any::Any + Send>>,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Bytes(b) => write!(f, "Bytes({})", b.len()),
            ResponseBody::Stream(_) => f.write_str("Stream"),
            ResponseBody::File(b) => write!(f, "File({} bytes at {})", b.len, b.offset),
        }
    }
}

/// What the app answers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: ResponseBody,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: ResponseBody::Bytes(Vec::new()),
        }
    }
    /// A 200 with `content_type` and `body`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response::new(200)
            .header("Content-Type", content_type)
            .body(body)
    }
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain")
            .body(body)
    }
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = ResponseBody::Bytes(body.into());
        self
    }
    pub fn stream(mut self, reader: impl Read + 'static) -> Response {
        self.body = ResponseBody::Stream(Box::new(reader));
        self
    }
    /// Send `len` bytes of `file` starting at `offset`, with `sendfile(2)`.
    /// The length is promised in `Content-Length`: if the file turns out
    /// shorter, the connection is closed without the missing bytes (the
    /// client sees a truncated body, never someone else's bytes).
    pub fn file(mut self, file: std::fs::File, offset: u64, len: u64) -> Response {
        self.body = ResponseBody::File(FileBody {
            file,
            offset,
            len,
            _guard: None,
        });
        self
    }
}

/// Describes what an app thread is doing, given its `pthread_self()` (for
/// a Python app: the thread's stack, from `sys._current_frames()`). Called
/// from a helper thread when a request exceeds `--timeout` under
/// `--threads`, so it may wait for a lock (the GIL) without stalling the
/// worker.
pub type StackReporter = std::sync::Arc<dyn Fn(u64) -> Option<String> + Send + Sync>;

/// Runs an app thread's whole life (see [`App::thread_scope`]).
pub type ThreadScope = Box<dyn FnOnce(Box<dyn FnOnce() + Send>) + Send>;

/// An application: called once per request, inside a worker.
///
/// With `--threads N` each worker runs N apps, one per thread, each built by
/// the factory (so the factory runs N times per worker, on the worker's main
/// thread, and the app is moved to its thread: hence `Send`). A request is
/// always answered by the thread that was handed it, including the pulls of
/// a streamed body, so the body reader need not be `Send`.
pub trait App {
    fn call(&mut self, req: &mut Request) -> Response;

    /// For timeout reports under `--threads` (see [`StackReporter`]).
    fn stack_reporter(&self) -> Option<StackReporter> {
        None
    }

    /// Under `--threads`, called on the app's thread before its first
    /// request: the returned function runs the thread's whole life (its
    /// argument), so per-thread set-up lives as long as the thread. A
    /// Python app keeps one interpreter thread state per thread this way:
    /// `threading.local` data (Django's database connections) survives
    /// from one request to the next, and no thread state is made and
    /// destroyed per request.
    fn thread_scope(&self) -> Option<ThreadScope> {
        None
    }

    /// An app that brings its own event loop (a Python ASGI app: asyncio)
    /// runs the worker's loop inside it: the worker then serves through
    /// this runner, not through [`App::call`].
    fn runner(&mut self) -> Option<Box<dyn crate::dispatch::Runner>> {
        None
    }

    /// Does this app take WebSockets? When it does, an upgrade request that
    /// fails RFC 6455's checks is refused by the server (400, or 426 for a
    /// version other than 13), and a valid one goes to [`App::websocket`]
    /// instead of [`App::call`]. When it does not (the default), upgrade
    /// requests are plain HTTP requests to `call`, as for a WSGI app.
    /// WebSockets are served on the worker's loop: not under `--threads`.
    fn websockets(&self) -> bool {
        false
    }

    /// A valid WebSocket handshake: accept it with a session that gets the
    /// messages, or deny it with an HTTP response. The default refuses with
    /// 404 (an app that says it takes WebSockets but has none at this path).
    fn websocket(&mut self, _req: &mut Request, _hs: &crate::ws::Handshake) -> WsOpen {
        WsOpen::Deny(Response::text(404, "Not Found\n"))
    }
}

/// An app's answer to a WebSocket handshake.
pub enum WsOpen {
    /// 101 Switching Protocols, with a subprotocol the client offered
    /// (`crate::ws::select_subprotocol`) and extra headers.
    Accept {
        subprotocol: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        session: Box<dyn WsSession + Send>,
    },
    Deny(Response),
}

/// One accepted WebSocket, as the app sees it. The server answers pings,
/// sends its own, and does the close handshake; the session sees messages.
pub trait WsSession {
    /// A message from the client; push what to send (or a close) to `out`.
    fn on_message(&mut self, msg: crate::ws::Message, out: &mut Vec<crate::dispatch::WsAction>);
    /// The WebSocket ended with `code` (see `Dispatch::ws_closed`).
    fn on_close(&mut self, _code: u16) {}
}

impl<F> App for F
where
    F: FnMut(&mut Request) -> Response,
{
    fn call(&mut self, req: &mut Request) -> Response {
        self(req)
    }
}

/// Builds one app per worker (per app thread with `--threads`), after fork.
pub type AppFactory = Box<dyn Fn(&WorkerContext) -> io::Result<Box<dyn App + Send>>>;
