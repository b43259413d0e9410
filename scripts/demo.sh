#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: a real APE run natively in a QEMU guest with binfmt_ape.
set -euo pipefail
LOG_TAG=demo
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 [APE [ARGS...]]
Boots a QEMU guest (KVER, default 6.12; ARCH, default x86_64) and runs an APE there without
and with binfmt_ape: cosmo's ent.com, or the file APE with ARGS. Installs what it needs first
(scripts/setup.sh). TIMEOUT: seconds before the guest counts as hung (default 300).
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
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
