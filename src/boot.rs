//! Booting the master: everything done once, before there is a worker to
//! supervise: resolve `--user`/`--group`, bind (or adopt inherited and
//! systemd sockets), set socket permissions, write the pid file, hand the
//! log files to `--user`, then drop privileges. The arbiter serves what
//! [`prepare`] returns and never binds at start-up itself.

use crate::config::Config;
use crate::listener::{self, BindOptions, Listener};
use crate::pidfile::PidFile;
use crate::sys;

/// What booting produced, for the arbiter to serve.
pub struct Booted {
    pub listeners: Vec<Listener>,
    /// The listeners came from systemd: never unlink their paths.
    pub systemd_sockets: bool,
    pub pidfile: Option<PidFile>,
}

/// Bind, write the pid file and drop privileges, in that order: everything
/// that needs root (low ports, socket ownership, the pid file in /run) is
/// done before running as `--user`.
pub fn prepare(cfg: &Config) -> Result<Booted, String> {
    // Check names before anything is created: a bad --user must not
    // leave a socket file behind.
    let identity = sys::resolve_identity(cfg.user.as_deref(), cfg.group.as_deref())?;
    let socket_gid = match &cfg.socket_group {
        Some(g) => Some(sys::resolve_group(g)?),
        None => None,
    };
    let (mut inherited, systemd) =
        listener::inherited_sockets().map_err(|e| format!("cannot use inherited sockets: {e}"))?;
    let mut listeners = if systemd
        && !cfg
            .args
            .iter()
            .any(|a| a.starts_with("-b") || a.starts_with("--bind"))
    {
        // Socket activation with no explicit --bind: serve what systemd gave.
        std::mem::take(&mut inherited)
            .into_iter()
            .map(|s| Listener {
                name: listener::describe(&s),
                socket: s,
                unix_path: None,
                external: true,
            })
            .collect()
    } else {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            cfg.umask as nix::libc::mode_t,
        ));
        let res = listener::bind_all(
            &cfg.bind,
            &BindOptions {
                backlog: cfg.backlog,
            },
            &mut inherited,
        );
        nix::sys::stat::umask(old);
        res.map_err(|e| e.to_string())?
    };
    if systemd {
        for l in listeners.iter_mut() {
            l.external = true;
        }
    }
    // Inherited sockets no --bind asked for are closed: the operator
    // dropped that address from the configuration.
    drop(inherited);
    listener::set_unix_permissions(&listeners, cfg.socket_mode, socket_gid)
        .map_err(|e| e.to_string())?;
    let pidfile = match &cfg.pidfile {
        Some(path) => Some(PidFile::create(path, std::process::id()).map_err(|e| e.to_string())?),
        None => None,
    };
    // Log files are opened by the workers, after they dropped to --user:
    // create them now and hand them to that user (gunicorn chowns its
    // logs the same way), so a root-owned log directory still works.
    if let Some(id) = &identity {
        let logs = [Some(cfg.errorlog.as_str()), cfg.accesslog.as_deref()];
        for path in logs.into_iter().flatten().filter(|p| *p != "-") {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {path}: {e}"))?;
            nix::unistd::chown(path, Some(id.uid), Some(id.gid))
                .map_err(|e| format!("chown({path}) for --user failed: {e}"))?;
        }
    }
    // Everything that needs root is done: run as --user/--group from here on.
    if let Some(id) = &identity {
        sys::drop_privileges(id).map_err(|e| e.to_string())?;
        log::info!("Running as uid {} gid {}", id.uid, id.gid);
    }
    Ok(Booted {
        listeners,
        systemd_sockets: systemd,
        pidfile,
    })
}
