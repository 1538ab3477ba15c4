//! Server hooks, with gunicorn's names and call sites.
//!
//! Implement [`Hooks`] and override what you need; every method does nothing
//! by default. Master-side hooks run in the master's single thread (keep them
//! short: the master is not watching workers while a hook runs); worker-side
//! hooks run in the worker process.
//!
//! | hook | runs in | when |
//! |---|---|---|
//! | `on_starting` | master | before the sockets are bound |
//! | `when_ready` | master | once every worker accepts, the first time |
//! | `on_reload` | master | on HUP, after the config was re-read |
//! | `pre_fork` | master | just before a worker is forked |
//! | `post_fork` | worker | just after fork, before the app is built |
//! | `post_fork_parent` | master | just after fork, in the master |
//! | `post_worker_init` | worker | after the app is built, before accepting |
//! | `worker_int` | worker | on INT or QUIT |
//! | `pre_request` | worker | before the app is called |
//! | `post_request` | worker | after the response is queued |
//! | `worker_exit` | worker | as the worker exits |
//! | `worker_abort` | master | after a worker was aborted for `--timeout` (a worker stuck in the app cannot run code itself) |
//! | `child_exit` | master | after a worker was reaped |
//! | `nworkers_changed` | master | after TTIN/TTOU/HUP changed the worker count |
//! | `pre_exec` | master | in the new master's child, before exec on USR2 |
//! | `on_exit` | master | just before the master exits |

use crate::app::Request;

/// What hooks learn about a worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub pid: u32,
    /// n-th worker forked by this master.
    pub age: u64,
}

/// What hooks learn about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub pid: u32,
    pub workers: usize,
    pub binds: Vec<String>,
}

#[allow(unused_variables)]
pub trait Hooks {
    fn on_starting(&self, server: &ServerInfo) {}
    fn when_ready(&self, server: &ServerInfo) {}
    fn on_reload(&self, server: &ServerInfo) {}
    fn pre_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {}
    fn post_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {}
    /// In the master, right after a worker was forked (pairs with `pre_fork`,
    /// e.g. to release locks an embedded interpreter took for the fork).
    fn post_fork_parent(&self, server: &ServerInfo, worker: &WorkerInfo) {}
    fn post_worker_init(&self, worker: &WorkerInfo) {}
    fn worker_int(&self, worker: &WorkerInfo) {}
    fn worker_abort(&self, worker: &WorkerInfo) {}
    fn pre_request(&self, req: &Request) {}
    fn post_request(&self, req: &Request, status: u16) {}
    fn child_exit(&self, server: &ServerInfo, worker: &WorkerInfo) {}
    fn worker_exit(&self, worker: &WorkerInfo) {}
    fn nworkers_changed(&self, server: &ServerInfo, new_value: usize, old_value: usize) {}
    fn pre_exec(&self, server: &ServerInfo) {}
    fn on_exit(&self, server: &ServerInfo) {}
}

/// The hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
