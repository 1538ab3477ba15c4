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
//!
//! Hooks compose: `(A, B)` runs `A`'s hook then `B`'s, and
//! [`crate::Server::hooks`] adds to what is already there. An embedded
//! runtime's fork protocol (the Python interpreter's) is not a user hook: it
//! goes in [`crate::Server::fork_bracket`], and [`Bracketed`] runs it closest
//! to the fork on both sides, so user hooks can neither drop it nor run
//! inside it.

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

/// Both, in order: every hook of `A`, then the same hook of `B`.
impl<A: Hooks, B: Hooks> Hooks for (A, B) {
    fn on_starting(&self, server: &ServerInfo) {
        self.0.on_starting(server);
        self.1.on_starting(server);
    }
    fn when_ready(&self, server: &ServerInfo) {
        self.0.when_ready(server);
        self.1.when_ready(server);
    }
    fn on_reload(&self, server: &ServerInfo) {
        self.0.on_reload(server);
        self.1.on_reload(server);
    }
    fn pre_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.0.pre_fork(server, worker);
        self.1.pre_fork(server, worker);
    }
    fn post_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.0.post_fork(server, worker);
        self.1.post_fork(server, worker);
    }
    fn post_fork_parent(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.0.post_fork_parent(server, worker);
        self.1.post_fork_parent(server, worker);
    }
    fn post_worker_init(&self, worker: &WorkerInfo) {
        self.0.post_worker_init(worker);
        self.1.post_worker_init(worker);
    }
    fn worker_int(&self, worker: &WorkerInfo) {
        self.0.worker_int(worker);
        self.1.worker_int(worker);
    }
    fn worker_abort(&self, worker: &WorkerInfo) {
        self.0.worker_abort(worker);
        self.1.worker_abort(worker);
    }
    fn pre_request(&self, req: &Request) {
        self.0.pre_request(req);
        self.1.pre_request(req);
    }
    fn post_request(&self, req: &Request, status: u16) {
        self.0.post_request(req, status);
        self.1.post_request(req, status);
    }
    fn child_exit(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.0.child_exit(server, worker);
        self.1.child_exit(server, worker);
    }
    fn worker_exit(&self, worker: &WorkerInfo) {
        self.0.worker_exit(worker);
        self.1.worker_exit(worker);
    }
    fn nworkers_changed(&self, server: &ServerInfo, new_value: usize, old_value: usize) {
        self.0.nworkers_changed(server, new_value, old_value);
        self.1.nworkers_changed(server, new_value, old_value);
    }
    fn pre_exec(&self, server: &ServerInfo) {
        self.0.pre_exec(server);
        self.1.pre_exec(server);
    }
    fn on_exit(&self, server: &ServerInfo) {
        self.0.on_exit(server);
        self.1.on_exit(server);
    }
}

impl<H: Hooks + ?Sized> Hooks for Box<H> {
    fn on_starting(&self, server: &ServerInfo) {
        (**self).on_starting(server)
    }
    fn when_ready(&self, server: &ServerInfo) {
        (**self).when_ready(server)
    }
    fn on_reload(&self, server: &ServerInfo) {
        (**self).on_reload(server)
    }
    fn pre_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        (**self).pre_fork(server, worker)
    }
    fn post_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        (**self).post_fork(server, worker)
    }
    fn post_fork_parent(&self, server: &ServerInfo, worker: &WorkerInfo) {
        (**self).post_fork_parent(server, worker)
    }
    fn post_worker_init(&self, worker: &WorkerInfo) {
        (**self).post_worker_init(worker)
    }
    fn worker_int(&self, worker: &WorkerInfo) {
        (**self).worker_int(worker)
    }
    fn worker_abort(&self, worker: &WorkerInfo) {
        (**self).worker_abort(worker)
    }
    fn pre_request(&self, req: &Request) {
        (**self).pre_request(req)
    }
    fn post_request(&self, req: &Request, status: u16) {
        (**self).post_request(req, status)
    }
    fn child_exit(&self, server: &ServerInfo, worker: &WorkerInfo) {
        (**self).child_exit(server, worker)
    }
    fn worker_exit(&self, worker: &WorkerInfo) {
        (**self).worker_exit(worker)
    }
    fn nworkers_changed(&self, server: &ServerInfo, new_value: usize, old_value: usize) {
        (**self).nworkers_changed(server, new_value, old_value)
    }
    fn pre_exec(&self, server: &ServerInfo) {
        (**self).pre_exec(server)
    }
    fn on_exit(&self, server: &ServerInfo) {
        (**self).on_exit(server)
    }
}

