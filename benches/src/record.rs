//! One measured figure, as a line of the results file (JSON lines), and the
//! statistics behind it.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// One line of the results file.
///
/// `metric` is one of
/// - `latency`: one-way latency, half a round trip, `us`;
/// - `pingpong_bw`: message size / half round trip, `MB/s` (10^6 B/s);
///   `p99` is the bandwidth at the p99 half round trip;
/// - `stream_bw`: messages sent back to back (a window in flight), bytes /
///   (first send .. receiver's acknowledgement), `MB/s`; median over
///   trials, `p99` = the slowest trial;
/// - `copy_bw`: single-thread `memcpy`, `MB/s`;
/// - `aggregate_bw`: all `pairs` streaming at once, sum, `MB/s`;
/// - `backend_cpu`, `guest_cpu`: `%` of one core;
/// - `unavailable`: what could not be measured and why (`note`);
/// - machine facts (`transport` = `machine`): `nproc`, `load1`,
///   `cacheline_half_rtt`, `foreign_cpu`, `busy_before`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Run id (UTC start time).
    #[serde(default)]
    pub run: String,
    /// `nproc x CPU model, Linux release`.
    #[serde(default)]
    pub machine: String,
    /// What was measured: `mx-local`, `tcp-loopback`, `unix`, `shm-ring`,
    /// `shm-relay`, `openmpi-vader`, `openmpi-tcp`, `raw-veth`, ...
    pub transport: String,
    /// How: wait policies, placement, variant.
    pub mode: String,
    /// Message size in bytes, if the figure has one.
    pub size: Option<u64>,
    /// See the type's docs.
    pub metric: String,
    /// Median (or the single value).
    pub median: Option<f64>,
    /// 99th percentile (see the metric for what it means).
    pub p99: Option<f64>,
    /// Unit of `median` and `p99`.
    pub unit: String,
    /// Samples behind the figure (round trips, trials).
    #[serde(default)]
    pub n: u64,
    /// Repetition of the whole matrix this came from (0-based); in a
    /// summary, how many repetitions it summarises.
    #[serde(default)]
    pub rep: u32,
    /// Pairs streaming at once (`aggregate_bw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<u32>,
    /// Smallest and largest median over repetitions (summaries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<[f64; 2]>,
    /// CPU % of one core used by other processes while this was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_cpu: Option<f64>,
    /// Free text: why unavailable, what was cut, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Record {
    /// A record with the figure `median`/`p99` and nothing else set.
    pub fn new(
        transport: &str,
        mode: &str,
        size: Option<u64>,
        metric: &str,
        median: f64,
        p99: Option<f64>,
        unit: &str,
    ) -> Record {
        Record {
            run: String::new(),
            machine: String::new(),
            transport: transport.into(),
            mode: mode.into(),
            size,
            metric: metric.into(),
            median: Some(median),
            p99,
            unit: unit.into(),
            n: 1,
            rep: 0,
            pairs: None,
            spread: None,
            foreign_cpu: None,
            note: None,
        }
    }

    /// A figure that could not be measured, and why.
    pub fn unavailable(transport: &str, mode: &str, why: &str) -> Record {
        Record {
            median: None,
            n: 0,
            note: Some(why.into()),
            ..Record::new(transport, mode, None, "unavailable", 0.0, None, "")
        }
    }

    /// With `n` samples.
    pub fn with_n(mut self, n: usize) -> Record {
        self.n = n as u64;
        self
    }

    /// With a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Record {
        self.note = Some(note.into());
        self
    }

    /// One JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("records serialise")
    }

    /// Parse a line printed by [`Record::to_line`]; `None` if it is not one.
    pub fn parse(line: &str) -> Option<Record> {
        let l = line.trim();
        if !l.starts_with('{') {
            return None;
        }
        serde_json::from_str(l).ok()
    }

    /// Print this record on stdout (children report to the harness so).
    pub fn emit(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.to_line());
        let _ = out.flush();
    }

    /// The key a figure is compared by across repetitions.
    pub fn key(&self) -> (String, String, Option<u64>, String, Option<u32>) {
        (
            self.transport.clone(),
            self.mode.clone(),
            self.size,
            self.metric.clone(),
            self.pairs,
        )
    }
}

