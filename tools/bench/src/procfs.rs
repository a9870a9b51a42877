//! What the benchmark reads from `/proc`: CPU time and memory of a process
//! (the bench itself or the child server), the load average, and the
//! kernel's TCP socket memory. Every reader returns `None` where `/proc` is
//! missing or unreadable, so the bench still runs (with blanks) elsewhere.

/// Clock ticks per second assumed for `/proc/<pid>/stat` (USER_HZ: 100 on
/// Linux x86-64 and arm64).
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system) process `pid` used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / CLK_TCK)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `VmHWM`, …) in KiB.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A plain number field of `/proc/<pid>/status` (e.g. `Threads`).
pub fn status_num(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

/// Resident set size of `pid` in MiB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    status_kb(pid, "VmRSS").map(|kb| kb as f64 / 1024.0)
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The 1-minute load average.
pub fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Memory of all TCP sockets of the machine (`/proc/net/sockstat`, `TCP: … mem
/// N`, in pages of 4 KiB) in KiB: socket buffers are kernel memory, not in
/// any process's RSS.
pub fn tcp_mem_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(k) = it.next() {
        if k == "mem" {
            return it.next()?.parse::<u64>().ok().map(|p| p * 4);
        }
    }
    None
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The soft limit on open files of this process (`ulimit -n`).
pub fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(rss_mb(me).is_some_and(|m| m > 0.0));
            assert!(cpu_seconds(me).is_some());
            assert!(status_num(me, "Threads").is_some_and(|n| n >= 1));
            assert!(nofile_limit().is_some());
        }
    }
}
