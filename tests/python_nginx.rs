//! A real Django project (Django from PyPI, tests/python/djangoapp) served by
//! ferricorn over a Unix socket behind a real nginx running the shipped
//! sample configs (conf/nginx/ferricorn-unix.conf, conf/nginx/uploads.conf).
//!
//! Asserts, through nginx: a Django view (200, rendered by Django, nginx's
//! `Server`); the form round trip with CSRF (GET form -> cookie + hidden
//! token -> POST succeeds; POST without the token -> 403 from Django's
//! middleware); `REMOTE_ADDR` / `request.scheme` as nginx saw them
//! (X-Forwarded-For / -Proto believed from the Unix peer, a client's spoofed
//! ones not); a static file collected by `manage.py collectstatic` is served
//! by nginx and never reaches ferricorn (its access log); a 100 MiB
//! multipart upload, buffered and streamed by nginx, arrives intact (size +
//! CRC-32 computed by the Django view).
//!
//! The venv comes from tests/python/setup-venv.sh, as for tests/python_wsgi.rs.
//! Run: `cargo test --features python --test python_nginx`.
#![cfg(feature = "python")]

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// ferricorn serving the Django project on a temporary Unix socket, with an
/// access log in `logs`.
fn django(logs: &TempDir) -> Server {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/djangoapp").display().to_string(),
            "--workers".into(),
            "2".into(),
            // Processing a 100 MiB upload in a debug build takes a while;
            // proxy_read_timeout in uploads.conf (300 s) stays above it.
            "--timeout".into(),
            "120".into(),
            "--access-logfile".into(),
            logs.join("access.log").display().to_string(),
        ])
        .arg("djangoproject.wsgi:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .unix()
        .start()
}

fn socket(server: &Server) -> String {
    let Addr::Unix(sock) = &server.addr else {
        unreachable!()
    };
    sock.display().to_string()
}

/// nginx with `fragment` unmodified except for its placeholders:
/// `{{SERVER_NAME}} _` (any Host), `{{SOCKET}}` ferricorn's socket,
/// `{{LISTEN}}` a free port, `{{STATIC_ROOT}}` nginx's own temp dir.
fn nginx(fragment: &str, server: &Server) -> Nginx {
    Nginx::start_edited(fragment, &[("SOCKET", socket(server))], |t| {
        t.replace("{{SERVER_NAME}}", "_")
    })
}

