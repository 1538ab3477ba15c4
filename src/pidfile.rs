//! The master's pid file (`-p/--pid`).
//!
//! Written atomically (a temporary file renamed into place, so a reader never
//! sees a half-written pid), renamed to `PIDFILE.oldbin` by a master that
//! starts an upgrade, and removed at exit only if it still holds our pid (a
//! successor may have written its own).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn create(path: &Path, pid: u32) -> io::Result<PidFile> {
        let tmp = tmp_path(path);
        {
            let mut f = std::fs::File::create(&tmp)?;
            // No fsync: the rename alone makes the write atomic for readers,
            // and a pid file is meaningless after a crash anyway. An fsync
            // here can stall start-up (and a USR2 upgrade) for seconds on a
            // busy disk.
            writeln!(f, "{pid}")?;
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io::Error::new(
                e.kind(),
                format!("cannot write pid file {}: {e}", path.display()),
            )
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn oldbin(&self) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(".oldbin");
        PathBuf::from(s)
    }

    /// USR2: make room for the new master's pid file.
    pub fn rename_to_oldbin(&mut self) -> io::Result<()> {
        let old = self.oldbin();
        std::fs::rename(&self.path, &old)?;
        self.path = old;
        Ok(())
    }

    /// The upgrade failed: take the original name back.
    pub fn rename_back(&mut self) -> io::Result<()> {
        let Some(orig) = self
            .path
            .to_str()
            .and_then(|s| s.strip_suffix(".oldbin"))
            .map(PathBuf::from)
        else {
            return Ok(());
        };
        // Do not clobber a pid file that a live successor wrote.
        if !orig.exists() {
            std::fs::rename(&self.path, &orig)?;
            self.path = orig;
        }
        Ok(())
    }

    /// Remove the file if it still names `pid`.
    pub fn remove(&self, pid: u32) {
        if let Ok(text) = std::fs::read_to_string(&self.path)
            && text.trim() == pid.to_string()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(s)
}
