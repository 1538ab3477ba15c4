//! The library API, through a real server: `Server::new(factory)` with a Rust
//! app and hooks, run in a child process (this test binary re-executed with
//! `FERRICORN_LIBRARY_SERVE` set), driven over a real socket.
//!
//! Covers what the built-in apps cannot: a panicking app gives that client a
//! 500 and the same worker keeps serving; per-worker state built by the
//! factory after fork; a streamed response is sent chunked; a file body
//! (`Response::file`, sendfile) arrives whole and the connection goes on;
//! hooks run.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferricorn::{Hooks, Request, Response, Server, ServerInfo, WorkerContext, WorkerInfo};
use support::*;

const ENV: &str = "FERRICORN_LIBRARY_SERVE";

struct FileHooks(std::path::PathBuf);

impl FileHooks {
    fn note(&self, what: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .unwrap();
        writeln!(f, "{what}").unwrap();
    }
}

impl Hooks for FileHooks {
    fn when_ready(&self, _s: &ServerInfo) {
        self.note("when_ready");
    }
    fn post_worker_init(&self, w: &WorkerInfo) {
        self.note(&format!("post_worker_init {}", w.pid));
    }
    fn pre_request(&self, req: &Request) {
        self.note(&format!("pre_request {}", req.path()));
    }
    fn post_request(&self, req: &Request, status: u16) {
        self.note(&format!("post_request {} {status}", req.path()));
    }
    fn on_exit(&self, _s: &ServerInfo) {
        self.note("on_exit");
    }
}

/// The file served at /file: bigger than a socket buffer and than one
/// sendfile(2) piece, so it goes out over several writable events.
const FILE_LEN: u64 = 3 << 20;
const FILE_SKIP: u64 = 7;

fn file_pattern() -> Vec<u8> {
    (0..FILE_LEN).map(|i| (i % 251) as u8).collect()
}

/// Not a test of its own: the body of the child process, run by
/// re-executing this binary with `--ignored --exact serve_when_asked`.
/// Ignored so that a normal run does not count it as a passed test.
#[test]
#[ignore = "the library server's process body; started by the tests below"]
fn serve_when_asked() {
    let spec = std::env::var(ENV)
        .unwrap_or_else(|_| panic!("not a test: run by the other tests with {ENV} set"));
    let mut parts = spec.split(',');
    let (addr, notes, threads) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let big = std::path::Path::new(notes).with_file_name("big.bin");
    std::fs::write(&big, file_pattern()).unwrap();
    ferricorn::logging::init_error_log("info", "-").unwrap();
    let code = Server::new(move |ctx: &WorkerContext| {
        let pid = ctx.pid;
        let big = big.clone();
        let mut hits = 0u64;
        move |req: &mut Request| {
            hits += 1;
            match req.path() {
                "/panic" => panic!("app bug"),
                // CONNECT reaches the app only because of allow_connect below.
                _ if req.method() == "CONNECT" && req.target() == "ok.example:443" => {
                    Response::ok("text/plain", "tunnel? no\n")
                }
                _ if req.method() == "CONNECT" => {
                    Response::text(403, format!("no tunnel to {}\n", req.target()))
                }
                "/stream" => Response::new(200)
                    .header("Content-Type", "text/plain")
                    .stream(std::io::Cursor::new(b"streamed body".to_vec())),
                "/file" => {
                    let f = std::fs::File::open(&big).unwrap();
                    Response::new(200).file(f, FILE_SKIP, FILE_LEN - FILE_SKIP)
                }
                _ => Response::ok("text/plain", format!("{pid} {hits}")),
            }
        }
    })
    .bind(addr)
    .workers(1)
    .threads(threads)
    .hooks(FileHooks(notes.into()))
    .allow_connect(true)
    .run();
    std::process::exit(code);
}

#[test]
fn panicking_app_gives_500_and_the_worker_lives_on() {
    library_serves(1);
}

/// The same on `Server::threads(2)`: each thread has its own app from the
/// factory; a panic on a thread is a 500 and the thread serves on; the
/// stream is pulled on its thread; the hooks still run.
#[test]
fn panicking_app_gives_500_and_the_worker_lives_on_threads() {
    library_serves(2);
}

fn library_serves(threads: usize) {
    let dir = TempDir::new("lib");
    let notes = dir.join("hooks.log");
    // Our listener, passed as fd 3: no free-port race.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(listener.local_addr().unwrap());
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    pass_as_fd3(&mut cmd, &listener);
    let mut child = cmd
        .args([
            "--ignored",
            "--exact",
            "serve_when_asked",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ENV, format!("fd://3,{},{threads}", notes.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let guard = scopeguard(move || {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    drop(listener);
    assert!(
        wait_until(Duration::from_secs(20), || Client::connect(&addr).is_ok()),
        "library server did not start"
    );
    let mut c = Client::connect(&addr).unwrap();
    c.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let first = c.read_response().unwrap();
    assert_eq!(first.status, 200);
    let worker = first.body_str().split(' ').next().unwrap().to_string();
    assert!(first.body_str().ends_with(" 1"), "{}", first.body_str());

    // The panic: a 500 for this client, connection closed.
    c.write_all(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());

    // Same worker, state intact (the counter counted the panicking call too).
    let mut c = Client::connect(&addr).unwrap();
    c.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    if threads == 1 {
        assert_eq!(r.body_str(), format!("{worker} 3"));
    } else {
        // Which thread's app (and counter) answers is not fixed.
        assert!(r.body_str().starts_with(&format!("{worker} ")));
    }

    // A streamed body is sent chunked and the connection stays usable.
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.body, b"streamed body");
    c.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);

    // A file body: the promised length, every byte from the offset, and the
    // connection stays usable (the next request is pipelined behind it).
    c.write_all(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let want = (FILE_LEN - FILE_SKIP).to_string();
    assert_eq!(r.header("Content-Length"), Some(want.as_str()));
    assert!(
        r.body == file_pattern()[FILE_SKIP as usize..],
        "file body differs ({} bytes)",
        r.body.len()
    );
    assert_eq!(c.read_response().unwrap().status, 200);

    // CONNECT: the app opted in (Server::allow_connect), so it answers.
    let r = Client::connect(&addr)
        .and_then(|mut c| {
            c.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")?;
            c.read_response()
        })
        .unwrap();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (403, "no tunnel to example.com:443\n")
    );
    // A 2xx to CONNECT carries no Content-Length or Transfer-Encoding (RFC
    // 9110 §9.3.6): its body ends at close, and nothing pipelined behind it
    // is answered.
    let mut c = Client::connect(&addr).unwrap();
    c.write_all(
        b"CONNECT ok.example:443 HTTP/1.1\r\nHost: ok.example:443\r\n\r\n\
          GET /a HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), None, "{:?}", r.headers);
    assert_eq!(r.header("Transfer-Encoding"), None, "{:?}", r.headers);
    assert_eq!(r.body_str(), "tunnel? no\n");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exited = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "library server did not stop on TERM");
    drop(guard);
    let log = std::fs::read_to_string(&notes).unwrap();
    for want in [
        "when_ready",
        "post_worker_init",
        "pre_request /a",
        "post_request /a 200",
        "post_request /panic 500",
        "on_exit",
    ] {
        assert!(log.contains(want), "hook {want:?} missing from:\n{log}");
    }
}

/// Runs `f` when dropped (kills the child even if an assertion fails).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct G<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for G<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    G(Some(f))
}
