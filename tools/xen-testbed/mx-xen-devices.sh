#!/bin/sh
# Create the xenstore directories of the `mx` device slots of one domain, for a
# toolstack that runs mx-backend with --xen-no-create-devices (xl does not know
# device type mx). Run in the backend's domain (Dom0), e.g. from a domain-creation hook:
#   mx-xen-devices.sh <domid> [slots=4] [backend-domid=0]
# Same layout and permissions as mx_proto::platform::xen::xenbus::create_devices.
set -e
d=${1:?usage: mx-xen-devices.sh <domid> [slots] [backend-domid]}
slots=${2:-4}
be=${3:-0}
n=0
while [ "$n" -lt "$slots" ]; do
    fe=/local/domain/$d/device/mx/$n
    bk=/local/domain/$be/backend/mx/$d/$n
    if ! xenstore-exists "$bk/frontend" 2>/dev/null; then
        xenstore-write "$fe/backend" "$bk" "$fe/backend-id" "$be" "$fe/state" 1
        xenstore-chmod "/local/domain/$d/device/mx" "n$be" "r$d"
        for k in "" /backend /backend-id /state; do xenstore-chmod "$fe$k" "n$d" "r$be"; done
        xenstore-write "$bk/frontend" "$fe" "$bk/frontend-id" "$d" "$bk/online" 1 "$bk/state" 1
        for k in "" /frontend /frontend-id /online /state; do xenstore-chmod "$bk$k" "n$be" "r$d"; done
    fi
    n=$((n + 1))
done
