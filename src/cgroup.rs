//! `--workers auto`: how many CPUs this process may really use (a cgroup
//! CPU quota, a cpuset, its affinity mask), and how many workers fit a
//! cgroup memory limit. Reading is a thin edge over /proc and /sys; the
//! decision ([`auto_workers`]) is a pure function, unit-tested.
//!
//! Both cgroup versions are read: v2 (`cpu.max`, `cpuset.cpus.effective`,
//! `memory.max`, from the unified hierarchy) and v1 (`cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`, `memory.limit_in_bytes`), since hybrid hosts still
//! put the cpu controller on v1. The tightest limit along the cgroup's path
//! to the root wins.

use std::path::{Path, PathBuf};

/// What limits the CPUs and memory of this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// CPUs online.
    pub online: usize,
    /// CPUs in the affinity mask (`Cpus_allowed_list`).
    pub affinity: Option<usize>,
    /// CPUs in the cgroup's cpuset.
    pub cpuset: Option<usize>,
    /// The CPU quota in CPUs (quota / period), and where it came from.
    pub quota: Option<(f64, String)>,
    /// The memory limit in bytes, and where it came from.
    pub memory_max: Option<(u64, String)>,
}

/// Memory a worker is expected to need when --max-worker-memory is not set.
pub const DEFAULT_WORKER_MIB: u64 = 128;

/// 2 x usable CPUs + 1, capped so that `worker_mib` per worker fits the
/// memory limit; with the sentence the start-up log prints.
pub fn auto_workers(l: &Limits, worker_mib: u64) -> (usize, String) {
    let mut cpus = l.online.max(1) as f64;
    let mut why = vec![format!("{} CPUs online", l.online)];
    if let Some(a) = l.affinity {
        why.push(format!("affinity {a}"));
        cpus = cpus.min(a as f64);
    }
    if let Some(c) = l.cpuset {
        why.push(format!("cpuset {c}"));
        cpus = cpus.min(c as f64);
    }
    if let Some((q, from)) = &l.quota {
        why.push(format!("CPU quota {q} ({from})"));
        cpus = cpus.min(*q);
    }
    // A fractional quota still runs on a whole CPU, in slices.
    let usable = (cpus.ceil() as usize).max(1);
    let mut workers = 2 * usable + 1;
    let mut text = format!(
        "{} workers = 2 x {usable} usable CPUs + 1 ({})",
        workers,
        why.join(", ")
    );
    if let Some((max, from)) = &l.memory_max {
        let fit = (*max / (worker_mib.max(1) * 1024 * 1024)) as usize;
        if fit.max(1) < workers {
            workers = fit.max(1);
            text = format!(
                "{workers} workers: 2 x {usable} usable CPUs + 1 ({}), capped by the memory limit {} MiB ({from}) at {worker_mib} MiB per worker",
                why.join(", "),
                max >> 20
            );
        }
    }
    (workers, text)
}

/// Count the CPUs in a list like `0-3,8,10-11`.
pub fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// `cpu.max` (v2): `max 100000` or `QUOTA PERIOD`.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota = f.next()?;
    let period: f64 = f.next().and_then(|p| p.parse().ok()).unwrap_or(100_000.0);
    if quota == "max" {
        return None;
    }
    let q: f64 = quota.parse().ok()?;
    (q > 0.0 && period > 0.0).then(|| q / period)
}

