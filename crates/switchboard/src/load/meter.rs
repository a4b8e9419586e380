//! What the load tool reads of the processes it measures (and of itself): CPU seconds and
//! resident memory from `/proc`, and its own open-file limit.

use std::time::Instant;

/// Raises this process's open-file limit to its hard limit; returns the limit in force.
pub(super) fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// CPU seconds used so far by a process (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ: 100 on every mainstream Linux architecture.
    Some((utime + stime) as f64 / 100.0)
}

/// Resident set size of each process, and their sum, in KiB (`None`: no pid given, or one
/// could not be read).
pub(super) fn rss_all(pids: &[u32]) -> Option<(u64, Vec<u64>)> {
    if pids.is_empty() {
        return None;
    }
    let each: Option<Vec<u64>> = pids.iter().map(|&p| rss_kib(p)).collect();
    let each = each?;
    Some((each.iter().sum(), each))
}

/// Resident set size of a process in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU use of the server and of this tool over a measured window, in % of one core.
pub(super) struct CpuMeter {
    /// Each server process and its CPU seconds at the start.
    servers: Vec<(String, f64)>,
    tool: f64,
    start: Instant,
}

impl CpuMeter {
    pub(super) fn start(server_pids: &[u32]) -> Self {
        let servers = server_pids
            .iter()
            .filter_map(|p| {
                let p = p.to_string();
                cpu_seconds(&p).map(|c| (p, c))
            })
            .collect();
        Self {
            servers,
            tool: cpu_seconds("self").unwrap_or(0.0),
            start: Instant::now(),
        }
    }

    /// (server %, tool %) since `start`; the servers' sum.
    pub(super) fn stop(&self) -> (Option<f64>, f64) {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let server = (!self.servers.is_empty()).then(|| {
            self.servers
                .iter()
                .filter_map(|(p, c0)| cpu_seconds(p).map(|c| (c - c0) / wall * 100.0))
                .sum()
        });
        let tool = (cpu_seconds("self").unwrap_or(0.0) - self.tool) / wall * 100.0;
        (server, tool)
    }
}

pub(super) fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}%"))
}
