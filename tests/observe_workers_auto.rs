//! `--workers auto` under a cgroup this test creates with a CPU quota of
//! half a CPU: 2 x 1 + 1 = 3 workers whatever the machine has, and the
//! start-up log says how. cgroup v2 (`cpu.max`) where the cpu controller is
//! available there, else v1 (`cpu.cfs_quota_us`). Where the kernel refuses
//! to create a cgroup (not root, read-only /sys/fs/cgroup, no cpu
//! controller), the test says so on its output and passes without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A cgroup made for this test, removed on drop (after its processes).
struct Cgroup {
    dir: PathBuf,
    quota_file: &'static str,
}

impl Cgroup {
    fn create(name: &str) -> Result<Cgroup, String> {
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_has_cpu = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
        let (base, file, quota) = if v2_has_cpu {
            (v2.to_path_buf(), "cpu.max", "50000 100000")
        } else if v2.join("cpu/cpu.cfs_quota_us").exists() {
            (v2.join("cpu"), "cpu.cfs_quota_us", "50000")
        } else {
            return Err("no cgroup cpu controller (v2 cpu.max nor v1 cpu)".into());
        };
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = Cgroup {
            dir,
            quota_file: file,
        };
        std::fs::write(cg.dir.join(file), quota)
            .map_err(|e| format!("write {}: {e}", cg.dir.join(file).display()))?;
        Ok(cg)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Killed workers may linger for a moment: rmdir fails while any
        // process is still in the group.
        wait_until(Duration::from_secs(30), || {
            std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
        });
    }
}

/// The master started inside the cgroup, killed with its group on drop.
struct Master(Child);

impl Drop for Master {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn workers_auto_follows_a_cgroup_cpu_quota() {
    let name = format!("ferricorn-test-{}", std::process::id());
    let cg = match Cgroup::create(&name) {
        Ok(cg) => cg,
        Err(why) => {
            println!(
                "SKIPPED workers_auto_follows_a_cgroup_cpu_quota: the kernel refused a cgroup: {why}"
            );
            return;
        }
    };
    let dir = TempDir::new("auto");
    let log = dir.join("stderr.log");
    // A Unix socket in our directory: no port to race other tests for.
    let sock = dir.join("s.sock");
    // The shell moves itself into the cgroup, then becomes ferricorn: the
    // master reads its limits already inside.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("echo $$ > \"$0\" && exec \"$@\"")
        .arg(cg.dir.join("cgroup.procs"))
        .arg(env!("CARGO_BIN_EXE_ferricorn"))
        .args([
            "-b",
            &format!("unix:{}", sock.display()),
            "-w",
            "auto",
            "hello",
        ])
        .env_remove("WEB_CONCURRENCY")
        .env_remove("FERRICORN_CMD_ARGS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let master = Master(cmd.spawn().unwrap());
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || text()
            .contains("--workers auto:")),
        "{}",
        text()
    );
    let line = text()
        .lines()
        .find(|l| l.contains("--workers auto:"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("3 workers = 2 x 1 usable CPUs + 1") && line.contains("CPU quota 0.5"),
        "{line}"
    );
    assert!(line.contains(cg.quota_file), "{line}");
    let workers = wait_workers(master.0.id(), 3);
    assert_eq!(workers.len(), 3);
    println!("{line}");
    drop(master);
}
