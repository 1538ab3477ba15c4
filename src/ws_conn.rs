//! An open WebSocket as its connection drives it: frames in through the
//! [`Decoder`], pings answered, the idle ping and its timeout, and the close
//! handshake. No I/O: `conn.rs` hands it the input buffer and the output
//! buffer, and it says what the app must hear ([`Step`]).
//!
//! ```text
//!   open ──client close──▶ echo the close ─▶ ended (flush, half-close, close)
//!    │  ──protocol error─▶ close 1002/1007/1009 ─▶ ended
//!    │  ──no pong within --ws-ping-timeout─▶ close 1011 ─▶ ended
//!    └──app close / graceful stop (1001)─▶ closing ──client close, or
//!                                            CLOSE_WAIT_MS──▶ ended
//! ```
//! While closing, data messages from the client are dropped (RFC 6455
//! section 5.5.1: the close handshake is under way) and nothing more is sent.

use crate::ws::{self, Decoder, Incoming, Message, code};

/// How long the server waits for the client's answer to its close frame
/// before closing the TCP connection anyway.
pub const CLOSE_WAIT_MS: u64 = 5_000;

/// `--ws-max-size`, `--ws-ping-interval`, `--ws-ping-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsSettings {
    /// Bytes per message (0: unlimited).
    pub max_size: usize,
    /// Ping a peer silent this long (0: never).
    pub ping_interval_ms: u64,
    /// Close if the ping is not answered within this (0: wait for ever).
    pub ping_timeout_ms: u64,
}

impl Default for WsSettings {
    fn default() -> WsSettings {
        WsSettings {
            max_size: 16 << 20,
            ping_interval_ms: 20_000,
            ping_timeout_ms: 20_000,
        }
    }
}

/// What one step over the input gave the app.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing for the app (more input is needed, or a control frame was
    /// handled here).
    Nothing,
    Message(Message),
    /// The client's close frame ended the WebSocket: the app hears its
    /// code (1005 for a close without one); the connection flushes the
    /// echoed close and closes.
    Ended(u16),
    /// The client broke the protocol: the server's close frame with this
    /// code is queued, and the app hears it too.
    Failed(u16),
}

#[derive(Debug)]
pub struct WsConn {
    decoder: Decoder,
    settings: WsSettings,
    /// When bytes last came from the client.
    last_in_ms: u64,
    /// A ping is out, unanswered, since then.
    ping_sent_ms: Option<u64>,
    /// The server sent its close frame then (app close, graceful stop).
    close_sent_ms: Option<u64>,
    /// The app has been told the WebSocket ended.
    ended: bool,
    /// The app asked for no more messages for now (its queue is full):
    /// frames are not read until it resumes.
    pub paused: bool,
}

impl WsConn {
    pub fn new(settings: WsSettings, now_ms: u64) -> WsConn {
        WsConn {
            decoder: Decoder::new(settings.max_size),
            settings,
            last_in_ms: now_ms,
            ping_sent_ms: None,
            close_sent_ms: None,
            ended: false,
            paused: false,
        }
    }

