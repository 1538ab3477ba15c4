//! The first screen: `ferricorn` with no app serves the welcome page, over
//! TCP and over a Unix socket, from one master and N workers.
mod support;
use std::io::Write;
use support::*;

#[test]
fn welcome_page_names_worker_and_binds() {
    // The server binds its own port: the page names the `--bind` addresses.
    let s = Server::builder()
        .args(["--workers", "2"])
        .bind_port()
        .start();
    let r = s.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let body = r.body_str();
    assert!(body.contains("ferricorn is running"), "{body}");
    assert!(body.contains(&s.addr.bind_arg()), "{body}");
    let workers = wait_workers(s.pid(), 2);
    assert_eq!(workers.len(), 2, "workers: {workers:?}");
    assert!(
        workers
            .iter()
            .any(|p| body.contains(&format!("<strong>{p}</strong>"))),
        "{body}"
    );
    assert!(
        cmdline(s.pid()).starts_with("ferricorn: master"),
        "{}",
        cmdline(s.pid())
    );
}

#[test]
fn hello_over_unix_socket_keeps_alive() {
    let s = Server::start_unix(&["hello"]);
    let mut c = s.connect();
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
    }
}
