//! WebSockets (RFC 6455), the protocol alone: no I/O, no app.
//!
//! - The opening handshake: [`is_upgrade`] tells a WebSocket upgrade request
//!   apart, [`check_handshake`] validates it (a refusal is a 400, or a 426
//!   naming the one version spoken, 13) and computes `Sec-WebSocket-Accept`;
//!   [`select_subprotocol`] and [`write_accept`] build the 101.
//! - Frames from the client: [`Decoder`], incremental over whatever bytes have
//!   arrived (a frame's payload need not be buffered whole: it moves into the
//!   message as it comes), enforcing every MUST of RFC 6455 section 5 that a
//!   server can check: masking, RSV bits (no extension is negotiated), known
//!   opcodes, control frames short and unfragmented, continuation frames only
//!   inside a fragmented message (control frames may come between them),
//!   `--ws-max-size` per message (1009), UTF-8 text (1007, checked as the
//!   bytes arrive, so a bad byte fails at once, not after 16 MiB), and the
//!   close frame's code and reason.
//! - Frames to the client: [`encode`] and [`encode_close`] (a server never
//!   masks).
//!
//! The connection side (timers, the close handshake, the dispatcher) is
//! `crate::ws_conn`.

use crate::http::{Head, Version};

/// The only protocol version (RFC 6455 section 4.1).
pub const VERSION: &str = "13";

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes (RFC 6455 section 7.4.1) the server itself sends.
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Never on the wire: "the close frame had no code".
    pub const NO_STATUS: u16 = 1005;
    /// Never on the wire: "the connection ended without a close frame".
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// May `code` appear in a close frame? 1000-1003 and 1007-1014 are defined
/// (1012-1014 registered with IANA after the RFC), 3000-4999 are for
/// libraries and apps; 1004-1006 and 1015 are reserved and must never be
/// sent, and everything else is unassigned (Autobahn's cases 7.7 and 7.9).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

// ---------------------------------------------------------------------------
// The handshake.

fn header<'a>(head: &'a Head, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Comma-separated tokens of every `name` field, trimmed.
fn tokens<'a>(head: &'a Head, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    header(head, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Does this request ask to become a WebSocket (`Upgrade: websocket`)?
/// Only such requests are checked as handshakes; any other is plain HTTP.
pub fn is_upgrade(head: &Head) -> bool {
    tokens(head, "upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket"))
}

/// A valid opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value for the 101.
    pub accept: String,
    /// `Sec-WebSocket-Protocol`, in the client's order.
    pub protocols: Vec<String>,
}

/// Why a handshake is refused: the status (400, or 426 when the version is
/// not 13: the response then says `Sec-WebSocket-Version: 13`) and a
/// reason for the log and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

/// Check an upgrade request against RFC 6455 section 4.2.1.
pub fn check_handshake(head: &Head) -> Result<Handshake, Refusal> {
    let bad = |why| Err(Refusal { status: 400, why });
    if head.method != "GET" {
        return bad("a WebSocket handshake must be a GET");
    }
    if head.version != Version::Http11 {
        return bad("a WebSocket handshake must be HTTP/1.1");
    }
    if !tokens(head, "connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return bad("the Connection header lacks the upgrade token");
    }
    let versions: Vec<&[u8]> = header(head, "sec-websocket-version").collect();
    if versions.len() != 1 || versions[0].trim_ascii() != VERSION.as_bytes() {
        return Err(Refusal {
            status: 426,
            why: "Sec-WebSocket-Version must be 13",
        });
    }
    let keys: Vec<&[u8]> = header(head, "sec-websocket-key").collect();
    let key = match keys.as_slice() {
        [k] => k.trim_ascii(),
        _ => return bad("one Sec-WebSocket-Key is required"),
    };
    if base64_decode(key).map(|k| k.len()) != Some(16) {
        return bad("Sec-WebSocket-Key is not 16 bytes in base64");
    }
    let protocols = tokens(head, "sec-websocket-protocol")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    Ok(Handshake {
        accept: accept_key(key),
        protocols,
    })
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + the RFC's GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut data = key.to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64_encode(&sha1(&data))
}

