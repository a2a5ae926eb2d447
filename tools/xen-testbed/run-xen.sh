#!/bin/bash
# Boot Xen 4.17 + Linux dom0 (initramfs) under QEMU via multiboot (from shared/xen-testbed/run-xen.sh).
# Usage: run-xen.sh [logfile] [timeout_s] [done-marker]
# Writes the QEMU pid to $D/qemu.pid, kills only that pid at the end.
D=${D:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-testbed}
OUT=$D/out
LOG=${1:-$D/serial.log}
TMO=${2:-900}
MARK=${3:-DOM0 DONE}
ACCEL=${ACCEL:-tcg}
CPU=${CPU:-qemu64,+svm}
SMP=${SMP:-2}
MEM=${MEM:-2G}
XEN_ARGS=${XEN_ARGS:-"console=com1 com1=115200,8n1 serial_tx_buffer=1M dom0_mem=768M,max:768M dom0_max_vcpus=1 bootscrub=false loglvl=all guest_loglvl=all console_timestamps=boot noreboot"}
DOM0_ARGS=${DOM0_ARGS:-"console=hvc0 earlyprintk=xen loglevel=6"}

rm -f "$LOG"
t0=$(date +%s.%N)
$D/qemu.sh -accel $ACCEL -cpu $CPU -smp $SMP -m $MEM \
    -nographic -monitor none -serial file:"$LOG" -nic none -no-reboot \
    -kernel $OUT/xen -append "$XEN_ARGS" \
    -initrd "$OUT/vmlinuz $DOM0_ARGS,$OUT/dom0.cpio.gz" \
    ${QEMU_EXTRA:-} </dev/null >"$LOG.qemu" 2>&1 &
QPID=$!
echo $QPID > $D/qemu.pid
echo "qemu pid $QPID, log $LOG"
# host-side timestamps of milestones (0.5 s resolution)
MILESTONES=("Xen version" "Linux version" "DOM0: uptime" "DOM0: toolstack up" "MXTEST: phase 1" "MXTEST: phase 1 passed" "MXTEST: destroy" "MXTEST: phase 2" "MXTEST PASS" "MXTEST FAIL" "$MARK")
declare -A SEEN
while kill -0 $QPID 2>/dev/null; do
    for m in "${MILESTONES[@]}"; do
        if [ -z "${SEEN[$m]:-}" ] && grep -q "$m" "$LOG" 2>/dev/null; then
            SEEN[$m]=1; printf "  [%6.1f s] %s\n" "$(echo "$(date +%s.%N) - $t0" | bc)" "$m"
        fi
    done
    if grep -q "$MARK" "$LOG" 2>/dev/null; then break; fi
    now=$(date +%s.%N)
    if [ $(echo "$now - $t0 > $TMO" | bc) = 1 ]; then echo "TIMEOUT"; break; fi
    sleep 0.5
done
t1=$(date +%s.%N)
echo "elapsed: $(echo "$t1 - $t0" | bc) s"
sleep ${LINGER:-2}
echo "qemu peak RSS: $(grep VmHWM /proc/$QPID/status 2>/dev/null | awk '{print $2/1024 " MiB"}')"
kill $QPID 2>/dev/null
wait $QPID 2>/dev/null
rm -f $D/qemu.pid
