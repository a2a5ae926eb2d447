#!/usr/bin/env bash
# The main job: an embedded backend on a temporary socket, a receiver process
# and a sender, and the mx_pingpong latency/bandwidth table from 0 B to 4 MiB.
# Extra arguments go to `mx_pingpong --demo` (e.g. -V to check every byte,
# -w to block instead of polling, -E 65537 for a shorter table).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run -q --release -p mx_pingpong --bin mx_pingpong -- --demo "$@"
