//! A WebSocket echo load generator for benches/asgi.sh: what `wrk -t1` is for
//! HTTP. One thread, one mio poll, `-c` connections; each does the HTTP/1.1
//! upgrade, then keeps exactly one message in flight: send a masked text
//! frame, wait for the whole echo, check it, send the next. Counts round trips
//! after every connection is upgraded, for `-d` seconds.
//!
//! ```text
//! cargo bench --bench ws_echo --no-run          # prints the executable's path
//! ws_echo 127.0.0.1:8000 /ws -c 64 -d 5 -s 16   # or: cargo bench --bench ws_echo -- ARGS
//! ```
//!
//! Prints `Round trips/sec: N` (the line benches/asgi.sh reads), the total,
//! latency percentiles and errors (a wrong echo, a close or reset, a failed
//! handshake). Without arguments (a plain `cargo bench`) it prints its usage
//! and exits 0. One thread on purpose: the client must not take more than one
//! of the machine's two cores from the server, as `wrk -t1` does not.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
    conns: usize,
    secs: f64,
    size: usize,
}

const USAGE: &str =
    "usage: ws_echo HOST:PORT PATH [-c CONNECTIONS=64] [-d SECONDS=5] [-s MESSAGE_BYTES=16]";

fn parse_args() -> Result<Option<Opts>, String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        return Ok(None);
    }
    if args.len() < 2 {
        return Err(USAGE.into());
    }
    let addr = args[0]
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", args[0]))?
        .next()
        .ok_or_else(|| format!("{}: no address", args[0]))?;
    let mut o = Opts {
        addr,
        host: args[0].clone(),
        path: args[1].clone(),
        conns: 64,
        secs: 5.0,
        size: 16,
    };
    let mut it = args[2..].iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "-c" => o.conns = v.parse().map_err(|e| bad(&e))?,
            "-d" => o.secs = v.trim_end_matches('s').parse().map_err(|e| bad(&e))?,
            "-s" => o.size = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if o.conns == 0 || o.size > 65535 {
        return Err(format!("need -c > 0 and -s <= 65535\n{USAGE}"));
    }
    Ok(Some(o))
}

#[derive(PartialEq)]
enum Phase {
    /// Handshake written (or being written), waiting for `101`.
    Upgrading,
    /// Waiting for the echo of the message in flight.
    Echoing,
    Dead,
}

struct Conn {
    sock: TcpStream,
    phase: Phase,
    out: Vec<u8>,
    out_pos: usize,
    inb: Vec<u8>,
    sent_at: Instant,
    seq: u32,
}

/// A masked client text frame carrying `payload` (RFC 6455 5.2/5.3).
fn frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x81); // FIN, text
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// `size` printable bytes that differ per connection and message, so that an
/// echo of the wrong message is caught.
fn message(conn: usize, seq: u32, size: usize) -> Vec<u8> {
    let tag = format!("{conn}:{seq}:");
    tag.bytes()
        .chain(std::iter::repeat(b'x'))
        .take(size.max(tag.len()))
        .collect()
}

/// Standard base64 of 16 bytes (a `Sec-WebSocket-Key`).
fn base64_16(b: &[u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// One complete server frame at the start of `buf`: (opcode, payload, its
/// length in `buf`), or None if incomplete.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let key = if masked {
        let k: [u8; 4] = buf.get(at..at + 4)?.try_into().unwrap();
        at += 4;
        Some(k)
    } else {
        None
    };
    let body = buf.get(at..at + len)?;
    let payload = match key {
        Some(k) => body.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => body.to_vec(),
    };
    Some((opcode, payload, at + len))
}

struct Stats {
    trips: u64,
    errors: u64,
    lat_us: Vec<u32>,
    counting: bool,
}

impl Conn {
    /// Write what is pending; false on a fatal error.
    fn flush(&mut self) -> bool {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        true
    }

    fn send_next(&mut self, id: usize, size: usize) -> bool {
        self.seq = self.seq.wrapping_add(1);
        let key = (self.seq.wrapping_mul(0x9E37_79B9) ^ id as u32).to_be_bytes();
        self.out = frame(&message(id, self.seq, size), key);
        self.out_pos = 0;
        self.sent_at = Instant::now();
        self.flush()
    }

