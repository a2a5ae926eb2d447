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
pp-send)
    ( sleep "${MX_PP_DELAY:-3}"
      MX_PLATFORM=xen mx_pingpong -d "${MX_PP_HOST:-mxhost:0}" -r 1 -f 0x12345 \
          -S 0 -E "${MX_PP_END:-32769}" -M 2 -N "${MX_PP_ITERS:-20}" -W 2 -V > /tmp/pp.log 2>&1; r=$?
      cat /tmp/pp.log; echo "PP-SEND exit $r"
      xenstore-write data/result "exit $r $(grep -c . /tmp/pp.log) lines" ) &
    ;;
*)  echo "DOMU: no MXTEST" ;;
esac
