//! `mx-backend`: the host daemon of Xen2MX-rs.

#![deny(unsafe_code)]

use backend::{local_region, Backend, BackendConfig, IdlePolicy, RawAccess};
use clap::{Parser, ValueEnum};
use mx_proto::platform::auto::{AutoHost, AutoHostConfig, Choice};
use mx_proto::platform::local::{LocalHostConfig, DEFAULT_SOCKET_PATH, SOCKET_ENV};
use mx_proto::platform::xen::XenHostConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlatformArg {
    /// Guests are local processes (memfd, eventfd, Unix socket). No hypervisor needed.
    Local,
    /// Guests are Xen domains (grant tables, event channels, xenstore).
    Xen,
    /// Xen if /dev/xen/evtchn and /proc/xen are present, else local ($MX_PLATFORM overrides).
    Auto,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// MXoE compatibility (Myricom MX, Open-MX --enable-mx-wire): 4 KiB fragments.
    Mx,
    /// Native Open-MX (the default build), with --mtu (9000 by default).
    OpenMx,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum IdleArg {
    /// Busy-poll for the spin window, then sleep.
    Spin,
    /// Poll and yield the CPU for the spin window, then sleep (best on few cores).
    Yield,
    /// Sleep as soon as there is no work.
    Block,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RawAccessArg {
    /// Local guests running as root or as the backend's user; never a Xen guest.
    Privileged,
    /// Any guest, Xen guests included (a mapper in a trusted guest).
    Any,
    /// Nobody: the raw API is refused.
    None,
}

/// The MX backend daemon: serves MX endpoints of the guests (or local
/// processes) of this host, delivers messages between them, and speaks
/// MXoE on the network.
#[derive(Debug, Parser)]
#[command(name = "mx-backend", version, about, long_about = None)]
struct Cli {
    /// Where guests find the backend (local platform): a Unix socket path.
    /// Defaults to $MX_BACKEND_SOCKET, else /run/mx-backend.sock.
    #[arg(long, short = 's')]
    socket: Option<PathBuf>,

    /// Which hypervisor interface to serve guests through.
    #[arg(long, value_enum, default_value = "local")]
    platform: PlatformArg,

    /// Xen: device slots (attachable guest processes) created per domain.
    #[arg(long, default_value_t = 32)]
    xen_slots: u32,

    /// Xen: do not create the xenstore device directories of new domains
    /// (a toolstack hook runs mx-xen-devices.sh instead).
    #[arg(long)]
    xen_no_create_devices: bool,

    /// This board's hostname as MX reports it (default: `<nodename>:0`).
    #[arg(long)]
    hostname: Option<String>,

    /// Most endpoints per board.
    #[arg(long, default_value_t = 32)]
    max_endpoints: u8,

    /// Speak MXoE on this network interface (AF_PACKET; needs CAP_NET_RAW).
    /// Without it the backend serves only the endpoints of this host.
    #[arg(long)]
    iface: Option<String>,

    /// Wire profile; every node of the fabric must use the same.
    #[arg(long, value_enum, default_value = "open-mx")]
    profile: ProfileArg,

    /// MTU of the open-mx profile (Open-MX --with-mtu; 1280..65535).
    #[arg(long, default_value_t = 9000)]
    mtu: u32,

    /// Static peers file: one `MAC hostname` per line, `#` comments.
    #[arg(long)]
    peers: Option<PathBuf>,

    /// Do not broadcast mapper announcements (rely on the peers file and
    /// on the other nodes' announcements).
    #[arg(long)]
    no_discovery: bool,

    /// Fail a pull after this many seconds without progress.
    #[arg(long, default_value_t = 500)]
    pull_timeout_s: u64,

    /// What the service loop does when idle.
    #[arg(long, value_enum, default_value = "yield")]
    idle: IdleArg,

    /// How long to keep polling after the last work before sleeping, in microseconds.
    #[arg(long, default_value_t = 200)]
    spin_us: u64,

    /// Who may open the board's raw endpoint (the MX raw API of fabric
    /// mappers: whole frames in and out, board and peer names).
    #[arg(long, value_enum, default_value = "privileged")]
    raw_access: RawAccessArg,

    /// Peer channels one endpoint may have with the other endpoints of
    /// this host (0: none, every message crosses the backend).
    #[arg(long, default_value_t = backend::peer_channels::DEFAULT_PER_ENDPOINT)]
    peer_channels: usize,
    /// Most attached guests (control connections) per uid (local) or
    /// domain (Xen).
    #[arg(long, default_value_t = backend::GuestLimits::default().attachments)]
    max_guests_per_user: u32,

    /// Most attached guests of all users together.
    #[arg(long, default_value_t = backend::GuestLimits::default().total_attachments)]
    max_guests: u32,

    /// Most open endpoints per uid (local) or domain (Xen).
    #[arg(long, default_value_t = backend::GuestLimits::default().endpoints)]
    max_endpoints_per_user: u32,

    /// Most shared memory (MiB) mapped for the channels of one uid or domain.
    #[arg(long, default_value_t = backend::GuestLimits::default().memory >> 20)]
    max_memory_per_user_mib: u64,

    /// Most peer channels (offered or up) of the endpoints of one uid or domain.
    #[arg(long, default_value_t = backend::GuestLimits::default().peer_channels)]
    max_peer_channels_per_user: u32,

    /// How long a command waits for a same-host destination that keeps its
    /// rings full before it is dropped and counted, in milliseconds.
    #[arg(long, default_value_t = 100)]
    stalled_wait_ms: u64,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let platform = match cli.platform {
        PlatformArg::Local => Choice::Local,
        PlatformArg::Xen => Choice::Xen,
        PlatformArg::Auto => match Choice::from_env() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mx-backend: {e}");
                return ExitCode::from(2);
            }
        },
    };

    let mut cfg = BackendConfig::new();
    if let Some(h) = cli.hostname {
        cfg.nic_id = backend::config::local_nic_id(&h);
        cfg.hostname = h;
    }
    cfg.max_endpoints = cli.max_endpoints;
    cfg.idle = match cli.idle {
        IdleArg::Spin => IdlePolicy::Spin,
        IdleArg::Yield => IdlePolicy::Yield,
        IdleArg::Block => IdlePolicy::Block,
    };
    cfg.spin = Duration::from_micros(cli.spin_us);
    let profile = match cli.profile {
        ProfileArg::Mx => mxoe_wire::WireProfile::MX,
        ProfileArg::OpenMx => match mxoe_wire::WireProfile::open_mx(cli.mtu) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("mx-backend: --mtu {}: {e:?}", cli.mtu);
                return ExitCode::from(2);
            }
        },
    };
    cfg.set_profile(profile);
    cfg.peers_file = cli.peers;
    cfg.discovery = !cli.no_discovery;
    cfg.wire.pull_timeout = Duration::from_secs(cli.pull_timeout_s);
    cfg.peer_channels_per_endpoint = cli.peer_channels;
    cfg.wire.stalled_wait = Duration::from_millis(cli.stalled_wait_ms);
    cfg.limits = backend::GuestLimits {
        attachments: cli.max_guests_per_user,
        total_attachments: cli.max_guests,
        endpoints: cli.max_endpoints_per_user,
        memory: cli.max_memory_per_user_mib.saturating_mul(1 << 20),
        peer_channels: cli.max_peer_channels_per_user,
    };
    cfg.raw_access = match cli.raw_access {
        RawAccessArg::Privileged => RawAccess::Privileged,
        RawAccessArg::Any => RawAccess::Any,
        RawAccessArg::None => RawAccess::Nobody,
    };
    let nic: Option<Box<dyn backend::nic::Nic>> = match &cli.iface {
        None => None,
        Some(iface) => {
            let opts = backend::nic::af_packet::PacketOpts::default();
            match backend::nic::af_packet::PacketNic::open(iface, &opts) {
                Ok(n) => {
                    if let Err(e) = n.check_wire_profile(&profile) {
                        eprintln!("mx-backend: {e}");
                        return ExitCode::from(2);
                    }
                    Some(Box::new(n))
                }
                Err(e) => {
                    eprintln!("mx-backend: cannot open {iface}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };

    let socket = cli
        .socket
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
    let platform_cfg = AutoHostConfig {
        platform,
        local: LocalHostConfig::new(&socket),
        xen: XenHostConfig {
            create_devices: !cli.xen_no_create_devices,
            slots: cli.xen_slots,
            ..XenHostConfig::default()
        },
    };
    let mut backend = match Backend::<AutoHost>::new_with_nic(cfg, &platform_cfg, local_region, nic)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "mx-backend: cannot listen ({:?}; socket {}): {e}",
                platform.resolve_host(),
                socket.display()
            );
            return ExitCode::from(1);
        }
    };
    let stop = backend.stop_handle();
    install_signal_stop(stop);
    match backend.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mx-backend: {e}");
            ExitCode::from(1)
        }
    }
}

/// Stop cleanly on SIGINT/SIGTERM (the socket file is removed on drop).
#[allow(unsafe_code)]
fn install_signal_stop(stop: backend::StopHandle) {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset/sigaddset initialise the set we own; pthread_sigmask
    // blocks the two signals in this thread (inherited by threads spawned
    // after), so only the waiting thread below receives them via sigwait.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        let set = set.assume_init();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is an initialised sigset; sigwait writes the signal number.
        unsafe { libc::sigwait(&set, &mut sig) };
        stop.stop();
    });
}
