#!/bin/bash
# Build the dom0 and domU initramfs images (busybox + Xen toolstack in dom0) with the
# project's binaries, for Xen 4.17 + Linux 6.1 under QEMU. Based on
# shared/xen-testbed/build-rootfs.sh.
#   in : $D/x (fetch.sh), $BIN_DIR (our binaries: copied with their shared libraries
#        into /usr/bin of both images), this directory's dom0-test.sh / domU-test.sh
#   out: $D/out/{xen,vmlinuz,dom0.cpio.gz,domU.cpio.gz}
set -euo pipefail
D=${D:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-testbed}
SRC=$(cd "$(dirname "$0")" && pwd)
X=$D/x
OUT=$D/out
KVER=${KVER:-$(ls "$X/lib/modules" | head -1)}
XBIN=usr/lib/xen-4.17/bin
BIN_DIR=${BIN_DIR:-}
# LIB_DIR (optional): our libmyriexpress.so.0, found by ldd for the C programs
export LD_LIBRARY_PATH=$X/usr/lib/x86_64-linux-gnu${LIB_DIR:+:$LIB_DIR}
mkdir -p "$OUT"

# copy a binary plus its shared libraries (ldd) into rootfs $1
copy_bin() { # rootfs src dst
    local R=$1 src=$2 dst=$3
    mkdir -p "$R/$(dirname "$dst")"
    cp -L "$src" "$R/$dst"
    ldd "$src" | awk '/=>/ {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
        [ -n "$lib" ] || continue
        local base; base=$(basename "$lib")
        [ -e "$R/lib/x86_64-linux-gnu/$base" ] || cp -L "$lib" "$R/lib/x86_64-linux-gnu/$base"
    done
}

base_rootfs() { # R
    local R=$1
    rm -rf "$R"; mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,lib/x86_64-linux-gnu,lib64,usr/bin,usr/sbin,var/lib,var/log,mnt}
    ln -s ../run "$R/var/run"; ln -s ../run/lock "$R/var/lock"
    cp /bin/busybox "$R/bin/busybox"
    for a in $(/bin/busybox --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
    cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/"   # dlopen()ed by pthread_cancel
    mkdir -p "$R/lib/modules/$KVER"
    for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs/xenfs; do
        cp "$X/lib/modules/$KVER/kernel/drivers/xen/$m.ko" "$R/lib/modules/$KVER/"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
    echo "root:x:0:" > "$R/etc/group"
    copy_bin "$R" "$X/usr/bin/xenstore" usr/bin/xenstore
    for t in read write ls list rm exists watch chmod; do ln -sf xenstore "$R/usr/bin/xenstore-$t"; done
    if [ -n "$BIN_DIR" ]; then
        for b in "$BIN_DIR"/*; do [ -x "$b" ] && copy_bin "$R" "$b" "usr/bin/$(basename "$b")"; done
    fi
    # The modules as a guest needs them; gntalloc's default limit (1024 grants for the
    # whole domain) is below one default MX endpoint plus the pool: raise it.
    cat > "$R/etc/xen-modules.sh" <<'EOS'
K=/lib/modules/$(uname -r)
for m in xen-evtchn xen-gntdev xen-privcmd xenfs; do insmod $K/$m.ko 2>/dev/null; done
insmod $K/xen-gntalloc.ko limit=65536 2>/dev/null
EOS
}

############ domU ############
R=$D/rootfs-domU
base_rootfs "$R"
cp "$SRC/domU-test.sh" "$R/test.sh"; chmod +x "$R/test.sh"
cat > "$R/init" <<'EOF2'
#!/bin/sh
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /run/lock /tmp
. /etc/xen-modules.sh
mkdir -p /proc/xen; mount -t xenfs xenfs /proc/xen 2>/dev/null
echo "DOMU: name=$(xenstore-read name 2>&1) domid=$(xenstore-read domid 2>&1) uptime $(cut -d' ' -f1 /proc/uptime)s"
/test.sh
xenstore-write data/ready "$(cut -d' ' -f1 /proc/uptime)" || echo "DOMU: xenstore-write failed"
while true; do setsid cttyhack /bin/sh; done
EOF2
chmod +x "$R/init"
(cd "$R" && find . | cpio -H newc -o --quiet | gzip -6 > "$OUT/domU.cpio.gz")

############ dom0 ############
R=$D/rootfs-dom0
base_rootfs "$R"
for b in xl xenstored xenconsoled xenconsole xen-init-dom0 libxl-save-helper xenstore-control lsevtchn xen-diag; do
    copy_bin "$R" "$X/$XBIN/$b" "$XBIN/$b"
done
mkdir -p "$R/etc/xen" "$R/var/lib/xen" "$R/var/log/xen" "$R/var/lib/xenstored"
cp "$X/etc/xen/xl.conf" "$R/etc/xen/"
cp -a "$X/etc/xen/scripts" "$R/etc/xen/"
cp "$X/boot/vmlinuz-$KVER" "$R/root/vmlinuz"
cp "$OUT/domU.cpio.gz" "$R/root/domU.cpio.gz"
for i in 1 2 3 4; do
cat > "$R/root/domU$i.cfg" <<EOF2
name   = "domU$i"
type   = "${DOMU_TYPE:-pv}"
memory = ${DOMU_MEM:-192}
vcpus  = 1
kernel = "/root/vmlinuz"
ramdisk = "/root/domU.cpio.gz"
extra  = "console=hvc0 loglevel=4 quiet"
on_crash = "preserve"
EOF2
done
cp "$SRC/dom0-test.sh" "$R/dom0-test.sh"; chmod +x "$R/dom0-test.sh"
cp "$SRC/mx-xen-devices.sh" "$R/usr/bin/mx-xen-devices.sh"; chmod +x "$R/usr/bin/mx-xen-devices.sh"
cat > "$R/init" <<'EOF2'
#!/bin/sh
export PATH=/usr/lib/xen-4.17/bin:/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run; mkdir -p /run/lock /run/xen /run/xenstored /tmp
. /etc/xen-modules.sh
mount -t xenfs xenfs /proc/xen
echo "DOM0: uptime $(cut -d' ' -f1 /proc/uptime)s; caps=$(cat /proc/xen/capabilities)"
export XENSTORED_ROOTDIR=/run/xenstored
xenstored --pid-file /run/xen/xenstored.pid
i=0; while [ ! -f /run/xen/xenstored.pid ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
xen-init-dom0
mkdir -p /var/log/xen/console
xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
echo "DOM0: toolstack up at $(cut -d' ' -f1 /proc/uptime)s"
/dom0-test.sh
for f in /var/log/xen/console/*.log; do echo "=== $f"; cat "$f"; done
echo "DOM0 DONE"
while true; do setsid cttyhack /bin/sh; done
EOF2
chmod +x "$R/init"
(cd "$R" && find . | cpio -H newc -o --quiet | gzip -6 > "$OUT/dom0.cpio.gz")
zcat "$X/boot/xen-4.17-amd64.gz" > "$OUT/xen"
cp "$X/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
du -sh "$OUT"/*.cpio.gz
