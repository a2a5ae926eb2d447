//! A multi-host network-namespace harness for tests that need real
//! interfaces (the AF_PACKET NIC, the backend over MXoE, loss tests).
//!
//! [`Net`] builds N *hosts*, each a network namespace with one veth end
//! `eth0` (a MAC and an MTU per profile), and a *switch* namespace holding
//! a Linux bridge `br0` to which the other veth ends (`p0`, `p1`, ...) are
//! enslaved. Optionally each host puts its `eth0` behind a bridge `xenbr0`
//! of its own, as on a Xen Dom0 (the NIC then binds `xenbr0`).
//!
//! ```text
//!  ns x2mt-PID-K-h0          ns x2mt-PID-K-sw            ns x2mt-PID-K-h1
//!  [xenbr0] - eth0  <-veth->  p0 - br0 - p1  <-veth->  eth0 - [xenbr0]
//! ```
//!
//! Names are unique per run and per net (`x2mt-<pid>-<k>-...`); interface
//! names are the same in every net because each lives in its own
//! namespace, so the 15-character limit never bites and nothing is created
//! in the caller's namespace. Dropping the [`Net`] (also while a test
//! panics) deletes its namespaces; the first [`Net`] of a process also
//! deletes `x2mt-*` namespaces left by runs whose process is gone.
//!
//! Skips: [`Net::new`] returns `None` (after printing why) only if we are
//! not root or `ip` is missing. Everything else is a hard failure.
//!
//! Use it from an integration test with `mod netns;`.

#![allow(dead_code)]

pub mod lossy;

use backend::nic::af_packet::run_in_netns;
use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Prefix of every namespace this harness creates.
pub const PREFIX: &str = "x2mt";
/// Name of the hosts' interface.
pub const HOST_IF: &str = "eth0";
/// Name of a host's own bridge when [`NetBuilder::host_bridge`] is set.
pub const HOST_BRIDGE: &str = "xenbr0";
/// Name of the switch namespace's bridge.
pub const SWITCH_BRIDGE: &str = "br0";

static NEXT_NET: AtomicU32 = AtomicU32::new(0);
static STALE: Once = Once::new();

/// Why tests that need namespaces cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!(
            "not root (effective uid {uid}): network namespaces need it"
        ));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is missing: run scripts/setup.sh".into()),
    }
}

/// Runs `ip ARGS`, failing with its stderr.
///
/// # Errors
/// The command could not run or exited non-zero.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// Runs `ip -n NS -batch -` with `lines` on stdin (one process, many
/// commands).
fn ip_batch(ns: &str, lines: &[String]) -> Result<(), String> {
    let script = lines.join("\n") + "\n";
    run("ip", &["-n", ns, "-batch", "-"], Some(&script))
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(input.as_bytes())
            .map_err(|e| format!("{program} {args:?}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdin
                .map(|s| format!(" (input: {s:?})"))
                .unwrap_or_default()
        ))
    }
}

/// Whether `dev` in namespace `ns` is operationally up.
fn link_is_up(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(" state UP "))
        .unwrap_or(false)
}

/// Deletes `x2mt-<pid>-...` namespaces whose process no longer exists
/// (left by a crashed or killed run). Namespaces of live processes, other
/// test binaries running now included, are left alone.
pub fn delete_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// One host of a [`Net`].
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace (a name under `/run/netns`).
    pub ns: String,
    /// Its interface on the wire (`eth0`).
    pub iface: String,
    /// Its bridge over `iface`, when the net was built with one.
    pub bridge: Option<String>,
    /// MAC of `iface` (and of the bridge, which takes the same address).
    pub mac: [u8; 6],
    /// MTU of `iface` (and the bridge).
    pub mtu: u32,
    /// Its port on the switch (in [`Net::switch_ns`]).
    pub switch_port: String,
}

impl Host {
    /// The interface a NIC on this host binds: the bridge if there is
    /// one, else `eth0`.
    pub fn nic_iface(&self) -> &str {
        self.bridge.as_deref().unwrap_or(&self.iface)
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Options of a [`Net`].
#[derive(Debug, Clone)]
pub struct NetBuilder {
    hosts: usize,
    mtu: u32,
    host_bridge: bool,
}

impl NetBuilder {
    /// Number of hosts (default 2).
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n;
        self
    }

    /// MTU of every link (default 9000, the open-mx profile).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// Put each host's `eth0` behind a bridge `xenbr0`, as on Xen.
    pub fn host_bridge(mut self, on: bool) -> Self {
        self.host_bridge = on;
        self
    }

    /// Builds the net; `None` (after printing why) if namespaces cannot be
    /// used here. Panics if setting up fails for another reason.
    pub fn build(self) -> Option<Net> {
        if let Some(why) = skip_reason() {
            eprintln!("SKIP: {why}");
            return None;
        }
        STALE.call_once(delete_stale);
        assert!((1..=250).contains(&self.hosts), "1..=250 hosts");
        let k = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}-{}-{k}", std::process::id());
        let mut net = Net {
            switch: format!("{tag}-sw"),
            hosts: Vec::new(),
            tag,
        };
        // From here on `net`'s Drop cleans up whatever was created.
        if let Err(e) = net.setup(&self, k) {
            panic!("netns harness setup failed: {e}");
        }
        Some(net)
    }
}

