//! The comparison harness runs end to end in its quick mode and writes
//! well-formed results, a doc and plots. Numbers are not checked: they
//! depend on the machine and on whatever else runs on it.

use mx_benches::record::{read_file, Record};
use std::collections::HashSet;
use std::process::Command;

#[test]
fn quick_run_writes_well_formed_results() {
    let dir = std::env::temp_dir().join(format!("mxb-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["--quick", "--out"])
        .arg(&dir)
        .output()
        .expect("run compare");
    assert!(
        out.status.success(),
        "compare --quick failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // Every line of the summary is a record with the common fields.
    let path = dir.join("compare-quick.jsonl");
    let text = std::fs::read_to_string(&path).expect("summary written");
    let recs: Vec<Record> = text
        .lines()
        .map(|l| Record::parse(l).unwrap_or_else(|| panic!("not a record: {l}")))
        .collect();
    assert!(!recs.is_empty());
    for r in &recs {
        assert!(!r.run.is_empty() && !r.machine.is_empty(), "{r:?}");
        assert!(!r.transport.is_empty() && !r.metric.is_empty(), "{r:?}");
        if r.metric == "unavailable" {
            assert!(r.note.is_some(), "{r:?}");
        } else {
            assert!(r.median.is_some_and(f64::is_finite), "{r:?}");
        }
        let v: serde_json::Value = serde_json::from_str(&r.to_line()).unwrap();
        for k in [
            "run",
            "machine",
            "transport",
            "mode",
            "size",
            "metric",
            "median",
            "p99",
            "unit",
        ] {
            assert!(v.get(k).is_some(), "field {k} missing in {v}");
        }
    }
    // Every transport that needs nothing but this machine was measured.
    let measured: HashSet<(&str, &str)> = recs
        .iter()
        .filter(|r| r.metric != "unavailable")
        .map(|r| (r.transport.as_str(), r.metric.as_str()))
        .collect();
    for t in ["mx-local", "tcp-loopback", "unix", "shm-ring", "shm-relay"] {
        for m in ["latency", "pingpong_bw", "stream_bw"] {
            assert!(measured.contains(&(t, m)), "no {m} for {t}");
        }
    }
    for (t, m) in [
        ("memcpy", "copy_bw"),
        ("mx-local", "backend_cpu"),
        ("mx-local", "aggregate_bw"),
    ] {
        assert!(measured.contains(&(t, m)), "no {m} for {t}");
    }
    // Transports that cannot run here say why.
    let named: HashSet<&str> = recs.iter().map(|r| r.transport.as_str()).collect();
    for t in ["openmpi-vader", "mx-veth"] {
        assert!(named.contains(t), "{t} neither measured nor explained");
    }
    // The raw file has every repetition.
    let raw = std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("compare-"))
        .expect("raw results");
    assert!(!read_file(&raw.path()).unwrap().is_empty());

    // The doc and the plots from the results file.
    let doc = dir.join("PERFORMANCE.md");
    let st = Command::new(env!("CARGO_BIN_EXE_compare"))
        .arg("--report")
        .arg(&path)
        .arg("--doc")
        .arg(&doc)
        .arg("--img")
        .arg(dir.join("img"))
        .status()
        .expect("run compare --report");
    assert!(st.success());
    let md = std::fs::read_to_string(&doc).unwrap();
    assert!(
        md.contains("## Targets") && md.contains("img/latency.svg"),
        "{md}"
    );
    for f in [
        "latency.svg",
        "bandwidth.svg",
        "pingpong-bandwidth.svg",
        "aggregate.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join("img").join(f)).unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
