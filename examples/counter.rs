//! A small Rust application served through ferricorn's library API.
//!
//! Each worker builds its own `Counter` after fork, so the count is per
//! worker (like per-process state in any pre-fork server); hooks log the
//! lifecycle with gunicorn's names.
//!
//!     cargo run --release --example counter -- 127.0.0.1:8000 2
//!     curl -s localhost:8000/ ; curl -s -d 'hello' localhost:8000/echo

use ferricorn::{App, Hooks, Request, Response, Server, ServerInfo, WorkerContext, WorkerInfo};
use std::io::Read;

struct Counter {
    pid: u32,
    hits: u64,
}

impl App for Counter {
    fn call(&mut self, req: &mut Request) -> Response {
        self.hits += 1;
        match (req.method(), req.path()) {
            ("GET", "/") => Response::ok(
                "text/plain",
                format!("worker {} has answered {} requests\n", self.pid, self.hits),
            ),
            ("POST", "/echo") => {
                let mut body = Vec::new();
                if req.body().read_to_end(&mut body).is_err() {
                    return Response::text(400, "unreadable body\n");
                }
                Response::ok("application/octet-stream", body)
            }
            ("GET", "/panic") => panic!("the worker survives this: the client gets a 500"),
            _ => Response::text(404, "Not Found\n"),
        }
    }
}

struct LogHooks;

impl Hooks for LogHooks {
    fn when_ready(&self, server: &ServerInfo) {
        log::info!(
            "counter ready on {:?} with {} workers",
            server.binds,
            server.workers
        );
    }
    fn post_worker_init(&self, worker: &WorkerInfo) {
        log::info!("worker {} (age {}) initialised", worker.pid, worker.age);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8000".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    ferricorn::logging::init_error_log("info", "-").expect("stderr log");
    let code = Server::new(|ctx: &WorkerContext| Counter {
        pid: ctx.pid,
        hits: 0,
    })
    .bind(&bind)
    .workers(workers)
    .hooks(LogHooks)
    .run();
    std::process::exit(code);
}
