//! `mx_info`: what the MX backend reports: its board, its peers, and with
//! `-e N` the counters of endpoint N; also the open endpoints and the NIC counters.

#![forbid(unsafe_code)]

use clap::Parser;
use frontend::{Frontend, FrontendError};
use mx_proto::msg::control::{ControlError, COUNTER_LABELS, NIC_COUNTER_LABELS};
use mx_proto::platform::local::{LocalGuest, LocalTarget, DEFAULT_SOCKET_PATH, SOCKET_ENV};
use std::path::PathBuf;
use std::process::ExitCode;

/// Show the MX backend's board, its peers, and an endpoint's counters.
#[derive(Debug, Parser)]
#[command(name = "mx_info", disable_version_flag = true)]
struct Cli {
    /// Also print the counters of this endpoint.
    #[arg(short = 'e', value_name = "EID")]
    endpoint: Option<u8>,
    /// The backend's socket [default: $MX_BACKEND_SOCKET, else /run/mx-backend.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn mac(nic_id: u64) -> String {
    let b = nic_id.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

fn run(cli: &Cli) -> Result<(), String> {
    let sock = cli
        .socket
        .clone()
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(&sock)).map_err(|e| {
        format!(
            "cannot reach the MX backend at {} ({e}); start one with `mx-backend --socket {0}` \
             or set {SOCKET_ENV}",
            sock.display()
        )
    })?;
    let b = fe.board();
    let profile = match b.profile {
        0 => "mx",
        1 => "open-mx",
        _ => "unknown",
    };
    println!("MX backend at {}", sock.display());
    println!("Board {}:", b.board);
    println!("  nic id         {}", mac(b.nic_id));
    println!("  hostname       {}", b.hostname);
    println!("  profile        {profile} ({})", b.profile);
    println!("  MTU            {}", b.mtu);
    println!("  frag max       {}", b.frag_max);
    println!("  medium max     {}", b.medium_max);
    println!("  max endpoints  {}", b.max_endpoints);
    println!("Peers:");
    for i in 0..=u16::MAX {
        match fe.peer_by_index(i) {
            Ok(p) => println!(
                "  {:5}  {}  {}{}",
                p.index,
                mac(p.nic_id),
                if p.hostname.is_empty() {
                    "?"
                } else {
                    &p.hostname
                },
                if p.local { "  (this host)" } else { "" }
            ),
            Err(FrontendError::Refused(ControlError::PeerNotFound)) => break,
            Err(e) => return Err(format!("peer {i}: {e}")),
        }
    }
    let open: Vec<String> = (0..b.max_endpoints.min(256))
        .filter(|&ep| fe.counters(ep as u8).is_ok())
        .map(|ep| ep.to_string())
        .collect();
    println!(
        "Endpoints open: {}",
        if open.is_empty() {
            "none".to_string()
        } else {
            open.join(" ")
        }
    );
    match fe.nic_counters(b.board) {
        Ok(v) if v.is_empty() => println!("NIC: none (local platform only)"),
        Ok(v) => {
            println!("NIC counters (non-zero):");
            let width = NIC_COUNTER_LABELS
                .iter()
                .map(|l| l.len())
                .max()
                .unwrap_or(0);
            for (i, x) in v.iter().enumerate().filter(|(_, x)| **x != 0) {
                let label = NIC_COUNTER_LABELS
                    .get(i)
                    .map_or_else(|| format!("counter {i}"), |l| (*l).to_string());
                println!("  {label:width$}  {x}");
            }
        }
        Err(e) => return Err(format!("NIC counters: {e}")),
    }
    if let Some(ep) = cli.endpoint {
        let values = fe.counters(ep).map_err(|e| match e {
            FrontendError::Refused(ControlError::BadEndpoint) => {
                format!("endpoint {ep} is not open")
            }
            e => format!("counters of endpoint {ep}: {e}"),
        })?;
        println!("Endpoint {ep} counters:");
        let width = COUNTER_LABELS.iter().map(|l| l.len()).max().unwrap_or(0);
        for (i, v) in values.iter().enumerate() {
            let label = COUNTER_LABELS
                .get(i)
                .map_or_else(|| format!("counter {i}"), |l| (*l).to_string());
            println!("  {label:width$}  {v}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mx_info: {e}");
            ExitCode::FAILURE
        }
    }
}
