//! The operating-system edge: every call that needs `unsafe` lives here, and
//! nowhere else in the crate (the crate root denies `unsafe_code`).
//!
//! What is here and why it needs `unsafe`:
//! - [`fork`]: the child of a multi-threaded parent may only make
//!   async-signal-safe calls; the master never starts a thread, so it is sound.
//! - [`SignalPipe`]: a signal handler that only stores one byte into a
//!   self-pipe (djb's self-pipe trick, as unicorn and nginx do).
//! - [`Scoreboard`]: a `MAP_SHARED` anonymous mapping made by the master before
//!   fork, in which each worker publishes its heartbeat and what it is doing.
//! - [`adopt_listener`]: turning an inherited descriptor number (`fd://N`,
//!   `LISTEN_FDS`, `FERRICORN_FD`) into an owned socket.
//! - [`dup_file`]: a descriptor of our own for a file that Python code owns
//!   (`wsgi.file_wrapper` bodies sent with `sendfile(2)`).
//!
//! Process titles and parent-death signals need no `unsafe` but are OS edges
//! too, so they live here as well.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_int;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
pub use nix::unistd::Pid;

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Outcome of [`fork`].
pub enum Fork {
    Parent(Pid),
    Child,
}

/// fork(2).
///
/// Callers must only fork from a single-threaded process: the master never
/// spawns threads (hooks run inline, logging is synchronous), which is the
/// invariant that makes this sound.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the master is single-threaded (see the doc comment), so the child
    // gets a consistent copy of every lock and allocator state.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Fork::Parent(child)),
        Ok(nix::unistd::ForkResult::Child) => Ok(Fork::Child),
        Err(e) => Err(errno(e)),
    }
}

// ---------------------------------------------------------------------------
// Signals: the handler writes the signal number as one byte into a pipe.

/// Write end of the current process's self-pipe, or -1.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn record_signal(sig: c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives on this stack
        // frame for the duration of the call. The pipe is non-blocking, so a
        // full pipe drops the byte instead of blocking the handler (the loop
        // is already awake in that case). errno is saved and restored so the
        // interrupted code never sees our EAGAIN.
        unsafe {
            let saved = *nix::libc::__errno_location();
            nix::libc::write(fd, (&byte as *const u8).cast(), 1);
            *nix::libc::__errno_location() = saved;
        }
    }
}

/// The read end of a self-pipe fed by signal handlers.
pub struct SignalPipe {
    rx: OwnedFd,
    _tx: OwnedFd,
}

impl SignalPipe {
    /// Create the pipe and route `signals` into it, replacing any previous
    /// pipe of this process (a forked worker calls this again for its own).
    pub fn install(signals: &[Signal]) -> io::Result<SignalPipe> {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(errno)?;
        SIGNAL_FD.store(tx.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(record_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for &sig in signals {
            // SAFETY: `record_signal` only calls async-signal-safe functions.
            unsafe { sigaction(sig, &action) }.map_err(errno)?;
        }
        Ok(SignalPipe { rx, _tx: tx })
    }

    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// The read end, to poll together with other descriptors.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// Sleep until a signal byte is readable or `ms` milliseconds pass.
    pub fn wait(&self, ms: u16) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }

    /// Drain the pipe, returning the signals in the order they arrived.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.rx, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend(
                    buf[..n]
                        .iter()
                        .filter_map(|&b| Signal::try_from(b as c_int).ok()),
                ),
            }
        }
        out
    }
}

/// Put `signals` back to their default disposition.
pub fn default_signals(signals: &[Signal]) {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &sig in signals {
        // SAFETY: restoring SIG_DFL installs no handler code at all.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
}

/// Ignore `sig` (SIGPIPE: a client that hangs up is an EPIPE, not a death).
pub fn ignore_signal(sig: Signal) {
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { sigaction(sig, &ign) };
}

/// In a worker, SIGABRT (sent by the master on a heartbeat timeout) must end
/// the process even while the app blocks; a core dump of a stuck worker is
/// rarely wanted, so exit at once with status 134 like an abort would.
extern "C" fn abort_now(_sig: c_int) {
    // SAFETY: _exit(2) is async-signal-safe and never returns.
    unsafe { nix::libc::_exit(134) }
}

pub fn install_abort_exit() {
    let act = SigAction::new(
        SigHandler::Handler(abort_now),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: `abort_now` only calls `_exit`, which is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGABRT, &act) };
}

