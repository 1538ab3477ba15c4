//! One client connection: a state machine from bytes in to bytes out.
//!
//! No mio and no nix here: a `Conn` is driven over anything that is
//! `Read + Write` (a socket in the worker, a `Vec`-backed double in tests), so
//! the protocol logic is testable without processes. The event loop calls
//! [`Conn::drive`] when the socket may be readable or writable, and
//! [`Conn::on_timer`] about once a second; both return what should happen next.
//!
//! States (hyper's `proto/h1/conn.rs` keeps reading and writing apart; here the
//! read side is the `State` and the write side is the output buffer):
//!
//! ```text
//!   Head ──head parsed, body──▶ Body ──body complete──▶ App ─┐
//!    ▲  └──head parsed, no body──────────────────────▶ App ─┤
//!    │                                                       ▼
//!    └───────── keep-alive ◀──── Stream (streamed body) ◀── response queued
//!   any parse error ─▶ Lingering (error response, then discard input, close)
//!   not keep-alive  ─▶ Closing   (flush, then close)
//!   Upgrade: websocket (app takes WebSockets) ─▶ WsOpening ─accept─▶ WebSocket
//!                                                  └─deny─▶ response, Closing
//!   WebSocket ─close handshake, protocol error, ping timeout─▶ Lingering
//! ```
//!
//! An open WebSocket is outside `--keep-alive` and `--header-timeout`: its
//! own timers are the idle ping and the close handshake's wait
//! (`crate::ws_conn`), and a graceful stop closes it with 1001 shortly
//! before `--graceful-timeout` ends (`ws_going_away`).
//!
//! The connection never calls the app: a complete request is handed to the
//! worker's dispatcher ([`crate::dispatch`]) and the connection waits in
//! `App` until [`Conn::respond`] brings the answer (at once when the app
//! runs inline, later from a thread). One request is in the app at a time
//! per connection, and input is not read meanwhile, so pipelined requests
//! are answered in order. A request that finds no idle thread stays parked
//! in `App` (`Next::Park`) until the loop offers it a thread.
//!
//! Pipelined requests are answered in order, and all the responses produced
//! from one read are written with one `write(2)`. Output beyond
//! [`HIGH_WATER`] stops the reading of further requests: a client that does
//! not read its responses cannot grow the worker's memory.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::app::{Body, Peer, Request, Response, ResponseBody};
use crate::dispatch::{Answer, ConnId, Dispatch, Env, Outcome, WsAction};
use crate::hooks::Hooks;
use crate::http::{
    BodyDecoder, Framing, Head, Limits, ParseError, ResponseFraming, Version, parse_head_reusing,
    write_error_response, write_head,
};
use crate::incidents::Incidents;
use crate::logging::{AccessLog, AccessRecord};
use crate::sys::Slot;

/// Stop reading new requests while this many response bytes wait to be sent.
pub const HIGH_WATER: usize = 256 * 1024;
/// Bytes read per `read(2)` once a connection has shown it sends a lot.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read per `read(2)` on a new connection.
const SMALL_READ: usize = 4 * 1024;
/// Buffered, unparsed input beyond which we stop reading (a body is moved out
/// of this buffer as it is decoded, so this bounds heads and pipelines).
const INPUT_CAP: usize = 1024 * 1024;
/// Drive rounds per event before yielding to other connections.
const MAX_ROUNDS: usize = 16;
/// An idle connection's buffers are given back once it has been idle this
/// long (checked by the once-a-second timer).
const IDLE_RELEASE_MS: u64 = 1_000;
/// How long an error response is given to reach the client before close.
const LINGER_MS: u64 = 2_000;
/// Bytes discarded while lingering before giving up.
const LINGER_BYTES: usize = 1 << 20;

/// Bytes of a file body sent per `sendfile(2)`: large enough to fill a
/// socket buffer, small enough that one big download does not hold the
/// worker's loop from its other connections.
const SENDFILE_CHUNK: usize = 1 << 20;

/// A byte stream that can also half-close (sockets; test doubles).
pub trait Stream: Read + Write {
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Write up to `count` bytes of `file` from `*offset`, advancing it by
    /// what was written; 0 means the file ended. Sockets do it with
    /// `sendfile(2)`; this default copies through a buffer.
    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 16 * 1024];
        let n = file.read_at(&mut buf[..count.min(16 * 1024)], *offset)?;
        if n == 0 {
            return Ok(0);
        }
        let w = self.write(&buf[..n])?;
        *offset += w as u64;
        Ok(w)
    }
}

/// Worker-wide things a connection needs while it is driven.
pub struct Ctx<'a> {
    /// Runs the app (inline or on threads).
    pub dispatch: &'a mut dyn Dispatch,
    pub hooks: &'a dyn Hooks,
    pub limits: &'a Limits,
    pub date: &'a [u8],
    pub now_ms: u64,
    pub keepalive_ms: u64,
    pub header_timeout_ms: u64,
    /// Graceful stop under way: answer what arrives with `Connection: close`.
    pub draining: bool,
    /// Idle keep-alive connections get this long to send one more request
    /// during a graceful stop before they are closed.
    pub drain_idle_ms: u64,
    pub slot: Option<&'a Slot>,
    /// Proxy trust and upload spooling settings.
    pub uploads: &'a ConnConfig,
    pub access_log: &'a mut AccessLog,
    /// Requests answered by this worker (for `--max-requests`).
    pub requests: &'a mut u64,
    /// Queue responses without writing them (see `Next::Flush`).
    pub defer_flush: bool,
    /// Set by the event loop when this worker holds far more connections
    /// than a peer: the next keep-alive response with no further request
    /// buffered behind it says `Connection: close` instead (and clears
    /// it), so the client's next connection can go to the peer.
    pub shed: &'a mut bool,
    /// Rejected requests (4xx from the parser, 408), for the error log.
    pub incidents: &'a mut Incidents,
    /// Bytes of idle connections' buffers given back (`on_timer`), so the
    /// loop knows when to return freed memory to the kernel.
    pub released: &'a mut usize,
}

/// Per-worker settings for proxies and request bodies.
pub struct ConnConfig {
    /// `--forwarded-allow-ips`.
    pub trusted: crate::proxy::TrustedProxies,
    /// `--secure-scheme-headers`.
    pub scheme_headers: Vec<(String, String)>,
    /// `--proxy-protocol`: a PROXY header must open every connection.
    pub proxy_protocol: bool,
    /// `--body-buffer-size`: bodies above this go to a temporary file.
    pub memory_limit: u64,
    /// `--tmp-upload-dir` (None: the system temporary directory).
    pub tmp_dir: Option<std::path::PathBuf>,
    /// `--ws-max-size`, `--ws-ping-interval`, `--ws-ping-timeout`.
    pub ws: crate::ws_conn::WsSettings,
}

impl Default for ConnConfig {
    fn default() -> ConnConfig {
        ConnConfig {
            trusted: crate::proxy::TrustedProxies::parse("127.0.0.1,::1").unwrap(),
            scheme_headers: Vec::new(),
            proxy_protocol: false,
            memory_limit: 1 << 20,
            tmp_dir: None,
            ws: crate::ws_conn::WsSettings::default(),
        }
    }
}

/// Move the in-memory part of a body into the spool file.
fn spill(
    spool: &mut Option<(std::fs::File, u64)>,
    body: &mut Vec<u8>,
    cfg: &ConnConfig,
) -> io::Result<()> {
    if spool.is_none() {
        let dir = cfg.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        *spool = Some((crate::sys::anonymous_file(&dir)?, 0));
    }
    if let Some((file, len)) = spool {
        file.write_all(body)?;
        *len += body.len() as u64;
        body.clear();
    }
    Ok(())
}

/// True if the response `status` to a `method` request would open a tunnel:
/// a 2xx to CONNECT (RFC 9110 §9.3.6), which must not carry framing headers.
fn connect_tunnel(method: &str, status: u16) -> bool {
    method == "CONNECT" && (200..300).contains(&status)
}

