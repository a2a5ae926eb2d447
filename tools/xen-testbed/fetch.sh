#!/bin/bash
# Fetch Debian 12's Xen 4.17 hypervisor + toolstack, Linux kernel and QEMU 7.2 with
# `apt-get download` (Debian's archive only) and unpack them with dpkg -x into the cache:
#   $D/x     Xen, xenstore tools, libs, kernel + modules
#   $D/qemu  QEMU 7.2 and its firmware ($D/fw), run through $D/qemu.sh
# Host packages (apt-get install): busybox-static cpio bc + QEMU 7.2's runtime libraries.
# Based on shared/xen-testbed/fetch.sh. Idempotent: does nothing once $D/.fetched exists.
set -euo pipefail
D=${D:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-testbed}
[ -f "$D/.fetched" ] && [ -x "$D/qemu.sh" ] && exit 0
HOST_PKGS="busybox-static cpio bc libcapstone4 libfdt1 libpmem1 libslirp0 libvdeplug2 librdmacm1 libibverbs1"
dpkg -s $HOST_PKGS >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $HOST_PKGS >/dev/null; }
KVER=${KVER:-$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); print $2; exit}')}
[ -n "$KVER" ] || { apt-get update -qq; KVER=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); print $2; exit}'); }
mkdir -p "$D/debs" "$D/x" "$D/qemu" "$D/fw"
cd "$D/debs"
PKGS="xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
    libxenstore4 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
    libxenhypfs1 libxenmisc4.17 libxentoolcore1 libxentoollog1 libyajl2 linux-image-$KVER
    qemu-system-x86 qemu-system-common qemu-system-data seabios"
# shellcheck disable=SC2086
apt-get download $PKGS >/dev/null 2>&1 || { apt-get update -qq; apt-get download $PKGS 2>&1 | grep -v unsandboxed || true; }
ls linux-image-*.deb xen-hypervisor-*.deb qemu-system-x86_*.deb >/dev/null
for f in *.deb; do
    case $f in
        qemu-*|seabios*) dpkg -x "$f" "$D/qemu" ;;
        *)               dpkg -x "$f" "$D/x" ;;
    esac
done
cp -aL "$D/qemu/usr/share/seabios/." "$D/fw/"
for f in "$D"/qemu/usr/share/qemu/*; do
    b=$(basename "$f"); t=$(readlink "$f" || true)
    case "$t" in /usr/share/seabios/*) cp -f "$D/qemu$t" "$D/fw/$b" ;; *) [ -e "$D/fw/$b" ] || cp -a "$f" "$D/fw/" ;; esac
done
cat > "$D/qemu.sh" <<EOS
#!/bin/sh
exec $D/qemu/usr/bin/qemu-system-x86_64 -L $D/fw "\$@"
EOS
chmod +x "$D/qemu.sh"
if ldd "$D/qemu/usr/bin/qemu-system-x86_64" | grep 'not found'; then
    echo "fetch.sh: QEMU 7.2 lacks the libraries above"; exit 1
fi
touch "$D/.fetched"
echo "fetch.sh: KVER=$KVER"