// ---------------------------------------------------------------------------
// Scoreboard: shared memory between the master and its workers.

/// One worker's row. Every field is an atomic, so any process may read or
/// write it at any time; torn *combinations* of fields are harmless because
/// the master only reads them for logging and timeouts.
#[repr(C, align(128))]
pub struct Slot {
    /// Pid of the worker using this row; 0 = free.
    pub pid: AtomicU64,
    /// [`crate::clock::monotonic_ms`] at the worker's last loop iteration.
    pub tick_ms: AtomicU64,
    /// When the current app call began ([`crate::clock::monotonic_ms`]), 0
    /// when not in the app.
    pub busy_since_ms: AtomicU64,
    /// Open client connections.
    pub active: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// 1 once the worker's event loop is accepting.
    pub ready: AtomicU64,
    /// Length of the text in `what`.
    pub what_len: AtomicU64,
    /// Set by a worker that wants to be replaced (`--max-requests` served,
    /// or a `--threads` request overran `--timeout`): the master starts a
    /// replacement and retires this worker once the replacement accepts;
    /// the worker keeps accepting meanwhile.
    pub retire: AtomicU64,
    /// "METHOD /path" of the request in the app (for WORKER TIMEOUT logs).
    pub what: [AtomicU64; 8],
    /// Of `active`, connections idle long enough not to count as load
    /// (`balance::DORMANT_MS`), as of the worker's last once-a-second sweep.
    pub dormant: AtomicU64,
    /// App threads serving a request now (`--threads`): part of the load.
    pub busy_threads: AtomicU64,
    /// 1 when this worker has an app thread idle (`--threads`; 0 inline).
    pub spare: AtomicU64,
}

