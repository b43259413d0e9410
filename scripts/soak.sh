#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make soak`: the exec storm against module load and unload, in one guest, for as long as
# asked.
set -euo pipefail
LOG_TAG=soak
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0
The exec storm (tests/guest/src/storm.rs) in one guest for SOAK_SECONDS (default 600): two
workers exec APEs while the module is loaded and unloaded continuously. Every exec must run
its program or fail with ENOEXEC, and the kernel log must stay clean. KVER and ARCH pick the
guest (make soak: Linux 7.3, x86_64).
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac
seconds=${SOAK_SECONDS:-600}
log "storm for ${seconds}s on Linux $KVER, $ARCH"
status=0
glog=$(TIMEOUT=$((seconds + 600)) "$BINFMT_APE_ROOT"/scripts/guest.sh soak "$seconds") || status=$?
[ -n "$glog" ] && grep '^soak: ' "$glog" || true
[ "$status" = 0 ] || { [ -n "$glog" ] && tail -n 40 "$glog" >&2; die "the soak failed"; }