/// User hooks around a runtime's fork protocol (`bracket`): the bracket's
/// `pre_fork` runs after the user's, its `post_fork`/`post_fork_parent`
/// before the user's, so it is the last thing before fork(2) and the first
/// after it on both sides; the bracket has no other hooks.
pub struct Bracketed<B, U> {
    pub bracket: B,
    pub user: U,
}

impl<B: Hooks, U: Hooks> Hooks for Bracketed<B, U> {
    fn on_starting(&self, server: &ServerInfo) {
        self.user.on_starting(server)
    }
    fn when_ready(&self, server: &ServerInfo) {
        self.user.when_ready(server)
    }
    fn on_reload(&self, server: &ServerInfo) {
        self.user.on_reload(server)
    }
    fn pre_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.user.pre_fork(server, worker);
        self.bracket.pre_fork(server, worker);
    }
    fn post_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.bracket.post_fork(server, worker);
        self.user.post_fork(server, worker);
    }
    fn post_fork_parent(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.bracket.post_fork_parent(server, worker);
        self.user.post_fork_parent(server, worker);
    }
    fn post_worker_init(&self, worker: &WorkerInfo) {
        self.user.post_worker_init(worker)
    }
    fn worker_int(&self, worker: &WorkerInfo) {
        self.user.worker_int(worker)
    }
    fn worker_abort(&self, worker: &WorkerInfo) {
        self.user.worker_abort(worker)
    }
    fn pre_request(&self, req: &Request) {
        self.user.pre_request(req)
    }
    fn post_request(&self, req: &Request, status: u16) {
        self.user.post_request(req, status)
    }
    fn child_exit(&self, server: &ServerInfo, worker: &WorkerInfo) {
        self.user.child_exit(server, worker)
    }
    fn worker_exit(&self, worker: &WorkerInfo) {
        self.user.worker_exit(worker)
    }
    fn nworkers_changed(&self, server: &ServerInfo, new_value: usize, old_value: usize) {
        self.user.nworkers_changed(server, new_value, old_value)
    }
    fn pre_exec(&self, server: &ServerInfo) {
        self.user.pre_exec(server)
    }
    fn on_exit(&self, server: &ServerInfo) {
        self.user.on_exit(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records `tag:hook` for the fork hooks and on_starting.
    struct Rec(&'static str, Rc<RefCell<Vec<String>>>);

    impl Hooks for Rec {
        fn on_starting(&self, _: &ServerInfo) {
            self.1.borrow_mut().push(format!("{}:on_starting", self.0));
        }
        fn pre_fork(&self, _: &ServerInfo, _: &WorkerInfo) {
            self.1.borrow_mut().push(format!("{}:pre_fork", self.0));
        }
        fn post_fork(&self, _: &ServerInfo, _: &WorkerInfo) {
            self.1.borrow_mut().push(format!("{}:post_fork", self.0));
        }
        fn post_fork_parent(&self, _: &ServerInfo, _: &WorkerInfo) {
            self.1.borrow_mut().push(format!("{}:parent", self.0));
        }
    }

    fn fork_sequence(h: &dyn Hooks) {
        let s = ServerInfo {
            pid: 1,
            workers: 1,
            binds: vec![],
        };
        let w = WorkerInfo { pid: 0, age: 1 };
        h.on_starting(&s);
        h.pre_fork(&s, &w);
        h.post_fork_parent(&s, &w);
        h.post_fork(&s, &w);
    }

    #[test]
    fn tuples_run_both_in_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let h = (Rec("a", log.clone()), Rec("b", log.clone()));
        fork_sequence(&h);
        assert_eq!(
            *log.borrow(),
            [
                "a:on_starting",
                "b:on_starting",
                "a:pre_fork",
                "b:pre_fork",
                "a:parent",
                "b:parent",
                "a:post_fork",
                "b:post_fork"
            ]
        );
    }

    #[test]
    fn the_bracket_is_closest_to_fork_and_has_no_other_hooks() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let user: Box<dyn Hooks> = Box::new((Rec("u1", log.clone()), Rec("u2", log.clone())));
        let h = Bracketed {
            bracket: Rec("fork", log.clone()),
            user,
        };
        fork_sequence(&h);
        assert_eq!(
            *log.borrow(),
            [
                "u1:on_starting",
                "u2:on_starting",
                "u1:pre_fork",
                "u2:pre_fork",
                "fork:pre_fork",
                "fork:parent",
                "u1:parent",
                "u2:parent",
                "fork:post_fork",
                "u1:post_fork",
                "u2:post_fork"
            ]
        );
    }
}
