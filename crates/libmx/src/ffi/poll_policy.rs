//! Polling that cooperates: what `mx_test`, `mx_test_any`, `mx_ipeek` and
//! `mx_iprobe` do after a poll that found nothing.
//!
//! MPI progress engines and classic MX programs call these in a tight loop
//! and never yield. On a host with fewer cores than runnable processes
//! (two guests spinning on two cores, and the backend that must move their
//! messages) the spinners keep the backend off the CPU until the
//! scheduler's tick preempts one of them: one-way latency becomes
//! milliseconds instead of microseconds. So after `MX_POLL_YIELD`
//! consecutive empty polls on a thread ([`DEFAULT_POLL_YIELD`] by default)
//! every further empty poll yields the CPU (`sched_yield`) before it
//! returns, until a poll finds something. Below the bound the poll path
//! makes no system call: the policy is a counter in a thread-local, no
//! clock is read. `MX_POLL_YIELD=0` never yields (pure busy polling).
//!
//! The counter is per thread, not per endpoint: it is the spinning thread
//! that must give the CPU away, whichever endpoints it polls.
//!
//! **Only where the backend must run.** When the endpoint talks to its
//! partners through peer channels and the backend holds none of its
//! commands, the spinner starves nobody it waits for, and yielding only
//! adds a scheduler round trip: the bound is then [`LONG_FACTOR`] times
//! longer (a fallback, so a spinner still lets others run now and then).
//! Measured with `benches/c/mx_mpi_poll.c` (two processes busy-polling
//! `mx_test`, 8 B one-way, 2 cores, quick plan): without peer channels and
//! without yielding 1797 µs; yielding after 32 empty polls 5.4 µs (1000:
//! 47 µs, 20000: 1451 µs); with peer channels and never yielding 0.93 µs,
//! but yielding after 32 empty polls regardless 6.5 µs — hence the two
//! bounds.
//!
//! **Unless the host is oversubscribed.** The long bound assumes the
//! spinner has a core of its own. When more processes want to run than
//! there are cores (an MPI job of 3 ranks or more on 2 cores, each rank
//! spinning), the rank we wait for may be the one kept off the CPU, and
//! 16384 empty polls before each yield cost it a scheduler slice per
//! message: MPICH's `sendflood` test at 3 ranks on 2 cores went 8x faster
//! yielding after every empty poll than with the long bound. The signal
//! is the thread's involuntary context switches (`getrusage`
//! `RUSAGE_THREAD`, `ru_nivcsw`): they grow when the scheduler preempts
//! the spinner, or when one of its yields actually hands the CPU to
//! someone else; neither happens when the spinner is alone on its core.
//! The count is read at a yield only (every yield while uncontended —
//! they are 16384 polls apart — and every [`CHECK_EVERY`]-th while
//! contended), so the poll path itself still makes no system call. While
//! switches grow, the short bound applies even with peer channels; after
//! a window of yields without one, the long bound is back.
//!
//! **Preempted is not oversubscribed.** Switches alone also grow when a
//! kernel thread or a timer takes the core for a moment, and on a noisy
//! host that happens every few milliseconds: measured here (session 6),
//! two spinning `mx_test` programs on two cores were preempted about 300
//! times a second by unrelated work, every check saw a switch, and the
//! short bound made the 8-byte one-way 5.7 µs instead of 0.7 µs. So a
//! check counts as contended only if, besides a switch, more tasks are
//! runnable than this process may use cores (`/proc/loadavg`'s running
//! count against the affinity mask, read at the check only): 3 spinning
//! ranks on 2 cores are, 2 ranks and a passing kernel thread almost never.
//! Without `/proc` the switches alone decide, as before.

use std::cell::Cell;
use std::sync::OnceLock;

/// Default of `MX_POLL_YIELD`: empty polls in a row before a polling call
/// starts yielding the CPU while the endpoint needs the backend (see the
/// module's measurements: 32 gives 5.4 µs, 1000 already 47 µs).
pub const DEFAULT_POLL_YIELD: u32 = 32;

/// How much longer the bound is while the endpoint does not need the
/// backend (peer channels up, none of its commands waiting there).
pub const LONG_FACTOR: u32 = 512;

/// While contended, the involuntary switch count is read at every
/// `CHECK_EVERY`-th yield.
pub const CHECK_EVERY: u32 = 64;

/// What the caller should do after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return at once (found something, or still under the bound).
    Return,
    /// Yield the CPU, then return.
    Yield,
}

/// The state machine: consecutive empty polls against a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    bound: u32,
    empty: u32,
    /// Others want this thread's core (see the module docs).
    contended: bool,
    /// Yields since the involuntary switch count was last read.
    yields: u32,
    /// That count when it was last read.
    switches: Option<u64>,
}

