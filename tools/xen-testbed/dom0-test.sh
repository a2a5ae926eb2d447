#!/bin/sh
# Runs in dom0 (from /init) on real Xen. Prints MXTEST PASS or MXTEST FAIL.
#  phase 1: mx-xen-selftest: the host side here, the guest side in domU1 and domU2
#           (xenbus handshake, control ring, a channel of several pages, command/event
#           and queue traffic, the bulk-copy pool, grant copy), then `xl destroy domU2`
#           mid-stream while domU1 keeps working; the host must release every grant
#           and port (its counters) and leave no zombie domain.
#  phase 2: mx-backend --platform xen + mx_pingpong between domU3 and domU4 (-V,
#           0 B to 4 MiB: large messages staged through each guest's granted pool).
#           Peer channels are on: the backend's per-endpoint counters (logged when an
#           endpoint closes) must show that tiny/small/medium messages did not cross Dom0.
#  phase 2b: a peer channel between domU3 and domU4 mid-stream, then `xl destroy` of the
#           receiver: the sender must exit with a clear error, the backend must tell it
#           (PeerClosed) and forget the channel, and no zombie domain may be left.
#  phase 2w: the same ping-pong with MX_XEN_POOL_PAGES=256 in both domUs (a stock
#           guest's 1 MiB pool: sends above 512 KiB go through a staging window).
#  phase 2s: both ends in one domU (two processes): the peer channel is granted to the
#           guest's own domain; tiny/small/medium must not cross Dom0.
#  phase 2x: a receiver in domU3 killed with SIGKILL (no mx_close) mid-stream through a
#           peer channel: the backend must free its endpoint while the domain runs on
#           (its event channel is polled), tell the sender (which must end with an error),
#           and a new process in domU3 must open the same endpoint id and ping-pong.
#  phase 3: our C programs over libmyriexpress.so: ping-pong between two domUs (0 B to
#           4 MiB, byte-checked), then the random-size loop through the backend.
RC=0
fail() { echo "MXTEST FAIL: $*"; RC=1; }
up() { cut -d' ' -f1 /proc/uptime; }
wait_key() { # path timeout -> value
    n=0; while [ $n -lt "$2" ]; do
        v=$(xenstore-read "$1" 2>/dev/null) && [ -n "$v" ] && { echo "$v"; return 0; }
        sleep 1; n=$((n + 1)); done; return 1; }
wait_pid() { # pid timeout
    n=0; while kill -0 "$1" 2>/dev/null; do
        [ $n -ge "$2" ] && return 1; sleep 1; n=$((n + 1)); done; return 0; }
wait_key_log() { # path timeout guest -> value; shows the guest's console every 30 s
    n=0; while [ $n -lt "$2" ]; do
        v=$(xenstore-read "$1" 2>/dev/null) && [ -n "$v" ] && { echo "$v"; return 0; }
        [ $((n % 30)) = 29 ] && { echo "MXTEST: $3 at $(up) s: $(tail -c 300 /var/log/xen/console/guest-$3.log 2>/dev/null | tail -1)"
            [ -f /tmp/backend.log ] && echo "MXTEST: backend: $(tail -c 400 /tmp/backend.log | tail -1 | cut -c1-300)"; } >&2
        sleep 1; n=$((n + 1)); done; return 1; }
extra() { echo "extra=\"console=hvc0 quiet $*\""; }
# The backend's log without colour codes, from line $1 on.
belog() { tail -n +"${1:-1}" /tmp/backend.log | tr -d '\033' | sed 's/\[[0-9;]*m//g'; }
# "<endpoints closed> <tiny+small+medium through the backend> <channels accepted>" from line $1
through_backend() {
    belog "$1" | grep "commands through the backend" | sed -n \
        's/.* tiny=\([0-9]*\) small=\([0-9]*\) medium=\([0-9]*\) .*peer_accepted=\([0-9]*\).*/\1 \2 \3 \4/p' |
        awk '{ s += $1 + $2 + $3; n++; a = $4 } END { print n + 0, s + 0, a + 0 }'; }
# Waits up to <timeout> s, returning as soon as the lines are there.
wait_closed() { # from-line count timeout: wait for <count> "endpoint closed" lines
    n=0; while [ $n -lt "$3" ]; do
        [ "$(belog "$1" | grep -c 'commands through the backend')" -ge "$2" ] && return 0
        sleep 1; n=$((n + 1)); done; return 1; }

