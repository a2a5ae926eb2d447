#!/usr/bin/env bash
# Build MPICH 3.1.4 with its nemesis MX netmod against our library and run
# MPI programs on it, as a user would. By hand, not in CI (it needs the
# MPICH sources and ~10 minutes of build on 2 cores).
#
#   tools/mpi-check/run.sh MPICH_SRC [CACHE_DIR]
#
# MPICH_SRC: an MPICH 3.1.4 source tree (a release tarball, or the git tag
# after ./autogen.sh). CACHE_DIR (default ~/.cache/xen2mx-mpich) holds the
# build and the install; it is reused when present. Runs hello, ring,
# connectivity, a verified ping-pong 0 B..4 MiB and collectives on 2 and 4
# ranks, forced onto MX (MPIR_CVAR_CH3_NOLOCAL=1), in three configurations:
# default (peer channels), MX_PEER_CHANNELS=0 (through the backend) and
# MX_DISABLE_SHMEM=1 (the wire path, looped back). Exit status 0 if all pass.
set -euo pipefail
src=$(cd "${1:?usage: run.sh MPICH_SRC [CACHE_DIR]}" && pwd)
cache=${2:-$HOME/.cache/xen2mx-mpich}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mx="$cache/mx"
mkdir -p "$cache"
"$repo/scripts/install-lib.sh" --prefix "$mx" >/dev/null
if [ ! -x "$cache/inst/bin/mpicc" ]; then
    [ -x "$src/configure" ] || (cd "$src" && PERL5LIB=. ./autogen.sh)
    mkdir -p "$cache/build"
    (cd "$cache/build" && "$src/configure" --prefix="$cache/inst" \
        --with-device=ch3:nemesis:mx --with-mx="$mx" \
        --disable-fortran --disable-cxx --disable-romio >configure.log 2>&1 &&
        make -j"$(nproc)" >make.log 2>&1 && make install >install.log 2>&1)
fi
export LD_LIBRARY_PATH="$mx/lib"
cargo build -q --release -p backend --bin mx-backend --manifest-path "$repo/Cargo.toml"
work=$(mktemp -d)
"$repo/target/release/mx-backend" --socket "$work/be.sock" --log warn &
be=$!
trap 'kill $be 2>/dev/null || true; rm -rf "$work"' EXIT
export MX_BACKEND_SOCKET="$work/be.sock"
for p in hello ring conn pp coll; do
    "$cache/inst/bin/mpicc" -O2 -o "$work/$p" "$(dirname "$0")/$p.c"
done
fail=0
for cfg in "" MX_PEER_CHANNELS=0 MX_DISABLE_SHMEM=1; do
    for np in 2 4; do
        for p in hello ring conn pp coll; do
            if out=$(env $cfg timeout 300 "$cache/inst/bin/mpiexec" -n $np \
                -env MPIR_CVAR_CH3_NOLOCAL 1 "$work/$p" </dev/null 2>&1); then
                echo "PASS ${cfg:-default} np=$np $p: $(echo "$out" | tail -1)"
            else
                echo "FAIL ${cfg:-default} np=$np $p: $(echo "$out" | tail -3 | tr '\n' ' ')"
                fail=1
            fi
        done
    done
done
exit $fail
