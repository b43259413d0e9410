#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: boot a QEMU guest (ARCH, default x86_64) with binfmt_ape and run a real APE
# natively: cosmo's ent.com by default, or the given file with its arguments.
# Usage: demo.sh [APE [ARGS...]]
set -euo pipefail
LOG_TAG=demo
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '3,7p' "$0"; exit 0 ;; esac
"$BINFMT_APE_ROOT"/scripts/setup.sh
args=()
if [ $# -gt 0 ]; then
	[ -r "$1" ] || die "cannot read APE '$1'"
	export APE_FILE=$1
	args=("/ape/user/$(basename "$1")" "${@:2}")
fi
s=0
glog=$(TIMEOUT=${TIMEOUT:-300} "$BINFMT_APE_ROOT"/scripts/guest.sh demo "${args[@]}") || s=$?
# The start line shares the console line with the firmware's escape codes.
[ -n "$glog" ] && [ -e "$glog" ] && sed -n '/binfmt-ape-guest: start/,/^binfmt-ape-guest: exit/{s/.*binfmt-ape-guest: start/binfmt-ape-guest: start/;p}' "$glog"
exit "$s"