/// `manage.py collectstatic` into `root` (nginx's `{{STATIC_ROOT}}`).
fn collectstatic(root: &Path) {
    let out = Command::new(venv().join("bin/python"))
        .arg("manage.py")
        .args(["collectstatic", "--noinput"])
        .current_dir(repo().join("tests/python/djangoapp"))
        .env("FERRICORN_STATIC_ROOT", root)
        .output()
        .expect("run manage.py collectstatic");
    assert!(
        out.status.success(),
        "collectstatic failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A string value from the Django index view's flat JSON.
fn json_str(body: &str, key: &str) -> Option<String> {
    let k = format!("\"{key}\": \"");
    let i = body.find(&k)? + k.len();
    Some(body[i..i + body[i..].find('"')?].to_string())
}

fn set_cookie(r: &HttpResponse, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with(&format!("{name}=")))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
}

#[test]
fn django_view_csrf_form_forwarded_client_and_static_files_behind_nginx() {
    let logs = TempDir::new("py-nginx-log");
    let server = django(&logs);
    let nginx = nginx("ferricorn-unix.conf", &server);
    collectstatic(&nginx.static_root);
    let fail = || format!("{}\n--- ferricorn:\n{}", nginx.logs(), server.log_text());

    // A Django view, through nginx, with the client nginx saw.
    let r = nginx.get("/?a=1");
    assert_eq!(r.status, 200, "{}", fail());
    assert!(
        r.header("Server").is_some_and(|v| v.starts_with("nginx")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v = r.body_str();
    assert_eq!(
        json_str(&v, "remote_addr").as_deref(),
        Some("127.0.0.1"),
        "{v}"
    );
    assert_eq!(json_str(&v, "scheme").as_deref(), Some("http"), "{v}");
    assert!(v.contains(r#""secure": false"#), "{v}");
    assert_eq!(json_str(&v, "host").as_deref(), Some("localhost"), "{v}");
    assert_eq!(
        json_str(&v, "absolute").as_deref(),
        Some("http://localhost/?a=1"),
        "{v}"
    );

    // A client that is not a trusted proxy (127.0.0.2) claims another
    // address and https: nginx appends what it saw and replaces the scheme
    // header; Django sees 127.0.0.2 over http.
    let from: IpAddr = "127.0.0.2".parse().unwrap();
    let mut c = connect_from(from, &nginx.addr()).expect("connect from 127.0.0.2");
    c.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\n\
          X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", fail());
    let v = r.body_str();
    assert_eq!(
        json_str(&v, "remote_addr").as_deref(),
        Some("127.0.0.2"),
        "{v}"
    );
    assert_eq!(json_str(&v, "scheme").as_deref(), Some("http"), "{v}");
    assert!(v.contains(r#""secure": false"#), "{v}");

    // A template page linking the collected static file; nginx serves it.
    let r = nginx.get("/page/");
    assert_eq!(r.status, 200, "{}", fail());
    let page = r.body_str();
    assert!(page.contains("rendered by Django for 127.0.0.1"), "{page}");
    let href = page
        .split("href=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("stylesheet link")
        .to_string();
    assert_eq!(href, "/static/ferricorn/app.css");
    let want =
        std::fs::read(repo().join("tests/python/djangoapp/static/ferricorn/app.css")).unwrap();
    assert_eq!(
        std::fs::read(nginx.static_root.join("ferricorn/app.css")).unwrap(),
        want,
        "collectstatic copied the file"
    );
    let r = nginx.get(&href);
    assert_eq!(r.status, 200, "{}", fail());
    assert_eq!(r.body, want);
    assert!(r.header("Expires").is_some(), "expires 1h: {:?}", r.headers);
    assert_eq!(nginx.get("/static/ferricorn/missing.css").status, 404);

    // The form round trip with CSRF.
    let r = nginx.get("/form/");
    assert_eq!(r.status, 200, "{}", fail());
    let cookie = set_cookie(&r, "csrftoken").expect("csrftoken cookie");
    let body = r.body_str();
    let token = body
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("hidden csrf token")
        .to_string();
    let post = |cookie: Option<&str>, form: &str| {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        nginx.request(
            format!(
                "POST /form/ HTTP/1.1\r\nHost: localhost\r\n{cookie}\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        )
    };
    let r = post(
        Some(&cookie),
        &format!("csrfmiddlewaretoken={token}&name=ferricorn+behind+nginx"),
    );
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello ferricorn behind nginx"),
        "{}",
        fail()
    );
    // Without the token (cookie alone, or nothing): Django's 403.
    let r = post(Some(&cookie), "name=nope");
    assert_eq!(r.status, 403, "{}", r.body_str());
    assert!(r.body_str().contains("CSRF"), "{}", r.body_str());
    let r = post(None, &format!("csrfmiddlewaretoken={token}&name=nope"));
    assert_eq!(r.status, 403, "{}", r.body_str());

    // ferricorn's access log: the dynamic requests, from the forwarded
    // client; not one /static request.
    let log = logs.join("access.log");
    assert!(
        wait_until(Duration::from_secs(30), || read_lines(&log)
            .iter()
            .filter(|l| l.contains("POST /form/ "))
            .count()
            == 3),
        "{:?}",
        read_lines(&log)
    );
    let lines = read_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.1 ") && l.contains("GET /page/ HTTP/1.1")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.2 ") && l.contains("GET / HTTP/1.1")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("/static")),
        "ferricorn saw a /static request: {lines:?}"
    );
    // No exception escaped a view (the readiness probe's Host: t is
    // Django's DisallowedHost 400, logged by Django, not an error here).
    assert!(
        !server.log_text().contains("Error handling request"),
        "{}",
        server.log_text()
    );
}

/// POST `data` as a multipart file upload to `path` through nginx; the
/// Django view's JSON answer.
fn upload(nginx: &Nginx, path: &str, data: &[u8]) -> HttpResponse {
    let boundary = "ferricornNGINX0123456789";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nvia nginx\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut c = Client::connect(&nginx.addr()).expect("connect to nginx");
    c.set_timeout(Some(Duration::from_secs(120)));
    c.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{head}",
            head.len() + data.len() + tail.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.write_all(data).unwrap();
    c.write_all(tail.as_bytes()).unwrap();
    c.read_response()
        .unwrap_or_else(|e| panic!("no response from nginx: {e}\n{}", nginx.logs()))
}

#[test]
fn django_100_mib_upload_behind_nginx_buffered_and_streamed() {
    let logs = TempDir::new("py-nginx-upload-log");
    let server = django(&logs);
    // The sample conf/nginx/ferricorn-unix.conf caps bodies at 10m (and the
    // test below checks that), so the upload goes through the shipped
    // conf/nginx/uploads.conf, unmodified: client_max_body_size 1g, with
    // /upload/ (nginx buffers the whole body first) and /upload/stream/
    // (proxy_request_buffering off). Django routes both to the same view.
    let nginx = nginx("uploads.conf", &server);
    let size = 100 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let crc = crc32(&data);
    for path in ["/upload/", "/upload/stream/"] {
        let t = Instant::now();
        let r = upload(&nginx, path, &data);
        assert_eq!(
            r.status,
            200,
            "{path}: {}\n{}\n--- ferricorn:\n{}",
            r.body_str(),
            nginx.logs(),
            server.log_text()
        );
        let v = r.body_str();
        assert!(v.contains(&format!(r#""size": {size}"#)), "{path}: {v}");
        assert!(v.contains(&format!(r#""crc32": {crc}"#)), "{path}: {v}");
        assert!(v.contains(r#""on_disk": true"#), "{path}: {v}");
        assert!(v.contains(r#""field": "via nginx""#), "{path}: {v}");
        eprintln!("{path}: 100 MiB upload in {:?}", t.elapsed());
    }
    // Outside the upload locations the sample's small limit applies, and
    // nginx refuses before ferricorn sees anything.
    let mut c = Client::connect(&nginx.addr()).unwrap();
    c.write_all(
        b"POST /form/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 413);
    let log = logs.join("access.log");
    assert!(
        wait_until(Duration::from_secs(30), || read_lines(&log)
            .iter()
            .filter(|l| l.contains("POST /upload/"))
            .count()
            == 2),
        "{:?}",
        read_lines(&log)
    );
    assert!(
        !read_lines(&log).iter().any(|l| l.contains("POST /form/")),
        "{:?}",
        read_lines(&log)
    );
}

#[test]
fn sample_config_refuses_bodies_over_10m_before_django() {
    let logs = TempDir::new("py-nginx-413-log");
    let server = django(&logs);
    let nginx = nginx("ferricorn-unix.conf", &server);
    let mut c = Client::connect(&nginx.addr()).unwrap();
    c.write_all(
        b"POST /upload/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000000\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 413, "{}", nginx.logs());
    assert!(r.body_str().contains("nginx"), "{}", r.body_str());
    assert_eq!(nginx.get("/hello/").body_str(), "Hello, World!");
    let log = logs.join("access.log");
    assert!(wait_until(Duration::from_secs(30), || read_lines(&log)
        .iter()
        .any(|l| l.contains("GET /hello/ "))));
    assert!(
        !read_lines(&log).iter().any(|l| l.contains("/upload/")),
        "{:?}",
        read_lines(&log)
    );
}
