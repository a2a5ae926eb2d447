//! mx_pingpong: MX ping-pong latency and bandwidth (being written).

fn main() {}