impl PollPolicy {
    /// A policy that yields from the `bound`-th consecutive empty poll on
    /// (0: never).
    pub const fn new(bound: u32) -> Self {
        PollPolicy {
            bound,
            empty: 0,
            contended: false,
            yields: 0,
            switches: None,
        }
    }

    /// Account one poll (`found`: it completed, handed out or reported
    /// something, or failed) and say what to do next. A poll that found
    /// something resets the count.
    /// `needs_backend`: the endpoint waits on the backend (no peer channel
    /// up, or commands of ours not consumed yet), so the short bound applies.
    pub fn record(&mut self, found: bool, needs_backend: bool) -> Next {
        if found || self.bound == 0 {
            self.empty = 0;
            return Next::Return;
        }
        self.empty = self.empty.saturating_add(1);
        let bound = if needs_backend || self.contended {
            self.bound
        } else {
            self.bound.saturating_mul(LONG_FACTOR)
        };
        if self.empty >= bound {
            Next::Yield
        } else {
            Next::Return
        }
    }

    /// After a [`Next::Yield`]: whether the caller should read the
    /// thread's involuntary context switches now and pass them to
    /// [`PollPolicy::observe`].
    pub fn check_due(&mut self) -> bool {
        self.yields = self.yields.saturating_add(1);
        !self.contended || self.yields >= CHECK_EVERY
    }

    /// The thread's involuntary context switches so far, and whether more
    /// tasks are runnable than there are cores for us (`crowded`):
    /// contended if the switches grew since the last reading (the first
    /// reading is a baseline) on a crowded host.
    pub fn observe(&mut self, involuntary: u64, crowded: bool) {
        if let Some(before) = self.switches {
            self.contended = involuntary > before && crowded;
        }
        self.switches = Some(involuntary);
        self.yields = 0;
    }

    /// Whether the short bound applies for contention.
    pub fn contended(&self) -> bool {
        self.contended
    }

    /// Empty polls in a row so far.
    pub fn empty_polls(&self) -> u32 {
        self.empty
    }

    /// The bound (0: never yields).
    pub fn bound(&self) -> u32 {
        self.bound
    }
}

/// `MX_POLL_YIELD`, read once per process.
fn bound() -> u32 {
    static BOUND: OnceLock<u32> = OnceLock::new();
    *BOUND.get_or_init(|| crate::env::MxEnv::read().poll_yield)
}

thread_local! {
    static POLLER: Cell<Option<PollPolicy>> = const { Cell::new(None) };
}

/// Called by each polling entry point once per call, after the endpoint
/// lock was released: yields the CPU when this thread's polls have been
/// empty for too long.
pub fn after_poll(found: bool, needs_backend: bool) {
    POLLER.with(|p| {
        let cur = p.get();
        // A poll that found something after one that did: nothing to write.
        if found && cur.is_some_and(|c| c.empty == 0) {
            return;
        }
        let mut pol = cur.unwrap_or_else(|| PollPolicy::new(bound()));
        if pol.record(found, needs_backend) == Next::Yield {
            std::thread::yield_now();
            if pol.check_due() {
                if let Some(n) = involuntary_switches() {
                    pol.observe(n, crowded().unwrap_or(true));
                }
            }
        }
        p.set(Some(pol));
    });
}

/// Whether more tasks are runnable on the host than this process may use
/// cores, now; `None` if that cannot be read.
fn crowded() -> Option<bool> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut buf = [0u8; 128];
    let n = std::io::Read::read(&mut std::fs::File::open("/proc/loadavg").ok()?, &mut buf).ok()?;
    Some(runnable_tasks(&buf[..n])? > cores)
}