impl Slot {
    /// Record the request now in the app (truncated to 64 bytes).
    pub fn set_what(&self, text: &[u8]) {
        let n = text.len().min(64);
        for (i, word) in self.what.iter().enumerate() {
            let mut w = [0u8; 8];
            let start = i * 8;
            if start < n {
                let end = (start + 8).min(n);
                w[..end - start].copy_from_slice(&text[start..end]);
            }
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.what_len.store(n as u64, Ordering::Relaxed);
    }

    pub fn what(&self) -> String {
        let n = (self.what_len.load(Ordering::Relaxed) as usize).min(64);
        let mut bytes = Vec::with_capacity(64);
        for word in &self.what {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(n);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Ask the master to replace this worker (see `retire`).
    pub fn request_retire(&self) {
        self.retire.store(1, Ordering::Release);
    }

    pub fn reset(&self, pid: u32, now_ms: u64) {
        self.tick_ms.store(now_ms, Ordering::Relaxed);
        self.busy_since_ms.store(0, Ordering::Relaxed);
        self.active.store(0, Ordering::Relaxed);
        self.dormant.store(0, Ordering::Relaxed);
        self.busy_threads.store(0, Ordering::Relaxed);
        self.spare.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.ready.store(0, Ordering::Relaxed);
        self.what_len.store(0, Ordering::Relaxed);
        self.retire.store(0, Ordering::Relaxed);
        self.pid.store(pid as u64, Ordering::Release);
    }

    /// Is the worker's event loop accepting?
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) == 1
    }

    /// Has the worker asked to be replaced ([`Slot::request_retire`])?
    pub fn retire_requested(&self) -> bool {
        self.retire.load(Ordering::Acquire) == 1
    }
}

/// A fixed table of [`Slot`]s in a shared anonymous mapping.
pub struct Scoreboard {
    ptr: NonNull<Slot>,
    len: usize,
}

impl Scoreboard {
    /// Map `len` zeroed slots, shared with every process forked afterwards.
    pub fn new(len: usize) -> io::Result<Scoreboard> {
        let bytes = NonZeroUsize::new(len.max(1) * std::mem::size_of::<Slot>()).unwrap();
        // SAFETY: a fresh anonymous mapping aliases no Rust object; the kernel
        // zero-fills it, and all-zero bytes are a valid `Slot` (atomics only).
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(errno)?;
        Ok(Scoreboard {
            ptr: ptr.cast(),
            len: len.max(1),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.len, "scoreboard slot {i} out of range");
        // SAFETY: `i < len`, the mapping holds `len` page-aligned, zero-initialised
        // `Slot`s and lives as long as `self`; only atomics are accessed through
        // the shared reference, so concurrent use from other processes is fine.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        let bytes = self.len * std::mem::size_of::<Slot>();
        // SAFETY: unmaps exactly the region mapped in `new`; no reference from
        // `slot` can outlive `self`.
        let _ = unsafe { munmap(self.ptr.cast(), bytes) };
    }
}

// ---------------------------------------------------------------------------
// Descriptors.

/// Take ownership of an inherited descriptor number, after checking that it is
/// open and is a listening socket.
pub fn adopt_listener(fd: RawFd) -> io::Result<socket2::Socket> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative fd"));
    }
    // Probe without taking ownership: a bad fd must not be closed on drop.
    // SAFETY: the borrowed fd is only used for this fcntl, within this scope.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(errno)?;
    let listening = nix::sys::socket::getsockopt(&borrowed, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is not a socket ({e})"),
            )
        })?;
    if !listening {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is a socket but not listening"),
        ));
    }
    // SAFETY: the fd is open (F_GETFD succeeded), is a listening socket, and the
    // caller hands us sole ownership of this inherited number.
    let sock = unsafe { socket2::Socket::from_raw_fd(fd) };
    set_cloexec(fd, true)?;
    // systemd hands sockets over in blocking mode (unless `NonBlocking=yes`);
    // a worker's accept() on a blocking listener would hang its event loop.
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Set or clear FD_CLOEXEC (cleared on the listeners before a USR2 re-exec).
/// A descriptor of our own (close-on-exec) for the open file behind `fd`,
/// which its owner (a Python file object handed to `wsgi.file_wrapper`) may
/// close at any time after this returns.
pub fn dup_file(fd: RawFd) -> io::Result<std::fs::File> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(nix::libc::EBADF));
    }
    // SAFETY: `fd` stays open for the duration of this call: the caller holds
    // a reference to the object that owns it, and the GIL, so no other Python
    // thread can close it meanwhile. The borrow ends before we return.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(std::fs::File::from(borrowed.try_clone_to_owned()?))
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: the caller owns `fd` for the duration of the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = FdFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFD).map_err(errno)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).map_err(errno)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Process attributes (no unsafe needed, but OS-specific).

/// Ask the kernel to send `sig` to this process when its parent dies (the
/// thread that forked it, in fact: fork from the main thread).
pub fn set_parent_death_signal(sig: Signal) {
    let _ = nix::sys::prctl::set_pdeathsig(sig);
}

/// Set the title shown by `ps -ef` by overwriting this process's argv area
/// through /proc/self/mem (what setproctitle does), and the short `comm` name.
/// A title longer than the original command line is truncated.
pub fn set_process_title(title: &str) {
    let _ = write_argv_area(title);
    let mut short: Vec<u8> = title.bytes().filter(|&b| b != 0).take(15).collect();
    short.push(0);
    if let Ok(c) = std::ffi::CString::from_vec_with_nul(short) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

fn write_argv_area(title: &str) -> io::Result<()> {
    let mut stat = String::new();
    std::fs::File::open("/proc/self/stat")?.read_to_string(&mut stat)?;
    // Fields after the parenthesised comm; arg_start and arg_end are fields 48, 49.
    let rest = &stat[stat.rfind(')').ok_or(io::ErrorKind::InvalidData)? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::ErrorKind::InvalidData.into())
    };
    let (start, end) = (field(48)?, field(49)?);
    if end <= start {
        return Ok(());
    }
    let room = (end - start) as usize;
    let mut buf = vec![0u8; room];
    let n = title.len().min(room - 1);
    buf[..n].copy_from_slice(&title.as_bytes()[..n]);
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(start))?;
    mem.write_all(&buf)
}

