#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: exec latency of APEs through binfmt_ape against other ways to start them, in
# guests; a table, JSON and a chart in build/bench/.
set -euo pipefail
# Before lib.sh, which defaults ARCH to x86_64.
asked_arch=${ARCH:-}
LOG_TAG=bench
. "$(dirname "$0")/lib.sh"
arches=${asked_arch:-${ARCHES:-$ALL_ARCHES}}

usage() {
	cat <<EOF
Usage: $0
Exec latency of APEs through binfmt_ape against a native ELF, binfmt_misc with cosmopolitan's
loader and the shell fallback, on Linux KVER (default 6.12), on each arch in ARCHES (default
$ALL_ARCHES; ARCH= picks one). Each guest runs tests/guest/src/bench.rs twice: under QEMU's
-icount shift=0,sleep=off (guest time counts instructions: stable figures, independent of
host load) and on the wall clock. Writes build/bench/bench-ARCH-CLOCK.json, a table
(build/bench/bench.md) and a chart (build/bench/bench.svg, matplotlib). Environment:
  BENCH_ITERATIONS  execs per scenario (default 1000)
  BENCH_CLOCKS      which runs (default "icount wall")
  BENCH_SMOKE=1     a short icount run that checks the benchmark still works (make check)
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac
iterations=${BENCH_ITERATIONS:-1000}
clocks=${BENCH_CLOCKS:-icount wall}
[ -n "${BENCH_SMOKE:-}" ] && iterations=8 clocks=icount
out=$BUILD/bench
mkdir -p "$out"

# Runs one guest; prints the path of the JSON it reported.
run_guest() {
	local arch=$1 clock=$2 extra= append= json
	# icount: one guest nanosecond per instruction. Wall clock: the TSC, which the kernel
	# would otherwise distrust under TCG and replace with 4 ms jiffies.
	if [ "$clock" = icount ]; then extra="-icount shift=0,sleep=off"; else append="tsc=reliable"; fi
	log "$arch, $clock: $iterations execs per scenario"
	local glog
	glog=$(ARCH=$arch QEMU_EXTRA=$extra KERNEL_APPEND=$append TIMEOUT=${TIMEOUT:-1800} "$BINFMT_APE_ROOT"/scripts/guest.sh bench "$iterations") ||
		{ [ -n "$glog" ] && cat "$glog" >&2; die "the $arch benchmark guest failed"; }
	json=$out/bench-$arch-$clock.json
	sed -n 's/^BENCH-JSON: //p' "$glog" >"$json"
	[ -s "$json" ] || { cat "$glog" >&2; die "no BENCH-JSON line from the $arch guest"; }
	echo "$json"
}

files=()
for arch in $arches; do
	for clock in $clocks; do
		files+=("$(run_guest "$arch" "$clock")")
	done
done
/usr/bin/python3 "$BINFMT_APE_ROOT"/scripts/bench-report.py ${BENCH_SMOKE:+--smoke} --out "$out" "${files[@]}"