# MXTEST_PHASES (from Dom0's kernel command line): which phases to run, e.g. "2+2b"
# (no commas: QEMU's -initrd splits on them).
want() { case "+${MXTEST_PHASES:-1+2+2w+2b+2s+2x+3}+" in *"+$1+"*) return 0;; esac; return 1; }
# domU3 and domU4 created paused, run once the backend made both their mx device slots:
# making 32 slots takes the backend many xenstore transactions, and under a loaded TCG
# host that can hold its loop past a waiting guest's 10 s control timeout.
create_pair() { # "<domU3 args>" "<domU4 args>"
    xl create -p /root/domU3.cfg "$(extra $1)" || fail "xl create domU3 ($1)"
    xl create -p /root/domU4.cfg "$(extra $2)" || fail "xl create domU4 ($2)"
    d3=$(xl domid domU3); d4=$(xl domid domU4)
    for d in $d3 $d4; do
        wait_key /local/domain/$d/device/mx/31/state 120 >/dev/null || fail "no mx devices for domain $d"
    done
    sleep 2   # the backend's last transactions and its watch on them
    xl unpause domU3; xl unpause domU4; }
# On a failure: what the guests and the backend said last.
show() { for g in "$@"; do echo "MXTEST: --- $g console:"; tail -n 25 /var/log/xen/console/guest-$g.log 2>/dev/null; done
    [ -f /tmp/backend.log ] && { echo "MXTEST: --- backend log:"; belog | tail -n 40 | cut -c1-400; }; }

if want 1; then
echo "MXTEST: phase 1 (selftest) at $(up) s"
mx-xen-selftest host 2 "${HOST_TIMEOUT:-300}" > /tmp/host.log 2>&1 &
HOST=$!
sleep 1
xl create /root/domU1.cfg "$(extra MXTEST=selftest MX_ITERS=${MX_ITERS:-200} MX_STREAM=600)" || fail "xl create domU1"
xl create /root/domU2.cfg "$(extra MXTEST=selftest MX_ITERS=${MX_ITERS:-200} MX_STREAM=100000)" || fail "xl create domU2"
d1=$(xl domid domU1); d2=$(xl domid domU2)
echo "MXTEST: domU1=$d1 domU2=$d2 created at $(up) s"
p1=$(wait_key /local/domain/$d1/data/phase1 150) || fail "domU1 phase 1: $(xenstore-read /local/domain/$d1/data/result 2>&1)"
p2=$(wait_key /local/domain/$d2/data/phase1 150) || fail "domU2 phase 1: $(xenstore-read /local/domain/$d2/data/result 2>&1)"
[ $RC = 0 ] && echo "MXTEST: phase 1 passed in both guests at $(up) s"
echo "MXTEST: destroy domU2 (domid $d2) mid-stream at $(up) s"
xl destroy domU2 || fail "xl destroy"
sleep 5   # domU1 keeps streaming while domU2's resources are torn down
xenstore-write /local/domain/$d1/data/stop 1
r1=$(wait_key /local/domain/$d1/data/result 180) || r1="TIMEOUT"
echo "MXTEST: domU1 result: $r1"
case "$r1" in OK*) ;; *) fail "domU1 did not finish: $r1";; esac
wait_pid $HOST 60 || { fail "selftest host still running"; kill $HOST; }
wait $HOST; hrc=$?
cat /tmp/host.log
[ $hrc = 0 ] || fail "selftest host exit $hrc"
grep -q "domid $d2 .*detached" /tmp/host.log || fail "host did not see domU2 go"
grep -q "domain gone: mx devices removed.*domid=$d2\|domid=$d2.*domain gone" /tmp/host.log || fail "host did not reap domain $d2"
grep -q "all released" /tmp/host.log || fail "host leaked grants or ports"
xenstore-exists /local/domain/0/backend/mx/$d2 2>/dev/null && fail "backend/mx/$d2 left behind"
xl list
xl list | grep -q '(null)' && fail "a destroyed domain is still a zombie (pages still mapped)"
xl destroy domU1 >/dev/null 2>&1
fi

