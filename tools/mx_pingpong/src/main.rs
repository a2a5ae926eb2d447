//! `mx_pingpong`: latency and bandwidth between two MX endpoints,
//! option-compatible with MX's `mx_pingpong`.
//!
//! ```text
//! host1$ mx_pingpong                 # receiver, endpoint 1
//! host2$ mx_pingpong -d host1:0      # sender: prints the table
//! $ mx_pingpong --demo               # both on this machine, with an embedded backend
//! ```
//!
//! The protocol is the classic C mx_pingpong's, so either side may be that
//! program (see [`params`]): the sender connects to the receiver and
//! sends its parameters (a 108-byte big-endian struct) with match
//! `0x0000222211110000`; the receiver connects back to the address in
//! them; ping `k` carries match `0x1000 + k`, pong `k` match `k`, counting
//! across the whole run; per length of `N + W` loop iterations the sender
//! sends `N + W + 2` pings and the receiver `N + W + 1` pongs, with two
//! receives posted ahead on each side.

#![forbid(unsafe_code)]

use clap::Parser;
use mx_proto::platform::local::{DEFAULT_SOCKET_PATH, SOCKET_ENV};
use std::path::PathBuf;
use std::process::ExitCode;

/// Measure MX latency and bandwidth between two endpoints (MX's
/// mx_pingpong). Without -d, wait for a sender; with -d, send and print
/// the table.
#[derive(Debug, Clone, Parser)]
#[command(name = "mx_pingpong", disable_version_flag = true)]
pub(crate) struct Cli {
    /// NIC id of the local board (hex, or a MAC address); default: any.
    #[arg(short = 'n', value_name = "NIC_ID", value_parser = parse_nic_id)]
    pub nic_id: Option<u64>,
    /// Local board number; default: any.
    #[arg(short = 'b', value_name = "BOARD")]
    pub board: Option<u32>,
    /// Local endpoint id (receiver default 1, sender any).
    #[arg(short = 'e', value_name = "EID")]
    pub endpoint: Option<u8>,
    /// Receiver: keep serving runs instead of exiting after one.
    #[arg(short = 's')]
    pub serve: bool,
    /// Destination: hostname (e.g. node1:0) or 0x-hex NIC id. Makes this the sender.
    #[arg(short = 'd', value_name = "HOST")]
    pub dest: Option<String>,
    /// Remote endpoint id.
    #[arg(short = 'r', value_name = "EID", default_value_t = 1)]
    pub remote_endpoint: u8,
    /// Endpoint key (both sides).
    #[arg(short = 'f', value_name = "KEY", default_value = "0x12345", value_parser = parse_u32)]
    pub key: u32,
    /// Start length [default: 0].
    #[arg(short = 'S', value_name = "LEN", value_parser = parse_u32)]
    pub start: Option<u32>,
    /// End length, exclusive (at most 1 GiB) [default: 128; --demo: 4 MiB + 1].
    #[arg(short = 'E', value_name = "LEN", value_parser = parse_u32)]
    pub end: Option<u32>,
    /// Length increment [default: 1].
    #[arg(short = 'I', value_name = "N", value_parser = parse_u32)]
    pub incr: Option<u32>,
    /// Length multiplier, overrides -I: the next length is the length times
    /// this (truncated), or one more when that does not grow it [--demo: 2].
    #[arg(short = 'M', value_name = "MULT")]
    pub mult: Option<f64>,
    /// File of lengths (white space separated; replaces -S/-E/-I/-M).
    #[arg(short = 'L', value_name = "FILE")]
    pub lengths_file: Option<PathBuf>,
    /// Iterations per length.
    #[arg(short = 'N', value_name = "N", default_value = "1000", value_parser = parse_u32)]
    pub iterations: u32,
    /// Verify every byte of every message.
    #[arg(short = 'V')]
    pub verify: bool,
    /// Block in wait instead of polling test.
    #[arg(short = 'w')]
    pub block: bool,
    /// Warm-up iterations per length.
    #[arg(short = 'W', value_name = "N", default_value = "10", value_parser = parse_u32)]
    pub warmup: u32,
    /// Use synchronous sends (issend).
    #[arg(short = 'R')]
    pub issend: bool,
    /// The backend's socket [default: $MX_BACKEND_SOCKET, else /run/mx-backend.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// One command: start a backend on a temporary socket, a receiver
    /// process and a sender, print the table from 0 B to 4 MiB, clean up.
    #[arg(long)]
    pub demo: bool,
    /// Move at most MIB mebibytes each way per length (fewer iterations
    /// for large lengths, at least 10); 0 = no cap [default: 0; --demo: 256].
    #[arg(long, value_name = "MIB")]
    pub budget: Option<u32>,
    /// Exit when standard input closes (the --demo receiver dies with its parent).
    #[arg(long, hide = true)]
    pub die_with_parent: bool,
}