/// Exit immediately without running destructors or flushing stdio (after a
/// failed exec in a forked child, and in workers, whose buffers the master owns).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { nix::libc::_exit(code) }
}

/// Set an environment variable (before a re-exec).
pub fn set_env(key: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: the master is single-threaded (see `fork`), so no other thread
    // can be reading the environment concurrently.
    unsafe { std::env::set_var(key, value) }
}

/// Remove an environment variable (inherited fds, once consumed).
pub fn remove_env(key: &str) {
    // SAFETY: as for `set_env`: called from the single-threaded master.
    unsafe { std::env::remove_var(key) }
}

// ---------------------------------------------------------------------------
// Signal masks around fork.

/// Block every signal in the calling (single) thread and return the previous
/// mask. Used around `fork`: a signal that arrives between fork and the
/// child's own handlers must not run the master's handler in the child (it
/// would write into the master's self-pipe, so a TERM meant for a brand-new
/// worker would stop the whole server). It stays pending and is delivered once
/// the child has its handlers and calls [`restore_signal_mask`].
pub fn block_all_signals() -> SigSet {
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Put back a mask returned by [`block_all_signals`].
pub fn restore_signal_mask(old: &SigSet) {
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// Unblock every signal (a re-executed master inherits the mask its parent
/// had while forking it: everything blocked).
pub fn unblock_all_signals() {
    restore_signal_mask(&SigSet::empty());
}

// ---------------------------------------------------------------------------
// Daemon mode (`-D/--daemon`).

/// Held by a daemonized master until its sockets are bound and its pid file
/// is written; [`DaemonReport::report`] lets the original process (still
/// attached to the terminal) exit with the right status and message.
pub struct DaemonReport(Option<OwnedFd>);

impl DaemonReport {
    /// Tell the waiting launcher how start-up went, and let it exit.
    pub fn report(&mut self, result: &Result<(), String>) {
        if let Some(fd) = self.0.take() {
            let msg = match result {
                Ok(()) => "OK\n".to_string(),
                Err(e) => format!("ERR {e}\n"),
            };
            let mut f = std::fs::File::from(fd);
            let _ = f.write_all(msg.as_bytes());
        }
    }
}

/// Detach from the terminal: fork (the parent waits for the daemon's start-up
/// verdict, then exits with it), `setsid`, fork again (so the daemon is not a
/// session leader and can never regain a controlling terminal), and point
/// stdin, stdout and stderr at /dev/null (with `keep_stdio`, stdout and
/// stderr only if they are a terminal). The working directory is kept, so
/// relative paths in the configuration mean what they meant.
pub fn daemonize(keep_stdio: bool) -> io::Result<DaemonReport> {
    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno)?;
    match fork()? {
        Fork::Parent(_) => {
            drop(tx);
            let mut text = String::new();
            let _ = std::fs::File::from(rx).read_to_string(&mut text);
            if text.starts_with("OK") {
                exit_now(0);
            }
            let msg = text
                .strip_prefix("ERR ")
                .unwrap_or("the daemon exited during start-up");
            eprintln!("Error: {}", msg.trim_end());
            exit_now(1);
        }
        Fork::Child => {}
    }
    drop(rx);
    nix::unistd::setsid().map_err(errno)?;
    match fork()? {
        Fork::Parent(_) => exit_now(0),
        Fork::Child => {}
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null).map_err(errno)?;
    // `keep_stdio` (gunicorn's --enable-stdio-inheritance): output that goes
    // to a file or a pipe stays there; a terminal is still let go of.
    if !keep_stdio || nix::unistd::isatty(io::stdout()).unwrap_or(false) {
        nix::unistd::dup2_stdout(&null).map_err(errno)?;
    }
    if !keep_stdio || nix::unistd::isatty(io::stderr()).unwrap_or(false) {
        nix::unistd::dup2_stderr(&null).map_err(errno)?;
    }
    Ok(DaemonReport(Some(tx)))
}

/// A temporary file with no name (O_TMPFILE; a created-then-unlinked file
/// where the filesystem lacks it), for spooling request bodies: nothing is
/// left behind whatever happens to the process.
pub fn anonymous_file(dir: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_TMPFILE)
        .open(dir);
    match tmpfile {
        Ok(f) => Ok(f),
        Err(_) => {
            let path = dir.join(format!(
                ".ferricorn-upload-{}-{}",
                std::process::id(),
                SPOOL_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
    }
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// The user and group to run as (`--user`, `--group`).
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
    /// For initgroups; None when only a group was given.
    pub user: Option<std::ffi::CString>,
}

/// Resolve `--user` / `--group` (names or numeric ids). The error names the setting.
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Identity>, String> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let (uid, mut gid, name) = match user {
        Some(u) => {
            let found = match u.parse::<u32>() {
                Ok(id) => User::from_uid(Uid::from_raw(id)),
                Err(_) => User::from_name(u),
            };
            match found {
                Ok(Some(pw)) => (pw.uid, pw.gid, std::ffi::CString::new(pw.name).ok()),
                Ok(None) => return Err(format!("invalid value for --user: no such user '{u}'")),
                Err(e) => return Err(format!("invalid value for --user: '{u}': {e}")),
            }
        }
        None => (nix::unistd::getuid(), nix::unistd::getgid(), None),
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(id) => Gid::from_raw(id),
            Err(_) => match Group::from_name(g) {
                Ok(Some(gr)) => gr.gid,
                Ok(None) => return Err(format!("invalid value for --group: no such group '{g}'")),
                Err(e) => return Err(format!("invalid value for --group: '{g}': {e}")),
            },
        };
    }
    Ok(Some(Identity {
        uid,
        gid,
        user: name,
    }))
}

/// Resolve a group name or id (for `--socket-group`).
pub fn resolve_group(group: &str) -> Result<nix::unistd::Gid, String> {
    match group.parse::<u32>() {
        Ok(id) => Ok(nix::unistd::Gid::from_raw(id)),
        Err(_) => match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => Ok(g.gid),
            Ok(None) => Err(format!(
                "invalid value for --socket-group: no such group '{group}'"
            )),
            Err(e) => Err(format!("invalid value for --socket-group: '{group}': {e}")),
        },
    }
}