if [ -x /usr/bin/mx-backend ] && [ -x /usr/bin/mx_pingpong ]; then
    echo "MXTEST: phase 2 (mx-backend + mx_pingpong) at $(up) s"
    NO_COLOR=1 mx-backend --platform xen --hostname mxhost:0 --idle block --log info > /tmp/backend.log 2>&1 &
    BE=$!
    sleep 1
  if want 2; then
    create_pair "MXTEST=pp-recv" "MXTEST=pp-send MX_PP_END=${MX_PP_END:-4194305} MX_PP_ITERS=${MX_PP_ITERS:-5}"
    r4=$(wait_key_log /local/domain/$d4/data/result ${PP_TIMEOUT:-300} domU4) || r4=TIMEOUT
    r3=$(wait_key /local/domain/$d3/data/result 30) || r3=TIMEOUT
    echo "MXTEST: pingpong sender: $r4; receiver: $r3"
    case "$r4" in "exit 0"*) ;; *) fail "mx_pingpong sender: $r4"; show domU3 domU4;; esac
    grep -q "^ *4194304 " /var/log/xen/console/guest-domU4.log || fail "mx_pingpong did not reach 4 MiB"
    case "$r3" in "exit 0"*) ;; *) fail "mx_pingpong receiver: $r3";; esac
    # Peer channels: both endpoints' tiny/small/medium went between the two domUs, not
    # through Dom0 (a few may cross before the channel is up; the run sends hundreds).
    # End both domains, so that every endpoint's counters are logged at once (a process
    # that exits without closing is seen within seconds: phase 2x).
    xl destroy domU3 >/dev/null 2>&1; xl destroy domU4 >/dev/null 2>&1
    wait_closed 1 2 90 || fail "the backend did not log both endpoints closing"
    set -- $(through_backend 1)
    echo "MXTEST: peer channels: $1 endpoints closed, $2 tiny/small/medium through Dom0, $3 channel(s) accepted"
    [ "$3" -ge 1 ] || fail "no peer channel came up between domU3 and domU4"
    [ "$2" -le 16 ] || fail "$2 tiny/small/medium messages crossed Dom0 with a peer channel up"
  fi

  if want 2w; then
    # A stock guest's pool (256 pages, 1 MiB): messages above 512 KiB go through a
    # staging window the backend asks the sender to refill.
    echo "MXTEST: phase 2w (staging windows, MX_XEN_POOL_PAGES=256) at $(up) s"
    : > /var/log/xen/console/guest-domU4.log 2>/dev/null
    create_pair "MXTEST=pp-recv MX_XEN_POOL_PAGES=256" "MXTEST=pp-send MX_PP_END=${MX_PP_END:-4194305} MX_PP_ITERS=${MX_PP_ITERS:-5} MX_XEN_POOL_PAGES=256"
    r4=$(wait_key_log /local/domain/$d4/data/result ${PP_TIMEOUT:-300} domU4) || r4=TIMEOUT
    r3=$(wait_key /local/domain/$d3/data/result 30) || r3=TIMEOUT
    echo "MXTEST: pingpong (pool 256) sender: $r4; receiver: $r3"
    case "$r4" in "exit 0"*) ;; *) fail "mx_pingpong sender (pool 256): $r4"; show domU3 domU4;; esac
    grep -q "^ *4194304 " /var/log/xen/console/guest-domU4.log || fail "mx_pingpong (pool 256) did not reach 4 MiB"
    case "$r3" in "exit 0"*) ;; *) fail "mx_pingpong receiver (pool 256): $r3";; esac
    grep -a "pool mapped" /tmp/backend.log | tail -2 | grep -q "pages=256" || fail "phase 2w: the guests' pools are not 256 pages"
    xl destroy domU3 >/dev/null 2>&1; xl destroy domU4 >/dev/null 2>&1
    sleep 1
  fi

  if want 2b; then
    echo "MXTEST: phase 2b (peer channel, xl destroy mid-stream) at $(up) s"
    L=$(($(wc -l < /tmp/backend.log) + 1))
    create_pair "MXTEST=pp-recv" "MXTEST=pp-send MX_PP_START=0 MX_PP_END=16385 MX_PP_ITERS=1000000"
    n=0; until belog $L | grep -q "peer channel accepted"; do
        [ $n -ge 150 ] && { fail "phase 2b: no peer channel came up"; break; }
        sleep 1; n=$((n + 1)); done
    [ $n -ge 150 ] && show domU3 domU4
    sleep 3   # streaming through the channel
    echo "MXTEST: destroy domU3 (domid $d3) mid-stream at $(up) s"
    xl destroy domU3 || fail "xl destroy domU3"
    t=$(up)
    r4=$(wait_key_log /local/domain/$d4/data/result 150 domU4) || r4=TIMEOUT
    echo "MXTEST: survivor after $(awk "BEGIN { print $(up) - $t }") s: $r4: $(grep -a 'mx_pingpong' /var/log/xen/console/guest-domU4.log | tail -1)"
    case "$r4" in "exit 0"*|TIMEOUT) fail "the sender did not end with an error when its peer died: $r4"; show domU4;; esac
    grep -aq "did not complete\|ended with status\|peer gone\|closed" /var/log/xen/console/guest-domU4.log ||
        fail "the sender's error does not say what happened"
    belog $L | grep -q "peer channel closed: other end told" || fail "the backend did not tell the survivor (PeerClosed)"
    xl destroy domU4 >/dev/null 2>&1   # its endpoint goes with it (see phase 2)
    wait_closed $L 2 90 || fail "the backend did not close both endpoints"
    belog $L | grep "commands through the backend\|peer channel" | cut -c1-300
    sleep 2
    xl list
    xl list | grep -q '(null)' && fail "phase 2b: a destroyed domain is still a zombie (pages still mapped)"
  fi
  if want 2s; then
    # Two processes of one domU (two MPI ranks in one VM): the offering process grants
    # the channel to its own domain, the other maps it; Dom0 only brokers.
    echo "MXTEST: phase 2s (both ends in one domU) at $(up) s"
    L=$(($(wc -l < /tmp/backend.log) + 1))
    : > /var/log/xen/console/guest-domU3.log 2>/dev/null
    xl create -p /root/domU3.cfg "$(extra MXTEST=pp-self MX_PP_END=65537)" || fail "xl create domU3 (2s)"
    d3=$(xl domid domU3)
    wait_key /local/domain/$d3/device/mx/31/state 120 >/dev/null || fail "no mx devices for domain $d3"
    sleep 2; xl unpause domU3
    r3=$(wait_key_log /local/domain/$d3/data/result ${PP_TIMEOUT:-300} domU3) || r3=TIMEOUT
    rr=$(wait_key /local/domain/$d3/data/result-recv 30) || rr=TIMEOUT
    echo "MXTEST: one domU: sender $r3; receiver $rr"
    case "$r3" in "exit 0"*) ;; *) fail "phase 2s: sender: $r3"; show domU3;; esac
    grep -q "^ *65536 " /var/log/xen/console/guest-domU3.log || fail "phase 2s: mx_pingpong did not reach 64 KiB"
    case "$rr" in "exit 0"*) ;; *) fail "phase 2s: receiver: $rr"; show domU3;; esac
    xl destroy domU3 >/dev/null 2>&1
    wait_closed $L 2 90 || fail "phase 2s: the backend did not log both endpoints closing"
    set -- $(through_backend $L)
    echo "MXTEST: one domU: $1 endpoints closed, $2 tiny/small/medium through Dom0, $3 channel(s) accepted"
    [ "$3" -ge 1 ] || fail "phase 2s: no peer channel came up inside domU3"
    [ "$2" -le 16 ] || fail "phase 2s: $2 tiny/small/medium messages crossed Dom0 with a peer channel up"
    sleep 1
  fi
  if want 2x; then
    # A guest process killed without mx_close, mid-stream through a peer channel: Xen
    # tells nobody, but its event channel reverts the backend's port to unbound, which
    # the backend polls (EVTCHNOP_status). It must free the endpoint while the domain
    # runs on, tell the survivor (PeerClosed), and let a new process open the same id.
    echo "MXTEST: phase 2x (a guest process killed mid-stream, its domain runs on) at $(up) s"
    L=$(($(wc -l < /tmp/backend.log) + 1))
    : > /var/log/xen/console/guest-domU4.log 2>/dev/null
    create_pair "MXTEST=pp-recv-killed" "MXTEST=pp-send MX_PP_START=0 MX_PP_END=16385 MX_PP_ITERS=1000000"
    n=0; until belog $L | grep -q "peer channel accepted"; do
        [ $n -ge 150 ] && { fail "phase 2x: no peer channel came up"; show domU3 domU4; break; }
        sleep 1; n=$((n + 1)); done
    sleep 3   # streaming through the channel
    xenstore-write /local/domain/$d3/data/kill 1
    wait_key /local/domain/$d3/data/killed 60 >/dev/null || fail "phase 2x: the receiver was not killed"
    t=$(up)
    n=0; until belog $L | grep -q "guest gone without detaching"; do
        [ $n -ge 30 ] && { fail "phase 2x: the backend did not see the killed process go"; show domU3; break; }
        sleep 1; n=$((n + 1)); done
    echo "MXTEST: the backend freed the killed process's endpoint after $(awk "BEGIN { print $(up) - $t }") s (domain still running)"
    r4=$(wait_key_log /local/domain/$d4/data/result 150 domU4) || r4=TIMEOUT
    echo "MXTEST: survivor after $(awk "BEGIN { print $(up) - $t }") s: $r4"
    case "$r4" in "exit 0"*|TIMEOUT) fail "phase 2x: the sender did not end with an error when its peer was killed: $r4"; show domU4;; esac
    belog $L | grep -q "peer channel closed: other end told" || fail "phase 2x: the backend did not tell the survivor (PeerClosed)"
    xl destroy domU4 >/dev/null 2>&1
    xenstore-write /local/domain/$d3/data/again 1
    sleep 5   # the second receiver opens endpoint 1 again
    xl create /root/domU4.cfg "$(extra MXTEST=pp-send MX_PP_END=4097 MX_PP_ITERS=5)" || fail "xl create domU4 (2x)"
    d4=$(xl domid domU4)
    r4=$(wait_key_log /local/domain/$d4/data/result ${PP_TIMEOUT:-300} domU4) || r4=TIMEOUT
    r3=$(wait_key /local/domain/$d3/data/result 30) || r3=TIMEOUT
    echo "MXTEST: after the kill, the same endpoint id again: sender $r4; receiver $r3"
    case "$r4" in "exit 0"*) ;; *) fail "phase 2x: ping-pong with the re-opened endpoint: $r4"; show domU3 domU4;; esac
    case "$r3" in "exit 0"*) ;; *) fail "phase 2x: the re-opened receiver: $r3"; show domU3;; esac
    xl destroy domU3 >/dev/null 2>&1; xl destroy domU4 >/dev/null 2>&1
    sleep 1
  fi
  if want 3; then
    if [ -x /usr/bin/mx_c_pingpong ] && [ -x /usr/bin/mx_c_msg_loop ]; then
        echo "MXTEST: phase 3 (C programs over libmyriexpress.so) at $(up) s"
        xl create /root/domU3.cfg "$(extra MXTEST=c-recv)" || fail "xl create domU3 (C)"
        d3=$(xl domid domU3)
        wait_key /local/domain/$d3/data/c-ready 120 >/dev/null || fail "C pingpong receiver not ready"
        xl create /root/domU4.cfg "$(extra MXTEST=c-send MX_PP_DELAY=0 MX_LOOP_SECS=${MX_LOOP_SECS:-10})" || fail "xl create domU4 (C)"
        d4=$(xl domid domU4)
        c4=$(wait_key_log /local/domain/$d4/data/c-result ${PP_TIMEOUT:-300} domU4) || c4=TIMEOUT
        c3=$(wait_key /local/domain/$d3/data/c-result 30) || c3=TIMEOUT
        echo "MXTEST: C sender and loop: $c4; C receiver: $c3"
        case "$c4" in "exit 0 loop 0") ;; *) fail "C programs in domU4: $c4";; esac
        case "$c3" in "exit 0"*) ;; *) fail "C pingpong receiver: $c3";; esac
    else
        fail "phase 3: the C programs are not in the image"
    fi
  fi
    kill $BE; wait_pid $BE 10
    cat /tmp/backend.log
else
    echo "MXTEST: phase 2 skipped: mx-backend or mx_pingpong not in the image"
fi
[ $RC = 0 ] && echo "MXTEST PASS" || echo "MXTEST FAIL"
