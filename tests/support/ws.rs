//! A raw WebSocket client (RFC 6455), written here independently of the
//! server's `ws.rs`: the handshake with the RFC's own example key (so the
//! expected accept value is the RFC's, not one computed by shared code),
//! masked frames built byte by byte (fragments, bad frames on purpose), and
//! a frame reader that insists server frames are unmasked.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::client::{Addr, Client, HttpResponse};

/// RFC 6455 section 1.3's example key and the accept value it gives.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONT: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A handshake request for `path` with `extra` header lines (each ending
/// in CRLF).
pub fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// One client frame. `masked` false makes the frame a protocol error.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        // Any key will do; vary it with the length so that a server that
        // ignored the mask could not pass by luck.
        let key = [0x5a, 0x13 ^ len as u8, 0xc4, 0x7e];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close frame's payload.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code and reason (code 1005 when it has none).
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

/// An open WebSocket (after a 101).
pub struct WsClient {
    pub conn: Client,
    /// The 101 response.
    pub response: HttpResponse,
}

/// Send a handshake; the response, and the client if it was a 101.
pub fn try_open(addr: &Addr, path: &str, extra: &str) -> (HttpResponse, Option<WsClient>) {
    let mut conn = Client::connect(addr).expect("connect");
    conn.write_all(handshake(path, extra).as_bytes())
        .expect("send the handshake");
    let response = conn.read_response().expect("a handshake response");
    if response.status == 101 {
        let r = response.clone();
        (r, Some(WsClient { conn, response }))
    } else {
        (response, None)
    }
}

impl WsClient {
    /// Open a WebSocket on `path`; panics unless the server answers 101
    /// with the right accept value.
    #[track_caller]
    pub fn open(addr: &Addr, path: &str) -> WsClient {
        let (resp, ws) = try_open(addr, path, "");
        let ws = ws.unwrap_or_else(|| panic!("no 101: {resp:?}"));
        assert_eq!(ws.response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
        ws
    }

    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&frame(fin, opcode, payload, true));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("write a frame");
    }

    pub fn send_text(&mut self, s: &str) {
        self.send(true, TEXT, s.as_bytes());
    }

    /// Read one server frame (panics if it is masked).
    pub fn read_frame(&mut self) -> io::Result<Frame> {
        let mut h = [0u8; 2];
        self.conn.read_exact(&mut h)?;
        assert_eq!(h[1] & 0x80, 0, "a server frame must not be masked");
        assert_eq!(h[0] & 0x70, 0, "RSV bits set");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.conn.read_exact(&mut b)?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.conn.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            l => l as usize,
        };
        let mut payload = vec![0u8; len];
        self.conn.read_exact(&mut payload)?;
        Ok(Frame {
            fin: h[0] & 0x80 != 0,
            opcode: h[0] & 0x0f,
            payload,
        })
    }

    /// The next frame, which must be a complete message of `opcode`.
    #[track_caller]
    pub fn expect_message(&mut self, opcode: u8) -> Vec<u8> {
        let f = self.read_frame().expect("read a message");
        assert!(
            f.fin && f.opcode == opcode,
            "expected opcode {opcode}: {f:?}"
        );
        f.payload
    }

    /// The next frame must be a close: its code and reason.
    #[track_caller]
    pub fn expect_close(&mut self) -> (u16, String) {
        let f = self.read_frame().expect("read a close frame");
        f.close()
    }

    /// True if the server closes the TCP connection within `within` (after
    /// whatever frames it still sends, which are skipped).
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.conn.set_timeout(Some(left));
            match self.conn.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}