/// The first of the server's `supported` subprotocols (in the server's order
/// of preference) that the client offered.
pub fn select_subprotocol(offered: &[String], supported: &[&str]) -> Option<String> {
    supported
        .iter()
        .find(|s| offered.iter().any(|o| o == *s))
        .map(|s| s.to_string())
}

/// The 101 response. `headers` are the app's extra fields: those that would
/// contradict the handshake, frame a body or split the head are left out.
pub fn write_accept(
    out: &mut Vec<u8>,
    accept: &str,
    subprotocol: Option<&str>,
    headers: &[(String, Vec<u8>)],
    date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nServer: ferricorn\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = subprotocol.filter(|p| crate::http::response::valid_header("x", p.as_bytes()))
    {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        let ours = [
            "server",
            "date",
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "sec-websocket-protocol",
            "content-length",
            "transfer-encoding",
        ];
        if ours.iter().any(|o| name.eq_ignore_ascii_case(o))
            || !crate::http::response::valid_header(name, value)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// SHA-1 (FIPS 180-4), for the handshake's accept key only (SHA-1's
/// weakness does not matter there: the key proves the server read the
/// handshake, nothing more). Forty lines here instead of a crate: one hash,
/// one caller, checked against RFC 3174's test vectors below.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding; None if malformed.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, c) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let pad = c.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &b in &c[..4 - pad] {
            let v = B64.iter().position(|&x| x == b)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Frames.

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// What the client sent, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Message(Message),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code (None when it had none) and reason.
    Close(Option<u16>, String),
}

/// The client broke the protocol: close with `code` (1002, 1007 or 1009).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub why: &'static str,
}

fn violation<T>(code: u16, why: &'static str) -> Result<T, Violation> {
    Err(Violation { code, why })
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
}

/// Decodes client frames into [`Incoming`]s, incrementally.
#[derive(Debug)]
pub struct Decoder {
    /// `--ws-max-size`: bytes per message (0: unlimited).
    max_size: usize,
    /// The frame whose payload is arriving, and how much of it has.
    frame: Option<FrameHead>,
    got: u64,
    /// The payload of a control frame being read.
    control: Vec<u8>,
    /// The data message being assembled, its opcode (text or binary) while
    /// one is open, and how much of a text message is known to be UTF-8.
    message: Vec<u8>,
    message_op: Option<u8>,
    utf8_ok: usize,
}

impl Decoder {
    pub fn new(max_size: usize) -> Decoder {
        Decoder {
            max_size,
            frame: None,
            got: 0,
            control: Vec::new(),
            message: Vec::new(),
            message_op: None,
            utf8_ok: 0,
        }
    }

    /// Bytes held for a message or frame in progress.
    pub fn buffered(&self) -> usize {
        self.message.capacity() + self.control.capacity()
    }

