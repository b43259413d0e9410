#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build binfmt_ape.ko against a kernel built here, its output beside the other kernels'.
set -euo pipefail
LOG_TAG=module
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 KERNEL_BUILD_DIR
Builds binfmt_ape.ko against the kernel build directory for ARCH (${ALL_ARCHES// / or }), with
its output in build/module/<kernel dir name> (make MO=...), so several kernels can be built
side by side and nothing is generated in the sources; warnings fail the build. Prints the .ko
path on stdout. Environment: CLIPPY=1 (lint), APE_BENCH=1 (make bench's profiling build),
MODE=kernel|bundled.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
kdir=$1
arch_facts "$ARCH"
out=$BUILD/module/$(basename "$kdir")${APE_BENCH:+-bench}${MODE:+-$MODE}
log=$out.log
mkdir -p "$BUILD/module"
log "building binfmt_ape.ko for $KARCH against $(basename "$kdir")"
# A kernel built with clang takes modules built with clang.
llvm=
if [ -e "$kdir/.llvm" ]; then llvm=1; export PATH=/usr/lib/llvm-19/bin:$PATH; fi
make -s -C "$BINFMT_APE_ROOT" KDIR="$kdir" MO="$out" ARCH="$KARCH" CROSS_COMPILE="$CROSS" ${llvm:+LLVM=1} \
	${CLIPPY:+CLIPPY=1} ${APE_BENCH:+APE_BENCH=1} modules >"$log" 2>&1 ||
	{ cat "$log" >&2; die "module build failed"; }
if grep -E '^(warning|error)' "$log" >&2; then
	die "the module build printed warnings (log: $log)"
fi
echo "$out/binfmt_ape.ko"
