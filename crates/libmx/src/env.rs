//! The MX environment variables an application (or its MPI launcher) sets,
//! read once per endpoint open. Table with effects and defaults:
//! `docs/C-ABI.md`, section "Environment".
//!
//! Values are integers, as MX reads them; a switch is on when non-zero.
//! A value that is not an integer is not guessed at: the variable keeps
//! its default and [`MxEnv::warnings`] says so (the endpoint shell prints
//! the warnings to stderr once per process). `MX_ERRORS_ARE_FATAL` belongs
//! to the C ABI's error handlers (`ffi::error`) and `MX_BACKEND_SOCKET`,
//! `MX_PLATFORM` to the platform layer; they are not read here.

/// The MX variables this module reads.
pub const VARIABLES: &[&str] = &[
    "MX_DISABLE_SELF",
    "MX_DISABLE_SHMEM",
    "MX_ZOMBIE_SEND",
    "MX_IMM_ACK",
    "MX_MAX_RETRIES",
    "MX_VERBOSE",
    "MX_RCACHE",
    "MX_SPIN_US",
    "MX_STAGE_LARGE",
    "MX_DIRECT_PULL",
    "MX_PEER_CHANNELS",
    "MX_POLL_YIELD",
];

/// Default of `MX_SPIN_US` (µs): how long blocking waits spin first.
pub const DEFAULT_SPIN_US: u64 = 100;
/// Most pages `MX_STAGE_LARGE` may ask for (larger values are cut).
pub const STAGE_PAGES_MAX: u64 = 1 << 20;

/// What the MX variables ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxEnv {
    /// `MX_DISABLE_SELF` (default 0): messages to oneself go through the
    /// backend instead of being matched inside the library.
    pub disable_self: bool,
    /// `MX_DISABLE_SHMEM` (default 0): traffic with the other endpoints of
    /// this host takes the network path (the backend encodes the MXoE
    /// frames and decodes them again) instead of the intra-node shortcut.
    pub disable_shmem: bool,
    /// `MX_ZOMBIE_SEND` (default 1): eager sends may complete before their
    /// ack; 0: they complete only once acked.
    pub zombie_send: bool,
    /// `MX_IMM_ACK` (default 0): acknowledge every received message at
    /// once instead of after 4 messages or ~1/64 s.
    pub imm_ack: bool,
    /// `MX_MAX_RETRIES` (n > 0): sends of one message before its partner
    /// is declared unreachable (default: the core's 1000; 0 keeps it).
    pub max_retries: Option<u32>,
    /// `MX_VERBOSE` (default 0): a line on stderr when an endpoint opens or
    /// closes and when a partner is reset.
    pub verbose: bool,
    /// `MX_RCACHE` (default 1): MX's registration cache. Read and checked,
    /// no effect: nothing is pinned here (the backend copies large
    /// messages with `process_vm_readv`/`writev` or through the Xen grant
    /// pool, per message), so there is nothing to cache.
    pub rcache: bool,
    /// `MX_SPIN_US` (default 100): how long blocking waits spin before
    /// they sleep.
    pub spin_us: u64,
    /// `MX_STAGE_LARGE` (pages, default 0): stage large messages through a
    /// private pool of this many pages even where the backend could reach
    /// the application's buffers (0: only where the platform needs it,
    /// Xen); at most [`STAGE_PAGES_MAX`].
    pub stage_pages: usize,
    /// `MX_DIRECT_PULL` (default 1): copy large messages ourselves,
    /// straight from the sender process, where the backend allows it; 0
    /// lets the backend copy.
    pub direct_pull: bool,
    /// `MX_PEER_CHANNELS` (default 1): talk to the other endpoints of this
    /// host through peer channels of our own, with the backend out of the
    /// data path (crate::peers); 0 sends everything through the backend.
    pub peer_channels: bool,
    /// `MX_POLL_YIELD` (default
    /// [`crate::ffi::poll_policy::DEFAULT_POLL_YIELD`]): empty polls in a
    /// row (`mx_test`, `mx_test_any`, `mx_ipeek`, `mx_iprobe`) after which
    /// each further empty poll yields the CPU; 0 never yields.
    pub poll_yield: u32,
    /// Variables whose value was not understood (each kept its default).
    pub warnings: Vec<String>,
}

impl Default for MxEnv {
    /// The defaults, as with none of the variables set.
    fn default() -> Self {
        MxEnv {
            disable_self: false,
            disable_shmem: false,
            zombie_send: true,
            imm_ack: false,
            max_retries: None,
            verbose: false,
            rcache: true,
            spin_us: DEFAULT_SPIN_US,
            stage_pages: 0,
            direct_pull: true,
            peer_channels: true,
            poll_yield: crate::ffi::poll_policy::DEFAULT_POLL_YIELD,
            warnings: Vec::new(),
        }
    }
}

impl MxEnv {
    /// Read the process environment.
    pub fn read() -> Self {
        Self::parse(|k| std::env::var(k).ok())
    }