    /// Consume what it can of `input`: how many bytes it took, and a
    /// complete [`Incoming`] if one ended there. `(0, None)` means more input
    /// is needed (a partial frame head stays in `input` for the next call).
    /// After an `Err` the stream is unusable: the caller closes.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Incoming>), Violation> {
        let mut used = 0;
        if self.frame.is_none() {
            let Some((head, n)) = parse_frame_head(input)? else {
                return Ok((0, None));
            };
            self.start_frame(head)?;
            used = n;
        }
        let Some(head) = self.frame else {
            unreachable!("a frame is open")
        };
        let take = ((head.len - self.got) as usize).min(input.len() - used);
        let control = head.opcode >= OP_CLOSE;
        let target = if control {
            &mut self.control
        } else {
            &mut self.message
        };
        let start = target.len();
        target.extend_from_slice(&input[used..used + take]);
        unmask(&mut target[start..], head.mask, self.got as usize);
        self.got += take as u64;
        used += take;
        let done = self.got == head.len;
        if !control && self.message_op == Some(OP_TEXT) {
            self.check_utf8(done && head.fin)?;
        }
        if !done {
            return Ok((used, None));
        }
        self.frame = None;
        let incoming = match head.opcode {
            OP_PING => Some(Incoming::Ping(std::mem::take(&mut self.control))),
            OP_PONG => Some(Incoming::Pong(std::mem::take(&mut self.control))),
            OP_CLOSE => Some(close_payload(&std::mem::take(&mut self.control))?),
            _ if head.fin => {
                let data = std::mem::take(&mut self.message);
                self.utf8_ok = 0;
                match self.message_op.take() {
                    Some(OP_TEXT) => match String::from_utf8(data) {
                        Ok(s) => Some(Incoming::Message(Message::Text(s))),
                        Err(_) => return violation(code::INVALID_DATA, "text is not UTF-8"),
                    },
                    _ => Some(Incoming::Message(Message::Binary(data))),
                }
            }
            _ => None,
        };
        Ok((used, incoming))
    }

    fn start_frame(&mut self, head: FrameHead) -> Result<(), Violation> {
        match head.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !head.fin {
                    return violation(code::PROTOCOL_ERROR, "fragmented control frame");
                }
                if head.len > 125 {
                    return violation(code::PROTOCOL_ERROR, "control frame over 125 bytes");
                }
                self.control.clear();
            }
            OP_CONT if self.message_op.is_none() => {
                return violation(code::PROTOCOL_ERROR, "continuation frame outside a message");
            }
            OP_TEXT | OP_BINARY if self.message_op.is_some() => {
                return violation(code::PROTOCOL_ERROR, "new message inside a fragmented one");
            }
            OP_CONT => {}
            OP_TEXT | OP_BINARY => {
                self.message_op = Some(head.opcode);
                self.message.clear();
                self.utf8_ok = 0;
            }
            _ => return violation(code::PROTOCOL_ERROR, "unknown opcode"),
        }
        if head.opcode < OP_CLOSE
            && self.max_size > 0
            && (self.message.len() as u64).saturating_add(head.len) > self.max_size as u64
        {
            return violation(code::TOO_BIG, "message larger than --ws-max-size");
        }
        self.frame = Some(head);
        self.got = 0;
        Ok(())
    }

    /// Check the text message's new bytes: invalid UTF-8 fails now; a
    /// sequence cut at the end of the input waits for the rest, unless the
    /// message is `complete`.
    fn check_utf8(&mut self, complete: bool) -> Result<(), Violation> {
        match std::str::from_utf8(&self.message[self.utf8_ok..]) {
            Ok(_) => self.utf8_ok = self.message.len(),
            Err(e) => {
                if e.error_len().is_some() || complete {
                    return violation(code::INVALID_DATA, "text is not UTF-8");
                }
                self.utf8_ok += e.valid_up_to();
            }
        }
        Ok(())
    }
}

/// XOR `data` with `mask`, `offset` bytes into the frame's payload: eight
/// bytes at a time (a byte at a time cost a 64 KiB echo as much as the
/// rest of its round trip).
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 8];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) & 3];
    }
    let word = u64::from_ne_bytes(m);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap_or([0; 8])) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rest = chunks.into_remainder();
    for (b, k) in rest.iter_mut().zip(m) {
        *b ^= k;
    }
}

/// A frame head (RFC 6455 section 5.2), checked for what needs no state:
/// RSV bits, the mask, the length's encoding. None: incomplete.
fn parse_frame_head(b: &[u8]) -> Result<Option<(FrameHead, usize)>, Violation> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return violation(code::PROTOCOL_ERROR, "RSV bits set without an extension");
    }
    if b[1] & 0x80 == 0 {
        return violation(code::PROTOCOL_ERROR, "client frame not masked");
    }
    let (len, n) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(b[2..10].try_into().unwrap_or([0; 8]));
            if len >> 63 != 0 {
                return violation(code::PROTOCOL_ERROR, "64-bit length with the top bit set");
            }
            (len, 10)
        }
        l => (u64::from(l), 2),
    };
    if b.len() < n + 4 {
        return Ok(None);
    }
    let head = FrameHead {
        fin: b[0] & 0x80 != 0,
        opcode: b[0] & 0x0f,
        mask: [b[n], b[n + 1], b[n + 2], b[n + 3]],
        len,
    };
    Ok(Some((head, n + 4)))
}

fn close_payload(p: &[u8]) -> Result<Incoming, Violation> {
    match p.len() {
        0 => Ok(Incoming::Close(None, String::new())),
        1 => violation(code::PROTOCOL_ERROR, "close frame with a 1-byte payload"),
        _ => {
            let c = u16::from_be_bytes([p[0], p[1]]);
            if !valid_close_code(c) {
                return violation(code::PROTOCOL_ERROR, "invalid close code");
            }
            match std::str::from_utf8(&p[2..]) {
                Ok(reason) => Ok(Incoming::Close(Some(c), reason.to_string())),
                Err(_) => violation(code::INVALID_DATA, "close reason is not UTF-8"),
            }
        }
    }
}