    /// Read what arrived and act on it; false when the connection is done for.
    fn on_readable(&mut self, id: usize, size: usize, st: &mut Stats) -> bool {
        let mut buf = [0u8; 65536];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.inb.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.phase == Phase::Upgrading {
            let Some(end) = self.inb.windows(4).position(|w| w == b"\r\n\r\n") else {
                return true;
            };
            if !self.inb.starts_with(b"HTTP/1.1 101") {
                eprintln!(
                    "ws_echo: upgrade refused: {:?}",
                    String::from_utf8_lossy(&self.inb[..end])
                );
                return false;
            }
            self.inb.drain(..end + 4);
            self.phase = Phase::Echoing;
            return self.send_next(id, size);
        }
        while let Some((opcode, payload, used)) = parse_frame(&self.inb) {
            self.inb.drain(..used);
            match opcode {
                0x1 | 0x2 => {
                    if payload != message(id, self.seq, size) {
                        eprintln!("ws_echo: connection {id}: wrong echo");
                        return false;
                    }
                    if st.counting {
                        st.trips += 1;
                        st.lat_us
                            .push(self.sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    if !self.send_next(id, size) {
                        return false;
                    }
                }
                0x9 => {
                    // A server ping: answer with a pong (masked), after the
                    // message in flight if one is being written.
                    let key = [1, 2, 3, 4];
                    let mut pong = frame(&payload, key);
                    pong[0] = 0x8a;
                    self.out.extend_from_slice(&pong);
                    if !self.flush() {
                        return false;
                    }
                }
                0xa => {}
                _ => return false, // close or anything else: this connection is over
            }
        }
        true
    }
}

fn run(o: &Opts) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let mut sock = TcpStream::connect(o.addr)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let key = base64_16(&std::array::from_fn(|k| (i * 31 + k * 7) as u8));
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            o.path, o.host
        );
        conns.push(Conn {
            sock,
            phase: Phase::Upgrading,
            out: req.into_bytes(),
            out_pos: 0,
            inb: Vec::new(),
            sent_at: Instant::now(),
            seq: 0,
        });
    }
    let mut st = Stats {
        trips: 0,
        errors: 0,
        lat_us: Vec::new(),
        counting: false,
    };
    let upgrade_deadline = Instant::now() + Duration::from_secs(10);
    let mut t0 = Instant::now();
    let mut end = None;
    loop {
        let live = conns.iter().filter(|c| c.phase != Phase::Dead).count();
        if live == 0 {
            break;
        }
        if !st.counting {
            let up = conns.iter().all(|c| c.phase != Phase::Upgrading);
            if up {
                st.counting = true;
                t0 = Instant::now();
                end = Some(t0 + Duration::from_secs_f64(o.secs));
            } else if Instant::now() > upgrade_deadline {
                return Err(io::Error::other(
                    "not every connection was upgraded within 10 s",
                ));
            }
        }
        let timeout = match end {
            Some(e) => {
                let now = Instant::now();
                if now >= e {
                    break;
                }
                e - now
            }
            None => Duration::from_millis(100),
        };
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            let id = ev.token().0;
            let c = &mut conns[id];
            if c.phase == Phase::Dead {
                continue;
            }
            let mut ok = true;
            if ev.is_writable() && c.out_pos < c.out.len() {
                ok = c.flush();
            }
            if ok && (ev.is_readable() || ev.is_read_closed()) {
                ok = c.on_readable(id, o.size, &mut st);
            }
            if !ok && c.phase == Phase::Upgrading {
                // Not a WebSocket server (or not on this path): no figure.
                return Err(io::Error::other(format!(
                    "connection {id}: the upgrade failed or the connection closed during it"
                )));
            }
            if !ok {
                c.phase = Phase::Dead;
                st.errors += 1;
                let _ = poll.registry().deregister(&mut c.sock);
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    st.lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if st.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((st.lat_us.len() as f64 * p) as usize).min(st.lat_us.len() - 1);
        st.lat_us[i] as f64 / 1000.0
    };
    println!(
        "{} connections, {}-byte text messages, {:.2} s to {} {}",
        o.conns, o.size, elapsed, o.addr, o.path
    );
    println!("Round trips: {}", st.trips);
    println!(
        "Round trips/sec: {:.2}",
        st.trips as f64 / elapsed.max(1e-9)
    );
    println!(
        "Latency ms: p50 {:.3} p99 {:.3} max {:.3}",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("Errors: {}", st.errors);
    Ok(())
}

fn main() {
    match parse_args() {
        Ok(None) => println!("{USAGE}\n(benches/asgi.sh runs it; nothing to do without arguments)"),
        Ok(Some(o)) => {
            if let Err(e) = run(&o) {
                eprintln!("ws_echo: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
