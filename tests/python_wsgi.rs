//! WSGI apps on the embedded interpreter (`--features python`): PEP 3333
//! compliance (wsgiref's validator), byte-for-byte parity with the built-in
//! `echo`, start_response/write/close semantics, response framing, errors,
//! `--preload`, and a Django project over a Unix socket.
//!
//! The venv comes from tests/python/setup-venv.sh (run here once; it is a
//! no-op when target/py-venv is up to date). Run:
//! `cargo test --features python --test python_wsgi`.
#![cfg(feature = "python")]

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

fn py_server(dir: &str, app: &str, extra: &[&str]) -> ServerBuilder {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join(dir).display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg(app)
        .env("VIRTUAL_ENV", &venv().display().to_string())
}

fn apps(extra: &[&str]) -> Server {
    py_server("tests/python/apps", "wsgi_apps:application", extra).start()
}

fn get(s: &Server, path: &str) -> HttpResponse {
    s.request(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn without_date(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let head_end = text.find("\r\n\r\n").unwrap();
    let mut out: Vec<u8> = Vec::new();
    for line in text[..head_end].split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("date:") {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&raw[head_end + 2..]);
    out
}

#[test]
fn echo_app_matches_builtin_echo_byte_for_byte() {
    let builtin = Server::start(&["echo"]);
    let py = py_server("tests/python/apps", "echo_app:application", &[]).start();
    let requests: Vec<Vec<u8>> = vec![
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\nContent-Length: 7\r\nX-Quote: a\"b\\c\td\r\nConnection: close\r\n\r\n\x00\x01\xffabc\n".to_vec(),
        b"GET /latin HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9 \xc3\xa9\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\nConnection: close\r\n\r\n".to_vec(),
        b"PUT /p%2Fq HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
    ];
    for raw in &requests {
        let a = builtin.exchange(raw);
        let b = py.exchange(raw);
        assert!(
            a.starts_with(b"HTTP/1."),
            "{:?}",
            String::from_utf8_lossy(&a)
        );
        assert_eq!(
            String::from_utf8_lossy(&without_date(&a)),
            String::from_utf8_lossy(&without_date(&b)),
            "for request {:?}; log:\n{}",
            String::from_utf8_lossy(raw),
            py.log_text()
        );
        assert_eq!(without_date(&a), without_date(&b));
    }
}

#[test]
fn wsgiref_validator_accepts_environ_input_errors_and_response() {
    let s = py_server("tests/python/apps", "compliance:application", &[]).start();
    let r = get(&s, "/x%20y");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.body, b"ok GET /x y 0\n");
    let r = s.request(
        b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nline\nrest!!",
    );
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.body_str(), "ok POST /p 11\n");
    // Chunked request body: CONTENT_LENGTH is synthesised from the decoded body.
    let r = s.request(
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(r.body_str(), "ok POST /c 5\n", "{}", s.log_text());
    let r = s.request(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert!(
        wait_log(
            &s,
            "compliance app saw 11 body bytes",
            Duration::from_secs(30)
        ),
        "wsgi.errors goes to the error log:\n{}",
        s.log_text()
    );
    assert!(!s.log_text().contains("AssertionError"), "{}", s.log_text());
}

#[test]
fn environ_follows_pep3333_and_gunicorn() {
    // The server binds its own address: without Host, SERVER_NAME/PORT come
    // from `--bind` (a passed `fd://3` would give localhost:80).
    let s = py_server("tests/python/apps", "wsgi_apps:application", &[])
        .bind_port()
        .start();
    let r = s.request(
        b"GET /environ_dump/%41%zz?q=%20 HTTP/1.1\r\nHost: example.com:8080\r\nX-Dup: a\r\nX-Dup: b\r\nX_Spoof: 1\r\nX-Ok_Not: 2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", s.log_text());
    let v = r.body_str();
    for want in [
        r#""PATH_INFO": "/environ_dump/A%zz""#,
        r#""QUERY_STRING": "q=%20""#,
        r#""RAW_URI": "/environ_dump/%41%zz?q=%20""#,
        r#""SCRIPT_NAME": """#,
        r#""SERVER_NAME": "example.com""#,
        r#""SERVER_PORT": "8080""#,
        r#""SERVER_PROTOCOL": "HTTP/1.1""#,
        r#""HTTP_X_DUP": "a,b""#,
        r#""REMOTE_ADDR": "127.0.0.1""#,
        r#""REQUEST_METHOD": "GET""#,
        r#""wsgi.url_scheme": "http""#,
        r#""wsgi.version": [1, 0]"#,
        r#""wsgi.multiprocess": true"#,
        r#""wsgi.multithread": false"#,
        r#""wsgi.run_once": false"#,
    ] {
        assert!(v.contains(want), "{want} missing from {v}");
    }
    assert!(!v.contains("SPOOF") && !v.contains("OK_NOT"), "{v}");
    assert!(!v.contains("CONTENT_LENGTH"), "{v}");
    // No Host: the bind address.
    let r = s.request(b"GET / HTTP/1.0\r\n\r\n");
    let v = r.body_str();
    let Addr::Tcp(a) = &s.addr else {
        unreachable!()
    };
    assert!(
        v.contains(&format!(r#""SERVER_PORT": "{}""#, a.port())),
        "{v}"
    );
    assert!(v.contains(r#""SERVER_NAME": "127.0.0.1""#), "{v}");
    assert!(v.contains(r#""SERVER_PROTOCOL": "HTTP/1.0""#), "{v}");
}

#[test]
fn root_path_splits_script_name_and_path_info() {
    let s = apps(&["--root-path", "/app/"]);
    let r = get(&s, "/app/environ_dump/x");
    assert_eq!(r.status, 200);
    let v = r.body_str();
    assert!(v.contains(r#""SCRIPT_NAME": "/app""#), "{v}");
    assert!(v.contains(r#""PATH_INFO": "/environ_dump/x""#), "{v}");
    assert_eq!(get(&s, "/application").status, 404);
    assert_eq!(get(&s, "/other").status, 404);
}

#[test]
fn input_readline_keeps_newlines_and_iterates() {
    let s = apps(&[]);
    let body = b"line1\nabcdef\nlast\nend";
    let mut req = format!(
        "POST /readline HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let r = s.request(&req);
    assert_eq!(
        r.body_str(),
        r#"["line1\n", "abc", "def\n", "last\n", "end"]"#
    );
    let req = req.replace_path("/readline", "/iterate");
    let r = s.request(&req);
    assert_eq!(r.body_str(), r#"["line1\n", "abcdef\n", "last\n", "end"]"#);
}

trait ReplacePath {
    fn replace_path(&self, from: &str, to: &str) -> Vec<u8>;
}
impl ReplacePath for Vec<u8> {
    fn replace_path(&self, from: &str, to: &str) -> Vec<u8> {
        let i = self
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .unwrap();
        let mut out = self[..i].to_vec();
        out.extend_from_slice(to.as_bytes());
        out.extend_from_slice(&self[i + from.len()..]);
        out
    }
}

#[test]
fn write_callable_file_wrapper_lazy_start_response_and_exc_info() {
    let s = apps(&[]);
    let r = get(&s, "/write");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "written then returned")
    );
    let r = get(&s, "/file_wrapper");
    assert_eq!(r.body, vec![b'x'; 20000]);
    let r = get(&s, "/lazy");
    assert_eq!((r.status, r.body_str().as_str()), (201, "lazy"));
    let r = get(&s, "/exc_info");
    assert_eq!((r.status, r.body_str().as_str()), (503, "replaced"));
}

/// tests/python/apps/wsgi_apps.py's /sendfile: byte i of the file is i % 251.
fn sendfile_bytes(from: usize, to: usize) -> Vec<u8> {
    (from..to).map(|i| (i % 251) as u8).collect()
}

#[test]
fn file_wrapper_over_a_real_file_goes_by_sendfile_and_close_is_called() {
    const LEN: usize = 3 << 20;
    let s = apps(&["--workers", "1"]);
    let closed = |s: &Server| -> usize { get(s, "/closed").body_str().parse().unwrap() };
    let before = closed(&s);
    let mut c = s.connect();
    // From where the app left the file (its buffered reader read ahead, so
    // only tell() knows), to the end; the app's read() raises, so a whole
    // body can only have come by sendfile.
    c.write_all(b"GET /sendfile?skip=1000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", s.log_text());
    let want = (LEN - 1000).to_string();
    assert_eq!(r.header("Content-Length"), Some(want.as_str()));
    assert!(
        r.body == sendfile_bytes(1000, LEN),
        "body differs ({} bytes)",
        r.body.len()
    );
    // The app's Content-Length bounds it; the connection goes on, with the
    // next request pipelined behind the file.
    c.write_all(
        b"GET /sendfile?skip=5&cl=70000 HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /sendfile HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("Content-Length"), Some("70000"));
    assert!(r.body == sendfile_bytes(5, 70005), "capped body differs");
    // HEAD: the length, no body.
    let r = c.read_head_response().unwrap();
    assert_eq!(r.header("Content-Length"), Some(LEN.to_string().as_str()));
    c.write_all(b"GET /closed HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(
        c.read_response().unwrap().body_str(),
        (before + 3).to_string()
    );
    // HTTP/1.0: Content-Length framing, then the server closes.
    let raw = s.exchange(b"GET /sendfile?cl=10 HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("Content-Length: 10\r\nConnection: close\r\n"),
        "{text}"
    );
    assert!(raw.ends_with(&sendfile_bytes(0, 10)), "{text}");
    assert!(!s.log_text().contains("read() called"), "{}", s.log_text());
}

#[test]
fn non_ascii_header_values_survive_both_ways() {
    let s = apps(&[]);
    let raw = s.exchange(
        b"GET /latin1 HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\xff\r\nConnection: close\r\n\r\n",
    );
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"X-Echo: caf\xe9\xff\r\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        has(b"X-Fixed: caf\xe9\r\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(raw.ends_with(b"\r\n\r\ncaf\xe9\xff"));
}

#[test]
fn head_gets_no_body_and_the_connection_stays_usable() {
    let s = apps(&[]);
    let mut c = s.connect();
    for path in ["/head", "/stream"] {
        c.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let r = c.read_head_response().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.raw.ends_with(b"\r\n\r\n"));
    }
    c.write_all(b"GET /head HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.body_str(), "body that HEAD must not get");
}

#[test]
fn exception_gives_500_with_traceback_and_the_worker_lives_on() {
    let s = apps(&["--workers", "1"]);
    let pids = s.worker_pids();
    let r = get(&s, "/boom");
    assert_eq!(r.status, 500);
    assert!(wait_log(
        &s,
        "RuntimeError: boom from the test app",
        Duration::from_secs(30)
    ));
    assert!(
        s.log_text().contains("Traceback (most recent call last)"),
        "{}",
        s.log_text()
    );
    assert_eq!(get(&s, "/write").status, 200);
    assert_eq!(s.worker_pids(), pids);
}

#[test]
fn iterable_close_is_called_on_success_and_on_error() {
    let s = apps(&["--workers", "1"]);
    assert_eq!(get(&s, "/closed").body_str(), "0");
    assert_eq!(get(&s, "/closing").body_str(), "ab");
    assert_eq!(get(&s, "/closed").body_str(), "1");
    // Streamed, then the generator fails: the chunked body is cut short.
    let raw = s.exchange(b"GET /closing_fails HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        !raw.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(get(&s, "/closed").body_str(), "2");
    assert!(
        wait_log(&s, "ValueError: broken generator", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
}

#[test]
fn no_content_length_streams_chunked_on_11_and_until_close_on_10() {
    let s = apps(&[]);
    let r = get(&s, "/stream");
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(r.body_str(), "part0;part1;part2;");
    let raw = s.exchange(b"GET /stream HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert_eq!(body, "part0;part1;part2;");
}

#[test]
fn bad_headers_from_the_app_are_500() {
    let s = apps(&[]);
    for (path, why) in [
        ("/crlf", "CR, LF or NUL"),
        ("/hop", "hop-by-hop header Connection"),
        ("/twice", "second time"),
    ] {
        let raw = s.exchange(
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 500"), "{path}: {text}");
        assert!(!text.contains("evil"), "{text}");
        assert!(
            wait_log(&s, why, Duration::from_secs(30)),
            "{path}: {}",
            s.log_text()
        );
    }
}

#[test]
fn interpreter_uses_the_venv_and_leaves_sigint_alone() {
    let s = apps(&[]);
    let r = get(&s, "/venv");
    let body = r.body_str();
    assert!(
        body.starts_with(&format!("{} ", venv().display())),
        "{body}"
    );
    assert!(body.contains(" 5.2."), "django from the venv: {body}");
    let r = get(&s, "/signals");
    assert!(
        !r.body_str().contains("default_int_handler"),
        "{}",
        r.body_str()
    );
}

#[test]
fn bad_virtualenvs_fail_fast_with_a_clear_error() {
    let d = TempDir::new("venv");
    let mut s = Server::builder()
        .arg("wsgi_apps:application")
        .env("VIRTUAL_ENV", &d.join("missing").display().to_string())
        .no_wait()
        .start();
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(1));
    assert!(
        s.log_text().contains("is not a virtualenv"),
        "{}",
        s.log_text()
    );

    std::fs::create_dir_all(d.join("old/bin")).unwrap();
    std::fs::write(
        d.join("old/pyvenv.cfg"),
        "home = /usr/bin\nversion = 3.99.1\n",
    )
    .unwrap();
    std::fs::write(d.join("old/bin/python"), "").unwrap();
    let mut s = Server::builder()
        .arg("wsgi_apps:application")
        .env("VIRTUAL_ENV", &d.join("old").display().to_string())
        .no_wait()
        .start();
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(1));
    let log = s.log_text();
    assert!(
        log.contains("created with Python 3.99") && log.contains("linked"),
        "{log}"
    );
}

#[test]
fn preload_imports_once_and_workers_reseed_random() {
    let s = apps(&["--preload", "--workers", "2"]);
    let mut first: std::collections::HashMap<String, String> = Default::default();
    for _ in 0..200 {
        let body = get(&s, "/pid").body_str();
        let (pid, value) = body.split_once(' ').unwrap();
        first
            .entry(pid.to_string())
            .or_insert_with(|| value.to_string());
        if first.len() == 2 {
            break;
        }
    }
    assert_eq!(first.len(), 2, "both workers answered: {first:?}");
    let values: Vec<&String> = first.values().collect();
    assert_ne!(values[0], values[1], "random was not reseeded after fork");
    assert_eq!(get(&s, "/boom").status, 500);
    assert_eq!(get(&s, "/write").status, 200);
}

// ----- Django

fn django() -> Server {
    py_server(
        "tests/python/djangoapp",
        "djangoproject.wsgi",
        &["--workers", "2", "--timeout", "120"],
    )
    .unix()
    .start()
}

#[test]
fn django_form_post_with_csrf_over_unix_socket() {
    let s = django();
    let r = s.request(b"GET /form/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "{}", s.log_text());
    let cookie = r
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("csrftoken="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("csrftoken cookie");
    let body = r.body_str();
    let token = body
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("hidden csrf token")
        .to_string();
    let form = format!("csrfmiddlewaretoken={token}&name=ferricorn");
    let post = |cookie: &str, form: &str| {
        s.request(
            format!(
                "POST /form/ HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        )
    };
    let r = post(&cookie, &form);
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello ferricorn"),
        "{}",
        s.log_text()
    );
    let r = post(&cookie, "name=nope");
    assert_eq!(r.status, 403);

    let r = s.request(b"GET /?a=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let v = r.body_str();
    assert!(v.contains(r#""absolute": "http://localhost/?a=1""#), "{v}");
    assert!(v.contains(r#""remote_addr": """#), "{v}");

    let r = s.request(b"GET /boom/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 500);
    let r = s.request(b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "DisallowedHost");
}

#[test]
fn django_100_mib_upload_is_spooled_to_disk() {
    let s = django();
    let size = 100 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let boundary = "ferricornBOUNDARY1234";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nbig one\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut c = s.connect();
    c.set_timeout(Some(Duration::from_secs(120)));
    c.write_all(
        format!(
            "POST /upload/ HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.write_all(&body).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", s.log_text());
    let v = r.body_str();
    assert!(v.contains(&format!(r#""size": {size}"#)), "{v}");
    assert!(v.contains(&format!(r#""crc32": {}"#, crc32(&data))), "{v}");
    assert!(v.contains(r#""on_disk": true"#), "{v}");
    assert!(v.contains(r#""field": "big one""#), "{v}");
}
