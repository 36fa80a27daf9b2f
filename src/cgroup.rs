//! The process's own CPU cgroup, v1 or v2: the CFS quota it runs under and the throttling it has suffered.
//!
//! Kubernetes turns `resources.limits.cpu` into a CFS quota on the container's cgroup. The quota decides how
//! many threads may burn CPU at once without queueing behind the throttle, and the throttling counters are the
//! only direct evidence that a pod is starved by its own limit. The parsers are pure; [`CpuCgroup::discover`]
//! is the only code that reads files.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CFS quota: `quota` of CPU time in every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota: Duration,
    pub period: Duration,
}

impl CpuQuota {
    /// Threads that can burn CPU at once without all of them waiting on the throttle: the quota rounded up.
    pub fn whole_cpus(self) -> usize {
        (self.quota.as_nanos().div_ceil(self.period.as_nanos().max(1))).max(1) as usize
    }
}

/// Cumulative CFS counters from `cpu.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStat {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where this process's CPU cgroup lives, found once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCgroup {
    dir: PathBuf,
    version: Version,
}

impl CpuCgroup {
    /// Finds the process's CPU cgroup directory from /proc/self/cgroup and /proc/self/mountinfo.
    /// None off Linux, or when no CPU controller is mounted.
    pub fn discover() -> Option<CpuCgroup> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        locate(&cgroup, &mountinfo)
    }

    pub fn quota(&self) -> Option<CpuQuota> {
        match self.version {
            Version::V2 => parse_cpu_max(&read(&self.dir.join("cpu.max"))?),
            Version::V1 => {
                parse_v1_quota(&read(&self.dir.join("cpu.cfs_quota_us"))?, &read(&self.dir.join("cpu.cfs_period_us"))?)
            }
        }
    }

    pub fn stat(&self) -> Option<CpuStat> {
        let text = read(&self.dir.join("cpu.stat"))?;
        Some(match self.version {
            Version::V2 => parse_cpu_stat(&text, "throttled_usec", Duration::from_micros),
            Version::V1 => parse_cpu_stat(&text, "throttled_time", Duration::from_nanos),
        })
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Resolves the CPU cgroup directory. v1 wins when a `cpu` controller hierarchy is listed, as on hybrid hosts
/// the v2 tree then holds no CPU controller.
fn locate(proc_self_cgroup: &str, mountinfo: &str) -> Option<CpuCgroup> {
    let mut v2_path = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2_path = Some(path);
        } else if controllers.split(',').any(|c| c == "cpu") {
            let (root, mount) = mount_of(mountinfo, |fstype, opts| fstype == "cgroup" && opts.contains(&"cpu"))?;
            return Some(CpuCgroup { dir: join_below(mount, root, path), version: Version::V1 });
        }
    }
    let path = v2_path?;
    let (root, mount) = mount_of(mountinfo, |fstype, _| fstype == "cgroup2")?;
    Some(CpuCgroup { dir: join_below(mount, root, path), version: Version::V2 })
}

/// The (root, mount point) of the first mount whose filesystem type and super options match.
fn mount_of(mountinfo: &str, wanted: impl Fn(&str, &[&str]) -> bool) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        // proc(5): "36 35 98:0 /root /mnt rw,noatime master:1 - cgroup cgroup rw,cpu"; optional fields end at "-".
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, mount) = (*left.get(3)?, *left.get(4)?);
        let opts: Vec<&str> = right.get(2)?.split(',').collect();
        wanted(right.first()?, &opts).then_some((root, mount))
    })
}

/// The cgroup path is relative to the hierarchy's root; the mount may show only a subtree of it (a container's
/// cgroup namespace mounts its own cgroup at the mount point, with root "/").
fn join_below(mount: &str, root: &str, path: &str) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path).trim_start_matches('/');
    let mut dir = PathBuf::from(mount);
    if !rel.is_empty() {
        dir.push(rel);
    }
    dir
}

/// cgroup v2 `cpu.max`: "max 100000" (no limit) or "50000 100000" (microseconds).
fn parse_cpu_max(text: &str) -> Option<CpuQuota> {
    let mut it = text.split_ascii_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    Some(CpuQuota { quota: Duration::from_micros(quota.parse().ok()?), period: Duration::from_micros(period) })
}

/// cgroup v1 `cpu.cfs_quota_us` (-1 = no limit) and `cpu.cfs_period_us`.
fn parse_v1_quota(quota: &str, period: &str) -> Option<CpuQuota> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    if quota <= 0 || period == 0 {
        return None;
    }
    Some(CpuQuota { quota: Duration::from_micros(quota as u64), period: Duration::from_micros(period) })
}