/// What the event loop should do with the connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next readiness event or timer.
    Wait,
    /// Work is left but the round budget is spent: drive again soon.
    Again,
    /// Close and forget the connection.
    Close,
    /// Output is queued and the caller asked to defer writing: drive again,
    /// without deferral, when the event loop writes its burst.
    Flush,
    /// A complete request waits for room in the dispatcher (all app threads
    /// busy): drive again when there is room.
    Park,
}

// One `State` per connection, replaced in place: the size of `Body` costs
// nothing worth a heap allocation per request (clippy's large_enum_variant).
#[allow(clippy::large_enum_variant)]
enum State {
    /// Waiting for a request head (or idle between requests).
    Head,
    /// Reading the body of `head`.
    Body {
        head: Head,
        decoder: BodyDecoder,
        body: Vec<u8>,
        trailers: Vec<(String, Vec<u8>)>,
        /// The spooled part of a large body and its length.
        spool: Option<(std::fs::File, u64)>,
    },
    /// Sending a streamed response body as the client reads it.
    Stream {
        reader: Box<dyn Read>,
        chunked: bool,
        then_close: bool,
    },
    /// Sending a file body with `sendfile(2)`, once what is queued before it
    /// (the head) is written.
    SendFile {
        body: crate::app::FileBody,
        then_close: bool,
    },
    /// The request is with the app (`waiting` is None), or waits for an
    /// idle app thread (`waiting` holds it): nothing is read meanwhile.
    App {
        waiting: Option<Request>,
        keep_alive: bool,
        is_head: bool,
        version: Version,
        started: std::time::Instant,
    },
    /// A WebSocket handshake is with the app, waiting for its accept or
    /// deny; nothing is read meanwhile.
    WsOpening {
        req: Request,
        accept: String,
        started: std::time::Instant,
    },
    /// An open WebSocket.
    WebSocket(Box<crate::ws_conn::WsConn>),
    /// Flush what is queued, then close.
    Closing,
    /// An error response is queued: flush it, half-close, discard input until
    /// EOF, then close (so the client reads the error instead of a reset).
    Lingering { since_ms: u64, discarded: usize },
}

pub struct Conn<S> {
    pub stream: S,
    pub peer: Peer,
    /// Who this connection is to the dispatcher (set by the event loop).
    pub id: ConnId,
    state: State,
    /// Input buffer: `rbuf[rpos..rend]` is unparsed input; beyond `rend`,
    /// initialised spare room for the next read.
    rbuf: Vec<u8>,
    rend: usize,
    /// A read filled the small buffer: read `READ_CHUNK` at a time from now on.
    big_reads: bool,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Readiness not yet consumed (edge-triggered: set by the loop on a
    /// readable event, cleared by WouldBlock or a short read).
    pub readable: bool,
    read_eof: bool,
    write_shut: bool,
    /// When the `--header-timeout` clock for the current head started: at
    /// accept for a connection's first request (a client that connects and
    /// sends nothing is answered 408 like one that stalls mid-head), at the
    /// first byte of the next head on a kept-alive connection (idle between
    /// requests is `--keep-alive`'s business). 0 = not running.
    head_started_ms: u64,
    /// Last time bytes moved in either direction.
    last_io_ms: u64,
    /// Requests answered on this connection.
    served: u64,
    /// Body buffer kept across requests.
    spare_body: Vec<u8>,
    /// The event loop saw the peer shut its write side (EPOLLRDHUP).
    pub peer_shut: bool,
    /// Socket options for kept-alive connections are set (the event loop's).
    pub nodelay: bool,
    /// In the event loop's queue of parked connections (the loop's).
    pub parked: bool,
    /// The previous request's head, refilled by the next parse.
    spare_head: Option<Head>,
    /// `--proxy-protocol`: the PROXY header has not been read yet.
    pub awaiting_proxy_header: bool,
}

impl<S: Stream> Conn<S> {
    pub fn new(stream: S, peer: Peer, now_ms: u64) -> Conn<S> {
        Conn {
            stream,
            peer,
            id: ConnId {
                index: 0,
                serial: 0,
            },
            state: State::Head,
            rbuf: Vec::new(),
            rend: 0,
            big_reads: false,
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            readable: true,
            read_eof: false,
            write_shut: false,
            head_started_ms: now_ms.max(1),
            last_io_ms: now_ms,
            served: 0,
            spare_body: Vec::new(),
            awaiting_proxy_header: false,
            spare_head: None,
            nodelay: false,
            parked: false,
            peer_shut: false,
        }
    }

    /// True when no request is in progress and nothing waits to be sent.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.rpos == self.rend && self.pending() == 0
    }

    /// When an idle connection (never sent a byte, or kept alive between
    /// requests) last moved a byte; `None` while a request is under way.
    /// The event loop closes the longest idle first when it runs out of
    /// connection slots, and does not count long-idle ones as load.
    pub fn idle_since(&self) -> Option<u64> {
        self.is_idle().then_some(self.last_io_ms)
    }

    /// Give the buffers of an idle connection back: an idle connection
    /// should cost its `Conn` and nothing more (nginx's idle connection is
    /// about 0.5 kB; holding a 4 KiB read buffer, the last response's output
    /// buffer and the previous head made one cost about 5 kB). Called from
    /// the timer rather than after each response, so a busy keep-alive
    /// connection does not allocate and zero a buffer per request.
    /// Returns the bytes given back.
    fn release_buffers(&mut self) -> usize {
        debug_assert!(self.is_idle());
        let head = self.spare_head.as_ref().map_or(0, |h| {
            h.headers.capacity() * std::mem::size_of::<(String, Vec<u8>)>()
                + h.headers
                    .iter()
                    .map(|(n, v)| n.capacity() + v.capacity())
                    .sum::<usize>()
                + h.method.capacity()
                + h.target.capacity()
                + h.path.capacity()
                + h.query.capacity()
        });
        let freed = self.rbuf.capacity() + self.wbuf.capacity() + self.spare_body.capacity() + head;
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.rend = 0;
        self.big_reads = false;
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.spare_body = Vec::new();
        self.spare_head = None;
        freed
    }

    /// Requests answered on this connection so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Restart the idle clock (a graceful stop began: idle connections get
    /// their drain window from now).
    pub fn touch(&mut self, now_ms: u64) {
        self.last_io_ms = now_ms;
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Make progress: read, parse, call the app, write. Bounded per call.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let next = self.drive_rounds(ctx);
        if next == Next::Close {
            // A socket error or EOF ends a WebSocket without a close
            // handshake: its app hears 1006 (once).
            self.ws_lost(ctx);
        }
        next
    }

    /// The WebSocket (or its handshake) ends without a close handshake.
    fn ws_lost(&mut self, ctx: &mut Ctx<'_>) {
        let tell = match &mut self.state {
            State::WebSocket(ws) => ws.end(),
            State::WsOpening { .. } => {
                self.state = State::Closing;
                true
            }
            _ => false,
        };
        if tell {
            let env = Env {
                hooks: ctx.hooks,
                slot: ctx.slot,
                now_ms: ctx.now_ms,
            };
            ctx.dispatch
                .ws_closed(self.id, crate::ws::code::ABNORMAL, &env);
        }
    }

    fn drive_rounds(&mut self, ctx: &mut Ctx<'_>) -> Next {
        for _ in 0..MAX_ROUNDS {
            let mut progress = false;
            if self.wants_input() {
                match self.read_some(ctx.now_ms) {
                    Ok(n) => progress |= n > 0,
                    Err(_) => return Next::Close,
                }
            }
            progress |= self.process(ctx);
            if ctx.defer_flush && self.pending() > 0 {
                return Next::Flush;
            }
            match self.flush(ctx.now_ms) {
                Ok(n) => {
                    progress |= n > 0;
                    // An open WebSocket's output is all written: an app
                    // held back for it may send again (Dispatch::ws_drained).
                    if n > 0 && self.pending() == 0 && matches!(self.state, State::WebSocket(_)) {
                        ctx.dispatch.ws_drained(self.id);
                    }
                }
                Err(_) => return Next::Close,
            }
            if let Some(next) = self.finish_if_done(ctx) {
                return next;
            }
            if !progress {
                return if self.is_parked() {
                    Next::Park
                } else {
                    Next::Wait
                };
            }
        }
        Next::Again
    }

