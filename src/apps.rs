//! The built-in apps chosen by the positional `APP` argument.
//!
//! - `welcome` (default): the first screen a new user sees in a browser.
//! - `hello`: TechEmpower's plaintext (`/`) and JSON (`/json`) tests.
//! - `echo`: the reference app for conformance tests; its JSON is exact.
//!   WebSocket upgrades on `/ws` are accepted and each message echoed back.

use std::io;
use std::time::Duration;

use crate::app::{App, Request, Response, WorkerContext, WsOpen, WsSession};
use crate::dispatch::WsAction;
use crate::ws::Message;

/// Names accepted as the positional `APP`.
pub const BUILTIN: &[&str] = &["welcome", "hello", "echo"];

/// Build the built-in app `name` for one worker.
pub fn builtin(name: &str, ctx: &WorkerContext) -> io::Result<Box<dyn App + Send>> {
    match name {
        "welcome" => Ok(Box::new(welcome(ctx))),
        "hello" => Ok(Box::new(hello)),
        "echo" => Ok(Box::new(Echo)),
        other => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "unknown app '{other}' (built-in apps: {})",
                BUILTIN.join(", ")
            ),
        )),
    }
}

fn welcome(ctx: &WorkerContext) -> impl App + Send + 'static {
    let binds: Vec<String> = ctx.binds.iter().map(|b| html_escape(b)).collect();
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>ferricorn is running</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;\
         padding:0 1em;color:#222}}code{{background:#f3f3f3;padding:0 .3em}}</style>\n\
         </head>\n<body>\n<h1>ferricorn is running</h1>\n\
         <p>This page is served by the built-in <code>welcome</code> app. \
         Replace it with your own: <code>ferricorn [OPTIONS] APP</code>.</p>\n\
         <ul>\n<li>Served by worker pid <strong>{pid}</strong> (worker #{age})</li>\n\
         <li>Workers: <strong>{workers}</strong></li>\n\
         <li>Listening on: {binds}</li>\n<li>Version: ferricorn {version}</li>\n</ul>\n\
         </body>\n</html>\n",
        pid = ctx.pid,
        age = ctx.age,
        workers = ctx.workers,
        binds = binds
            .iter()
            .map(|b| format!("<code>{b}</code>"))
            .collect::<Vec<_>>()
            .join(", "),
        version = env!("CARGO_PKG_VERSION"),
    );
    move |_req: &mut Request| Response::ok("text/html; charset=utf-8", page.as_bytes())
}

