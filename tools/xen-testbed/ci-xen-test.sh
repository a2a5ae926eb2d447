#!/bin/bash
# The Xen test bed, end to end: fetch Debian's Xen/kernel/QEMU (cached), build the
# project's binaries, build the dom0/domU images, boot Xen under QEMU, run
# dom0-test.sh there, and exit 0 only if it printed MXTEST PASS.
# Exit 0 with "XEN TESTBED SKIPPED: <why>" when this machine cannot run it.
#   env: D (cache, default ~/.cache/xen-testbed), XEN_TESTBED=0 (skip), BUDGET (s, 720),
#        PROFILE (debug|release, default debug: CI has built it already), DOMU_TYPE=pv|pvh,
#        ACCEL (tcg; kvm if it works), KEEP_GOING=1 (a failure exits 0, for local use),
#        MXTEST_PHASES (which of dom0-test.sh's phases to run, e.g. "2+2b"; default all)
set -uo pipefail
export D=${D:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-testbed}
SRC=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$SRC/../.." && pwd)
BUDGET=${BUDGET:-720}
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
skip() { echo "XEN TESTBED SKIPPED: $*"; exit 0; }
die() { echo "XEN TESTBED FAILED: $*"; exit 1; }
step() { # name timeout cmd...
    local name=$1 tmo=$2; shift 2
    local l; l=$(left)
    [ "$l" -gt 10 ] || die "over the ${BUDGET} s budget before $name"
    [ "$tmo" -gt "$l" ] && tmo=$l
    local s; s=$(date +%s)
    timeout --kill-after=10 "$tmo" "$@"; local rc=$?
    echo "xen-testbed: $name: rc=$rc in $(( $(date +%s) - s )) s"
    return $rc
}

[ "${XEN_TESTBED:-1}" = 0 ] && skip "XEN_TESTBED=0"
[ "$(uname -m)" = x86_64 ] || skip "not an x86_64 host ($(uname -m))"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || skip "no apt-get/dpkg (Debian's packages are the only source)"
mkdir -p "$D"
step fetch 240 "$SRC/fetch.sh" > "$D/fetch.log" 2>&1 || { tail -5 "$D/fetch.log"; skip "cannot fetch Xen/QEMU from Debian's archive (see $D/fetch.log)"; }
"$D/qemu.sh" -version >/dev/null 2>&1 || skip "QEMU 7.2 does not run on this host ($("$D/qemu.sh" -version 2>&1 | head -1))"

# Our binaries, with debug info stripped (smaller images).
PROFILE=${PROFILE:-debug}
TD=${CARGO_TARGET_DIR:-$ROOT/target}
flag=""; [ "$PROFILE" = release ] && flag=--release
( cd "$ROOT" && step "cargo build selftest" 600 cargo build -q $flag -p mx-proto --features selftest --bin mx-xen-selftest ) || die "cannot build mx-xen-selftest"
( cd "$ROOT" && step "cargo build backend+pingpong+libmx" 600 cargo build -q $flag -p backend --bin mx-backend -p mx_pingpong --bin mx_pingpong -p libmx --lib ) \
    || echo "xen-testbed: mx-backend/mx_pingpong/libmx did not build: phase 2 will be skipped"
export BIN_DIR=$D/bin LIB_DIR=$D/lib
rm -rf "$BIN_DIR" "$LIB_DIR"; mkdir -p "$BIN_DIR" "$LIB_DIR"
for b in mx-xen-selftest mx-backend mx_pingpong; do
    [ -x "$TD/$PROFILE/$b" ] && objcopy --strip-debug "$TD/$PROFILE/$b" "$BIN_DIR/$b"
done
[ -x "$BIN_DIR/mx-xen-selftest" ] || die "no mx-xen-selftest binary in $TD/$PROFILE"
# Our C test programs (crates/libmx/tests/c), built against our headers and linked
# against our libmyriexpress.so, as an MX application would be; build-rootfs.sh copies
# the library in with them (ldd through LIB_DIR).
if [ -f "$TD/$PROFILE/liblibmx.so" ] && command -v gcc >/dev/null; then
    objcopy --strip-debug "$TD/$PROFILE/liblibmx.so" "$LIB_DIR/libmyriexpress.so.0"
    ln -s libmyriexpress.so.0 "$LIB_DIR/libmyriexpress.so"
    for p in pingpong msg_loop; do
        gcc -std=gnu99 -O1 -pthread -I "$ROOT/crates/libmx/include" "$ROOT/crates/libmx/tests/c/$p.c" \
            -L "$LIB_DIR" -lmyriexpress -o "$BIN_DIR/mx_c_$p" || die "gcc $p.c"
    done
else
    echo "xen-testbed: no liblibmx.so or no gcc: the C programs will be skipped"
fi

step rootfs 120 "$SRC/build-rootfs.sh" > "$D/rootfs.log" 2>&1 || { tail -20 "$D/rootfs.log"; die "image build failed"; }
export DOM0_ARGS="console=hvc0 loglevel=4${MXTEST_PHASES:+ MXTEST_PHASES=$MXTEST_PHASES}"
export XEN_ARGS="console=com1 com1=115200,8n1 serial_tx_buffer=1M dom0_mem=768M,max:768M dom0_max_vcpus=${DOM0_VCPUS:-1} bootscrub=false loglvl=all guest_loglvl=all console_timestamps=boot noreboot"
export MEM=${MEM:-2G}
[ "${DOMU_TYPE:-pv}" = pvh ] && export CPU=${CPU:-qemu64,+svm,+npt}
l=$(left); [ "$l" -gt 60 ] || die "no time left to boot ($l s)"
step boot $((l - 5)) "$SRC/run-xen.sh" "$D/serial.log" $((l - 15)) "DOM0 DONE"
grep -aE '^(DOM0|MXTEST|HOST|GUEST|PP-|BE|DOMU)|INFO|WARN|ERROR|mx_pingpong|Length|^ *[0-9]+ +[0-9.]+ ' "$D/serial.log" | grep -av "^(XEN)" | tail -150
echo "xen-testbed: total $(( $(date +%s) - T0 )) s; serial log $D/serial.log"
if grep -aq "MXTEST PASS" "$D/serial.log"; then
    echo "XEN TESTBED PASSED"; exit 0
fi
grep -aq "MXTEST FAIL" "$D/serial.log" || echo "xen-testbed: no verdict (timeout?)"
[ "${KEEP_GOING:-0}" = 1 ] && exit 0
die "see $D/serial.log"
