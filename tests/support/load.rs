//! A bounded load generator: keep-alive clients in threads, as wrk does, that
//! count what went wrong.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Addr;
use super::client::read_response;

/// What a [`Load`] saw. A request counts as `failed` only if it was written
/// completely and no complete response came back; `write_errors` and
/// `connect_errors` are counted apart (a request that never left).
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    pub bad_status: u64,
    pub write_errors: u64,
    pub connect_errors: u64,
    /// Connections reopened after a `Connection: close` response.
    pub reconnects: u64,
    /// The first few failure descriptions.
    pub errors: Vec<String>,
}

impl LoadStats {
    pub fn merge(&mut self, o: LoadStats) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.bad_status += o.bad_status;
        self.write_errors += o.write_errors;
        self.connect_errors += o.connect_errors;
        self.reconnects += o.reconnects;
        for e in o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e);
            }
        }
    }
    /// No request of any kind went wrong.
    pub fn clean(&self) -> bool {
        self.failed == 0
            && self.bad_status == 0
            && self.write_errors == 0
            && self.connect_errors == 0
    }
}

/// Keep-alive clients sending `GET target` in a loop, as wrk does: a client
/// that gets `Connection: close` (or finds its idle connection closed before
/// writing) reconnects. Bounded: every thread stops after `max` at the latest.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Successful responses so far, across threads (live, unlike `LoadStats`).
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<LoadStats>>,
    pub started: Instant,
}

impl Load {
    /// Bounded at 120 s: a test on a loaded machine may need its load for
    /// a long while; `stop` ends it as soon as the test is done.
    pub fn start(addr: &Addr, clients: usize, target: &str) -> Load {
        Load::start_for(addr, clients, target, Duration::from_secs(120))
    }

    pub fn start_for(addr: &Addr, clients: usize, target: &str, max: Duration) -> Load {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let ok = ok.clone();
                let addr = addr.clone();
                let req = format!("GET {target} HTTP/1.1\r\nHost: load\r\n\r\n").into_bytes();
                std::thread::spawn(move || load_client(&addr, &req, &stop, &ok, max))
            })
            .collect();
        Load {
            stop,
            ok,
            threads,
            started: Instant::now(),
        }
    }

    /// Successful responses so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Wait until `n` more requests have succeeded than when called (the
    /// load is really flowing, e.g. before and after a signal): instead of
    /// sleeping and hoping traffic ran meanwhile.
    #[track_caller]
    pub fn wait_more(&self, n: u64) {
        let want = self.ok() + n;
        assert!(
            super::wait_until(Duration::from_secs(60), || self.ok() >= want),
            "load: {} successes, waited for {want}",
            self.ok()
        );
    }

    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadStats::default();
        for t in self.threads {
            total.merge(t.join().expect("load thread panicked"));
        }
        total
    }
}

/// A load client's connection: write half, buffered read half.
type LoadConn = (Box<dyn Write>, io::BufReader<Box<dyn Read>>);

fn load_client(
    addr: &Addr,
    req: &[u8],
    stop: &std::sync::atomic::AtomicBool,
    ok: &std::sync::atomic::AtomicU64,
    max: Duration,
) -> LoadStats {
    let mut st = LoadStats::default();
    let deadline = Instant::now() + max;
    let mut conn: Option<LoadConn> = None;
    let note = |st: &mut LoadStats, e: String| {
        if st.errors.len() < 10 {
            st.errors.push(e);
        }
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            let pair: io::Result<(Box<dyn Write>, Box<dyn Read>)> = match addr {
                Addr::Tcp(a) => {
                    TcpStream::connect_timeout(a, Duration::from_secs(5)).and_then(|s| {
                        s.set_read_timeout(Some(Duration::from_secs(15)))?;
                        s.set_write_timeout(Some(Duration::from_secs(15)))?;
                        s.set_nodelay(true)?;
                        let r = s.try_clone()?;
                        Ok((Box::new(s) as Box<dyn Write>, Box::new(r) as Box<dyn Read>))
                    })
                }
                Addr::Unix(p) => UnixStream::connect(p).and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(15)))?;
                    let r = s.try_clone()?;
                    Ok((Box::new(s) as Box<dyn Write>, Box::new(r) as Box<dyn Read>))
                }),
            };
            match pair {
                Ok((w, r)) => conn = Some((w, io::BufReader::new(r))),
                Err(e) => {
                    st.connect_errors += 1;
                    note(&mut st, format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let (w, r) = conn.as_mut().unwrap();
        if let Err(e) = w.write_all(req) {
            st.write_errors += 1;
            note(&mut st, format!("write: {e}"));
            conn = None;
            continue;
        }
        match read_response(r, false) {
            Ok(resp) => {
                if resp.status == 200 {
                    st.ok += 1;
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    st.bad_status += 1;
                    note(&mut st, format!("status {}", resp.status_line));
                }
                if resp
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    st.reconnects += 1;
                    conn = None;
                }
            }
            Err(e) => {
                st.failed += 1;
                note(
                    &mut st,
                    format!("request written, no complete response: {e}"),
                );
                conn = None;
            }
        }
    }
    st
}
