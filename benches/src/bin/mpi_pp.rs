//! `mpi_pp`: the comparison's method (ping-pong and streaming, see
//! `mx_benches::pingpong`) over MPI point-to-point, for Open MPI's
//! transports. Rank 0 measures and prints records as JSON lines; rank 1
//! serves. Built only with `--features mpi` (rsmpi needs Open MPI and
//! libclang); the `compare` harness runs it:
//!
//! ```text
//! mpirun --allow-run-as-root -np 2 --mca pml ob1 --mca btl self,vader mpi_pp TRANSPORT MODE
//! ```
//!
//! Ping-pong: blocking `MPI_Send` then `MPI_Recv` (as osu_latency).
//! Streaming: windows of nonblocking sends / receives, each window waited
//! for whole (as osu_bw), window as in `pingpong::window_len`.

use mpi::request::scope;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mx_benches::pingpong::{
    fill_pattern, is_pattern, run_client, serve, window_len, ClientOpts, Ctl, Plan, Transport,
    MAX_SIZE, SIZES,
};

const TAG_CTL: i32 = 1;
const TAG_DATA: i32 = 2;

struct MpiConn {
    world: SimpleCommunicator,
    peer: i32,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Transport for MpiConn {
    fn send_ctl(&mut self, c: Ctl) {
        self.world
            .process_at_rank(self.peer)
            .send_with_tag(&c[..], TAG_CTL);
    }

    fn recv_ctl(&mut self) -> Ctl {
        let mut c = [0u64; 3];
        self.world
            .process_at_rank(self.peer)
            .receive_into_with_tag(&mut c[..], TAG_CTL);
        c
    }

    fn fill(&mut self, size: usize, salt: u8) {
        fill_pattern(&mut self.sbuf[..size], salt);
    }

    fn check(&mut self, size: usize, salt: u8) -> bool {
        is_pattern(&self.rbuf[..size], salt)
    }

    fn round_trip(&mut self, size: usize) {
        let p = self.world.process_at_rank(self.peer);
        p.send_with_tag(&self.sbuf[..size], TAG_DATA);
        p.receive_into_with_tag(&mut self.rbuf[..size], TAG_DATA);
    }

    fn echo(&mut self, size: usize) {
        let p = self.world.process_at_rank(self.peer);
        p.receive_into_with_tag(&mut self.rbuf[..size], TAG_DATA);
        p.send_with_tag(&self.rbuf[..size], TAG_DATA);
    }

    fn stream_out(&mut self, size: usize, count: usize) {
        let w = window_len(size);
        let p = self.world.process_at_rank(self.peer);
        let buf = &self.sbuf[..size];
        let mut left = count;
        while left > 0 {
            let k = left.min(w);
            scope(|sc| {
                let reqs: Vec<_> = (0..k)
                    .map(|_| p.immediate_send_with_tag(sc, buf, TAG_DATA))
                    .collect();
                for r in reqs {
                    r.wait();
                }
            });
            left -= k;
        }
    }

    fn stream_in(&mut self, size: usize, count: usize) {
        let w = window_len(size);
        let p = self.world.process_at_rank(self.peer);
        if self.wbuf.len() < w * size.max(1) {
            self.wbuf.resize(w * size.max(1), 0);
        }
        let mut left = count;
        while left > 0 {
            let k = left.min(w);
            let wbuf = &mut self.wbuf[..k * size.max(1)];
            scope(|sc| {
                let reqs: Vec<_> = wbuf
                    .chunks_mut(size.max(1))
                    .map(|c| p.immediate_receive_into_with_tag(sc, &mut c[..size], TAG_DATA))
                    .collect();
                for r in reqs {
                    r.wait();
                }
            });
            left -= k;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let transport = args.get(1).cloned().unwrap_or_else(|| "openmpi".into());
    let mode = args.get(2).cloned().unwrap_or_else(|| "-".into());
    let universe = mpi::initialize().expect("MPI_Init");
    let world = universe.world();
    let rank = world.rank();
    assert_eq!(world.size(), 2, "run with -np 2");
    let mut c = MpiConn {
        world,
        peer: 1 - rank,
        sbuf: vec![1; MAX_SIZE],
        rbuf: vec![0; MAX_SIZE],
        wbuf: Vec::new(),
    };
    if rank == 0 {
        let o = ClientOpts {
            transport,
            mode,
            sizes: SIZES.to_vec(),
            stream: true,
            plan: Plan::from_env(),
        };
        run_client(&mut c, &o, &mut |r| r.emit());
    } else {
        serve(&mut c);
    }
}
