#!/usr/bin/env bash
# Install what a fresh Debian 12 machine with a Rust toolchain lacks for
# building and testing Xen2MX-rs. Idempotent; needs root for apt-get.
set -euo pipefail

need_pkgs=()
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v tc >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v readelf >/dev/null 2>&1 || need_pkgs+=(binutils)
command -v nm >/dev/null 2>&1 || need_pkgs+=(binutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need_pkgs[*]}; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
