#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make soak`: the exec storm (tests/guest/src/storm.rs) in one guest for SOAK_SECONDS
# (default 600): two workers exec APEs while the module is loaded and unloaded continuously.
# Every exec must run its program or fail with ENOEXEC, and the kernel log must stay clean.
# KVER and ARCH pick the guest (default Linux 7.3, x86_64).
set -euo pipefail
LOG_TAG=soak
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '3,7p' "$0"; exit 0 ;; esac
seconds=${SOAK_SECONDS:-600}
log "storm for ${seconds}s on Linux $KVER, $ARCH"
status=0
glog=$(TIMEOUT=$((seconds + 600)) "$BINFMT_APE_ROOT"/scripts/guest.sh soak "$seconds") || status=$?
[ -n "$glog" ] && grep '^soak: ' "$glog" || true
[ "$status" = 0 ] || { [ -n "$glog" ] && tail -n 40 "$glog" >&2; die "the soak failed"; }
