# SPDX-License-Identifier: GPL-2.0
# Shared helpers for binfmt_ape's scripts: logging, locks, the cache layout, the arch table
# (arch_facts), and building and booting a guest. Debian's archive (mirrors, private apt state,
# linux-source) is in lib-apt.sh. Source it; it defines functions and variables only.

BINFMT_APE_ROOT=${BINFMT_APE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CACHE=${BINFMT_APE_CACHE:-$HOME/.cache/binfmt-ape}
KVER=${KVER:-6.12}
ARCH=${ARCH:-x86_64}
VARIANT=${VARIANT:-default}
export PATH="/usr/lib/llvm-19/bin:$HOME/.cargo/bin:$PATH"
# The Rust toolchain the kernels, the module and the host tests are built with, pinned: each
# kernel series accepts a window of rustc versions, and a newer default rustc on a fresh
# machine must not break an older kernel. (cargo-fuzz asks for nightly explicitly.)
RUST_TOOLCHAIN=${RUST_TOOLCHAIN:-1.95.0}
export RUSTUP_TOOLCHAIN=$RUST_TOOLCHAIN

log() { printf '[%s] %s\n' "${LOG_TAG:-binfmt-ape}" "$*" >&2; }

# Runs "$@" holding an exclusive lock on FILE (flock): what make check's parallel lanes, or two
# users, may both make (a kernel, the Debian root, the fixtures) is made once, and the second
# waits for it. Usage: with_lock FILE CMD...
with_lock() {
	local f=$1 fd rc=0
	shift
	mkdir -p "$(dirname "$f")"
	# In this shell, not a subshell: a `die` in CMD ends the script as it would unlocked (the
	# lock goes with the process).
	exec {fd}>"$f"
	flock "$fd"
	# Not in a condition, so that `set -e` still applies inside CMD.
	"$@"
	rc=$?
	exec {fd}>&-
	return "$rc"
}
die() { printf '[%s] error: %s\n' "${LOG_TAG:-binfmt-ape}" "$*" >&2; exit 1; }

# The arches: the one place their names and per-arch facts are kept. ALL_ARCHES lists them
# (as the kernel's ARCH); arch_facts ARCH takes any of an arch's names (the kernel's, uname -m's,
# Debian's) and sets:
#   KARCH         the kernel's ARCH: qemu/config/KARCH.config, make ARCH=
#   ELF_ARCH      uname -m's and ELF's name, the Rust targets' prefix: fixture and real-APE
#                 directories, apeinfo --arch
#   DEB_ARCH      Debian's architecture: packages NAME:DEB_ARCH
#   DEB_FLAVOURS  Debian's kernel flavours of the arch that the guests boot (release suffixes)
#   CROSS         the cross compiler's prefix ("" for the host's compiler)
#   RUST_TARGET   the guest programs' Rust target
#   QEMU          the system emulator, machine and CPU (an array)
#   IMAGE         the kernel image QEMU boots, in a build tree
#   CONSOLE       the serial console
#   BUSYBOX       the static busybox the initramfs gets (scripts/setup.sh installs it)
ALL_ARCHES="x86_64 arm64"
arch_facts() {
	case "$1" in
	x86_64|x86|amd64)
		KARCH=x86_64 ELF_ARCH=x86_64 DEB_ARCH=amd64 DEB_FLAVOURS=amd64 CROSS=
		QEMU=(qemu-system-x86_64 -cpu max) IMAGE=arch/x86/boot/bzImage CONSOLE=ttyS0
		BUSYBOX=/bin/busybox ;;
	arm64|aarch64)
		KARCH=arm64 ELF_ARCH=aarch64 DEB_ARCH=arm64 DEB_FLAVOURS="arm64 arm64-16k"
		CROSS=aarch64-linux-gnu-
		QEMU=(qemu-system-aarch64 -M virt -cpu max) IMAGE=arch/arm64/boot/Image CONSOLE=ttyAMA0
		BUSYBOX=$CACHE/busybox-arm64/bin/busybox ;;
	*) die "unknown ARCH '$1' (one of: $ALL_ARCHES)" ;;
	esac
	RUST_TARGET=$ELF_ARCH-unknown-linux-musl
}

# One fact of an arch, without setting the others: arch_fact ARCH NAME (QEMU: the emulator).
arch_fact() { (arch_facts "$1" && printf '%s\n' "${!2}"); }

# Debian's architectures of ALL_ARCHES, comma-separated (apt's APT::Architectures).
DEB_ARCHES=$(for a in $ALL_ARCHES; do arch_fact "$a" DEB_ARCH; done | paste -sd,)