/// The cgroup path of `controller` in a /proc/self/cgroup text (v1 lines
/// `N:cpu,cpuacct:/path`); `""` for the v2 line `0::/path`.
pub fn cgroup_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// `dir/path` and each of its ancestors up to `dir`, deepest first (a path
/// that is not visible here, as in a container, gives just `dir`).
fn up_to_root(dir: &Path, path: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut p = dir.join(path.trim_start_matches('/'));
    if !p.exists() {
        p = dir.to_path_buf();
    }
    loop {
        out.push(p.clone());
        if p == dir || !p.pop() || !p.starts_with(dir) {
            break;
        }
    }
    out
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Read this process's limits from /proc and /sys/fs/cgroup.
pub fn read_limits() -> Limits {
    let root = Path::new("/sys/fs/cgroup");
    let proc_cgroup = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    let mut l = Limits {
        online: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(
                read(Path::new("/sys/devices/system/cpu/online"))
                    .and_then(|t| count_cpu_list(&t))
                    .unwrap_or(1),
            ),
        ..Limits::default()
    };
    l.affinity = read(Path::new("/proc/self/status")).and_then(|s| {
        s.lines()
            .find_map(|x| x.strip_prefix("Cpus_allowed_list:"))
            .and_then(count_cpu_list)
    });
    let mut min_quota = |q: f64, from: String| {
        if l.quota.as_ref().is_none_or(|(old, _)| q < *old) {
            l.quota = Some((q, from));
        }
    };
    // cgroup v2: the unified hierarchy at /sys/fs/cgroup (or .../unified).
    if let Some(path) = cgroup_path(&proc_cgroup, "") {
        for unified in [root.to_path_buf(), root.join("unified")] {
            if !unified.join("cgroup.controllers").exists() {
                continue;
            }
            for dir in up_to_root(&unified, &path) {
                if let Some(q) = read(&dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t)) {
                    min_quota(q, dir.join("cpu.max").display().to_string());
                }
                if let Some(m) = read(&dir.join("memory.max")).and_then(|t| t.trim().parse().ok())
                    && l.memory_max.as_ref().is_none_or(|(old, _)| m < *old)
                {
                    l.memory_max = Some((m, dir.join("memory.max").display().to_string()));
                }
            }
            let leaf = up_to_root(&unified, &path).remove(0);
            l.cpuset = read(&leaf.join("cpuset.cpus.effective")).and_then(|t| count_cpu_list(&t));
            break;
        }
    }
    // cgroup v1.
    if let Some(path) = cgroup_path(&proc_cgroup, "cpu") {
        for mount in ["cpu", "cpu,cpuacct", "cpuacct,cpu"] {
            let base = root.join(mount);
            if !base.join("cpu.cfs_quota_us").exists() {
                continue;
            }
            for dir in up_to_root(&base, &path) {
                let quota: Option<i64> =
                    read(&dir.join("cpu.cfs_quota_us")).and_then(|t| t.trim().parse().ok());
                let period: Option<i64> =
                    read(&dir.join("cpu.cfs_period_us")).and_then(|t| t.trim().parse().ok());
                if let (Some(q), Some(p)) = (quota, period)
                    && q > 0
                    && p > 0
                {
                    min_quota(
                        q as f64 / p as f64,
                        dir.join("cpu.cfs_quota_us").display().to_string(),
                    );
                }
            }
            break;
        }
    }
    if let Some(path) = cgroup_path(&proc_cgroup, "memory") {
        let base = root.join("memory");
        for dir in up_to_root(&base, &path) {
            let file = dir.join("memory.limit_in_bytes");
            // v1 says "no limit" with a huge number.
            if let Some(m) = read(&file).and_then(|t| t.trim().parse::<u64>().ok())
                && m < (1 << 60)
                && l.memory_max.as_ref().is_none_or(|(old, _)| m < *old)
            {
                l.memory_max = Some((m, file.display().to_string()));
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("250000 100000"), Some(2.5));
    }

    #[test]
    fn proc_self_cgroup_lines() {
        let t = "4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u/v\n";
        assert_eq!(cgroup_path(t, "cpu").as_deref(), Some("/c"));
        assert_eq!(cgroup_path(t, "memory").as_deref(), Some("/a/b"));
        assert_eq!(cgroup_path(t, "").as_deref(), Some("/u/v"));
        assert_eq!(cgroup_path(t, "pids"), None);
    }

    #[test]
    fn the_tightest_cpu_limit_wins_and_memory_caps() {
        let mut l = Limits {
            online: 16,
            affinity: Some(8),
            cpuset: None,
            quota: None,
            memory_max: None,
        };
        assert_eq!(auto_workers(&l, 128).0, 17);
        l.quota = Some((1.5, "cpu.max".into()));
        let (n, why) = auto_workers(&l, 128);
        assert_eq!(n, 5);
        assert!(why.contains("2 x 2 usable CPUs + 1"), "{why}");
        assert!(why.contains("CPU quota 1.5 (cpu.max)"), "{why}");
        l.cpuset = Some(1);
        assert_eq!(auto_workers(&l, 128).0, 3);
        l.memory_max = Some((256 << 20, "memory.max".into()));
        let (n, why) = auto_workers(&l, 128);
        assert_eq!(n, 2);
        assert!(why.contains("capped by the memory limit 256 MiB"), "{why}");
        l.memory_max = Some((10 << 20, "memory.max".into()));
        assert_eq!(auto_workers(&l, 128).0, 1, "never below one");
    }
}