/// N hosts joined by a switch, each in its own network namespace; deleted
/// on drop.
#[derive(Debug)]
pub struct Net {
    tag: String,
    switch: String,
    hosts: Vec<Host>,
}

impl Net {
    /// `hosts` hosts with links of `mtu`; `None` if skipped (see module docs).
    pub fn new(hosts: usize, mtu: u32) -> Option<Net> {
        Net::builder().hosts(hosts).mtu(mtu).build()
    }

    /// Options for a net.
    pub fn builder() -> NetBuilder {
        NetBuilder {
            hosts: 2,
            mtu: 9000,
            host_bridge: false,
        }
    }

    fn setup(&mut self, spec: &NetBuilder, k: u32) -> Result<(), String> {
        ip(&["netns", "add", &self.switch])?;
        // Registered before anything inside exists, so Drop deletes it.
        for i in 0..spec.hosts {
            let mac = [0x02, 0x58, 0x32, (k >> 8) as u8, k as u8, (i + 1) as u8];
            self.hosts.push(Host {
                ns: format!("{}-h{i}", self.tag),
                iface: HOST_IF.into(),
                bridge: spec.host_bridge.then(|| HOST_BRIDGE.to_owned()),
                mac,
                mtu: spec.mtu,
                switch_port: format!("p{i}"),
            });
        }
        let mut sw = vec![
            format!("link add {SWITCH_BRIDGE} type bridge"),
            "link set lo up".to_owned(),
        ];
        for h in &self.hosts {
            ip(&["netns", "add", &h.ns])?;
            let mac = mac_str(&h.mac);
            let mut cmds = vec![
                format!(
                    "link add {} mtu {} address {mac} type veth peer name {} netns {} mtu {}",
                    h.iface, h.mtu, h.switch_port, self.switch, h.mtu
                ),
                "link set lo up".to_owned(),
                format!("link set {} up", h.iface),
            ];
            if let Some(br) = &h.bridge {
                cmds.push(format!(
                    "link add {br} mtu {} address {mac} type bridge",
                    h.mtu
                ));
                cmds.push(format!("link set {} master {br}", h.iface));
                cmds.push(format!("link set {br} up"));
            }
            ip_batch(&h.ns, &cmds)?;
            sw.push(format!(
                "link set {} master {SWITCH_BRIDGE} up",
                h.switch_port
            ));
        }
        sw.push(format!("link set {SWITCH_BRIDGE} up"));
        ip_batch(&self.switch, &sw)?;
        self.wait_up()
    }