/// `cpu.stat`: v1 has `throttled_time` in nanoseconds, v2 `throttled_usec`; both have the period counters.
fn parse_cpu_stat(text: &str, throttled_key: &str, unit: fn(u64) -> Duration) -> CpuStat {
    let mut s = CpuStat::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<u64>() else { continue };
        match key {
            "nr_periods" => s.periods = v,
            "nr_throttled" => s.throttled_periods = v,
            k if k == throttled_key => s.throttled = unit(v),
            _ => {}
        }
    }
    s
}

/// Threads that may burn CPU at once: the CPUs in this process's affinity mask, capped by the cgroup quota
/// rounded up. (std's `available_parallelism` rounds the quota down, which under-counts a 500m or 1500m pod.)
pub fn usable_cpus(quota: Option<CpuQuota>) -> usize {
    let affinity = affinity_cpus().or_else(|| std::thread::available_parallelism().map(|n| n.get()).ok()).unwrap_or(1);
    quota.map_or(affinity, |q| q.whole_cpus().min(affinity))
}

/// The number of CPUs in this process's affinity mask, from /proc/self/status (`Cpus_allowed_list`).
fn affinity_cpus() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    count_cpu_list(list.trim())
}

/// Counts a kernel CPU list such as "0-3,8,10-11".
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime master:7 - cgroup cgroup rw,memory";
    const MOUNTINFO_V2: &str = "\
30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate";
    const MOUNTINFO_V2_NS: &str = "\
30 1 0:26 /kubepods/pod1/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw";

    #[test]
    fn locates_v1_and_v2_cgroups() {
        let v1 = locate("4:memory:/sre-mini-x\n3:cpuacct:/\n2:cpu:/sre-mini-x\n", MOUNTINFO_V1).unwrap();
        assert_eq!(v1, CpuCgroup { dir: "/sys/fs/cgroup/cpu/sre-mini-x".into(), version: Version::V1 });
        let root = locate("2:cpu:/\n", MOUNTINFO_V1).unwrap();
        assert_eq!(root.dir, PathBuf::from("/sys/fs/cgroup/cpu"));
        let v2 = locate("0::/system.slice/sre.service\n", MOUNTINFO_V2).unwrap();
        assert_eq!(v2, CpuCgroup { dir: "/sys/fs/cgroup/system.slice/sre.service".into(), version: Version::V2 });
        // A container's namespaced view: its own cgroup is the mount's root.
        let ns = locate("0::/kubepods/pod1/c1\n", MOUNTINFO_V2_NS).unwrap();
        assert_eq!(ns.dir, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(locate("0::/\n", MOUNTINFO_V1), None, "v2 path but no cgroup2 mount");
        assert_eq!(locate("", MOUNTINFO_V2), None);
        assert_eq!(locate("garbage", MOUNTINFO_V2), None);
    }

    #[test]
    fn quotas_round_up_to_whole_cpus() {
        let q = |text| parse_cpu_max(text);
        assert_eq!(q("max 100000"), None);
        assert_eq!(q("50000 100000").map(CpuQuota::whole_cpus), Some(1));
        let half = CpuQuota { quota: Duration::from_millis(50), period: Duration::from_millis(100) };
        assert_eq!(q("50000 100000"), Some(half));
        assert_eq!(q("150000 100000").map(CpuQuota::whole_cpus), Some(2));
        assert_eq!(q("200000 100000").map(CpuQuota::whole_cpus), Some(2));
        assert_eq!(q("1000 100000").map(CpuQuota::whole_cpus), Some(1));
        assert_eq!(q("50000 0"), None);
        assert_eq!(q(""), None);
        assert_eq!(parse_v1_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_v1_quota("50000\n", "100000\n"), Some(half));
        assert_eq!(parse_v1_quota("x", "100000"), None);
    }

    #[test]
    fn cpu_stat_v1_and_v2() {
        let v1 = parse_cpu_stat("nr_periods 54\nnr_throttled 40\nthrottled_time 2000000000\n", "throttled_time", {
            Duration::from_nanos
        });
        assert_eq!(v1, CpuStat { periods: 54, throttled_periods: 40, throttled: Duration::from_secs(2) });
        let v2 = parse_cpu_stat(
            "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 7\nnr_throttled 3\nthrottled_usec 1500\n",
            "throttled_usec",
            Duration::from_micros,
        );
        assert_eq!(v2, CpuStat { periods: 7, throttled_periods: 3, throttled: Duration::from_micros(1500) });
        assert_eq!(parse_cpu_stat("", "throttled_usec", Duration::from_micros), CpuStat::default());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("a"), None);
    }

    #[test]
    fn usable_cpus_is_at_least_one_and_honours_the_quota() {
        let half = CpuQuota { quota: Duration::from_millis(50), period: Duration::from_millis(100) };
        assert_eq!(usable_cpus(Some(half)), 1);
        assert!(usable_cpus(None) >= 1);
    }
}