# A Debian kernel release's arch, from its flavour (7.3.4+deb13-arm64-16k: arm64): sets the
# arch's facts (arch_facts) and DEB_ABI, the release without its flavour (7.3.4+deb13; Debian
# 12's own kernels and older put an ABI number before it: 6.1.0-41-amd64 is 6.1.0-41).
debian_release() { # debian_release REL
	local rel=$1 flavour=${1#*-} a f flavours=
	DEB_ABI=${rel%%-*}
	case "$flavour" in
	[0-9]*-*) DEB_ABI=$DEB_ABI-${flavour%%-*} flavour=${flavour#*-} ;;
	esac
	for a in $ALL_ARCHES; do
		arch_facts "$a"
		for f in $DEB_FLAVOURS; do
			# Each flavour also comes as Debian's PREEMPT_RT (rt-) and cloud (cloud-) kernels.
			case "$flavour" in
			"$f"|rt-"$f"|cloud-"$f") [ "$flavour" != "$rel" ] && return 0 ;;
			esac
		done
		flavours+=${flavours:+, }${DEB_FLAVOURS// /, }
	done
	die "'$rel' is not a Debian kernel release of a flavour the guests boot ($flavours, and their rt- and cloud- kernels; e.g. 6.12.118+deb13-amd64)"
}

# Why binfmt_ape cannot be built for Debian kernel release REL, in one line, or nothing when it
# can: its Linux is older than 6.12 (Debian 12's own kernels are 6.1, Debian 11's 5.10), or it
# is of a Debian release that no root is made for here (scripts/debian-root.sh).
debian_unbuildable() { # debian_unbuildable REL
	local series major minor
	series=$(echo "${1%%-*}" | cut -d. -f1,2)
	major=${series%%.*} minor=${series#*.} minor=${minor%%[!0-9]*}
	case "$major.$minor" in
	[0-9]*.[0-9]*) ;;
	*) echo "'$1' names no Linux version"; return 0 ;;
	esac
	if [ "$major" -lt 6 ] || { [ "$major" = 6 ] && [ "$minor" -lt 12 ]; }; then
		echo "Linux $series is older than 6.12, the oldest series binfmt_ape supports (Debian 12 has 6.12: linux-image-6.12-$DEB_ARCH, from bookworm-security)"
		return 0
	fi
	case "$1" in
	*+deb12-*|*+deb13-*|*+deb14-*) ;;
	*) echo "no Debian release here builds for it: the roots are Debian 12's (+deb12), 13's (+deb13) and sid's (+deb14)" ;;
	esac
}

# The kernel build directory for KVER/ARCH/VARIANT, named by a key that covers
# everything that changes the output: source package version, config fragments
# and toolchain versions.
kernel_key() {
	local srcver=$1
	{
		echo "$srcver $KARCH $VARIANT"
		cat "$BINFMT_APE_ROOT"/qemu/config/base.config \
			"$BINFMT_APE_ROOT/qemu/config/$KARCH.config" \
			"$BINFMT_APE_ROOT/qemu/config/variant-$VARIANT.config"
		rustc --version; bindgen --version; "${CROSS}gcc" --version | head -n1
		if grep -qx '# binfmt-ape: LLVM=1' "$BINFMT_APE_ROOT/qemu/config/variant-$VARIANT.config"; then
			/usr/lib/llvm-19/bin/clang --version | head -n1
		fi
	} | sha256sum | cut -c1-16
}

# The build output directory inside the work tree (ignored by git).
BUILD=${BUILD:-$BINFMT_APE_ROOT/build}

# Builds the no_std payload for ARCH as ET_EXEC and ET_DYN into OUT/payload-exec and
# OUT/payload-dyn. Plain rustc + ld: nothing from libc, no relocations.
build_payload() ( # build_payload ARCH OUT (in a subshell: the arch's facts stay in it)
	local out=$2 kind rm cfg
	arch_facts "$1"
	mkdir -p "$out"
	for kind in exec dyn; do
		if [ "$kind" = dyn ]; then rm=pie cfg="--cfg payload_dyn"; else rm=static cfg=; fi
		# shellcheck disable=SC2086
		rustc --edition 2021 --crate-type lib --emit obj --target "$RUST_TARGET" \
			-C panic=abort -C opt-level=s -C relocation-model=$rm -C debuginfo=0 $cfg \
			-o "$out/payload-$kind.o" "$BINFMT_APE_ROOT/tests/payload/payload.rs"
		if [ "$kind" = dyn ]; then
			"${CROSS}ld" -static -pie --no-dynamic-linker -z norelro --build-id=none --gc-sections \
				-e _start -o "$out/payload-$kind" "$out/payload-$kind.o"
		else
			"${CROSS}ld" -static --build-id=none --gc-sections -e _start -o "$out/payload-$kind" "$out/payload-$kind.o"
		fi
		rm -f "$out/payload-$kind.o"
	done
)

# The guest's programs (runner, benchmark) for $RUST_TARGET, and the fixtures.
build_guest_programs() {
	log "building the guest runner for $RUST_TARGET"
	# A cross target links with the cross compiler (CARGO_TARGET_<TRIPLE>_LINKER).
	local linker
	linker=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$RUST_TARGET")_LINKER
	env ${CROSS:+"$linker=${CROSS}gcc"} \
		cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" \
		-p guest --target "$RUST_TARGET" --bins
	# apeinfo, for the guest tests that compare its verdict with what exec does.
	env ${CROSS:+"$linker=${CROSS}gcc"} \
		cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" \
		-p apekit --target "$RUST_TARGET" --bin apeinfo
	"$BINFMT_APE_ROOT"/scripts/fixtures.sh
}

# Builds the initramfs for a guest and boots it: boot_guest NAME IMAGE KDIR KO MODE [ARGS...]
# (KDIR and the environment as qemu/mkinitramfs.sh takes them). Prints the console log's path
# (build/NAME.log); returns qemu/run.sh's status.
boot_guest() {
	local name=$1 image=$2 kdir=$3 ko=$4 status=0
	shift 4
	mkdir -p "$BUILD"
	"$BINFMT_APE_ROOT"/qemu/mkinitramfs.sh "$BUILD/$name.cpio.gz" "$kdir" "$ko" "$@"
	log "booting $name"
	"$BINFMT_APE_ROOT"/qemu/run.sh "$image" "$BUILD/$name.cpio.gz" "$BUILD/$name.log" "${TIMEOUT:-600}" ||
		status=$?
	echo "$BUILD/$name.log"
	return "$status"
}