    /// The request is with the app (handed over, not answered yet).
    pub fn in_app(&self) -> bool {
        matches!(self.state, State::App { waiting: None, .. })
    }

    /// A complete request waits for an idle app thread.
    pub fn is_parked(&self) -> bool {
        matches!(
            self.state,
            State::App {
                waiting: Some(_),
                ..
            }
        )
    }

    /// Called about once a second: enforce the header, idle and linger
    /// deadlines, and give an idle connection's buffers back.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let now = ctx.now_ms;
        match self.state {
            // Time in the app is the dispatcher's to limit (`--timeout`),
            // and a parked request waits for a thread, not for the client.
            State::App { .. } | State::WsOpening { .. } => Next::Wait,
            State::WebSocket(ref mut ws) => {
                let before = self.wbuf.len();
                if let Some(code) = ws.on_timer(now, &mut self.wbuf) {
                    self.ws_end(code, false, ctx);
                }
                if self.wbuf.len() > before || matches!(self.state, State::Closing) {
                    return self.drive(ctx);
                }
                Next::Wait
            }
            State::Lingering { since_ms, .. } if now >= since_ms + LINGER_MS => Next::Close,
            State::Head if self.pending() == 0 => {
                let nothing_buffered = self.rpos == self.rend;
                // Nothing buffered: idle, closed after `--keep-alive` (the
                // drain window during a graceful stop). That includes a
                // connection that has sent nothing yet, which is on the
                // header clock too: whichever ends first.
                if nothing_buffered {
                    let idle = if ctx.draining {
                        ctx.drain_idle_ms.min(ctx.keepalive_ms)
                    } else {
                        ctx.keepalive_ms
                    };
                    if now >= self.last_io_ms + idle {
                        return Next::Close;
                    }
                }
                if self.head_started_ms > 0 && now >= self.head_started_ms + ctx.header_timeout_ms {
                    let why = if nothing_buffered && self.served == 0 {
                        "no request within --header-timeout"
                    } else {
                        "request head not complete within --header-timeout"
                    };
                    log::debug!("closing {}: {why}", self.peer);
                    ctx.incidents
                        .rejected(408, self.peer, format_args!("{why}"));
                    self.fail(408, ctx);
                    return self.drive(ctx);
                }
                if nothing_buffered && now >= self.last_io_ms + IDLE_RELEASE_MS {
                    *ctx.released += self.release_buffers();
                }
                Next::Wait
            }
            // Body uploads and slow readers: close after a keep-alive period
            // without any progress (a slow upload that keeps moving is fine).
            _ if now >= self.last_io_ms + ctx.keepalive_ms.max(ctx.header_timeout_ms) => {
                Next::Close
            }
            _ => Next::Wait,
        }
    }

    /// Graceful stop began: an idle connection that has already served
    /// requests may be closed right away only if it has nothing buffered.
    fn wants_input(&self) -> bool {
        if !self.readable || self.read_eof {
            return false;
        }
        match self.state {
            State::Lingering { .. } => true,
            State::Closing => false,
            State::Stream { .. }
            | State::SendFile { .. }
            | State::App { .. }
            | State::WsOpening { .. } => false,
            State::WebSocket(ref ws) if ws.paused => false,
            _ => self.pending() < HIGH_WATER && self.rend - self.rpos < INPUT_CAP,
        }
    }

    fn read_some(&mut self, now_ms: u64) -> io::Result<usize> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
            // A burst (a long pipeline, a big head) grew the buffer: give the
            // memory back once it is drained, so idle connections stay small.
            if self.rbuf.len() > 4 * READ_CHUNK {
                self.rbuf.truncate(READ_CHUNK);
                self.rbuf.shrink_to_fit();
            }
        } else if self.rpos > 0 && self.rpos >= self.rend / 2 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        // `rbuf[..rend]` holds unparsed input; the rest of `rbuf` is spare
        // room that was zeroed once when the buffer grew and is reused from
        // then on, so a read costs no fill (zeroing 16 KiB per read used to be
        // the worker's top user-space cost: a client dribbling one byte at a
        // time made every byte cost a 16 KiB memset).
        // Start small (most connections send small heads; a thousand idle
        // keep-alive connections should not pin 16 KiB each) and read in
        // bigger pieces once a read has filled the small buffer.
        let want = if self.big_reads {
            READ_CHUNK
        } else {
            SMALL_READ
        };
        if self.rbuf.len() - self.rend < want {
            self.rbuf.resize(self.rend + want, 0);
        }
        let res = self
            .stream
            .read(&mut self.rbuf[self.rend..self.rend + want]);
        let n = match &res {
            Ok(n) => *n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(_) => return Err(res.unwrap_err()),
        };
        self.rend += n;
        match res {
            Ok(0) => {
                self.read_eof = true;
                self.readable = false;
            }
            // A short read drained the socket: the next byte brings a new
            // edge. Not so for a FIN that came with the data: its one edge
            // is spent, so read on until read() says 0.
            Ok(n) if n < want && !self.peer_shut => self.readable = false,
            Ok(_) => self.big_reads = true,
            Err(_) => self.readable = false,
        }
        if n > 0 {
            self.last_io_ms = now_ms;
            if let State::Lingering { discarded, .. } = &mut self.state {
                *discarded += n;
                self.rpos = 0;
                self.rend = 0;
            }
        }
        Ok(n)
    }

    /// Parse and answer as many buffered requests as output space allows.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.pending() >= HIGH_WATER {
                return progress;
            }
            match &mut self.state {
                State::Head if self.awaiting_proxy_header => {
                    if self.rpos == self.rend {
                        return progress;
                    }
                    match crate::proxy::parse_proxy_protocol(&self.rbuf[self.rpos..self.rend]) {
                        Ok(None) => {
                            if self.head_started_ms == 0 {
                                self.head_started_ms = ctx.now_ms;
                            }
                            return progress;
                        }
                        Ok(Some((hdr, n))) => {
                            self.rpos += n;
                            self.awaiting_proxy_header = false;
                            // The head clock keeps running: it started at accept
                            // and covers the PROXY header and the request head.
                            if let crate::proxy::ProxyHeader::Proxied { source, .. } = hdr {
                                self.peer = Peer::Tcp(source);
                            }
                            progress = true;
                        }
                        Err(why) => {
                            // Not an HTTP error: the peer is not speaking the
                            // protocol we were told to expect. Close, say nothing.
                            log::warn!("closing connection from {}: {why}", self.peer);
                            self.rpos = self.rend;
                            self.state = State::Closing;
                            return true;
                        }
                    }
                }
                State::Head => {
                    if self.rpos == self.rend {
                        return progress;
                    }
                    match parse_head_reusing(
                        &self.rbuf[self.rpos..self.rend],
                        ctx.limits,
                        &mut self.spare_head,
                    ) {
                        Ok(None) => {
                            if self.head_started_ms == 0 {
                                self.head_started_ms = ctx.now_ms;
                            }
                            if self.read_eof {
                                // The client went away mid-head: nothing to answer.
                                self.state = State::Closing;
                                self.rpos = self.rend;
                            }
                            return progress;
                        }
                        Err(e) => {
                            self.reject(&e, ctx);
                            return true;
                        }
                        Ok(Some((head, n))) => {
                            progress = true;
                            self.rpos += n;
                            self.head_started_ms = 0;
                            // `Content-Length: 0` is a complete request too: sending
                            // it to the Body state would wait for input that never
                            // comes (the decoder only runs on new bytes), so the
                            // client hung until its own timeout.
                            if matches!(head.framing, Framing::None | Framing::Length(0)) {
                                self.dispatch(head, Body::empty(), Vec::new(), ctx);
                            } else {
                                if head.expect_continue && self.rpos == self.rend {
                                    self.wbuf
                                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                }
                                let decoder = BodyDecoder::new(head.framing);
                                let mut body = std::mem::take(&mut self.spare_body);
                                body.clear();
                                self.state = State::Body {
                                    head,
                                    decoder,
                                    body,
                                    trailers: Vec::new(),
                                    spool: None,
                                };
                            }
                        }
                    }
                }
                State::Body {
                    decoder,
                    body,
                    trailers,
                    spool,
                    ..
                } => {
                    if self.rpos == self.rend {
                        if self.read_eof {
                            self.state = State::Closing;
                        }
                        return progress;
                    }
                    let input = &self.rbuf[self.rpos..self.rend];
                    match decoder.decode(input, body, trailers, ctx.limits.body) {
                        Err(e) => {
                            self.reject(&e, ctx);
                            return true;
                        }
                        Ok(d) => {
                            self.rpos += d.consumed;
                            progress |= d.consumed > 0;
                            // Past --body-buffer-size the body goes to an unlinked
                            // temporary file, so a 1 GiB upload costs no memory.
                            if (spool.is_some() || body.len() as u64 > ctx.uploads.memory_limit)
                                && let Err(e) = spill(spool, body, ctx.uploads)
                            {
                                log::error!("spooling a request body failed: {e}");
                                self.fail(500, ctx);
                                return true;
                            }
                            if !d.done {
                                return progress;
                            }
                            let State::Body {
                                head,
                                body,
                                trailers,
                                spool,
                                ..
                            } = std::mem::replace(&mut self.state, State::Head)
                            else {
                                unreachable!()
                            };
                            let body = match spool {
                                None => Body::from_vec(body),
                                Some((mut file, len)) => {
                                    if let Err(e) = file.seek(SeekFrom::Start(0)) {
                                        log::error!("rewinding a spooled body failed: {e}");
                                        self.fail(500, ctx);
                                        return true;
                                    }
                                    Body::from_file(file, len)
                                }
                            };
                            self.dispatch(head, body, trailers, ctx);
                        }
                    }
                }
                State::Stream { .. } => {
                    if !self.pull_stream(ctx) {
                        return progress;
                    }
                    progress = true;
                }
                State::SendFile { .. } => {
                    if self.pending() > 0 || !self.send_file(ctx.now_ms) {
                        return progress;
                    }
                    progress = true;
                    // One piece per call: a fast reader of a big file must
                    // not hold the worker from its other connections
                    // (`drive` bounds its rounds, this bounds a round).
                    if matches!(self.state, State::SendFile { .. }) {
                        return progress;
                    }
                }
                State::App { waiting, .. } => {
                    if waiting.is_none() || ctx.dispatch.room() == 0 {
                        return progress;
                    }
                    self.submit(ctx);
                    progress = true;
                }
                State::WsOpening { .. } => return progress,
                State::WebSocket(ws) => {
                    if ws.paused {
                        // The app's queue is full: frames wait (Resume).
                        return progress;
                    }
                    if self.rpos == self.rend {
                        if self.read_eof {
                            // Gone without a close frame.
                            if ws.end() {
                                let env = Env {
                                    hooks: ctx.hooks,
                                    slot: ctx.slot,
                                    now_ms: ctx.now_ms,
                                };
                                ctx.dispatch
                                    .ws_closed(self.id, crate::ws::code::ABNORMAL, &env);
                            }
                            self.state = State::Closing;
                            return true;
                        }
                        return progress;
                    }
                    let (n, step) =
                        ws.step(&self.rbuf[self.rpos..self.rend], &mut self.wbuf, ctx.now_ms);
                    self.rpos += n;
                    progress |= n > 0;
                    match step {
                        crate::ws_conn::Step::Nothing if n == 0 => return progress,
                        crate::ws_conn::Step::Nothing => {}
                        crate::ws_conn::Step::Message(m) => {
                            let env = Env {
                                hooks: ctx.hooks,
                                slot: ctx.slot,
                                now_ms: ctx.now_ms,
                            };
                            let mut actions = Vec::new();
                            ctx.dispatch.ws_message(self.id, m, &env, &mut actions);
                            for a in actions {
                                self.ws_action(a, ctx);
                            }
                        }
                        crate::ws_conn::Step::Ended(code) => {
                            self.ws_end(code, false, ctx);
                            return true;
                        }
                        crate::ws_conn::Step::Failed(code) => {
                            self.ws_end(code, true, ctx);
                            return true;
                        }
                    }
                }
                State::Closing | State::Lingering { .. } => return progress,
            }
        }
    }

    /// Answer a malformed or over-limit request and close (gunicorn and
    /// unicorn do the same: after a framing error the stream is unusable).
    fn reject(&mut self, e: &ParseError, ctx: &mut Ctx<'_>) {
        log::debug!("bad request from {}: {:?}", self.peer, e);
        ctx.incidents
            .rejected(e.status(), self.peer, format_args!("{e:?}"));
        self.fail(e.status(), ctx);
    }

    fn fail(&mut self, status: u16, ctx: &mut Ctx<'_>) {
        let before = self.wbuf.len();
        write_error_response(&mut self.wbuf, status, ctx.date);
        crate::scoreboard::count_refused(status, (self.wbuf.len() - before) as u64);
        self.rpos = self.rend;
        self.state = State::Lingering {
            since_ms: ctx.now_ms,
            discarded: 0,
        };
    }

    /// A complete request leaves the connection: to the app at once, or
    /// parked until the dispatcher has room.
    fn dispatch(
        &mut self,
        head: Head,
        body: Body,
        trailers: Vec<(String, Vec<u8>)>,
        ctx: &mut Ctx<'_>,
    ) {
        let mut keep_alive = head.keep_alive && !ctx.draining && ctx.keepalive_ms > 0;
        if keep_alive && *ctx.shed && self.rpos == self.rend {
            *ctx.shed = false;
            keep_alive = false;
        }
        let is_head = head.method == "HEAD";
        let version = head.version;
        let client = crate::proxy::client_info(
            &self.peer,
            &head.headers,
            &ctx.uploads.trusted,
            &ctx.uploads.scheme_headers,
        );
        // The request's id and queue time (`reqmeta`), current on this
        // thread while an inline app runs; left below once it is handed over.
        let meta = crate::reqmeta::enter(&head.headers, ctx.uploads.trusted.trusts(&self.peer));
        // (The app first: most take no WebSockets, and then no header is
        // looked at.)
        let websocket = ctx.dispatch.websockets() && crate::ws::is_upgrade(&head);
        let req = Request {
            head,
            peer: self.peer,
            body,
            trailers,
            scheme: if client.https { "https" } else { "http" },
            remote: client.addr,
            meta,
        };
        if websocket {
            self.open_websocket(req, ctx);
            crate::reqmeta::leave();
            return;
        }
        self.state = State::App {
            waiting: Some(req),
            keep_alive,
            is_head,
            version,
            started: std::time::Instant::now(),
        };
        if ctx.dispatch.room() > 0 {
            self.submit(ctx);
        }
        crate::reqmeta::leave();
    }

    /// Hand the waiting request to the dispatcher; an inline answer is
    /// written at once.
    fn submit(&mut self, ctx: &mut Ctx<'_>) {
        let State::App { waiting, .. } = &mut self.state else {
            return;
        };
        let Some(req) = waiting.take() else {
            return;
        };
        let env = Env {
            hooks: ctx.hooks,
            slot: ctx.slot,
            now_ms: ctx.now_ms,
        };
        if let Some(answer) = ctx.dispatch.submit(self.id, req, &env) {
            self.respond(answer, ctx);
        }
    }

    /// An upgrade request to an app that takes WebSockets: refused here if
    /// it breaks RFC 6455, else handed to the app to accept or deny.
    fn open_websocket(&mut self, mut req: Request, ctx: &mut Ctx<'_>) {
        let hs = match crate::ws::check_handshake(&req.head) {
            Ok(hs) => hs,
            Err(refusal) => {
                log::debug!(
                    "bad WebSocket handshake from {}: {}",
                    self.peer,
                    refusal.why
                );
                let mut resp = Response::text(refusal.status, format!("{}\n", refusal.why));
                if refusal.status == 426 {
                    resp = resp.header("Sec-WebSocket-Version", crate::ws::VERSION);
                }
                self.answer_now(req, resp, ctx);
                return;
            }
        };
        let env = Env {
            hooks: ctx.hooks,
            slot: ctx.slot,
            now_ms: ctx.now_ms,
        };
        let _ = catch_unwind(AssertUnwindSafe(|| ctx.hooks.pre_request(&req)));
        let mut actions = Vec::new();
        ctx.dispatch
            .ws_open(self.id, &mut req, &hs, &env, &mut actions);
        self.state = State::WsOpening {
            req,
            accept: hs.accept,
            started: std::time::Instant::now(),
        };
        for a in actions {
            self.ws_action(a, ctx);
        }
    }

    /// Answer `req` with `resp` now and close after it (a refused handshake).
    fn answer_now(&mut self, req: Request, resp: Response, ctx: &mut Ctx<'_>) {
        self.state = State::App {
            waiting: None,
            keep_alive: false,
            is_head: false,
            version: req.head.version,
            started: std::time::Instant::now(),
        };
        let answer = Answer {
            conn: self.id,
            req,
            outcome: Outcome::Response(resp),
        };
        self.respond(answer, ctx);
    }

    /// Carry out a WebSocket app's decision (at once, or later from the
    /// dispatcher's `Event::Ws`). One for a state it does not fit (the
    /// connection moved on, or a send before the accept) is dropped.
    pub fn ws_action(&mut self, action: WsAction, ctx: &mut Ctx<'_>) {
        match (&mut self.state, action) {
            (
                State::WsOpening { .. },
                WsAction::Accept {
                    subprotocol,
                    headers,
                },
            ) => {
                let State::WsOpening {
                    req,
                    accept,
                    started,
                } = std::mem::replace(&mut self.state, State::Closing)
                else {
                    unreachable!()
                };
                let before = self.wbuf.len();
                crate::ws::write_accept(
                    &mut self.wbuf,
                    &accept,
                    subprotocol.as_deref(),
                    &headers,
                    ctx.date,
                );
                self.served += 1;
                *ctx.requests += 1;
                let _ = catch_unwind(AssertUnwindSafe(|| ctx.hooks.post_request(&req, 101)));
                crate::scoreboard::count_request(
                    &req.head.method,
                    101,
                    started.elapsed().as_micros() as u64,
                    started.elapsed().as_micros() as u64,
                    (self.wbuf.len() - before) as u64,
                );
                if ctx.access_log.enabled() {
                    ctx.access_log.log(&AccessRecord {
                        peer: self.peer,
                        request: &req,
                        status: 101,
                        body_bytes: 0,
                        elapsed: started.elapsed(),
                        response_headers: &headers,
                    });
                }
                self.state = State::WebSocket(Box::new(crate::ws_conn::WsConn::new(
                    ctx.uploads.ws,
                    ctx.now_ms,
                )));
            }
            (State::WsOpening { .. }, WsAction::Pause | WsAction::Resume) => {}
            (State::WsOpening { .. }, other) => {
                let resp = match other {
                    WsAction::Deny(resp) => resp,
                    // ASGI: a close before the accept refuses with 403.
                    WsAction::Close { .. } => Response::text(403, "Forbidden\n"),
                    _ => {
                        log::error!("WebSocket app sent a message before accepting");
                        Response::text(500, "Internal Server Error\n")
                    }
                };
                let State::WsOpening { req, .. } =
                    std::mem::replace(&mut self.state, State::Closing)
                else {
                    unreachable!()
                };
                let env = Env {
                    hooks: ctx.hooks,
                    slot: ctx.slot,
                    now_ms: ctx.now_ms,
                };
                // The app's side of the handshake is over.
                ctx.dispatch
                    .ws_closed(self.id, crate::ws::code::ABNORMAL, &env);
                self.answer_now(req, resp, ctx);
            }
            (State::WebSocket(ws), WsAction::Send(msg)) => {
                let len = match &msg {
                    crate::ws::Message::Text(t) => t.len(),
                    crate::ws::Message::Binary(b) => b.len(),
                };
                let sent = ws.send(&msg, &mut self.wbuf);
                crate::scoreboard::count_bytes(if sent { len as u64 } else { 0 });
            }
            (State::WebSocket(ws), WsAction::Close { code, reason }) => {
                ws.close(code, &reason, &mut self.wbuf, ctx.now_ms);
            }
            (State::WebSocket(ws), WsAction::Pause) => ws.paused = true,
            (State::WebSocket(ws), WsAction::Resume) => ws.paused = false,
            _ => {}
        }
    }

    /// The WebSocket ended (close handshake done, protocol error, ping or
    /// close timeout): tell the app, then flush what is queued (the close
    /// frame) and close. After a protocol error (`linger`) the client may
    /// still be sending (a message over `--ws-max-size`): half-close and
    /// discard its input for a moment, so it reads the close frame instead
    /// of a reset. After a completed close handshake the server closes the
    /// TCP connection at once (RFC 6455 section 7.1.1).
    fn ws_end(&mut self, code: u16, linger: bool, ctx: &mut Ctx<'_>) {
        let env = Env {
            hooks: ctx.hooks,
            slot: ctx.slot,
            now_ms: ctx.now_ms,
        };
        ctx.dispatch.ws_closed(self.id, code, &env);
        self.rpos = self.rend;
        self.state = if linger {
            State::Lingering {
                since_ms: ctx.now_ms,
                discarded: 0,
            }
        } else {
            State::Closing
        };
    }

    /// Graceful stop: close an open WebSocket with 1001 (its app hears the
    /// end when the client answers, or after the close wait).
    pub fn ws_going_away(&mut self, ctx: &mut Ctx<'_>) -> Next {
        match &mut self.state {
            State::WebSocket(ws) => {
                ws.close(
                    crate::ws::code::GOING_AWAY,
                    "server shutting down",
                    &mut self.wbuf,
                    ctx.now_ms,
                );
                self.drive(ctx)
            }
            _ => Next::Wait,
        }
    }

    /// The request spent longer than `--timeout` in the app: a 504 with
    /// `Connection: close` if nothing of the response was sent yet, else
    /// the connection is cut. The app's late answer, if any, is dropped.
    pub fn timed_out(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if let State::App { waiting: None, .. } = self.state {
            write_error_response(&mut self.wbuf, 504, ctx.date);
            self.served += 1;
            self.rpos = self.rend;
            self.state = State::Closing;
            self.drive(ctx)
        } else {
            Next::Close
        }
    }

    /// Queue the app's answer to the request in the app. An answer for a
    /// request that is no longer there (timed out) is dropped.
    pub fn respond(&mut self, answer: Answer, ctx: &mut Ctx<'_>) {
        let State::App {
            waiting: None,
            keep_alive,
            is_head,
            version,
            started,
        } = self.state
        else {
            return;
        };
        let Answer { conn, req, outcome } = answer;
        if conn != self.id {
            return;
        }
        if let Outcome::Abort = outcome {
            // The app failed after it began a response it cannot finish
            // (the dispatcher logged why): no response, the connection ends.
            *ctx.requests += 1;
            self.rpos = self.rend;
            self.state = State::Closing;
            crate::reqmeta::leave();
            return;
        }
        // A graceful stop that began while the request waited for a thread
        // or ran: this response is the connection's last.
        let keep_alive = keep_alive && !ctx.draining;
        // Time with the app (waiting for a thread included), and the bytes
        // queued for this response: what lands in `wbuf` now, plus a file
        // sent later by sendfile (streamed bodies count as pulled).
        let app_us = started.elapsed().as_micros() as u64;
        let wbuf_before = self.wbuf.len();
        let mut file_bytes = 0;
        let (resp, mut keep_alive) = match outcome {
            Outcome::Response(resp) => match check_headers(&resp) {
                Ok(()) => (resp, keep_alive),
                Err(why) => {
                    log::error!(
                        "app response to {} {} rejected: {why}",
                        req.head.method,
                        req.head.path
                    );
                    (Response::text(500, "Internal Server Error\n"), false)
                }
            },
            Outcome::Abort => unreachable!("handled above"),
            Outcome::Panic(msg) => {
                log::error!(
                    "Error handling request {} {}: app panicked: {msg}",
                    req.head.method,
                    req.head.target
                );
                (Response::text(500, "Internal Server Error\n"), false)
            }
        };
        let status = resp.status;
        let bodiless = is_head || status == 204 || status == 304 || (100..200).contains(&status);
        // A 2xx to CONNECT (an app that opted in) makes the connection a
        // tunnel, and must carry neither Content-Length nor
        // Transfer-Encoding (RFC 9110 §9.3.6). We make no tunnels: whatever
        // body the app gives is sent as is and the connection is closed.
        let tunnel = connect_tunnel(&req.head.method, status);
        keep_alive &= !tunnel;
        let sent = match resp.body {
            ResponseBody::Bytes(bytes) => {
                // A HEAD answered without a body (an ASGI app's FileResponse)
                // keeps the length the app says a GET would have.
                let len = if is_head && bytes.is_empty() {
                    head_length(&resp.headers).unwrap_or(0)
                } else {
                    bytes.len() as u64
                };
                write_head(
                    &mut self.wbuf,
                    version,
                    status,
                    &resp.headers,
                    if tunnel {
                        ResponseFraming::Close
                    } else {
                        ResponseFraming::Length(len)
                    },
                    keep_alive,
                    ctx.date,
                );
                if !bodiless {
                    self.wbuf.extend_from_slice(&bytes);
                }
                self.state = if keep_alive {
                    State::Head
                } else {
                    State::Closing
                };
                if bodiless { 0 } else { bytes.len() }
            }
            ResponseBody::Stream(reader) => {
                // HTTP/1.0 has no chunked coding: the body ends at close.
                let chunked = version == Version::Http11 && !tunnel;
                keep_alive &= chunked;
                let framing = if chunked {
                    ResponseFraming::Chunked
                } else {
                    ResponseFraming::Close
                };
                write_head(
                    &mut self.wbuf,
                    version,
                    status,
                    &resp.headers,
                    framing,
                    keep_alive,
                    ctx.date,
                );
                self.state = if bodiless {
                    if keep_alive {
                        State::Head
                    } else {
                        State::Closing
                    }
                } else {
                    State::Stream {
                        reader,
                        chunked,
                        then_close: !keep_alive,
                    }
                };
                0
            }
            ResponseBody::File(body) => {
                write_head(
                    &mut self.wbuf,
                    version,
                    status,
                    &resp.headers,
                    if tunnel {
                        ResponseFraming::Close
                    } else {
                        ResponseFraming::Length(body.len)
                    },
                    keep_alive,
                    ctx.date,
                );
                let len = if bodiless { 0 } else { body.len as usize };
                file_bytes = len;
                self.state = if bodiless || body.len == 0 {
                    if keep_alive {
                        State::Head
                    } else {
                        State::Closing
                    }
                } else {
                    State::SendFile {
                        body,
                        then_close: !keep_alive,
                    }
                };
                len
            }
        };
        self.served += 1;
        *ctx.requests += 1;
        let _ = catch_unwind(AssertUnwindSafe(|| ctx.hooks.post_request(&req, status)));
        crate::scoreboard::count_request(
            &req.head.method,
            status,
            app_us,
            started.elapsed().as_micros() as u64,
            (self.wbuf.len() - wbuf_before + file_bytes) as u64,
        );
        if ctx.access_log.enabled() {
            ctx.access_log.log(&AccessRecord {
                peer: self.peer,
                request: &req,
                status,
                body_bytes: sent as u64,
                elapsed: started.elapsed(),
                response_headers: &resp.headers,
            });
        }
        crate::reqmeta::leave();
        let Request { head, body, .. } = req;
        if let Some(v) = body.into_vec()
            && v.capacity() <= 64 * 1024
        {
            self.spare_body = v;
        }
        self.spare_head = Some(head);
    }

    /// Move streamed body bytes into the output buffer. Returns false when it
    /// must wait (output full), true when the state changed or bytes moved.
    fn pull_stream(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Stream {
            reader,
            chunked,
            then_close,
        } = &mut self.state
        else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        let busy = ctx.slot.inspect(|s| {
            s.busy_since_ms
                .store(ctx.now_ms.max(1), std::sync::atomic::Ordering::Relaxed);
        });
        let res = catch_unwind(AssertUnwindSafe(|| reader.read(&mut buf)));
        if let Some(s) = busy {
            s.busy_since_ms
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        match res {
            Ok(Ok(0)) => {
                if *chunked {
                    self.wbuf.extend_from_slice(b"0\r\n\r\n");
                }
                self.state = if *then_close {
                    State::Closing
                } else {
                    State::Head
                };
                true
            }
            Ok(Ok(n)) => {
                crate::scoreboard::count_bytes(n as u64);
                if *chunked {
                    self.wbuf.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    self.wbuf.extend_from_slice(&buf[..n]);
                    self.wbuf.extend_from_slice(b"\r\n");
                } else {
                    self.wbuf.extend_from_slice(&buf[..n]);
                }
                true
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            // Pulled on an app thread: the next piece is not there yet (the
            // dispatcher wakes the connection when it is).
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => false,
            Ok(Err(e)) => {
                // Headers are gone already: the only honest signal left is to
                // cut the connection without the terminating chunk.
                log::error!("streamed response body failed: {e}");
                self.state = State::Closing;
                true
            }
            Err(_) => {
                log::error!("streamed response body panicked");
                self.state = State::Closing;
                true
            }
        }
    }

    /// Send the next piece of a file body (the head is written already).
    /// Returns false when the socket is full.
    fn send_file(&mut self, now_ms: u64) -> bool {
        let State::SendFile { body, then_close } = &mut self.state else {
            return false;
        };
        let count = body.len.min(SENDFILE_CHUNK as u64) as usize;
        match self.stream.send_file(&body.file, &mut body.offset, count) {
            Ok(0) => {
                // The file shrank under us: the promised length cannot be
                // kept, so end the connection rather than the response.
                log::error!(
                    "closing {}: the file being sent ended {} bytes short",
                    self.peer,
                    body.len
                );
                self.state = State::Closing;
                true
            }
            Ok(n) => {
                body.len -= n as u64;
                self.last_io_ms = now_ms;
                if body.len == 0 {
                    self.state = if *then_close {
                        State::Closing
                    } else {
                        State::Head
                    };
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                log::debug!("closing {}: sending a file failed: {e}", self.peer);
                self.state = State::Closing;
                true
            }
        }
    }

    fn flush(&mut self, now_ms: u64) -> io::Result<usize> {
        let mut total = 0;
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            if self.wbuf.capacity() > 4 * HIGH_WATER {
                self.wbuf.shrink_to(HIGH_WATER);
            }
        } else if self.wpos > HIGH_WATER {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        if total > 0 {
            self.last_io_ms = now_ms;
        }
        Ok(total)
    }

    /// Decide whether the connection is finished after a round.
    fn finish_if_done(&mut self, ctx: &mut Ctx<'_>) -> Option<Next> {
        if self.pending() > 0 {
            return None;
        }
        match &mut self.state {
            State::Closing => Some(Next::Close),
            State::Lingering { discarded, .. } => {
                if !self.write_shut {
                    self.write_shut = true;
                    let _ = self.stream.shutdown_write();
                }
                if self.read_eof || *discarded > LINGER_BYTES {
                    Some(Next::Close)
                } else {
                    None
                }
            }
            State::Head if self.read_eof && self.rpos == self.rend => Some(Next::Close),
            State::Head if ctx.draining && self.served > 0 && self.rpos == self.rend => {
                // Keep-alive connections that already got `Connection: close`
                // are finished; ones that got nothing yet wait for the timer.
                None
            }
            _ => None,
        }
    }
}

/// The app's own `Content-Length`, for a bodiless answer to HEAD.
fn head_length(headers: &[(String, Vec<u8>)]) -> Option<u64> {
    let (_, v) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// Refuse response headers that would let an app split the response.
fn check_headers(resp: &Response) -> Result<(), String> {
    if !(100..=999).contains(&resp.status) {
        return Err(format!("invalid status {}", resp.status));
    }
    for (name, value) in &resp.headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(format!("invalid header name {name:?}"));
        }
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name} contains CR, LF or NUL"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::NoHooks;

    /// A socket double: reads `input`, then WouldBlock; a write takes at most
    /// `room` bytes before WouldBlock, as a full socket buffer does.
    struct Pipe {
        input: Vec<u8>,
        pos: usize,
        out: Vec<u8>,
        room: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.input.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len() - self.pos);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Pipe {
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_file_body_waits_for_a_full_socket_and_the_pipelined_request_follows() {
        let pattern: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = crate::sys::anonymous_file(&std::env::temp_dir()).unwrap();
        file.write_all(&pattern).unwrap();
        let app = move |req: &mut Request| match req.path() {
            "/f" => Response::new(200).file(file.try_clone().unwrap(), 10, 99_990),
            _ => Response::ok("text/plain", "next"),
        };
        let limits = Limits {
            request_line: 8190,
            fields: 100,
            field_size: 8190,
            body: 1 << 20,
            allow_connect: false,
        };
        let uploads = ConnConfig::default();
        let mut access_log = AccessLog::disabled();
        let (mut requests, mut shed) = (0, false);
        let mut dispatch = crate::dispatch::Inline::new(Box::new(app));
        let (mut incidents, mut released) = (Incidents::new(), 0);
        let mut ctx = Ctx {
            dispatch: &mut dispatch,
            hooks: &NoHooks,
            limits: &limits,
            date: b"Thu, 01 Jan 2026 00:00:00 GMT",
            now_ms: 1,
            keepalive_ms: 75_000,
            header_timeout_ms: 10_000,
            draining: false,
            drain_idle_ms: 1000,
            slot: None,
            uploads: &uploads,
            access_log: &mut access_log,
            requests: &mut requests,
            defer_flush: false,
            shed: &mut shed,
            incidents: &mut incidents,
            released: &mut released,
        };
        let pipe = Pipe {
            input: b"GET /f HTTP/1.1\r\nHost: h\r\n\r\nGET /n HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            pos: 0,
            out: Vec::new(),
            room: 0,
        };
        let mut conn = Conn::new(pipe, Peer::Unix, 1);
        let mut turns = 0;
        while !conn.stream.out.ends_with(b"next") {
            turns += 1;
            assert!(turns < 100, "stuck after {} bytes", conn.stream.out.len());
            // Each turn the socket has room for 8 KiB more ("writable").
            conn.stream.room = 8192;
            assert_eq!(conn.drive(&mut ctx), Next::Wait);
        }
        let out = &conn.stream.out;
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&out[..end]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Length: 99990\r\n"), "{head}");
        assert!(out[end..end + 99_990] == pattern[10..], "file body differs");
        let second = String::from_utf8_lossy(&out[end + 99_990..]);
        assert!(
            second.starts_with("HTTP/1.1 200") && second.ends_with("\r\n\r\nnext"),
            "{second}"
        );
        assert!(turns > 10, "the socket never filled: {turns} turns");
        assert_eq!(requests, 2);
    }

    /// What a connection's `Ctx` borrows, owned for a test.
    struct World {
        limits: Limits,
        uploads: ConnConfig,
        access_log: AccessLog,
        requests: u64,
        shed: bool,
        incidents: Incidents,
        released: usize,
    }

    impl World {
        fn new() -> World {
            World {
                limits: Limits {
                    request_line: 8190,
                    fields: 100,
                    field_size: 8190,
                    body: 1 << 20,
                    allow_connect: false,
                },
                uploads: ConnConfig::default(),
                access_log: AccessLog::disabled(),
                requests: 0,
                shed: false,
                incidents: Incidents::new(),
                released: 0,
            }
        }

        /// `--keep-alive 75 --header-timeout 10` at `now_ms`.
        fn ctx<'a>(&'a mut self, dispatch: &'a mut dyn Dispatch, now_ms: u64) -> Ctx<'a> {
            Ctx {
                dispatch,
                hooks: &NoHooks,
                limits: &self.limits,
                date: b"Thu, 01 Jan 2026 00:00:00 GMT",
                now_ms,
                keepalive_ms: 75_000,
                header_timeout_ms: 10_000,
                draining: false,
                drain_idle_ms: 1000,
                slot: None,
                uploads: &self.uploads,
                access_log: &mut self.access_log,
                requests: &mut self.requests,
                defer_flush: false,
                shed: &mut self.shed,
                incidents: &mut self.incidents,
                released: &mut self.released,
            }
        }
    }

    fn pipe(input: &[u8]) -> Pipe {
        Pipe {
            input: input.to_vec(),
            pos: 0,
            out: Vec::new(),
            room: usize::MAX,
        }
    }

    fn hello(_: &mut Request) -> Response {
        Response::ok("text/plain", "hi")
    }

    #[test]
    fn a_connection_that_sends_nothing_gets_408_after_header_timeout() {
        let (mut world, mut app) = (World::new(), crate::dispatch::Inline::new(Box::new(hello)));
        let accepted = 1_000;
        let mut conn = Conn::new(pipe(b""), Peer::Unix, accepted);
        assert_eq!(conn.drive(&mut world.ctx(&mut app, accepted)), Next::Wait);
        let before = accepted + 9_999;
        assert_eq!(conn.on_timer(&mut world.ctx(&mut app, before)), Next::Wait);
        assert!(conn.stream.out.is_empty());
        // Issue 11.1: the head clock runs from accept, not from a first
        // byte that never comes (the connection was held for --keep-alive).
        conn.on_timer(&mut world.ctx(&mut app, accepted + 10_000));
        let out = String::from_utf8_lossy(&conn.stream.out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        let lines = world.incidents.report(accepted + 10_000, 1000);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("408: 1") && lines[0].contains("no request within"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_kept_alive_connection_idles_for_keep_alive_not_header_timeout() {
        let (mut world, mut app) = (World::new(), crate::dispatch::Inline::new(Box::new(hello)));
        let mut conn = Conn::new(
            pipe(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Peer::Unix,
            1_000,
        );
        assert_eq!(conn.drive(&mut world.ctx(&mut app, 1_500)), Next::Wait);
        assert!(conn.stream.out.ends_with(b"hi"));
        let answered = conn.stream.out.len();
        // Idle between requests: well past --header-timeout, the connection
        // stays open (and silent) until --keep-alive.
        for now in [11_600, 40_000, 76_499] {
            assert_eq!(conn.on_timer(&mut world.ctx(&mut app, now)), Next::Wait);
        }
        assert_eq!(conn.stream.out.len(), answered, "nothing more was sent");
        assert_eq!(conn.on_timer(&mut world.ctx(&mut app, 76_500)), Next::Close);
    }

    #[test]
    fn the_next_head_on_a_kept_alive_connection_gets_header_timeout_from_its_first_byte() {
        let (mut world, mut app) = (World::new(), crate::dispatch::Inline::new(Box::new(hello)));
        let mut conn = Conn::new(
            pipe(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Peer::Unix,
            1_000,
        );
        conn.drive(&mut world.ctx(&mut app, 1_000));
        let answered = conn.stream.out.len();
        conn.stream
            .input
            .extend_from_slice(b"GET /slow HTTP/1.1\r\n");
        conn.readable = true;
        conn.drive(&mut world.ctx(&mut app, 30_000));
        assert_eq!(conn.on_timer(&mut world.ctx(&mut app, 39_999)), Next::Wait);
        assert_eq!(conn.stream.out.len(), answered);
        conn.on_timer(&mut world.ctx(&mut app, 40_000));
        let out = String::from_utf8_lossy(&conn.stream.out[answered..]);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }

    /// Issue 11.5: an app that opted in to CONNECT answered 200 with
    /// `Content-Length` (RFC 9110 §9.3.6: must not). Its 2xx now carries no
    /// framing header, in any body form, and ends the connection (no
    /// tunnel is made, and nothing pipelined behind it is served); a 4xx to
    /// CONNECT is framed as usual.
    #[test]
    fn a_2xx_to_connect_has_no_framing_headers_and_closes() {
        let app = |req: &mut Request| match req.target() {
            "bytes.example:443" => Response::ok("text/plain", "no tunnel"),
            "stream.example:443" => Response::new(200)
                .header("Content-Type", "text/plain")
                .stream(io::Cursor::new(b"no tunnel".to_vec())),
            _ => Response::text(403, "refused\n"),
        };
        for target in ["bytes.example:443", "stream.example:443"] {
            let mut world = World::new();
            world.limits.allow_connect = true;
            let mut app = crate::dispatch::Inline::new(Box::new(app));
            let mut conn = Conn::new(
                pipe(
                    format!(
                        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n\
                         GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                Peer::Unix,
                1_000,
            );
            let mut next = Next::Wait;
            for _ in 0..10 {
                next = conn.drive(&mut world.ctx(&mut app, 1_000));
                if next == Next::Close {
                    break;
                }
            }
            assert_eq!(next, Next::Close, "{target}: the connection stays open");
            let out = String::from_utf8_lossy(&conn.stream.out).into_owned();
            let (head, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 "), "{out}");
            let lower = head.to_ascii_lowercase();
            assert!(!lower.contains("content-length"), "{target}: {head}");
            assert!(!lower.contains("transfer-encoding"), "{target}: {head}");
            assert!(head.contains("Connection: close"), "{target}: {head}");
            assert_eq!(body, "no tunnel", "{target}: nothing after the body");
            assert_eq!(world.requests, 1, "{target}");
        }
        // Not a tunnel: a refusal keeps its Content-Length.
        let mut world = World::new();
        world.limits.allow_connect = true;
        let mut app = crate::dispatch::Inline::new(Box::new(app));
        let mut conn = Conn::new(
            pipe(b"CONNECT other:443 HTTP/1.1\r\nHost: other:443\r\n\r\n"),
            Peer::Unix,
            1_000,
        );
        conn.drive(&mut world.ctx(&mut app, 1_000));
        let out = String::from_utf8_lossy(&conn.stream.out);
        assert!(out.starts_with("HTTP/1.1 403 "), "{out}");
        assert!(out.contains("Content-Length: 8\r\n"), "{out}");
        assert!(connect_tunnel("CONNECT", 204) && !connect_tunnel("CONNECT", 300));
        assert!(!connect_tunnel("GET", 200));
    }

    #[test]
    fn an_idle_connection_gives_its_buffers_back_and_serves_again() {
        let (mut world, mut app) = (World::new(), crate::dispatch::Inline::new(Box::new(hello)));
        let mut conn = Conn::new(
            pipe(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Peer::Unix,
            1_000,
        );
        conn.drive(&mut world.ctx(&mut app, 1_000));
        assert!(conn.rbuf.capacity() >= SMALL_READ && conn.wbuf.capacity() > 0);
        assert!(conn.spare_head.is_some());
        // Not yet idle for a second: kept, for the next request.
        conn.on_timer(&mut world.ctx(&mut app, 1_999));
        assert!(conn.rbuf.capacity() > 0);
        conn.on_timer(&mut world.ctx(&mut app, 2_000));
        assert_eq!(conn.rbuf.capacity(), 0);
        assert_eq!(conn.wbuf.capacity(), 0);
        assert!(conn.spare_head.is_none());
        assert!(world.released >= SMALL_READ, "{}", world.released);
        let answered = conn.stream.out.len();
        conn.stream
            .input
            .extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        conn.readable = true;
        assert_eq!(conn.drive(&mut world.ctx(&mut app, 3_000)), Next::Wait);
        assert!(conn.stream.out[answered..].ends_with(b"hi"));
        assert_eq!(world.requests, 2);
    }

    #[test]
    fn a_rejected_request_is_counted_for_the_log() {
        let (mut world, mut app) = (World::new(), crate::dispatch::Inline::new(Box::new(hello)));
        let mut conn = Conn::new(pipe(b"GET / HTTP/9.9\r\n\r\n"), Peer::Unix, 1_000);
        conn.drive(&mut world.ctx(&mut app, 1_000));
        let out = String::from_utf8_lossy(&conn.stream.out);
        assert!(out.starts_with("HTTP/1.1 505 "), "{out}");
        let lines = world.incidents.report(1_000, 1000);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("rejected 1 request (505: 1)"),
            "{lines:?}"
        );
    }

    /// A dispatcher whose answers come later, by hand: the connection's side
    /// of `--threads` without threads.
    struct Later {
        room: usize,
        taken: Vec<(ConnId, Request)>,
    }

    impl Dispatch for Later {
        fn room(&self) -> usize {
            self.room
        }
        fn submit(&mut self, conn: ConnId, req: Request, _env: &Env<'_>) -> Option<Answer> {
            self.room -= 1;
            self.taken.push((conn, req));
            None
        }
    }

    fn answer(d: &mut Later, body: &str) -> Answer {
        let (conn, req) = d.taken.remove(0);
        d.room += 1;
        Answer {
            conn,
            req,
            outcome: Outcome::Response(Response::ok("text/plain", body.to_string())),
        }
    }

    /// Drive with `d` as the dispatcher; `f` gets the context.
    fn with_ctx<R>(d: &mut Later, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let mut world = World::new();
        f(&mut world.ctx(d, 1))
    }

    fn conn_on(input: &[u8]) -> Conn<Pipe> {
        Conn::new(pipe(input), Peer::Unix, 1)
    }

    #[test]
    fn one_request_in_the_app_at_a_time_and_answers_in_order() {
        let mut d = Later {
            room: 4,
            taken: Vec::new(),
        };
        let mut conn =
            conn_on(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
        // Room for four, but the second request waits for the first answer.
        assert_eq!(with_ctx(&mut d, |c| conn.drive(c)), Next::Wait);
        assert_eq!(d.taken.len(), 1);
        assert_eq!(d.taken[0].1.path(), "/1");
        assert!(conn.stream.out.is_empty());
        let a = answer(&mut d, "one");
        with_ctx(&mut d, |c| {
            conn.respond(a, c);
            conn.drive(c)
        });
        assert_eq!(d.taken.len(), 1);
        assert_eq!(d.taken[0].1.path(), "/2");
        let a = answer(&mut d, "two");
        with_ctx(&mut d, |c| {
            conn.respond(a, c);
            conn.drive(c)
        });
        let out = String::from_utf8_lossy(&conn.stream.out).into_owned();
        let (one, two) = (out.find("one").unwrap(), out.find("two").unwrap());
        assert!(one < two, "{out}");
        assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    }

    #[test]
    fn a_request_without_a_thread_parks_until_there_is_room() {
        let mut d = Later {
            room: 0,
            taken: Vec::new(),
        };
        let mut conn = conn_on(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(with_ctx(&mut d, |c| conn.drive(c)), Next::Park);
        assert!(conn.is_parked() && d.taken.is_empty());
        // Still parked on the timer: waiting for a thread is not idling.
        assert_eq!(with_ctx(&mut d, |c| conn.on_timer(c)), Next::Wait);
        d.room = 1;
        assert_eq!(with_ctx(&mut d, |c| conn.drive(c)), Next::Wait);
        assert!(!conn.is_parked());
        assert_eq!(d.taken[0].1.path(), "/p");
    }

    #[test]
    fn a_timed_out_request_gets_504_and_a_late_answer_is_dropped() {
        let mut d = Later {
            room: 1,
            taken: Vec::new(),
        };
        let mut conn =
            conn_on(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        with_ctx(&mut d, |c| conn.drive(c));
        assert_eq!(with_ctx(&mut d, |c| conn.timed_out(c)), Next::Close);
        let out = String::from_utf8_lossy(&conn.stream.out).into_owned();
        assert!(out.starts_with("HTTP/1.1 504"), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        let late = answer(&mut d, "late");
        with_ctx(&mut d, |c| conn.respond(late, c));
        assert!(!String::from_utf8_lossy(&conn.stream.out).contains("late"));
        // The pipelined request behind it was never handed over.
        assert!(d.taken.is_empty());
    }

    #[test]
    fn a_request_answered_after_a_graceful_stop_began_says_close() {
        let mut d = Later {
            room: 1,
            taken: Vec::new(),
        };
        let mut conn = conn_on(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
        with_ctx(&mut d, |c| conn.drive(c));
        let a = answer(&mut d, "done");
        let mut world = World::new();
        let mut ctx = world.ctx(&mut d, 2);
        ctx.draining = true;
        conn.respond(a, &mut ctx);
        assert_eq!(conn.drive(&mut ctx), Next::Close);
        let out = String::from_utf8_lossy(&conn.stream.out).into_owned();
        assert!(out.contains("Connection: close\r\n"), "{out}");
    }
}
