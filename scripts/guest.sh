#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# One guest run on a kernel built here: the kernel (cached), the module, the guest programs,
# the fixtures, the initramfs, the boot. Debian's own kernels: scripts/debian-guest.sh.
set -euo pipefail
LOG_TAG=guest
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 MODE [ARGS...]
Builds the kernel KVER/ARCH/VARIANT (or takes it from the cache) and binfmt_ape.ko for it,
boots a QEMU guest and runs MODE there:
  check [PREFIX...]     the guest suite (KTAP); with PREFIXes, only the tests so named
  demo [PATH [ARGS...]] run cosmo's ent.com, or the guest's PATH with ARGS, without and
                        with the module (make demo; APE_FILE puts a file at /ape/user/NAME)
  bench ITERATIONS      the exec benchmark; also builds the module with APE_BENCH=1
  soak SECONDS          the exec storm against module load and unload (make soak)
  fuzz [SECONDS] [...]  the guest fuzzer, apeinfo as its oracle (make fuzz-guest)
Leaves the console in build/KVER-ARCH-VARIANT-MODE.log and prints that path.
Environment:
  KVER          kernel series (default 6.12)
  ARCH          ${ALL_ARCHES// / or } (default x86_64)
  VARIANT       a config fragment qemu/config/variant-VARIANT.config (default: default)
  KERNEL_TREE   a git kernel tree to build instead of Debian's linux-source-KVER
  TIMEOUT       seconds before the guest counts as hung (default 600; debug: 1800)
  APE_FILE      a file copied into the guest as /ape/user/NAME (demo)
  QEMU_EXTRA    more QEMU options; KERNEL_APPEND: more kernel command line
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
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
# A kernel with KUnit runs its suites at boot and prints their KTAP at KERN_INFO: the console
# shows it (loglevel=7) until the guest's init sets it back to errors and worse, and make
# check counts it (count_kunit).
if grep -qx 'CONFIG_KUNIT=y' "$kdir/.config"; then
	export KERNEL_APPEND="${KERNEL_APPEND:-} loglevel=7"
fi
# The debug kernel turns any WARN into a panic, which run.sh reports with the console.
if [ "$VARIANT" = debug ]; then
	export KERNEL_APPEND="${KERNEL_APPEND:-} panic_on_warn=1"
	TIMEOUT=${TIMEOUT:-1800}
fi
boot_guest "$KVER-$KARCH-$VARIANT-$mode" "$kdir/$IMAGE" "$kdir" "$ko" "$@"
