//! The process's own series, read from `/proc` at scrape time (Linux; elsewhere none of them
//! is written): the names and meanings are Prometheus's standard `process_*` ones.

/// What `/proc/self` says now.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Process {
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `sysconf(_SC_CLK_TCK)`, which is
/// 100 on every Linux architecture the gateway is built for.
const TICKS: f64 = 100.0;
const PAGE: u64 = 4096;

#[cfg(target_os = "linux")]
pub(crate) fn read() -> Process {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    let mut p = parse_stat(&stat, boot);
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    p
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read() -> Process {
    Process::default()
}

/// `/proc/stat`'s `btime`: the boot time, in seconds since the epoch.
fn boot_time(s: &str) -> Option<f64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/self/stat`: fields after the command name (which may hold spaces and parentheses,
/// so the split is at its last `)`); utime and stime are the 14th and 15th fields, starttime
/// the 22nd, rss (pages) the 24th.
fn parse_stat(stat: &str, boot: Option<f64>) -> Process {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Process::default();
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Process {
        resident_bytes: field(24).map(|pages| pages * PAGE),
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(u, s)| (u + s) as f64 / TICKS),
        open_fds: None,
        start_time_seconds: field(22).zip(boot).map(|(t, b)| b + t as f64 / TICKS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_with_a_command_name_holding_spaces() {
        let stat = "42 (tenant gate) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 \
                    1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let p = parse_stat(stat, Some(1_700_000_000.0));
        assert_eq!(p.resident_bytes, Some(300 * 4096));
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let p = read();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() > 0);
        assert!(p.start_time_seconds.unwrap() > 1_600_000_000.0);
    }
}