impl Cli {
    /// The backend socket this run uses.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH))
    }
}

/// A decimal or 0x-hex number.
pub(crate) fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    r.map_err(|_| format!("`{s}` is not a number (decimal or 0x-hex)"))
}

/// A decimal or 0x-hex 32-bit number.
pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_u64(s)?;
    u32::try_from(v).map_err(|_| format!("`{s}` does not fit in 32 bits"))
}

/// A NIC id: hex (with or without 0x) or a MAC address `02:00:5e:10:00:01`.
pub(crate) fn parse_nic_id(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a NIC id (hex like 0x0260dd471a2b, or a MAC address)");
    let v = if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() != 6 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
            return Err(bad());
        }
        parts.iter().try_fold(0u64, |acc, p| {
            u8::from_str_radix(p, 16)
                .map(|b| acc << 8 | u64::from(b))
                .map_err(|_| bad())
        })?
    } else {
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        u64::from_str_radix(hex, 16).map_err(|_| bad())?
    };
    if v >= 1 << 48 {
        return Err(format!("`{s}` is wider than 48 bits"));
    }
    Ok(v)
}

/// Print a line on stdout; a closed stdout (`| head`) is an error, not a
/// panic, so the caller still cleans up.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, $($arg)*)
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))
    }};
}
pub(crate) use say;

mod demo;
mod params;
mod pingpong;

/// A NIC id as a MAC address.
pub(crate) fn mac(nic_id: u64) -> String {
    let b = nic_id.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.die_with_parent {
        pingpong::exit_when_stdin_closes();
    }
    let r = if cli.demo {
        demo::run(&cli)
    } else if cli.dest.is_some() {
        pingpong::sender_main(&cli)
    } else {
        pingpong::receiver_main(&cli)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mx_pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0x12345"), Ok(0x12345));
        assert_eq!(parse_u32("74565"), Ok(0x12345));
        assert!(parse_u32("0x1_0000_0000").is_err());
        assert!(parse_u32("0x100000000").is_err());
        assert!(parse_u32("twelve").is_err());
        assert_eq!(parse_nic_id("0x0260dd471a2b"), Ok(0x0260_dd47_1a2b));
        assert_eq!(parse_nic_id("260dd471a2b"), Ok(0x0260_dd47_1a2b));
        assert_eq!(parse_nic_id("02:60:dd:47:1a:2b"), Ok(0x0260_dd47_1a2b));
        assert!(parse_nic_id("02:60:dd:47:1a").is_err());
        assert!(parse_nic_id("0x1000000000000").is_err());
        assert_eq!(mac(0x0260_dd47_1a2b), "02:60:dd:47:1a:2b");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["mx_pingpong", "-d", "node1:0", "-V", "-N", "5", "-f", "7"])
            .unwrap();
        assert_eq!(c.dest.as_deref(), Some("node1:0"));
        assert!(c.verify && c.iterations == 5 && c.key == 7 && c.remote_endpoint == 1);
    }
}