/// Append one unmasked, unfragmented server frame.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

pub fn encode_message(out: &mut Vec<u8>, msg: &Message) {
    match msg {
        Message::Text(s) => encode(out, OP_TEXT, s.as_bytes()),
        Message::Binary(b) => encode(out, OP_BINARY, b),
    }
}

/// Append a close frame. A code that may not be sent becomes 1000 (1005,
/// "no status", is sent as an empty close frame); the reason is cut to the
/// 123 bytes a control frame leaves it, at a character boundary.
pub fn encode_close(out: &mut Vec<u8>, close_code: u16, reason: &str) {
    if close_code == code::NO_STATUS {
        encode(out, OP_CLOSE, &[]);
        return;
    }
    let c = if valid_close_code(close_code) {
        close_code
    } else {
        code::NORMAL
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    encode(out, OP_CLOSE, &p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, parse_head};

    fn head(raw: &str) -> Head {
        let limits = Limits {
            request_line: 8190,
            fields: 100,
            field_size: 8190,
            body: 1 << 20,
            allow_connect: false,
        };
        parse_head(raw.as_bytes(), &limits).unwrap().unwrap().0
    }

    const GOOD: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    #[test]
    fn sha1_matches_rfc_3174_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02X}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983E441C3BD26EBAAE4AA1F95129E5E54670F1"
        );
        assert_eq!(
            hex(sha1(&b"a".repeat(1_000_000))),
            "34AA973CD4C4DAA4F61EEB2BDBAD27316534016F"
        );
        assert_eq!(
            hex(sha1(
                &b"0123456701234567012345670123456701234567012345670123456701234567".repeat(10)
            )),
            "DEA356A2CDDD90C7A7ECEDC5EBB563934F460452"
        );
        assert_eq!(hex(sha1(b"")), "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709");
    }

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let e = base64_encode(data);
            assert_eq!(base64_decode(e.as_bytes()).as_deref(), Some(data), "{e}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        for bad in [&b"Zm9"[..], b"Zm9v!A==", b"Z===", b"Zm==Zm9v"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_rfc_example_handshake_is_accepted() {
        let h = head(GOOD);
        assert!(is_upgrade(&h));
        let hs = check_handshake(&h).unwrap();
        // RFC 6455 section 1.3's example.
        assert_eq!(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(hs.protocols, ["chat", "superchat"]);
        assert_eq!(
            select_subprotocol(&hs.protocols, &["superchat", "chat"]).as_deref(),
            Some("superchat")
        );
        assert_eq!(select_subprotocol(&hs.protocols, &["mqtt"]), None);
    }

    #[test]
    fn bad_handshakes_get_400_or_426() {
        let cases = [
            (GOOD.replace("GET", "POST"), 400),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (GOOD.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
                400,
            ),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"), 400),
        ];
        for (raw, status) in cases {
            let h = head(&raw);
            assert_eq!(check_handshake(&h).unwrap_err().status, status, "{raw}");
        }
        assert!(!is_upgrade(&head(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n"
        )));
    }

    #[test]
    fn the_101_carries_the_accept_key_subprotocol_and_safe_app_headers() {
        let mut out = Vec::new();
        let headers = vec![
            ("X-Extra".to_string(), b"1".to_vec()),
            ("Content-Length".to_string(), b"5".to_vec()),
            ("Bad\r\nName".to_string(), b"x".to_vec()),
        ];
        write_accept(&mut out, "abc=", Some("chat"), &headers, b"DATE");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{s}");
        assert!(s.contains("\r\nSec-WebSocket-Accept: abc=\r\n"), "{s}");
        assert!(s.contains("\r\nSec-WebSocket-Protocol: chat\r\n"), "{s}");
        assert!(s.contains("\r\nX-Extra: 1\r\n"), "{s}");
        assert!(!s.contains("Content-Length") && !s.contains("Bad"), "{s}");
        assert!(s.ends_with("\r\n\r\n"));
    }

    /// A client frame: masked with a fixed key.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame_raw(if fin { 0x80 } else { 0 } | opcode, true, payload)
    }

    fn frame_raw(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
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
        let key = [0x37, 0xfa, 0x21, 0x3d];
        if masked {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// Decode all of `input`, `step` bytes at a time (as reads would bring
    /// it), collecting what comes out.
    fn decode_all(d: &mut Decoder, input: &[u8], step: usize) -> Result<Vec<Incoming>, Violation> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            loop {
                let (n, inc) = d.decode(&buf)?;
                buf.drain(..n);
                if let Some(i) = inc {
                    out.push(i);
                } else if n == 0 || buf.is_empty() {
                    break;
                }
            }
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    fn all_steps(input: &[u8], max: usize) -> Result<Vec<Incoming>, Violation> {
        let first = decode_all(&mut Decoder::new(max), input, input.len());
        for step in [1, 2, 3, 7] {
            assert_eq!(
                decode_all(&mut Decoder::new(max), input, step),
                first,
                "step {step}"
            );
        }
        first
    }

    fn text(s: &str) -> Incoming {
        Incoming::Message(Message::Text(s.into()))
    }

    #[test]
    fn text_and_binary_of_every_length_encoding() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut input = frame(true, OP_TEXT, &payload);
            input.extend(frame(true, OP_BINARY, &payload));
            let got = decode_all(&mut Decoder::new(1 << 24), &input, 4096).unwrap();
            assert_eq!(
                got,
                [
                    text(std::str::from_utf8(&payload).unwrap()),
                    Incoming::Message(Message::Binary(payload.clone()))
                ],
                "len {len}"
            );
        }
    }

    #[test]
    fn fragments_are_assembled_around_control_frames() {
        let mut input = frame(false, OP_TEXT, b"Hel");
        input.extend(frame(true, OP_PING, b"p1"));
        input.extend(frame(false, OP_CONT, b"lo, "));
        input.extend(frame(true, OP_PONG, b""));
        input.extend(frame(true, OP_CONT, b"world"));
        input.extend(frame(false, OP_BINARY, &[1, 2]));
        input.extend(frame(true, OP_CONT, &[3]));
        input.extend(frame(true, OP_CLOSE, b"\x03\xe8bye"));
        assert_eq!(
            all_steps(&input, 1 << 20).unwrap(),
            [
                Incoming::Ping(b"p1".to_vec()),
                Incoming::Pong(Vec::new()),
                text("Hello, world"),
                Incoming::Message(Message::Binary(vec![1, 2, 3])),
                Incoming::Close(Some(1000), "bye".into()),
            ]
        );
    }

    fn fails(input: &[u8], max: usize) -> u16 {
        match all_steps(input, max) {
            Err(v) => v.code,
            Ok(got) => panic!("accepted: {got:?}"),
        }
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let mut rsv = frame(true, OP_TEXT, b"x");
        rsv[0] |= 0x40;
        let unmasked = frame_raw(0x80 | OP_TEXT, false, b"hello");
        let mut cont_first = frame(true, OP_CONT, b"x");
        cont_first.extend(frame(true, OP_TEXT, b"y"));
        let mut text_in_text = frame(false, OP_TEXT, b"x");
        text_in_text.extend(frame(true, OP_TEXT, b"y"));
        let mut huge64 = vec![0x82, 0xff];
        huge64.extend_from_slice(&u64::MAX.to_be_bytes());
        huge64.extend_from_slice(&[0; 4]);
        for (name, input) in [
            ("rsv", rsv),
            ("unmasked", unmasked),
            ("opcode 3", frame(true, 0x3, b"")),
            ("opcode 0xB", frame(true, 0xB, b"")),
            ("long ping", frame(true, OP_PING, &[0; 126])),
            ("fragmented ping", frame(false, OP_PING, b"")),
            ("fragmented close", frame(false, OP_CLOSE, b"")),
            ("continuation first", cont_first),
            ("text inside text", text_in_text),
            ("64-bit top bit", huge64),
            ("close 1 byte", frame(true, OP_CLOSE, b"\x03")),
        ] {
            assert_eq!(fails(&input, 1 << 20), code::PROTOCOL_ERROR, "{name}");
        }
    }

    #[test]
    fn close_codes_are_checked() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let got = all_steps(&frame(true, OP_CLOSE, &u16::to_be_bytes(ok)), 100).unwrap();
            assert_eq!(got, [Incoming::Close(Some(ok), String::new())]);
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let input = frame(true, OP_CLOSE, &u16::to_be_bytes(bad));
            assert_eq!(fails(&input, 100), code::PROTOCOL_ERROR, "{bad}");
        }
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80");
        assert_eq!(fails(&frame(true, OP_CLOSE, &p), 100), code::INVALID_DATA);
        assert_eq!(
            all_steps(&frame(true, OP_CLOSE, b""), 100).unwrap(),
            [Incoming::Close(None, String::new())]
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_with_1007() {
        // Autobahn 6.x: a bad byte in the first fragment fails before the
        // message ends (the decoder does not wait for the final frame).
        let mut d = Decoder::new(1 << 20);
        let first = frame(false, OP_TEXT, b"ok \xff");
        assert_eq!(d.decode(&first).unwrap_err().code, code::INVALID_DATA);
        // A sequence split across fragments is fine...
        let mut input = frame(false, OP_TEXT, b"\xce");
        input.extend(frame(true, OP_CONT, b"\xba"));
        assert_eq!(all_steps(&input, 100).unwrap(), [text("\u{3ba}")]);
        // ...but one the message ends inside is not.
        let mut input = frame(false, OP_TEXT, b"a");
        input.extend(frame(true, OP_CONT, b"\xce"));
        assert_eq!(fails(&input, 100), code::INVALID_DATA);
        // Surrogates encoded in UTF-8 are invalid.
        assert_eq!(
            fails(&frame(true, OP_TEXT, b"\xed\xa0\x80"), 100),
            code::INVALID_DATA
        );
        // Binary messages are not checked.
        assert!(all_steps(&frame(true, OP_BINARY, b"\xff"), 100).is_ok());
    }

    #[test]
    fn messages_over_the_limit_close_with_1009_before_the_payload_arrives() {
        let mut d = Decoder::new(10);
        let big = frame(true, OP_BINARY, &[0; 11]);
        // The head alone is enough to refuse it.
        assert_eq!(d.decode(&big[..6]).unwrap_err().code, code::TOO_BIG);
        // Fragments count together.
        let mut input = frame(false, OP_TEXT, b"12345");
        input.extend(frame(true, OP_CONT, b"678901"));
        assert_eq!(fails(&input, 10), code::TOO_BIG);
        assert!(all_steps(&frame(true, OP_TEXT, b"1234567890"), 10).is_ok());
        // 0: no limit.
        assert!(all_steps(&frame(true, OP_BINARY, &[0; 100_000]), 0).is_ok());
        // Control frames are not messages: a ping within 125 bytes passes
        // a limit smaller than itself.
        assert!(all_steps(&frame(true, OP_PING, &[0; 50]), 10).is_ok());
    }

    #[test]
    fn unmasking_by_words_matches_byte_by_byte_at_every_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..37u8).collect();
        for offset in 0..8 {
            let mut fast = data.clone();
            unmask(&mut fast, mask, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(offset + i) % 4])
                .collect();
            assert_eq!(fast, slow, "offset {offset}");
        }
    }

    #[test]
    fn server_frames_are_unmasked_and_close_codes_sanitised() {
        let mut out = Vec::new();
        encode(&mut out, OP_TEXT, b"hi");
        assert_eq!(out, b"\x81\x02hi");
        out.clear();
        encode(&mut out, OP_BINARY, &[0; 300]);
        assert_eq!(&out[..4], b"\x82\x7e\x01\x2c");
        out.clear();
        encode(&mut out, OP_BINARY, &[0; 70_000]);
        assert_eq!(&out[..10], b"\x82\x7f\0\0\0\0\0\x01\x11\x70");
        out.clear();
        encode_close(&mut out, 1006, "x");
        assert_eq!(out, b"\x88\x03\x03\xe8x");
        out.clear();
        encode_close(&mut out, code::NO_STATUS, "ignored");
        assert_eq!(out, b"\x88\x00");
        out.clear();
        // 200 bytes of two-byte characters: cut to 122 (61 characters).
        encode_close(&mut out, 4000, &"\u{3ba}".repeat(100));
        assert_eq!(out[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
