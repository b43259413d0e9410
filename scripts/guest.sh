#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Everything for one guest run: kernel (cached), module, runner, fixtures, initramfs, boot.
# Usage: guest.sh MODE [ARGS...]   (MODE: check | demo | bench; KVER, ARCH, VARIANT, TIMEOUT,
#        APE_FILE, QEMU_EXTRA; bench also builds the module with APE_BENCH=1, for its profile)
# Leaves the console in build/guest-$KVER-$ARCH-$VARIANT-MODE.log and prints its path.
set -euo pipefail
LOG_TAG=guest
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { sed -n '3,7p' "$0"; exit 2; }
mode=$1
arch_facts "$ARCH"
kdir=$("$BINFMT_APE_ROOT"/scripts/build-kernel.sh)
ko=$(CLIPPY=1 "$BINFMT_APE_ROOT"/scripts/build-module.sh "$kdir")
if [ "$mode" = bench ]; then
	PROFILE_KO=$(CLIPPY=1 APE_BENCH=1 "$BINFMT_APE_ROOT"/scripts/build-module.sh "$kdir")
	export PROFILE_KO
fi
log "building the guest runner for $RUST_TARGET"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
	cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" \
	-p guest --target "$RUST_TARGET" --bins
"$BINFMT_APE_ROOT"/scripts/fixtures.sh
# The debug kernel turns any WARN into a panic, which run.sh reports with the console.
if [ "$VARIANT" = debug ]; then
	export KERNEL_APPEND="${KERNEL_APPEND:-} panic_on_warn=1"
	TIMEOUT=${TIMEOUT:-1800}
fi
name=$KVER-$KARCH-$VARIANT-$mode
mkdir -p "$BUILD"
"$BINFMT_APE_ROOT"/qemu/mkinitramfs.sh "$BUILD/$name.cpio.gz" "$kdir" "$ko" "$@"
log "booting the $KARCH guest ($mode)"
status=0
"$BINFMT_APE_ROOT"/qemu/run.sh "$kdir/$IMAGE" "$BUILD/$name.cpio.gz" "$BUILD/$name.log" "${TIMEOUT:-600}" || status=$?
echo "$BUILD/$name.log"
exit "$status"
