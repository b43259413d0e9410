#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a kernel and initramfs under QEMU (TCG) with a hard timeout, saving the console.
set -euo pipefail
LOG_TAG=qemu
. "$(dirname "$0")/../scripts/lib.sh"

usage() {
	cat <<EOF
Usage: $0 KERNEL_IMAGE INITRAMFS LOG [TIMEOUT_SECONDS]
Boots KERNEL_IMAGE with INITRAMFS in QEMU (TCG) for ARCH (${ALL_ARCHES// / or }), saving the
console to LOG; TIMEOUT_SECONDS (default 600) ends it. Exit status: 0 when the guest reported
"binfmt-ape-guest: exit 0", 1 otherwise; a hung or panicking guest is a failure and its
console is printed. QEMU_EXTRA: more QEMU options; KERNEL_APPEND: more kernel command line.
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -ge 3 ] || { usage >&2; exit 2; }
image=$1 initrd=$2 log=$3 limit=${4:-600}
arch_facts "$ARCH"
command -v "${QEMU[0]}" >/dev/null || die "${QEMU[0]} not found (run scripts/setup.sh)"
status=0
# shellcheck disable=SC2086 # QEMU_EXTRA: extra options, split on spaces (e.g. -icount ...)
timeout --foreground -k 5 "$limit" "${QEMU[@]}" ${QEMU_EXTRA:-} -m 512 -smp 2 -nographic -no-reboot \
	-kernel "$image" -initrd "$initrd" \
	-append "console=$CONSOLE panic=-1 oops=panic loglevel=4 ${KERNEL_APPEND:-}" </dev/null >"$log" 2>&1 || status=$?
sed -i 's/\r$//' "$log"
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
	log "guest timed out after ${limit}s; console:"
	cat "$log" >&2
	exit 1
fi
if grep -qE 'Kernel panic|Oops|BUG:|rust_panic' "$log"; then
	log "guest kernel crashed; console:"
	cat "$log" >&2
	exit 1
fi
grep -q '^binfmt-ape-guest: exit 0$' "$log"
