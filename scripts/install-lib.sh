#!/usr/bin/env bash
# Build the libmyriexpress C library (crate libmx, release cdylib) and lay
# it out like an MX installation:
#
#   <prefix>/lib/libmyriexpress.so.<version>        the library (soname libmyriexpress.so.0)
#   <prefix>/lib/libmyriexpress.so.0 -> libmyriexpress.so.<version>
#   <prefix>/lib/libmyriexpress.so   -> libmyriexpress.so.0     (what -lmyriexpress finds)
#   <prefix>/lib/libmx.so            -> libmyriexpress.so.0     (what -lmx finds: MPICH's
#                                        nemesis/mx netmod and other Myricom-era builds)
#   <prefix>/lib/libopen-mx.so.0     -> libmyriexpress.so.<version>  (Open-MX-linked binaries)
#   <prefix>/include/{myriexpress,mx_extensions,mx_io,mx_raw}.h
#
# Usage: scripts/install-lib.sh [--prefix DIR] [--debug] [--no-build]
#   --prefix DIR  install root (default: <repo>/target/mx)
#   --debug       use the debug build instead of release
#   --no-build    do not run cargo, install what is already built
# Honours CARGO_TARGET_DIR. Then:
#   gcc prog.c -I<prefix>/include -L<prefix>/lib -lmyriexpress
#   LD_LIBRARY_PATH=<prefix>/lib ./a.out
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
prefix="$repo/target/mx"
profile=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --debug) profile=debug; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install-lib: unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$repo"
if [ "$build" = 1 ]; then
    if [ "$profile" = release ]; then
        cargo build --release -p libmx --lib
    else
        cargo build -p libmx --lib
    fi
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
built="$target_dir/$profile/liblibmx.so"
[ -f "$built" ] || { echo "install-lib: $built not found (build first)" >&2; exit 1; }

version="$(cargo pkgid -p libmx 2>/dev/null | sed -n 's/.*[#@]\([0-9][0-9.]*\)$/\1/p')"
version="${version:-0.0.0}"
real="libmyriexpress.so.$version"

mkdir -p "$prefix/lib" "$prefix/include"
install -m 0755 "$built" "$prefix/lib/$real.tmp"
mv -f "$prefix/lib/$real.tmp" "$prefix/lib/$real"
ln -sfn "$real" "$prefix/lib/libmyriexpress.so.0"
ln -sfn libmyriexpress.so.0 "$prefix/lib/libmyriexpress.so"
# Myricom's MX shipped libmyriexpress as libmx too, and MPICH's netmod links
# with -lmx: the same library under that development name.
ln -sfn libmyriexpress.so.0 "$prefix/lib/libmx.so"
ln -sfn "$real" "$prefix/lib/libopen-mx.so.0"
install -m 0644 crates/libmx/include/*.h "$prefix/include/"

if command -v readelf >/dev/null 2>&1; then
    if ! readelf --dyn-syms -W "$prefix/lib/$real" | grep -q 'mx__init_api@@MX_0.92'; then
        echo "install-lib: WARNING: mx__init_api lacks version MX_0.92 (was lld used?)" >&2
    fi
fi
echo "installed libmyriexpress ($profile) into $prefix"
