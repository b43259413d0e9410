#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build a guest's initramfs: busybox, the guest programs, the modules, the APEs and the
# selftests; its init runs the guest programs and powers off.
set -euo pipefail
LOG_TAG=initramfs
. "$(dirname "$0")/../scripts/lib.sh"

usage() {
	cat <<EOF
Usage: $0 OUT.cpio.gz KERNEL_BUILD_DIR MODULE.ko MODE [ARGS...]
Builds a guest initramfs for ARCH (${ALL_ARCHES// / or }): busybox, the test runner, the
benchmark, apeinfo, binfmt_ape.ko, binfmt_misc.ko (with modules.dep, for request_module),
the real APEs, the fixtures, the corpus and the exec selftests. Its init runs
ape-runner MODE ARGS... (ape-bench ARGS... for MODE bench) and powers off.
MODULE.ko is "" for a kernel with binfmt_ape built in. Environment:
  APE_FILE=PATH    also copy a file to /ape/user/NAME (demo)
  PROFILE_KO=PATH  the bench build of the module, as /lib/modules/binfmt_ape-bench.ko (bench)
For a kernel not built here (a distribution's), KERNEL_BUILD_DIR is its headers and these say
where the rest is: KRELEASE (its release), MISC_KO (its binfmt_misc.ko, if a module),
KSELFTESTS (tools/testing/selftests of its source), FS_MODULES (file-system modules and their
load order).
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -ge 4 ] || { usage >&2; exit 2; }
out=$1 kdir=$2 ko=$3
shift 3
arch_facts "$ARCH"
apes=$("$BINFMT_APE_ROOT"/scripts/fetch-apes.sh)
fixtures=$BUILD/fixtures
[ -e "$fixtures/SHA256SUMS" ] || die "no fixtures: run scripts/fixtures.sh"
bins=$BINFMT_APE_ROOT/tests/target/$RUST_TARGET/release
for b in ape-runner ape-bench apeinfo; do
	[ -x "$bins/$b" ] || die "no guest program: $bins/$b"
done
[ -x "$BUSYBOX" ] || die "no busybox for $KARCH at $BUSYBOX (run scripts/setup.sh)"

root=$(mktemp -d)
chmod 755 "$root" # mktemp makes it 0700; it becomes the guest's /
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,mnt,test,ape/real,ape/user,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
# uname dd gzip mv rm: what an APE's prologue uses when the shell runs it (make bench's
# fallback); true: the exec selftests'; mke2fs: the debug kernel's read-failure test.
for a in sh mount umount insmod rmmod lsmod modprobe dmesg reboot cat echo mkdir ls sleep cp chmod \
	uname dd gzip mv rm true mke2fs; do
	ln -s busybox "$root/bin/$a"
done
ln -s ../bin/busybox "$root/sbin/modprobe"
cp "$bins/ape-runner" "$bins/ape-bench" "$bins/apeinfo" "$root/bin/"
cp "$fixtures/payload/$ELF_ARCH/payload-exec" "$fixtures/payload/$ELF_ARCH/payload-dyn" "$root/bin/"
cp "$fixtures/payload/$ELF_ARCH/payload-exec" "$root/bin/sentinel"
cp -r "$fixtures/fix" "$fixtures/corpus" "$fixtures/bench" "$root/ape/"
cp "$apes/ent.com" "$apes/pledge" "$root/ape/real/"
cp "$apes/$ELF_ARCH/ent.elf" "$root/ape/real/ent.elf"
head -c 65536 "$apes/ent.com" >"$root/ape/real/input"
printf '#!/bin/sh\necho "hello from #!"\n' >"$root/test/hello.sh"
chmod 755 "$root/test/hello.sh"
# The kernel's own exec selftests, from the source of the kernel under test, built static:
# they must pass the same with and without binfmt_ape (the guest runs both).
st=${KSELFTESTS:-$kdir/source/tools/testing/selftests}
mkdir -p "$root/selftests/exec/subdir"
for t in execveat non-regular null-argv recursion-depth; do
	"${CROSS}gcc" -static -O2 -D_GNU_SOURCE -Wno-nonnull -I "$st" -o "$root/selftests/exec/$t" \
		"$st/exec/$t.c" || die "cannot build the $t selftest"
done
# binfmt_ape's own selftest (the upstream series adds it to the kernel's exec selftests): the
# kernel's copy if it has one, else this repository's, which is the same file.
ape_st=$st/exec/binfmt_ape.c
[ -e "$ape_st" ] || ape_st=$BINFMT_APE_ROOT/tests/selftest/binfmt_ape.c
"${CROSS}gcc" -static -O2 -Wall -I "$st/exec" -o "$root/selftests/exec/binfmt_ape" "$ape_st" ||
	die "cannot build the binfmt_ape selftest"
# What the selftests' Makefile generates beside them (its script wants bash; sh does here).
printf '#!/bin/sh\nexit $*\n' >"$root/selftests/exec/script"
chmod 755 "$root/selftests/exec/script"
ln -s execveat "$root/selftests/exec/execveat.symlink"
cp "$root/selftests/exec/execveat" "$root/selftests/exec/execveat.denatured"
chmod -x "$root/selftests/exec/execveat.denatured"
cp "$st/exec/Makefile" "$root/selftests/exec/"
[ -z "$ko" ] || cp "$ko" "$root/lib/modules/binfmt_ape.ko"
[ -z "${PROFILE_KO:-}" ] || cp "$PROFILE_KO" "$root/lib/modules/binfmt_ape-bench.ko"
release=${KRELEASE:-$(cat "$kdir/include/config/kernel.release")}
misc_ko=${MISC_KO:-$kdir/fs/binfmt_misc.ko}
if [ -e "$misc_ko" ]; then
	mkdir -p "$root/lib/modules/$release/kernel/fs"
	cp "$misc_ko" "$root/lib/modules/$release/kernel/fs/binfmt_misc.ko"
	echo "kernel/fs/binfmt_misc.ko:" >"$root/lib/modules/$release/modules.dep"
fi
# A distribution kernel's file-system modules (FS_MODULES: .ko files and their load order),
# loaded at boot for the guest's file-system tests.
if [ -n "${FS_MODULES:-}" ] && [ -s "$FS_MODULES/order" ]; then
	mkdir -p "$root/lib/modules/fs"
	cp "$FS_MODULES"/*.ko "$FS_MODULES/order" "$root/lib/modules/fs/"
fi
if [ -n "${APE_FILE:-}" ]; then
	cp "$APE_FILE" "$root/ape/user/$(basename "$APE_FILE")"
	chmod 755 "$root/ape/user/$(basename "$APE_FILE")"
fi
{
	echo '#!/bin/sh'
	echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys'
	echo 'mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp'
	echo 'ln -s /proc/self/fd /dev/fd'
	# The console shows errors and worse while the guest runs, whatever loglevel= the
	# kernel booted with (scripts/guest.sh raises it for KUnit's output at boot).
	echo 'echo 4 >/proc/sys/kernel/printk'
	echo '[ ! -e /lib/modules/fs/order ] || for m in $(cat /lib/modules/fs/order); do insmod /lib/modules/fs/$m; done'
	echo 'echo "binfmt-ape-guest: start"'
	if [ "$1" = bench ]; then
		printf '/bin/ape-bench'
		printf ' %q' "${@:2}"
	else
		printf '/bin/ape-runner'
		printf ' %q' "$@"
	fi
	echo
	echo 'echo "binfmt-ape-guest: exit $?"'
	echo 'reboot -f'
} >"$root/init"
chmod 755 "$root/init"
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --quiet -o -0 -H newc --reproducible -R 0:0 | gzip -n -1) >"$out"
log "initramfs $out ($(du -h "$out" | cut -f1))"
