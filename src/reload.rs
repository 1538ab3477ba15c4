//! `--reload` (gunicorn `reloader.py`): a worker restarts when a file it
//! was built from changes.
//!
//! Each worker watches, once its app is built: the files of the Python
//! modules loaded by then (handed over by [`add_files`] from
//! `python::runtime`) and the `--reload-extra-file` files. On a change it
//! logs `Worker reloading: PATH modified` and sends itself SIGTERM, the
//! ordinary graceful stop: requests in progress finish, and the master, as
//! for any worker that exits, starts a new one, which imports the new code.
//! An app that fails to import does not stop the server under `--reload`:
//! the worker serves the error ([`failed_app`]) and watches the files of
//! the failed import, so saving the fix brings the app back.
//!
//! Why a watcher thread in each worker rather than one in the master, or an
//! inotify fd in the worker's mio loop: only the worker knows which modules
//! its app imported (the master of a WSGI app never imports it, unless
//! `--preload`); a thread blocked in `read(2)` on the inotify fd needs
//! nothing from the event loop (which stays free of development-only code)
//! and works the same for the `sync` and `gthread` workers. It is
//! gunicorn's design too (its reloader is a thread in every worker).
//!
//! inotify watches the *directories* of the files (editors replace a file
//! by renaming a new one over it, which a watch on the old inode would not
//! see), and an event counts only when it names a watched file. A write
//! counts when the file is closed (`IN_CLOSE_WRITE`), not at its first
//! byte, so a new worker does not import a half-written module. A save that
//! lands while the app is still importing, before the watches exist, is
//! caught by its modification time ([`loading`]).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::app::{App, Request, Response};
use crate::config::Config;

/// Files the app reported (Python module files), added before [`start`].
static APP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// When the app started loading ([`loading`]): a file saved after this and
/// before the watches exist is caught by its modification time.
static LOADING_SINCE: Mutex<Option<SystemTime>> = Mutex::new(None);

/// The app starts loading now (called before the Python app is imported).
/// Read from the kernel's coarse clock, the one file times are stamped
/// with, so a file saved after this call never looks older than it.
pub fn loading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .ok()
        .and_then(|t| {
            let (s, ns) = (u64::try_from(t.tv_sec()).ok()?, t.tv_nsec() as u32);
            Some(UNIX_EPOCH + std::time::Duration::new(s, ns))
        });
    *LOADING_SINCE.lock().unwrap_or_else(|p| p.into_inner()) = now;
}

/// A watched file modified at or after `since` (a save that came while the
/// app was loading, before the watches were in place).
fn modified_since<'a>(
    dirs: impl IntoIterator<Item = &'a (PathBuf, Watched)>,
    since: SystemTime,
) -> Option<PathBuf> {
    let newer = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    };
    for (dir, w) in dirs {
        for name in &w.names {
            let p = dir.join(name);
            if newer(&p) {
                return Some(p);
            }
        }
        if w.patterns.is_empty() {
            continue;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if w.matches(&name) && newer(&entry.path()) {
                return Some(entry.path());
            }
        }
    }
    None
}

fn restart(path: &Path) {
    log::info!("Worker reloading: {} modified", path.display());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
}

/// Add files to watch (called with the Python app's module files).
pub fn add_files(files: impl IntoIterator<Item = PathBuf>) {
    APP_FILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(files);
}

/// The source file a module file stands for: `x.pyc`/`x.pyo` → `x.py`
/// (gunicorn's `COMPILED_EXT_RE`).
pub fn source_of(file: &Path) -> PathBuf {
    match file.extension().and_then(|e| e.to_str()) {
        Some("pyc" | "pyo") => file.with_extension("py"),
        _ => file.to_path_buf(),
    }
}

/// What is watched in one directory: file names, and glob patterns for
/// names (a `--reload-extra-file` such as `templates/*.html`).
#[derive(Debug, Default, PartialEq)]
pub struct Watched {
    pub names: HashSet<OsString>,
    pub patterns: Vec<String>,
}

impl Watched {
    fn matches(&self, name: &OsString) -> bool {
        self.names.contains(name)
            || name
                .to_str()
                .is_some_and(|n| self.patterns.iter().any(|p| fnmatch(p, n)))
    }
}

/// gunicorn reads an entry with `*`, `?` or `[` as a glob pattern.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Watched files grouped by directory. A glob is allowed in the file name
/// only (`dir/*.html`); one in a directory part is refused, with a warning.
pub fn by_directory(files: &[PathBuf]) -> HashMap<PathBuf, Watched> {
    let mut dirs: HashMap<PathBuf, Watched> = HashMap::new();
    for f in files {
        let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        let (Some(dir), Some(name)) = (f.parent(), f.file_name()) else {
            continue;
        };
        if is_glob(&dir.to_string_lossy()) {
            log::warn!(
                "--reload-extra-file {}: ferricorn takes a pattern in the file name only",
                f.display()
            );
            continue;
        }
        let w = dirs.entry(dir.to_path_buf()).or_default();
        match name.to_str() {
            Some(n) if is_glob(n) => w.patterns.push(n.to_string()),
            _ => {
                w.names.insert(name.to_os_string());
            }
        }
    }
    dirs
}

