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
# A kernel with binfmt_ape built in (make patches' tree, BINFMT_APE=y) needs no module.
ko=
if ! grep -qx 'CONFIG_BINFMT_APE=y' "$kdir/.config"; then
	ko=$(CLIPPY=1 "$BINFMT_APE_ROOT"/scripts/build-module.sh "$kdir")
fi
if [ "$mode" = bench ]; then
	PROFILE_KO=$(CLIPPY=1 APE_BENCH=1 "$BINFMT_APE_ROOT"/scripts/build-module.sh "$kdir")
	export PROFILE_KO
fi
build_guest_programs
# A kernel with 9p gets the fixtures shared from the host (the guest mounts them cache=none).
if grep -qx 'CONFIG_9P_FS=y' "$kdir/.config"; then
	export QEMU_EXTRA="${QEMU_EXTRA:-} -virtfs local,path=$BUILD/fixtures/fix,mount_tag=apefix,security_model=none,readonly=on"
fi
# The debug kernel turns any WARN into a panic, which run.sh reports with the console.
if [ "$VARIANT" = debug ]; then
	export KERNEL_APPEND="${KERNEL_APPEND:-} panic_on_warn=1"
	TIMEOUT=${TIMEOUT:-1800}
fi
boot_guest "$KVER-$KARCH-$VARIANT-$mode" "$kdir/$IMAGE" "$kdir" "$ko" "$@"