    /// Waits until every link of the net is operationally up.
    ///
    /// A link that was just set up has its carrier on at once, but the
    /// kernel activates its qdisc and lets a bridge port forward only when
    /// the link-watch work runs, up to a second later; until then frames
    /// vanish without an error. `state UP` in `ip link` is set by that same
    /// work, so once every device shows it the wire carries frames.
    fn wait_up(&self) -> Result<(), String> {
        let mut want: Vec<(String, String)> = vec![(self.switch.clone(), SWITCH_BRIDGE.into())];
        for h in &self.hosts {
            want.push((self.switch.clone(), h.switch_port.clone()));
            want.push((h.ns.clone(), h.iface.clone()));
            if let Some(br) = &h.bridge {
                want.push((h.ns.clone(), br.clone()));
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            want.retain(|(ns, dev)| !link_is_up(ns, dev));
            if want.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("links not up after 10 s: {want:?}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The switch's namespace.
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }

    /// Runs `f` on a thread inside host `i`'s namespace (see
    /// [`run_in_netns`]); sockets it opens stay there.
    pub fn run_in<R: Send>(&self, i: usize, f: impl FnOnce() -> R + Send) -> R {
        run_in_netns(&self.hosts[i].ns, f).expect("entering a test namespace")
    }

    /// A command running `program` inside host `i`'s namespace
    /// (`ip netns exec NS program`); add arguments and spawn it.
    pub fn command(&self, i: usize, program: &str) -> Command {
        self.command_in(&self.hosts[i].ns, program)
    }

    /// A command running `program` inside namespace `ns`.
    pub fn command_in(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Runs `ip -n <host i's ns> ARGS`.
    ///
    /// # Errors
    /// As [`ip`].
    pub fn ip_in(&self, i: usize, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.hosts[i].ns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets the MTU of host `i`'s links (its `eth0`, bridge and switch
    /// port) to `mtu`.
    ///
    /// # Errors
    /// As [`ip`].
    pub fn set_mtu(&mut self, i: usize, mtu: u32) -> Result<(), String> {
        let m = mtu.to_string();
        let h = &self.hosts[i];
        ip(&["-n", &self.switch, "link", "set", &h.switch_port, "mtu", &m])?;
        ip(&["-n", &h.ns, "link", "set", &h.iface, "mtu", &m])?;
        if let Some(br) = &h.bridge {
            ip(&["-n", &h.ns, "link", "set", br, "mtu", &m])?;
        }
        self.hosts[i].mtu = mtu;
        Ok(())
    }

    /// Applies `netem` to what host `i` sends (root qdisc of its `eth0`).
    ///
    /// # Errors
    /// [`NetemError::Unavailable`] if the kernel has no `sch_netem`
    /// (callers skip), [`NetemError::Failed`] otherwise.
    pub fn netem(&self, i: usize, netem: &Netem) -> Result<(), NetemError> {
        let h = &self.hosts[i];
        tc_netem(&h.ns, &h.iface, netem)
    }

    /// Applies `netem` to what host `i` receives (root qdisc of its port
    /// on the switch).
    ///
    /// # Errors
    /// As [`netem`](Self::netem).
    pub fn netem_to(&self, i: usize, netem: &Netem) -> Result<(), NetemError> {
        tc_netem(&self.switch, &self.hosts[i].switch_port, netem)
    }

    /// Removes the qdiscs [`netem`](Self::netem) and
    /// [`netem_to`](Self::netem_to) added for host `i` (no error if none).
    pub fn clear_netem(&self, i: usize) {
        let h = &self.hosts[i];
        let _ = run(
            "tc",
            &["-n", &h.ns, "qdisc", "del", "dev", &h.iface, "root"],
            None,
        );
        let _ = run(
            "tc",
            &[
                "-n",
                &self.switch,
                "qdisc",
                "del",
                "dev",
                &h.switch_port,
                "root",
            ],
            None,
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Hosts first, then the switch; deleting a namespace deletes its
        // interfaces and with them their veth peers.
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// A `netem` qdisc: `loss L% duplicate D% reorder R% delay Tms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Netem {
    /// Loss, percent.
    pub loss_pct: f32,
    /// Duplication, percent.
    pub duplicate_pct: f32,
    /// Reordering, percent (needs a delay: reordered frames skip it).
    pub reorder_pct: f32,
    /// Delay, milliseconds.
    pub delay_ms: u32,
}

impl Netem {
    /// The loss tests' default: `loss 5% duplicate 2% reorder 25% delay 1ms`.
    pub const LOSSY: Netem = Netem {
        loss_pct: 5.0,
        duplicate_pct: 2.0,
        reorder_pct: 25.0,
        delay_ms: 1,
    };
}

impl fmt::Display for Netem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss {}% duplicate {}% reorder {}% delay {}ms",
            self.loss_pct, self.duplicate_pct, self.reorder_pct, self.delay_ms
        )
    }
}

/// Why a `netem` qdisc could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetemError {
    /// The kernel has no `sch_netem` (not built, or a module that cannot be
    /// loaded): skip the test, saying so.
    Unavailable(String),
    /// Anything else.
    Failed(String),
}

impl fmt::Display for NetemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetemError::Unavailable(s) => write!(f, "netem unavailable: {s}"),
            NetemError::Failed(s) => write!(f, "netem failed: {s}"),
        }
    }
}

fn tc_netem(ns: &str, dev: &str, netem: &Netem) -> Result<(), NetemError> {
    let spec = netem.to_string();
    let mut args = vec!["-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"];
    args.extend(spec.split(' '));
    match run("tc", &args, None) {
        Ok(()) => Ok(()),
        Err(e) if e.contains("unknown") || e.contains("No such file") => {
            // Maybe a module not loaded yet: try once, then report.
            let _ = run("modprobe", &["sch_netem"], None);
            run("tc", &args, None).map_err(|e2| {
                NetemError::Unavailable(format!(
                    "{e2} (the kernel lacks sch_netem: CONFIG_NET_SCH_NETEM)"
                ))
            })
        }
        Err(e) => Err(NetemError::Failed(e)),
    }
}

/// Whether `netem` works on this kernel (probed once, on a throwaway net).
pub fn netem_available() -> Result<(), NetemError> {
    static PROBE: std::sync::OnceLock<Result<(), NetemError>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let Some(net) = Net::new(1, 1500) else {
                return Err(NetemError::Unavailable("namespaces unavailable".into()));
            };
            net.netem(0, &Netem::LOSSY)
        })
        .clone()
}