fn hello(req: &mut Request) -> Response {
    match req.path() {
        "/json" => Response::ok("application/json", &br#"{"message":"Hello, World!"}"#[..]),
        _ => Response::ok("text/plain", &b"Hello, World!"[..]),
    }
}

/// Answers every request with a JSON description of it. `?sleep=S` makes it
/// block inside the app for S seconds first, as a slow view would. The
/// client address and scheme (after `--forwarded-allow-ips`) come back in
/// the `X-Echo-Remote-Addr` (`-` when unknown) and `X-Echo-Scheme` headers.
/// `&mark=PATH` (a path in URI characters, not decoded) creates the file PATH
/// containing the worker's pid as the app call begins, so a test can wait
/// until a request is inside the app instead of sleeping. `&wait=PATH` then
/// blocks in the app until the file PATH exists (10 minutes at most), so a
/// test decides when the call ends instead of guessing how long it needs.
fn echo(req: &mut Request) -> Response {
    if let Some(path) = query_param(req.query(), "mark") {
        // Written aside and renamed: the file appears with its content.
        let tmp = format!("{path}.tmp");
        if std::fs::write(&tmp, std::process::id().to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
    if let Some(path) = query_param(req.query(), "wait") {
        let until = std::time::Instant::now() + Duration::from_secs(600);
        while !std::path::Path::new(path).exists() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(secs) = query_param(req.query(), "sleep").and_then(|s| s.parse::<f64>().ok())
        && secs.is_finite()
        && secs > 0.0
    {
        std::thread::sleep(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let body = match req.body().to_vec() {
        Ok(b) => b,
        Err(e) => return Response::text(500, format!("reading the body failed: {e}\n")),
    };
    let mut out = String::with_capacity(256 + body.len() * 4 / 3);
    out.push_str("{\"method\": ");
    json_str(&mut out, req.method().as_bytes());
    out.push_str(", \"target\": ");
    json_str(&mut out, req.target().as_bytes());
    out.push_str(", \"path\": ");
    json_str(&mut out, req.path().as_bytes());
    out.push_str(", \"query\": ");
    json_str(&mut out, req.query().as_bytes());
    out.push_str(", \"version\": ");
    json_str(&mut out, req.version_str().as_bytes());
    out.push_str(", \"headers\": ");
    json_pairs(&mut out, req.headers());
    out.push_str(", \"body_base64\": \"");
    base64(&mut out, &body);
    out.push_str("\", \"trailers\": ");
    json_pairs(&mut out, req.trailers());
    out.push('}');
    // What the proxy-trust rules concluded, as headers: the JSON body's
    // shape is a fixed contract, so it does not grow fields.
    let remote = req
        .remote_addr()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "-".into());
    Response::ok("application/json", out)
        .header("X-Echo-Remote-Addr", remote)
        .header("X-Echo-Scheme", req.scheme())
}

/// The `echo` app: [`echo`] for HTTP, and a WebSocket echo on `/ws` (the
/// reference for the WebSocket tests and the echo benchmark). The client's
/// subprotocol `echo` is chosen when offered. A text message `close CODE
/// REASON` makes the server close with that code instead of echoing.
struct Echo;

impl App for Echo {
    fn call(&mut self, req: &mut Request) -> Response {
        echo(req)
    }

    fn websockets(&self) -> bool {
        true
    }

    fn websocket(&mut self, req: &mut Request, hs: &crate::ws::Handshake) -> WsOpen {
        if req.path() != "/ws" {
            return WsOpen::Deny(Response::text(404, "no WebSocket here: try /ws\n"));
        }
        WsOpen::Accept {
            subprotocol: crate::ws::select_subprotocol(&hs.protocols, &["echo"]),
            headers: vec![("X-Echo-Pid".into(), std::process::id().to_string().into())],
            session: Box::new(EchoSession),
        }
    }
}

struct EchoSession;

impl WsSession for EchoSession {
    fn on_message(&mut self, msg: Message, out: &mut Vec<WsAction>) {
        if let Message::Text(t) = &msg
            && let Some(rest) = t.strip_prefix("close ")
        {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Ok(code) = code.parse() {
                out.push(WsAction::Close {
                    code,
                    reason: reason.to_string(),
                });
                return;
            }
        }
        out.push(WsAction::Send(msg));
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn json_pairs(out: &mut String, pairs: &[(String, Vec<u8>)]) {
    out.push('[');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        json_str(out, name.as_bytes());
        out.push(',');
        json_str(out, value);
        out.push(']');
    }
    out.push(']');
}

/// A JSON string literal. Bytes that are not UTF-8 (obs-text in a header
/// value) are read as Latin-1, as WSGI does, so no byte is ever dropped.
pub(crate) fn json_str(out: &mut String, bytes: &[u8]) {
    out.push('"');
    let push = |out: &mut String, c: char| match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
        c => out.push(c),
    };
    match std::str::from_utf8(bytes) {
        Ok(s) => s.chars().for_each(|c| push(out, c)),
        Err(_) => bytes.iter().for_each(|&b| push(out, b as char)),
    }
    out.push('"');
}

fn base64(out: &mut String, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("hello", "aGVsbG8="),
        ];
        for (input, want) in cases {
            let mut s = String::new();
            base64(&mut s, input.as_bytes());
            assert_eq!(s, want, "base64({input:?})");
        }
    }

    #[test]
    fn json_strings_escape_quotes_controls_and_latin1() {
        let mut s = String::new();
        json_str(&mut s, b"a\"b\\c\n\x01");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
        let mut s = String::new();
        json_str(&mut s, b"caf\xe9");
        assert_eq!(s, "\"caf\u{e9}\"");
    }

    #[test]
    fn query_param_finds_sleep() {
        assert_eq!(query_param("a=1&sleep=2.5", "sleep"), Some("2.5"));
        assert_eq!(query_param("", "sleep"), None);
    }
}
