#!/usr/bin/env bash
# The main job: an embedded backend on the local platform, two endpoints, and
# the mx_pingpong latency/bandwidth table from 0 B to 4 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo run -q --release -p mx_pingpong -- --help 2>/dev/null | grep -q -- '--demo'; then
    exec cargo run -q --release -p mx_pingpong -- --demo "$@"
fi
cat <<'MSG'
The mx_pingpong demo needs libmx, which has not landed yet (see README "Status").
Meanwhile this runs the split driver end to end: an embedded mx-backend and two
frontends exchanging tiny, small and medium messages, byte-checked.
MSG
cargo test -q --release -p backend --test smoke -- --nocapture
