#!/usr/bin/env bash
# Build mx_mpi_poll.c against our installed library and run it once: a
# release mx-backend on a temporary socket, a receiver and a sender that
# busy-poll mx_test like an MPI progress loop. Prints the JSON records.
# Environment passes through (MX_PEER_CHANNELS, MX_POLL_YIELD, MXB_PLAN=quick).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-lib.sh >/dev/null
cargo build -q --release -p backend --bin mx-backend
dir=$(mktemp -d)
trap 'kill $be 2>/dev/null || true; rm -rf "$dir"' EXIT
gcc -std=gnu99 -O2 -Wall -Wextra -Werror -Itarget/mx/include benches/c/mx_mpi_poll.c \
    -Ltarget/mx/lib -lmyriexpress -o "$dir/mx_mpi_poll"
target/release/mx-backend --socket "$dir/be.sock" --log warn &
be=$!
sleep 0.5
export MX_BACKEND_SOCKET="$dir/be.sock" LD_LIBRARY_PATH="$PWD/target/mx/lib"
poll=${POLL:-test}
exec 3< <(timeout 120 "$dir/mx_mpi_poll" recv 1 "$poll")
read -r -t 20 ready nic <&3
[ "$ready" = READY ] || { echo "receiver not ready" >&2; exit 1; }
timeout 120 "$dir/mx_mpi_poll" send "$nic" 1 "$poll" mx "busy-poll $poll"
