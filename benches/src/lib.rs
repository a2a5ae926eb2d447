//! Benchmark harness: the side-by-side comparison of our stack with what
//! users would pick instead and with the machine's limits (bin `compare`,
//! see `docs/PERFORMANCE.md`), and the helpers the `split_driver` bench
//! shares with it.
//!
//! Every measuring process is a bench binary re-run with `--child <role>`;
//! children report [`record::Record`]s as JSON lines on stdout.

pub mod cprog;
pub mod harness;
pub mod limits;
pub mod machine;
pub mod mpirun;
pub mod mx;
pub mod net;
pub mod pingpong;
pub mod plot;
pub mod procs;
pub mod record;
pub mod report;
pub mod shm;
pub mod shmlimit;
pub mod sock;
pub mod split;