/// Python's `fnmatch` as `glob` applies it to one name: `*` (any run of
/// characters), `?` (one), `[abc]`, `[a-z]`, `[!abc]`; a name starting with
/// `.` only matches a pattern that does too (glob hides dotfiles).
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point: the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p[pi..], n[ni]) {
                Some((true, len)) => Some(pi + len),
                Some((false, _)) => None,
                // No closing `]`: a literal `[`.
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Match `c` against the class at the start of `p` (`[...]`): whether it
/// matched and the class's length, or None if the class is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &x = p.get(i)?;
        if x == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&y| y != ']') {
            hit |= (x..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
}

/// With `--reload`, a worker whose app cannot be built serves this instead
/// (gunicorn does the same for a `SyntaxError`): every request gets a 500
/// with the error, traceback included, until a watched file is saved and a
/// new worker tries again. Without `--reload` the server stops, as gunicorn's
/// does, since no fix can arrive by itself.
pub fn failed_app(app: &str, err: &std::io::Error) -> Box<dyn App + Send> {
    let text = format!("cannot load app '{app}': {err}\n");
    log::error!("Exception in worker process: {text}");
    Box::new(move |_req: &mut Request| Response::text(500, text.clone()))
}

/// In a worker, after the app is built: with `--reload`, start watching.
pub fn start(cfg: &Config) {
    if !cfg.reload {
        return;
    }
    log::warn!("Reloader is on. Use in development only!");
    if cfg.reload_engine == "poll" {
        log::warn!("--reload-engine poll: ferricorn watches with inotify");
    }
    let mut files: Vec<PathBuf> =
        std::mem::take(&mut *APP_FILES.lock().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .map(|f| source_of(f))
            .collect();
    files.extend(cfg.reload_extra_files.iter().map(PathBuf::from));
    let dirs = by_directory(&files);
    let inotify = match Inotify::init(InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => {
            log::error!("--reload: inotify unavailable: {e}");
            return;
        }
    };
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE;
    let mut watches = HashMap::new();
    for (dir, names) in dirs {
        match inotify.add_watch(&dir, mask) {
            Ok(wd) => {
                watches.insert(wd, (dir, names));
            }
            // A directory that vanished (a module loaded from a zip, a
            // temporary directory): nothing there to watch.
            Err(e) => log::debug!("--reload: cannot watch {}: {e}", dir.display()),
        }
    }
    // Saved while the app was loading: the watches came too late for it.
    let since = LOADING_SINCE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(since) = since
        && let Some(p) = modified_since(watches.values(), since)
    {
        restart(&p);
        return;
    }
    let count: usize = watches
        .values()
        .map(|(_, w)| w.names.len() + w.patterns.len())
        .sum();
    log::debug!("--reload: watching {count} files and patterns");
    let spawned = std::thread::Builder::new()
        .name("ferricorn-reload".into())
        .spawn(move || {
            loop {
                let events = match inotify.read_events() {
                    Ok(ev) => ev,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        log::error!("--reload: reading inotify events failed: {e}");
                        return;
                    }
                };
                for ev in events {
                    let Some((dir, watched)) = watches.get(&ev.wd) else {
                        continue;
                    };
                    if let Some(name) = ev.name
                        && watched.matches(&name)
                    {
                        restart(&dir.join(&name));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("--reload: cannot start the watcher thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_files_map_to_their_source() {
        assert_eq!(source_of(Path::new("/a/m.pyc")), PathBuf::from("/a/m.py"));
        assert_eq!(source_of(Path::new("/a/m.py")), PathBuf::from("/a/m.py"));
        assert_eq!(
            source_of(Path::new("/a/t.html")),
            PathBuf::from("/a/t.html")
        );
    }

    #[test]
    fn files_are_grouped_by_directory() {
        let d = by_directory(&[
            PathBuf::from("/a/x.py"),
            PathBuf::from("/a/y.py"),
            PathBuf::from("/b/z.txt"),
            PathBuf::from("/b/*.html"),
            PathBuf::from("/c*/x.html"),
        ]);
        assert_eq!(d.len(), 2, "a glob in a directory is left out");
        assert_eq!(d[Path::new("/a")].names.len(), 2);
        assert!(d[Path::new("/b")].names.contains(&OsString::from("z.txt")));
        assert_eq!(d[Path::new("/b")].patterns, ["*.html"]);
        assert!(d[Path::new("/b")].matches(&OsString::from("page.html")));
        assert!(!d[Path::new("/b")].matches(&OsString::from("page.htm")));
    }

    #[test]
    fn fnmatch_is_globs() {
        assert!(fnmatch("*.html", "a.html"));
        assert!(!fnmatch("*.html", ".html.html"), "dotfiles are hidden");
        assert!(fnmatch(".*", ".env"));
        assert!(fnmatch("a*b*c", "aXXbYYc"));
        assert!(!fnmatch("a*b*c", "aXXbYY"));
        assert!(fnmatch("?.txt", "x.txt"));
        assert!(!fnmatch("?.txt", "xy.txt"));
        assert!(fnmatch("[ab]1", "b1"));
        assert!(!fnmatch("[!ab]1", "b1"));
        assert!(fnmatch("[a-c]*", "cat"));
        assert!(!fnmatch("[a-c]*", "dog"));
        assert!(fnmatch("[]]", "]"));
        assert!(fnmatch("x[", "x["), "an unclosed [ is literal");
        assert!(fnmatch("*", "anything"));
        assert!(fnmatch("**", ""));
    }
}
