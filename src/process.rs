//! The standard `process_*` metrics, read from /proc the way the Prometheus client libraries do.
//!
//! /proc/self/stat is split after the last `)`, because the command name in parentheses may itself contain
//! spaces and parentheses. CPU times are in clock ticks and the resident set in pages; both units come from
//! `sysconf` once at start-up.

use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// None when unreadable (listing /proc/self/fd needs a descriptor itself): left out, not shown as 0.
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Units and the start time, fixed for the life of the process.
#[derive(Debug, Clone, Copy)]
pub struct ProcessInfo {
    ticks_per_second: u64,
    page_size: u64,
    /// None when /proc could not be read: the figure is then left out.
    pub start_time_seconds: Option<f64>,
}

/// Fields of /proc/self/stat after the `)`: index 0 is field 3 (`state`) in proc(5) numbering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatFields {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub num_threads: u64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

pub fn parse_stat(stat: &str) -> Option<StatFields> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_ascii_whitespace().collect();
    // proc(5) field n is f[n - 3].
    let get = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(StatFields {
        utime_ticks: get(14)?,
        stime_ticks: get(15)?,
        num_threads: get(20)?,
        start_ticks: get(22)?,
        vsize_bytes: get(23)?,
        rss_pages: get(24)?,
    })
}

/// `btime` from /proc/stat: boot time in Unix seconds.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft "Max open files" limit from /proc/self/limits.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_ascii_whitespace().next()?.parse().ok()
}

impl ProcessInfo {
    pub fn at_start() -> ProcessInfo {
        let ticks_per_second = sys::clock_ticks_per_second();
        let page_size = sys::page_size();
        let start_time_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .zip(std::fs::read_to_string("/proc/stat").ok().and_then(|s| parse_btime(&s)))
            .map(|(st, btime)| btime as f64 + st.start_ticks as f64 / ticks_per_second as f64);
        ProcessInfo { ticks_per_second, page_size, start_time_seconds }
    }

    pub fn read(&self) -> Option<ProcessStats> {
        let st = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| parse_max_fds(&s));
        Some(ProcessStats {
            cpu_seconds: (st.utime_ticks + st.stime_ticks) as f64 / self.ticks_per_second as f64,
            resident_bytes: st.rss_pages * self.page_size,
            virtual_bytes: st.vsize_bytes,
            threads: st.num_threads,
            open_fds,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_split_after_the_last_paren() {
        // A command name with spaces and parentheses must not shift the fields.
        let stat = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 123456 104857600 321 18446744073709551615";
        let f = parse_stat(stat).unwrap();
        assert_eq!(
            f,
            StatFields {
                utime_ticks: 250,
                stime_ticks: 75,
                num_threads: 7,
                start_ticks: 123456,
                vsize_bytes: 104857600,
                rss_pages: 321
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn btime_and_limits() {
        assert_eq!(parse_btime("cpu  1 2 3\nbtime 1764150000\nprocesses 9\n"), Some(1_764_150_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(20000));
    }

    #[test]
    fn live_figures_are_plausible() {
        let info = ProcessInfo::at_start();
        let s = info.read().unwrap();
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.threads >= 1 && s.open_fds >= Some(3) && s.max_fds >= s.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = info.start_time_seconds.unwrap();
        assert!(start > now - 86_400.0 * 365.0 && start <= now + 1.0);
    }
}
