//! Receivers for the runtime-settings tests (gunicorn_runtime_*.rs): a
//! StatsD sink collecting every metric line of every UDP datagram.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait_until;

/// Every datagram a UDP socket receives, collected by a thread until drop.
pub struct StatsdSink {
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl StatsdSink {
    pub fn new() -> StatsdSink {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                // A datagram may carry several metrics, one per line.
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    l.lock().unwrap().extend(text.split('\n').map(String::from));
                }
            }
        });
        StatsdSink { port, lines, stop }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn wait_for(&self, line: &str) {
        assert!(
            wait_until(Duration::from_secs(20), || self
                .lines()
                .iter()
                .any(|l| l == line)),
            "no statsd line {line:?}; got {:#?}",
            self.lines()
        );
    }
}

impl Drop for StatsdSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