    /// Has the app been told the WebSocket ended?
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Mark the WebSocket ended (the connection is going away without a
    /// close handshake); true if the app still has to be told.
    pub fn end(&mut self) -> bool {
        !std::mem::replace(&mut self.ended, true)
    }

    /// Decode from `input`; returns the bytes consumed and what the app must
    /// hear. Pongs and close echoes go into `out`. Call again while it
    /// consumes bytes or yields something.
    pub fn step(&mut self, input: &[u8], out: &mut Vec<u8>, now_ms: u64) -> (usize, Step) {
        if self.ended {
            return (input.len(), Step::Nothing);
        }
        match self.decoder.decode(input) {
            Err(v) => {
                log::debug!("closing a WebSocket ({}): {}", v.code, v.why);
                if self.close_sent_ms.is_none() {
                    ws::encode_close(out, v.code, v.why);
                }
                self.ended = true;
                (input.len(), Step::Failed(v.code))
            }
            Ok((n, incoming)) => {
                if n > 0 {
                    self.last_in_ms = now_ms;
                }
                let step = match incoming {
                    None => Step::Nothing,
                    Some(Incoming::Ping(p)) => {
                        if self.close_sent_ms.is_none() {
                            ws::encode(out, ws::OP_PONG, &p);
                        }
                        Step::Nothing
                    }
                    Some(Incoming::Pong(_)) => {
                        self.ping_sent_ms = None;
                        Step::Nothing
                    }
                    Some(Incoming::Message(m)) if self.close_sent_ms.is_none() => Step::Message(m),
                    Some(Incoming::Message(_)) => Step::Nothing,
                    Some(Incoming::Close(c, _)) => {
                        if self.close_sent_ms.is_none() {
                            // Echo the client's code (RFC 6455 section 5.5.1).
                            ws::encode_close(out, c.unwrap_or(code::NO_STATUS), "");
                        }
                        self.ended = true;
                        Step::Ended(c.unwrap_or(code::NO_STATUS))
                    }
                };
                (n, step)
            }
        }
    }

    /// Queue a message from the app; dropped once a close was sent or the
    /// WebSocket ended.
    pub fn send(&mut self, msg: &Message, out: &mut Vec<u8>) -> bool {
        if self.ended || self.close_sent_ms.is_some() {
            return false;
        }
        ws::encode_message(out, msg);
        true
    }

    /// Start the close handshake (the app's close, or 1001 on a graceful
    /// stop): the client's close then ends the WebSocket.
    pub fn close(&mut self, close_code: u16, reason: &str, out: &mut Vec<u8>, now_ms: u64) {
        if self.ended || self.close_sent_ms.is_some() {
            return;
        }
        ws::encode_close(out, close_code, reason);
        self.close_sent_ms = Some(now_ms.max(1));
    }

    /// About once a second: the idle ping, its timeout, and the wait for the
    /// client's close. `Some(code)`: the WebSocket ended now (the app hears
    /// 1006, as no close handshake completed).
    pub fn on_timer(&mut self, now_ms: u64, out: &mut Vec<u8>) -> Option<u16> {
        if self.ended {
            return None;
        }
        if let Some(t) = self.close_sent_ms {
            if now_ms >= t + CLOSE_WAIT_MS {
                self.ended = true;
                return Some(code::ABNORMAL);
            }
            return None;
        }
        let s = self.settings;
        match self.ping_sent_ms {
            Some(t) if s.ping_timeout_ms > 0 && now_ms >= t + s.ping_timeout_ms => {
                log::debug!("closing a WebSocket: no pong within --ws-ping-timeout");
                ws::encode_close(out, code::INTERNAL_ERROR, "ping timeout");
                self.ended = true;
                Some(code::ABNORMAL)
            }
            Some(_) => None,
            None if s.ping_interval_ms > 0 && now_ms >= self.last_in_ms + s.ping_interval_ms => {
                ws::encode(out, ws::OP_PING, b"");
                self.ping_sent_ms = Some(now_ms);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let key = [1, 2, 3, 4];
        let mut f = vec![b0, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        f
    }

    fn settings(interval: u64, timeout: u64) -> WsSettings {
        WsSettings {
            max_size: 1 << 20,
            ping_interval_ms: interval,
            ping_timeout_ms: timeout,
        }
    }

    #[test]
    fn a_ping_is_answered_and_a_message_delivered() {
        let mut w = WsConn::new(WsSettings::default(), 0);
        let mut out = Vec::new();
        let mut input = masked(0x89, b"hb");
        input.extend(masked(0x81, b"hi"));
        let (n, s) = w.step(&input, &mut out, 1);
        assert_eq!(s, Step::Nothing);
        assert_eq!(out, b"\x8a\x02hb");
        let (m, s) = w.step(&input[n..], &mut out, 1);
        assert_eq!(n + m, input.len());
        assert_eq!(s, Step::Message(Message::Text("hi".into())));
    }

    #[test]
    fn a_client_close_is_echoed_with_its_code() {
        let mut w = WsConn::new(WsSettings::default(), 0);
        let mut out = Vec::new();
        let (_, s) = w.step(&masked(0x88, b"\x0f\xa0bye"), &mut out, 1);
        assert_eq!(s, Step::Ended(4000));
        assert_eq!(out, b"\x88\x02\x0f\xa0");
        assert!(w.ended());
        // Nothing is sent after the close.
        assert!(!w.send(&Message::Text("late".into()), &mut out));
        let mut out = Vec::new();
        let mut w = WsConn::new(WsSettings::default(), 0);
        assert_eq!(w.step(&masked(0x88, b""), &mut out, 1).1, Step::Ended(1005));
        assert_eq!(out, b"\x88\x00");
    }

    #[test]
    fn a_protocol_error_sends_its_close_code() {
        let mut w = WsConn::new(WsSettings::default(), 0);
        let mut out = Vec::new();
        let (_, s) = w.step(b"\x81\x02hi", &mut out, 1);
        assert_eq!(s, Step::Failed(1002));
        assert_eq!(&out[..4], b"\x88\x19\x03\xea");
    }

    #[test]
    fn after_the_servers_close_messages_are_dropped_until_the_clients_close() {
        let mut w = WsConn::new(WsSettings::default(), 0);
        let mut out = Vec::new();
        w.close(1001, "bye", &mut out, 10);
        assert_eq!(out, b"\x88\x05\x03\xe9bye");
        out.clear();
        assert_eq!(w.step(&masked(0x81, b"x"), &mut out, 11).1, Step::Nothing);
        assert_eq!(
            w.step(&masked(0x88, b"\x03\xe9"), &mut out, 12).1,
            Step::Ended(1001)
        );
        assert!(out.is_empty(), "the close is not echoed twice");
        // A client that never answers the close: ended after CLOSE_WAIT_MS.
        let mut w = WsConn::new(WsSettings::default(), 0);
        w.close(1000, "", &mut out, 10);
        assert_eq!(w.on_timer(10 + CLOSE_WAIT_MS - 1, &mut out), None);
        assert_eq!(w.on_timer(10 + CLOSE_WAIT_MS, &mut out), Some(1006));
    }

    #[test]
    fn an_idle_peer_is_pinged_and_closed_without_a_pong() {
        let mut w = WsConn::new(settings(20_000, 5_000), 1_000);
        let mut out = Vec::new();
        assert_eq!(w.on_timer(20_999, &mut out), None);
        assert!(out.is_empty());
        assert_eq!(w.on_timer(21_000, &mut out), None);
        assert_eq!(out, b"\x89\x00");
        out.clear();
        assert_eq!(w.on_timer(25_999, &mut out), None);
        assert_eq!(w.on_timer(26_000, &mut out), Some(1006));
        assert_eq!(&out[..4], b"\x88\x0e\x03\xf3");
        // A pong resets it: no close, next ping an interval after the pong.
        let mut w = WsConn::new(settings(20_000, 5_000), 0);
        w.on_timer(20_000, &mut out);
        w.step(&masked(0x8a, b""), &mut out, 21_000);
        assert_eq!(w.on_timer(30_000, &mut out), None);
        out.clear();
        assert_eq!(w.on_timer(40_999, &mut out), None);
        assert!(out.is_empty());
        w.on_timer(41_000, &mut out);
        assert_eq!(out, b"\x89\x00");
    }

    #[test]
    fn pings_off_means_no_ping_and_traffic_postpones_it() {
        let mut w = WsConn::new(settings(0, 5_000), 0);
        let mut out = Vec::new();
        assert_eq!(w.on_timer(1_000_000, &mut out), None);
        assert!(out.is_empty());
        let mut w = WsConn::new(settings(10_000, 5_000), 0);
        w.step(&masked(0x82, b"x"), &mut out, 9_000);
        w.on_timer(10_000, &mut out);
        assert!(out.is_empty(), "the client spoke 1 s ago");
    }
}