/// Switch this process to `id`: group first (while we may), supplementary
/// groups, then the user. A no-op when already that user and group.
pub fn drop_privileges(id: &Identity) -> io::Result<()> {
    use nix::unistd::{getgid, getuid, initgroups, setgid, setgroups, setuid};
    if getuid() == id.uid && getgid() == id.gid {
        return Ok(());
    }
    setgid(id.gid).map_err(|e| io::Error::other(format!("setgid({}) failed: {e}", id.gid)))?;
    match &id.user {
        Some(name) => initgroups(name, id.gid)
            .map_err(|e| io::Error::other(format!("initgroups() failed: {e}")))?,
        None => setgroups(&[id.gid])
            .map_err(|e| io::Error::other(format!("setgroups() failed: {e}")))?,
    }
    setuid(id.uid).map_err(|e| io::Error::other(format!("setuid({}) failed: {e}", id.uid)))?;
    Ok(())
}

/// Raise the soft limit on open files to the hard limit (workers hold one
/// descriptor per connection). Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// Memory.

/// Hand the allocator's free memory back to the kernel. glibc returns freed
/// memory on its own only from the top of the heap; buffers freed among live
/// allocations (an idle connection's, given back by `Conn`) stay resident
/// until `malloc_trim` releases their pages. Costs a walk of the free lists:
/// call it after freeing much, not per free.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it works on the allocator's
    // own state under the allocator's locks, so it is sound at any point.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
