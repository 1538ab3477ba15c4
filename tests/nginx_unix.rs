//! A real nginx in front of ferricorn over a Unix socket, with the shipped
//! sample conf/nginx/ferricorn-unix.conf (placeholders filled in).
//!
//! Asserts: requests reach ferricorn with `Host` and `X-Request-Start`
//! forwarded; ferricorn believes nginx's `X-Forwarded-For` (Unix peers are
//! trusted) so the app sees the client nginx saw, and a client-supplied,
//! spoofed `X-Forwarded-For` / scheme header is not what the app sees;
//! `/static/` is served by nginx alone; bodies arrive intact.

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use support::*;

struct Setup {
    nginx: Nginx,
    server: Server,
    logs: TempDir,
}

fn setup() -> Setup {
    let logs = TempDir::new("nginx-unix-log");
    let server = Server::builder()
        .args(["echo", "--workers", "2", "--access-logfile"])
        .arg(logs.join("access.log").display().to_string())
        .unix()
        .start();
    let Addr::Unix(sock) = &server.addr else {
        unreachable!()
    };
    let nginx = Nginx::start(
        "ferricorn-unix.conf",
        &[("SOCKET", sock.display().to_string())],
    );
    Setup {
        nginx,
        server,
        logs,
    }
}

/// The value of header `name` in the echo app's JSON (`["Name","value"]`).
fn echoed_header(body: &str, name: &str) -> Option<String> {
    let key = format!("[\"{name}\",\"");
    let i = body.find(&key)? + key.len();
    let end = body[i..].find("\"]")?;
    Some(body[i..i + end].to_string())
}

#[test]
fn requests_reach_ferricorn_with_host_and_client_address() {
    let s = setup();
    let r = s.nginx.request(
        b"GET /hello?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.nginx.logs());
    let body = r.body_str();
    assert!(body.contains("\"target\": \"/hello?x=1\""), "{body}");
    assert_eq!(
        echoed_header(&body, "Host").as_deref(),
        Some("example.test:8080")
    );
    assert_eq!(
        echoed_header(&body, "X-Forwarded-For").as_deref(),
        Some("127.0.0.1")
    );
    assert!(
        echoed_header(&body, "X-Request-Start").is_some_and(|v| v.starts_with("t=")),
        "{body}"
    );
    // ferricorn believed nginx: the client is the one nginx saw.
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.1"));
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
    // nginx answered (its Server header), ferricorn produced the body.
    assert!(r.header("Server").is_some_and(|v| v.starts_with("nginx")));

    // ferricorn's access log names the forwarded client, not "-" (a Unix peer
    // has no address of its own).
    let log = s.logs.join("access.log");
    assert!(
        wait_until(Duration::from_secs(30), || read_lines(&log).iter().any(
            |l| l.starts_with("127.0.0.1 ") && l.contains("GET /hello?x=1 HTTP/1.1")
        )),
        "{:?}",
        read_lines(&log)
    );
}

#[test]
fn spoofed_forwarded_headers_are_not_believed() {
    let s = setup();
    // A client at 127.0.0.2 (not a trusted proxy address) claims to be
    // 6.6.6.6 and to have used https.
    let from: IpAddr = "127.0.0.2".parse().unwrap();
    let mut c = connect_from(from, &s.nginx.addr()).expect("connect from 127.0.0.2");
    c.write_all(
        b"GET /spoof HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", s.nginx.logs());
    let body = r.body_str();
    // nginx appended the address it saw ($proxy_add_x_forwarded_for) ...
    assert_eq!(
        echoed_header(&body, "X-Forwarded-For").as_deref(),
        Some("6.6.6.6, 127.0.0.2")
    );
    // ... and ferricorn took the rightmost untrusted entry, not the spoof.
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.2"));
    // nginx replaced X-Forwarded-Proto with its own $scheme (http); the
    // client's X-Forwarded-Ssl went through but contradicts it: http.
    assert_eq!(
        echoed_header(&body, "X-Forwarded-Proto").as_deref(),
        Some("http")
    );
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
    // Note: a client on 127.0.0.1 itself cannot be told apart from a proxy
    // under the default --forwarded-allow-ips (127.0.0.1,::1): its spoofed
    // entry would be believed, exactly as nginx's real_ip_recursive would.
}

#[test]
fn static_files_are_served_by_nginx_alone() {
    let s = setup();
    let css = b"body { color: #123456 }\n";
    std::fs::write(s.nginx.static_root.join("app.css"), css).unwrap();
    let r = s.nginx.get("/static/app.css");
    assert_eq!(r.status, 200, "{}", s.nginx.logs());
    assert_eq!(r.body, css);
    assert!(r.header("Expires").is_some(), "expires 1h: {:?}", r.headers);
    let r = s.nginx.get("/static/missing.css");
    assert_eq!(r.status, 404);
    // A request that does reach ferricorn, so its log has been flushed past
    // the static ones.
    let r = s.nginx.get("/dynamic");
    assert_eq!(r.status, 200);
    let log = s.logs.join("access.log");
    assert!(wait_until(Duration::from_secs(30), || read_lines(&log)
        .iter()
        .any(|l| l.contains("GET /dynamic "))));
    let lines = read_lines(&log);
    assert!(
        !lines.iter().any(|l| l.contains("/static")),
        "ferricorn saw a /static request: {lines:?}"
    );
}

#[test]
fn bodies_pass_through_intact() {
    let s = setup();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = s.nginx.request(&req);
    assert_eq!(r.status, 200, "{}", s.nginx.logs());
    let text = r.body_str();
    let got = text
        .split("\"body_base64\": \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap();
    assert_eq!(got, base64(&body));
    // A body over nginx's client_max_body_size (10m) is refused by nginx
    // itself: ferricorn never sees it.
    let mut c = Client::connect(&s.nginx.addr()).unwrap();
    c.write_all(
        b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000000\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 413);
    assert!(r.body_str().contains("nginx"), "{}", r.body_str());
    drop(s.server);
}