/// Read a results file (lines that are not records are skipped).
///
/// # Errors
/// If the file cannot be read.
pub fn read_file(path: &Path) -> std::io::Result<Vec<Record>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut v = Vec::new();
    for l in f.lines() {
        if let Some(r) = Record::parse(&l?) {
            v.push(r);
        }
    }
    Ok(v)
}

/// Write records as JSON lines.
///
/// # Errors
/// If the file cannot be written.
pub fn write_file(path: &Path, recs: &[Record]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut s = String::new();
    for r in recs {
        s.push_str(&r.to_line());
        s.push('\n');
    }
    std::fs::write(path, s)
}

/// Median, 99th percentile and count of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// 50th percentile.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Number of samples.
    pub n: usize,
}

/// Summarise `v` (sorted in place): the median is the middle sample (the
/// mean of the two middle ones for an even count), the p99 by nearest
/// rank.
///
/// # Panics
/// If `v` is empty.
pub fn summarize(v: &mut [f64]) -> Summary {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Summary {
        median,
        p99: at(0.99),
        min: v[0],
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
        n: v.len(),
    }
}

/// Merge repetitions: one record per key, the median of the repetitions'
/// medians (and of their p99s), `spread` = the smallest and largest median,
/// `rep` = how many repetitions. Unavailable records are kept once.
pub fn merge_reps(recs: &[Record]) -> Vec<Record> {
    let mut order = Vec::new();
    let mut groups: std::collections::HashMap<_, Vec<&Record>> = Default::default();
    for r in recs {
        let k = r.key();
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let g = &groups[&k];
            let mut out = g[0].clone();
            let mut med: Vec<f64> = g.iter().filter_map(|r| r.median).collect();
            let mut p99: Vec<f64> = g.iter().filter_map(|r| r.p99).collect();
            out.rep = g.len() as u32;
            out.n = g.iter().map(|r| r.n).sum();
            if !med.is_empty() {
                let s = summarize(&mut med);
                out.median = Some(s.median);
                if g.len() > 1 {
                    out.spread = Some([s.min, s.max]);
                }
            }
            if !p99.is_empty() {
                out.p99 = Some(summarize(&mut p99).median);
            }
            let mut f: Vec<f64> = g.iter().filter_map(|r| r.foreign_cpu).collect();
            if !f.is_empty() {
                out.foreign_cpu = Some(summarize(&mut f).max);
            }
            let notes: Vec<&str> = g.iter().filter_map(|r| r.note.as_deref()).collect();
            if !notes.is_empty() {
                let mut n: Vec<&str> = notes.clone();
                n.dedup();
                out.note = Some(n.join("; "));
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_line() {
        let r = Record::new("tcp", "blocking", Some(8), "latency", 1.5, Some(2.0), "us").with_n(3);
        let back = Record::parse(&r.to_line()).unwrap();
        assert_eq!(back, r);
        assert!(Record::parse("not json").is_none());
    }

    #[test]
    fn merge_takes_median_and_spread() {
        let mk = |v| Record::new("a", "b", Some(8), "latency", v, Some(v * 2.0), "us");
        let m = merge_reps(&[mk(1.0), mk(3.0), mk(2.0)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].median, Some(2.0));
        assert_eq!(merge_reps(&[mk(1.0), mk(3.0)])[0].median, Some(2.0));
        assert_eq!(m[0].spread, Some([1.0, 3.0]));
        assert_eq!(m[0].rep, 3);
    }

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&mut v);
        assert_eq!(s.median, 50.5);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.n, 100);
    }
}