/// The running count of `/proc/loadavg` ("0.25 0.06 0.07 2/113 10647":
/// 2 tasks runnable now, the reader among them).
fn runnable_tasks(loadavg: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(loadavg).ok()?;
    let field = s.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// This thread's involuntary context switches (`ru_nivcsw`).
fn involuntary_switches() -> Option<u64> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a writable rusage the call fills; RUSAGE_THREAD
    // names the calling thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so it initialised the struct (and it
    // was zeroed before).
    let ru = unsafe { ru.assume_init() };
    u64::try_from(ru.ru_nivcsw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_from_the_bound_on_until_a_poll_finds_something() {
        let mut p = PollPolicy::new(3);
        assert_eq!(p.record(false, true), Next::Return);
        assert_eq!(p.record(false, true), Next::Return);
        assert_eq!(p.record(false, true), Next::Yield, "third empty poll");
        assert_eq!(p.record(false, true), Next::Yield, "and every one after");
        assert_eq!(p.empty_polls(), 4);
        assert_eq!(p.record(true, true), Next::Return);
        assert_eq!(p.empty_polls(), 0, "a success resets");
        assert_eq!(p.record(false, true), Next::Return);
        assert_eq!(p.record(false, true), Next::Return);
        assert_eq!(p.record(false, true), Next::Yield);
    }

    #[test]
    fn bound_zero_never_yields_and_one_yields_at_once() {
        let mut never = PollPolicy::new(0);
        for _ in 0..10_000 {
            assert_eq!(never.record(false, true), Next::Return);
        }
        assert_eq!(never.empty_polls(), 0);
        let mut eager = PollPolicy::new(1);
        assert_eq!(eager.record(false, true), Next::Yield);
        assert_eq!(eager.record(true, true), Next::Return);
        assert_eq!(eager.record(false, true), Next::Yield);
    }

    #[test]
    fn without_the_backend_in_the_path_the_bound_is_long() {
        let mut p = PollPolicy::new(4);
        for _ in 0..4 * LONG_FACTOR - 1 {
            assert_eq!(p.record(false, false), Next::Return);
        }
        assert_eq!(p.record(false, false), Next::Yield, "the long bound");
        // Needing the backend again: the short bound, already passed.
        assert_eq!(p.record(false, true), Next::Yield);
        assert_eq!(p.record(true, false), Next::Return);
        assert_eq!(p.record(false, true), Next::Return);
    }

    #[test]
    fn preemption_brings_the_short_bound_back_until_a_quiet_window() {
        let mut p = PollPolicy::new(4);
        let long = 4 * LONG_FACTOR;
        let spin_to_yield = |p: &mut PollPolicy| {
            let mut n = 0;
            while p.record(false, false) == Next::Return {
                n += 1;
                assert!(n < 10 * long, "never yields");
            }
            p.record(true, false);
            n + 1
        };
        assert_eq!(spin_to_yield(&mut p), long, "uncontended: the long bound");
        assert!(p.check_due(), "every yield is checked while uncontended");
        p.observe(10, true); // the baseline
        assert!(!p.contended());
        assert_eq!(spin_to_yield(&mut p), long);
        assert!(p.check_due());
        p.observe(13, true); // preempted meanwhile, host crowded
        assert!(p.contended());
        assert_eq!(spin_to_yield(&mut p), 4, "contended: the short bound");
        // Checked only every CHECK_EVERY yields while contended.
        for _ in 0..CHECK_EVERY - 1 {
            assert!(!p.check_due());
        }
        assert!(p.check_due());
        p.observe(13, true); // a window without a switch
        assert!(!p.contended());
        assert_eq!(spin_to_yield(&mut p), long, "the long bound is back");
        // Needing the backend keeps the short bound whatever the count.
        assert_eq!(p.record(false, true), Next::Return);
    }

    #[test]
    fn a_preemption_on_a_host_with_a_core_each_is_not_contention() {
        let mut p = PollPolicy::new(4);
        p.observe(10, false);
        p.observe(20, false); // preempted by a passing kernel thread
        assert!(!p.contended(), "switches without a crowd");
        p.observe(30, true);
        assert!(p.contended(), "switches and more runnable tasks than cores");
    }

    #[test]
    fn the_runnable_count_is_read_from_loadavg() {
        assert_eq!(runnable_tasks(b"0.25 0.06 0.07 2/113 10647\n"), Some(2));
        assert_eq!(runnable_tasks(b"1.00 0.50 0.20 17/900 1"), Some(17));
        assert_eq!(runnable_tasks(b"garbage"), None);
        assert_eq!(runnable_tasks(b"0 0 0 x/1 2"), None);
        assert!(crowded().is_some(), "this host has /proc/loadavg");
    }

    #[test]
    fn the_thread_reads_its_own_involuntary_switches() {
        let a = involuntary_switches().expect("getrusage(RUSAGE_THREAD)");
        let b = involuntary_switches().expect("getrusage(RUSAGE_THREAD)");
        assert!(b >= a, "the count never goes back");
    }

    #[test]
    fn the_count_saturates_instead_of_wrapping() {
        let mut p = PollPolicy {
            empty: u32::MAX - 1,
            ..PollPolicy::new(5)
        };
        assert_eq!(p.record(false, true), Next::Yield);
        assert_eq!(p.record(false, true), Next::Yield, "still past the bound");
        assert_eq!(p.empty_polls(), u32::MAX);
    }

    #[test]
    fn the_thread_local_shell_keeps_per_thread_counts() {
        // after_poll only ever yields or not: run it on a fresh thread
        // (its own counter) and check the state it left.
        let left = std::thread::spawn(|| {
            for _ in 0..5 {
                after_poll(false, true);
            }
            let mid = POLLER.with(|p| p.get()).expect("initialised");
            after_poll(true, true);
            (mid, POLLER.with(|p| p.get()).expect("initialised"))
        })
        .join()
        .expect("thread");
        let (mid, end) = left;
        if mid.bound() > 0 {
            assert_eq!(mid.empty_polls(), 5);
        }
        assert_eq!(end.empty_polls(), 0);
        // This thread's counter is untouched by the other one.
        assert!(POLLER
            .with(|p| p.get())
            .is_none_or(|p| p.empty_polls() == 0));
    }
}