    /// Read the variables through `get` (the environment, or a table in
    /// tests).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut env = MxEnv::default();
        let mut num = |name: &str| -> Option<u64> {
            let raw = get(name)?;
            match raw.trim().parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    env.warnings.push(format!(
                        "ignoring {name}={raw:?}: not a non-negative integer"
                    ));
                    None
                }
            }
        };
        let disable_self = num("MX_DISABLE_SELF");
        let disable_shmem = num("MX_DISABLE_SHMEM");
        let zombie_send = num("MX_ZOMBIE_SEND");
        let imm_ack = num("MX_IMM_ACK");
        let max_retries = num("MX_MAX_RETRIES");
        let verbose = num("MX_VERBOSE");
        let rcache = num("MX_RCACHE");
        let spin_us = num("MX_SPIN_US");
        let stage_pages = num("MX_STAGE_LARGE");
        let direct_pull = num("MX_DIRECT_PULL");
        let peer_channels = num("MX_PEER_CHANNELS");
        let poll_yield = num("MX_POLL_YIELD");
        let on = |v: Option<u64>, default: bool| v.map_or(default, |v| v != 0);
        env.disable_self = on(disable_self, false);
        env.disable_shmem = on(disable_shmem, false);
        env.zombie_send = on(zombie_send, true);
        env.imm_ack = on(imm_ack, false);
        env.verbose = on(verbose, false);
        env.rcache = on(rcache, true);
        env.spin_us = spin_us.unwrap_or(DEFAULT_SPIN_US);
        env.stage_pages = stage_pages.map_or(0, |v| v.min(STAGE_PAGES_MAX) as usize);
        env.direct_pull = on(direct_pull, true);
        env.peer_channels = on(peer_channels, true);
        env.poll_yield = poll_yield.map_or(crate::ffi::poll_policy::DEFAULT_POLL_YIELD, |v| {
            u32::try_from(v).unwrap_or(u32::MAX)
        });
        env.max_retries = match max_retries {
            None | Some(0) => None,
            Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> MxEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MxEnv::parse(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let e = with(&[]);
        assert_eq!(e, MxEnv::default());
        assert!(e.zombie_send && e.rcache && !e.imm_ack && !e.disable_shmem);
        assert!(e.direct_pull);
        assert_eq!((e.spin_us, e.stage_pages), (100, 0));
        assert_eq!(e.poll_yield, crate::ffi::poll_policy::DEFAULT_POLL_YIELD);
    }

    #[test]
    fn switches_are_on_when_non_zero() {
        let e = with(&[
            ("MX_DISABLE_SELF", "1"),
            ("MX_DISABLE_SHMEM", "2"),
            ("MX_ZOMBIE_SEND", "0"),
            ("MX_IMM_ACK", " 1 "),
            ("MX_VERBOSE", "1"),
            ("MX_RCACHE", "0"),
            ("MX_MAX_RETRIES", "7"),
            ("MX_SPIN_US", "0"),
            ("MX_STAGE_LARGE", "99999999"),
            ("MX_DIRECT_PULL", "0"),
            ("MX_PEER_CHANNELS", "0"),
            ("MX_POLL_YIELD", "0"),
        ]);
        assert_eq!(e.poll_yield, 0, "0: never yield");
        assert_eq!(with(&[("MX_POLL_YIELD", "7")]).poll_yield, 7);
        assert_eq!(
            with(&[("MX_POLL_YIELD", "99999999999")]).poll_yield,
            u32::MAX
        );
        assert_eq!(e.stage_pages, 1 << 20, "capped");
        assert!(!e.direct_pull && !e.peer_channels);
        assert!(e.disable_self && e.disable_shmem && e.imm_ack && e.verbose);
        assert!(!e.zombie_send && !e.rcache);
        assert_eq!(e.max_retries, Some(7));
        assert_eq!(e.spin_us, 0);
        assert!(e.warnings.is_empty());
        let e = with(&[("MX_DISABLE_SHMEM", "0"), ("MX_ZOMBIE_SEND", "1")]);
        assert!(!e.disable_shmem && e.zombie_send);
    }

    #[test]
    fn bad_values_keep_the_default_and_say_so() {
        let e = with(&[
            ("MX_ZOMBIE_SEND", "no"),
            ("MX_IMM_ACK", "-1"),
            ("MX_MAX_RETRIES", "lots"),
        ]);
        assert!(e.zombie_send && !e.imm_ack);
        assert_eq!(e.max_retries, None);
        assert_eq!(e.warnings.len(), 3, "{:?}", e.warnings);
        assert!(e.warnings[0].contains("MX_ZOMBIE_SEND=\"no\""));
        // 0 retries would fail every send: it keeps the default instead.
        assert_eq!(with(&[("MX_MAX_RETRIES", "0")]).max_retries, None);
        assert_eq!(
            with(&[("MX_MAX_RETRIES", "99999999999")]).max_retries,
            Some(u32::MAX)
        );
    }
}
