#!/bin/sh
# Runs in each domU at boot (from /init); MXTEST and the MX_* variables come from
# `xl create ... extra="... MXTEST=..."`. Results go to the console and to xenstore
# (data/phase1, data/result), where dom0-test.sh reads them.
case "${MXTEST:-}" in
selftest)
    ( mx-xen-selftest guest "${MX_ITERS:-200}" "${MX_STREAM:-0}" 2>&1 ) &
    ;;
pp-recv)
    ( MX_PLATFORM=xen mx_pingpong -e 1 -f 0x12345 2>&1; r=$?
      echo "PP-RECV exit $r"; xenstore-write data/result "exit $r" ) &
    ;;
# A receiver killed with SIGKILL (no mx_close, no detach), then a new one on the same
# endpoint id: it can open it only if the backend saw the first one go.
pp-recv-killed)
    ( MX_PLATFORM=xen mx_pingpong -e 1 -f 0x12345 > /tmp/first.log 2>&1 &
      first=$!
      sleep 8   # attached and open
      xenstore-write data/opened 1
      until xenstore-read data/kill >/dev/null 2>&1; do sleep 1; done
      kill -9 $first
      echo "PP-RECV-KILLED first receiver killed"
      xenstore-write data/killed 1
      until xenstore-read data/again >/dev/null 2>&1; do sleep 1; done
      MX_PLATFORM=xen mx_pingpong -e 1 -f 0x12345 2>&1; r=$?
      echo "PP-RECV exit $r"; xenstore-write data/result "exit $r" ) &
    ;;
# Both ends in this one domU (two processes, as two MPI ranks of one VM): their peer
# channel is granted to the guest's own domain.
pp-self)
    ( MX_PLATFORM=xen mx_pingpong -e 1 -f 0x12345 > /tmp/recv.log 2>&1; r=$?
      echo "PP-RECV exit $r"; xenstore-write data/result-recv "exit $r" ) &
    ( sleep "${MX_PP_DELAY:-3}"
      ( MX_PLATFORM=xen mx_pingpong -d "${MX_PP_HOST:-mxhost:0}" -r 1 -f 0x12345 \
          -S 0 -E "${MX_PP_END:-65537}" -M 2 -N "${MX_PP_ITERS:-5}" -W 1 -V 2>&1
        echo "PP-RC $?" ) | tee /tmp/pp.log
      r=$(sed -n 's/^PP-RC //p' /tmp/pp.log)
      echo "PP-SEND exit $r"
      xenstore-write data/result "exit $r $(grep -c . /tmp/pp.log) lines" ) &
    ;;
pp-send)
    ( sleep "${MX_PP_DELAY:-3}"
      ( MX_PLATFORM=xen mx_pingpong -d "${MX_PP_HOST:-mxhost:0}" -r 1 -f 0x12345 \
          -S "${MX_PP_START:-0}" -E "${MX_PP_END:-4194305}" -M 2 -N "${MX_PP_ITERS:-5}" -W 1 -V 2>&1
        echo "PP-RC $?" ) | tee /tmp/pp.log
      r=$(sed -n 's/^PP-RC //p' /tmp/pp.log)
      echo "PP-SEND exit $r"
      xenstore-write data/result "exit $r $(grep -c . /tmp/pp.log) lines" ) &
    ;;
# Our C programs over libmyriexpress.so: the ping-pong between two domUs (0 B to 4 MiB,
# byte-checked both ways), then the random-size loop through the backend in the
# sender's domU (MX_DISABLE_SELF: every message crosses the Xen channel).
c-recv)
    # dom0 starts the sender once we say ready (data/c-ready)
    ( ( MX_PLATFORM=xen MXT_SLOW=20 mx_c_pingpong recv 2 2>&1; echo "C-RC $?" ) |
      while read -r l; do
          echo "$l"
          case "$l" in ready) xenstore-write data/c-ready 1;;
                       "C-RC "*) echo "C-RECV exit ${l#C-RC }"; xenstore-write data/c-result "exit ${l#C-RC }";;
          esac
      done ) &
    ;;
c-send)
    ( sleep "${MX_PP_DELAY:-3}"
      MX_PLATFORM=xen MXT_SLOW=20 mx_c_pingpong send "${MX_PP_HOST:-mxhost:0}" 2 wait 2>&1; r=$?
      echo "C-SEND exit $r"
      MX_PLATFORM=xen MX_DISABLE_SELF=1 MXT_SLOW=20 mx_c_msg_loop "${MX_LOOP_SECS:-10}" 300000 4 2>&1; l=$?
      echo "C-LOOP exit $l"
      xenstore-write data/c-result "exit $r loop $l" ) &
    ;;
*)  echo "DOMU: no MXTEST" ;;
esac
