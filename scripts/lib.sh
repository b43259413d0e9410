# SPDX-License-Identifier: GPL-2.0
# Shared helpers for binfmt_ape's scripts: logging, the cache layout and the
# per-arch facts (kernel ARCH, cross compiler, Rust target, QEMU binary).
# Source it; it defines functions and variables only.

BINFMT_APE_ROOT=${BINFMT_APE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CACHE=${BINFMT_APE_CACHE:-$HOME/.cache/binfmt-ape}
KVER=${KVER:-6.12}
ARCH=${ARCH:-x86_64}
VARIANT=${VARIANT:-default}
export PATH="/usr/lib/llvm-19/bin:$HOME/.cargo/bin:$PATH"

log() { printf '[%s] %s\n' "${LOG_TAG:-binfmt-ape}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${LOG_TAG:-binfmt-ape}" "$*" >&2; exit 1; }

# Per-arch facts. Sets KARCH, CROSS, RUST_TARGET, QEMU, IMAGE, CONSOLE.
arch_facts() {
	case "$1" in
	x86_64|x86)
		KARCH=x86_64 CROSS= RUST_TARGET=x86_64-unknown-linux-musl
		QEMU=(qemu-system-x86_64 -cpu max) IMAGE=arch/x86/boot/bzImage CONSOLE=ttyS0 ;;
	arm64|aarch64)
		KARCH=arm64 CROSS=aarch64-linux-gnu- RUST_TARGET=aarch64-unknown-linux-musl
		QEMU=(qemu-system-aarch64 -M virt -cpu max) IMAGE=arch/arm64/boot/Image CONSOLE=ttyAMA0 ;;
	*) die "unknown ARCH '$1' (x86_64 or arm64)" ;;
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
	} | sha256sum | cut -c1-16
}

# The build output directory inside the work tree (ignored by git).
BUILD=${BUILD:-$BINFMT_APE_ROOT/build}

# Builds the no_std payload for one Rust arch ($1: x86_64|aarch64) as ET_EXEC and ET_DYN into
# $2/payload-exec and $2/payload-dyn. Plain rustc + ld: nothing from libc, no relocations.
build_payload() {
	local t=$1 out=$2 ld=ld kind rm cfg
	[ "$t" = aarch64 ] && ld=aarch64-linux-gnu-ld
	mkdir -p "$out"
	for kind in exec dyn; do
		if [ "$kind" = dyn ]; then rm=pie cfg="--cfg payload_dyn"; else rm=static cfg=; fi
		# shellcheck disable=SC2086
		rustc --edition 2021 --crate-type lib --emit obj --target "$t-unknown-linux-musl" \
			-C panic=abort -C opt-level=s -C relocation-model=$rm -C debuginfo=0 $cfg \
			-o "$out/payload-$kind.o" "$BINFMT_APE_ROOT/tests/payload/payload.rs"
		if [ "$kind" = dyn ]; then
			$ld -static -pie --no-dynamic-linker -z norelro --build-id=none --gc-sections \
				-e _start -o "$out/payload-$kind" "$out/payload-$kind.o"
		else
			$ld -static --build-id=none --gc-sections -e _start -o "$out/payload-$kind" "$out/payload-$kind.o"
		fi
		rm -f "$out/payload-$kind.o"
	done
}

# Rust arch name for a kernel ARCH.
rust_arch() { case "$1" in arm64|aarch64) echo aarch64 ;; *) echo x86_64 ;; esac; }
