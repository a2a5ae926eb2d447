//! The machine a run measures: CPUs, kernel, load, and how much CPU other
//! processes took while we measured (the machine is shared).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::procs::ticks_per_sec;

/// What the results are tied to.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Read it from `/proc`.
    pub fn probe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }

    /// One line: `2 x AMD EPYC, Linux 6.1.0`.
    pub fn describe(&self) -> String {
        format!("{} x {}, Linux {}", self.nproc, self.cpu, self.kernel)
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Busy jiffies of the whole machine (user+nice+system+irq+softirq).
fn busy_jiffies() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    [0usize, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum()
}

/// The machine's busy time over `window`, in % of one core.
pub fn busy_percent(window: Duration) -> f64 {
    let b0 = busy_jiffies();
    let t = Instant::now();
    std::thread::sleep(window);
    let b1 = busy_jiffies();
    100.0 * (b1 - b0) as f64 / ticks_per_sec() / t.elapsed().as_secs_f64()
}

/// The whole machine's busy time over a window.
pub struct BusyWindow {
    b0: u64,
    t: Instant,
}

impl BusyWindow {
    /// Start the window now.
    pub fn start() -> BusyWindow {
        BusyWindow {
            b0: busy_jiffies(),
            t: Instant::now(),
        }
    }

    /// % of one core the machine was busy since the start (200 % = two
    /// cores).
    pub fn percent(&self) -> f64 {
        100.0 * busy_jiffies().saturating_sub(self.b0) as f64
            / ticks_per_sec()
            / self.t.elapsed().as_secs_f64()
    }
}

/// Wait until two consecutive 0.5 s windows show the machine less than
/// `thresh` % (of one core) busy, for at most `max`. Returns whether it was
/// quiet and the last busy figure.
pub fn wait_quiet(thresh: f64, max: Duration) -> (bool, f64) {
    let t = Instant::now();
    let mut ok = 0;
    let mut last = 0.0;
    while t.elapsed() < max {
        last = busy_percent(Duration::from_millis(500));
        ok = if last < thresh { ok + 1 } else { 0 };
        if ok >= 2 {
            return (true, last);
        }
    }
    (false, last)
}

/// pid -> (session, utime + stime ticks, start time) of every process.
fn snapshot() -> HashMap<u32, (i64, u64, u64)> {
    let mut m = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return m;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(i) = s.rfind(')') else { continue };
        let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
        if f.len() < 20 {
            continue;
        }
        let num = |k: usize| f[k].parse::<u64>().unwrap_or(0);
        m.insert(pid, (f[3].parse().unwrap_or(0), num(11) + num(12), num(19)));
    }
    m
}

/// CPU used by processes outside this session (other users of the shared
/// machine, kernel threads included) over a window.
pub struct Foreign {
    sid: i64,
    snap: HashMap<u32, (i64, u64, u64)>,
    t: Instant,
}

impl Foreign {
    /// Start the window now.
    pub fn start() -> Foreign {
        // SAFETY: getsid(0) has no preconditions.
        let sid = i64::from(unsafe { libc::getsid(0) });
        Foreign {
            sid,
            snap: snapshot(),
            t: Instant::now(),
        }
    }

    /// % of one core the others used since the start.
    pub fn percent(&self) -> f64 {
        let now = snapshot();
        let wall = self.t.elapsed().as_secs_f64();
        let mut ticks = 0u64;
        for (pid, (sid, cpu, start)) in &now {
            if *sid == self.sid {
                continue;
            }
            match self.snap.get(pid) {
                Some((_, c0, s0)) if s0 == start => ticks += cpu.saturating_sub(*c0),
                Some(_) => ticks += cpu,
                None => ticks += cpu, // started during the window (approximately)
            }
        }
        100.0 * ticks as f64 / ticks_per_sec() / wall
    }
}

/// UTC date and time `YYYYMMDDTHHMMSSZ` (the run id).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamp_shape() {
        let s = super::utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20"));
        assert!(s.ends_with('Z'));
    }
}
