#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Before building binfmt_ape against KDIR (make runs it first; so does DKMS): check what the
# build needs, choose the build mode, and say what is missing in one message, with the
# packages that provide it.
set -uo pipefail

usage() {
	cat <<EOF
Usage: $0 KDIR [OUT]
Checks what building binfmt_ape against the kernel tree KDIR needs and chooses the build mode;
OUT is where to unpack the series' source in bundled mode (default: ./build). Modes
(MODE=kernel|bundled forces one):
  kernel   the kernel's own Rust: CONFIG_RUST=y, its rust/ metadata present in KDIR, and
           rustc --version byte-identical to CONFIG_RUSTC_VERSION_TEXT (rustc hashes its
           version into every crate, so no other rustc can use that metadata);
  bundled  everything else, CONFIG_RUST=n included: the kernel's Rust support crates are
           compiled from the same series' source (KSRC=, KDIR/source of a build tree, or the
           linux-source-X.Y package's tarball in /usr/src, unpacked into OUT) and linked into
           the module.
Human-readable lines go to stderr (PREFLIGHT_VERBOSE=1: also the tools found); on success
stdout holds the make variables for Kbuild. Everything missing is named in one message, each
with the packages that provide it, for this distribution (OS_RELEASE: read another
os-release than /etc/os-release). RUSTC and BINDGEN name other tools.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
kdir=$1
out=${2:-$PWD/build}
mode=${MODE:-}
RUSTC=${RUSTC:-rustc} BINDGEN=${BINDGEN:-bindgen}
problems=()

say() { printf 'binfmt_ape: %s\n' "$*" >&2; }
# missing WHAT FIX: FIX names the packages per distribution.
missing() { problems+=("$1"$'\n'"      fix: $2"); }

config() { sed -n "s/^$1=//p" "$kdir/.config" 2>/dev/null | head -n1; }

# The fixes on Debian, by release. Debian 12's rustc (1.63) and bindgen (0.60) are older than
# Linux 6.12 needs: its rustc-web is a newer rustc, and that builds the bindgen Debian 13 ships.
BINDGEN_CLI=0.71.1
if [ "$(. "${OS_RELEASE:-/etc/os-release}" 2>/dev/null && echo "${ID:-}:${VERSION_ID:-}")" = debian:12 ]; then
	deb_rustc="Debian 12: rustc-web (from bookworm-security; its rustc 1.63 is too old); Ubuntu: rustc"
	deb_rust_src="Debian 12: rust-web-src (with rustc-web); Ubuntu: rust-src"
	deb_bindgen="Debian 12: its bindgen 0.60 is too old: cargo install --locked --root /usr/local bindgen-cli@$BINDGEN_CLI (cargo from cargo-web), with libclang-19-dev; Ubuntu: bindgen"
	deb_libclang="Debian 12: libclang-19-dev; Ubuntu: libclang-dev"
else
	deb_rustc="Debian/Ubuntu: rustc" deb_rust_src="Debian/Ubuntu: rust-src"
	deb_bindgen="Debian/Ubuntu: bindgen" deb_libclang="Debian/Ubuntu: libclang-dev"
fi

# --- the kernel tree -------------------------------------------------------------------
if [ ! -r "$kdir/.config" ] || [ ! -e "$kdir/Makefile" ]; then
	# The release the headers were asked for: from /lib/modules/REL/build or
	# /usr/src/linux-headers-REL, else the running kernel's.
	case "$kdir" in
	*/modules/*/build|*/modules/*/build/) rel=$(basename "$(dirname "$kdir")") ;;
	*/linux-headers-*) rel=${kdir%/}; rel=${rel##*/linux-headers-} ;;
	*) rel=$(uname -r) ;;
	esac
	missing "no kernel headers at $kdir (no .config or Makefile)" \
		"Debian/Ubuntu: linux-headers-$rel; Fedora: kernel-devel-$rel; Arch: linux-headers; NixOS: KDIR=\${kernel.dev}/lib/modules/\${kernel.modDirVersion}/build"
fi
version=$(make -s -C "$kdir" kernelversion 2>/dev/null | tail -n1)
[ -n "$version" ] || version=$(sed -n 's/^# Linux\/[a-z0-9_]* \([0-9.]*\).* Kernel Configuration$/\1/p' "$kdir/.config" 2>/dev/null | head -n1)
series=$(echo "$version" | cut -d. -f1,2)
if [ -n "$series" ]; then
	major=${series%%.*} minor=${series#*.}
	if [ "$major" -lt 6 ] || { [ "$major" = 6 ] && [ "$minor" -lt 12 ]; }; then
		missing "Linux $version is older than 6.12, the oldest series binfmt_ape supports" \
			"boot a 6.12 or newer kernel (Debian 13; Debian 12: linux-image-6.12-amd64 or -arm64, from bookworm-security; Ubuntu 25.04, Fedora 41, Arch)"
	fi
fi

# --- rustc and the mode ------------------------------------------------------------------
rustc_text=$($RUSTC --version 2>/dev/null)
if [ -z "$rustc_text" ]; then
	missing "no rustc" "$deb_rustc; Fedora: rust; Arch: rust; or rustup"
fi
kernel_text=$(config CONFIG_RUSTC_VERSION_TEXT | tr -d '"')
if [ -z "$mode" ]; then
	if [ "$(config CONFIG_RUST)" != y ]; then
		mode=bundled why="the kernel is built without Rust (CONFIG_RUST is not set)"
	elif [ ! -e "$kdir/rust/libkernel.rmeta" ] && [ ! -e "$kdir/rust/libkernel.rlib" ]; then
		mode=bundled why="the kernel's headers ship no Rust metadata (no rust/libkernel.rmeta)"
	elif [ "$rustc_text" != "$kernel_text" ]; then
		mode=bundled why="'$rustc_text' is not the kernel's '$kernel_text'"
	else
		mode=kernel why="the kernel's Rust metadata and its rustc ($rustc_text)"
	fi
else
	why="MODE=$mode"
fi
case "$mode" in
kernel)
	[ "$(config CONFIG_RUST)" = y ] || missing "MODE=kernel, but the kernel has no CONFIG_RUST" "use MODE=bundled (the default here)"
	[ -e "$kdir/rust/libkernel.rmeta" ] || [ -e "$kdir/rust/libkernel.rlib" ] ||
		missing "MODE=kernel, but $kdir has no rust/ metadata" \
			"Ubuntu: linux-lib-rust-$(basename "$(dirname "$kdir")"); Arch: linux-headers; NixOS: kernel.dev; Debian ships none: use MODE=bundled"
	[ -z "$rustc_text" ] || [ "$rustc_text" = "$kernel_text" ] ||
		missing "MODE=kernel needs the kernel's rustc: '$kernel_text' (found '$rustc_text')" \
			"install that exact rustc, or use MODE=bundled"
	;;
bundled) ;;
*) missing "unknown MODE=$mode" "MODE=kernel or MODE=bundled" ;;
esac

# --- bundled: the series' source, rust-src, bindgen and libclang ----------------------------
ksrc=
if [ "$mode" = bundled ] && [ -n "$series" ]; then
	# A kernel build tree made with O= links its source: that is the series' source.
	if [ -z "${KSRC:-}" ] && [ -e "$kdir/source/rust/kernel/lib.rs" ]; then
		KSRC=$kdir/source
	fi
	if [ -n "${KSRC:-}" ]; then
		ksrc=$(cd "$KSRC" 2>/dev/null && pwd)
		[ -n "$ksrc" ] && [ -e "$ksrc/rust/kernel/lib.rs" ] ||
			missing "KSRC=$KSRC holds no kernel source with rust/kernel/lib.rs" "point KSRC at a Linux $series tree"
		[ -z "$ksrc" ] || [ "$(make -s -C "$ksrc" kernelversion 2>/dev/null | cut -d. -f1,2)" = "$series" ] ||
			missing "KSRC=$KSRC is not a Linux $series tree" "the bundled crates must come from the kernel's own series"
	else
		tarball=$(ls /usr/src/linux-source-"$series".tar.{xz,bz2,gz} 2>/dev/null | head -n1)
		if [ -z "$tarball" ]; then
			missing "bundled mode needs the Linux $series source (its rust/ directory), and there is no /usr/src/linux-source-$series.tar.*" \
				"Debian/Ubuntu: linux-source-$series (Debian: from trixie-backports for 7.x); Fedora/Arch: unpack the $series tarball from kernel.org and pass KSRC=DIR"
		else
			# Unpacked once per tarball: the parts the bundle is built from.
			ksrc=$out/linux-source-$series
			stamp=$(stat -c '%n %s %Y' "$tarball")
			if [ "$(cat "$ksrc/.unpacked" 2>/dev/null)" != "$stamp" ]; then
				say "unpacking rust/ of $tarball into $ksrc"
				rm -rf "$ksrc" && mkdir -p "$ksrc" &&
					tar -xf "$tarball" -C "$ksrc" --strip-components=1 --wildcards \
						'*/rust/*' '*/scripts/generate_rust_target.rs' '*/scripts/min-tool-version.sh' \
						'*/init/Kconfig' '*/drivers/*.h' 2>/dev/null
				if [ -e "$ksrc/rust/kernel/lib.rs" ]; then
					echo "$stamp" >"$ksrc/.unpacked"
				else
					missing "$tarball has no rust/kernel/lib.rs" "reinstall linux-source-$series"
				fi
			fi
		fi
	fi
	if [ -n "$rustc_text" ]; then
		sysroot=$($RUSTC --print sysroot)
		[ -e "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ] ||
			missing "no Rust standard library source for $rustc_text (bundled mode compiles core)" \
				"$deb_rust_src; Fedora: rust-src; Arch: rust-src; rustup: rustup component add rust-src"
		min=$(ARCH= SRCARCH= sh "$ksrc/scripts/min-tool-version.sh" rustc 2>/dev/null)
		have=$(echo "$rustc_text" | sed -E 's/^rustc ([0-9.]+).*/\1/')
		if [ -n "$min" ] && [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n1)" != "$min" ]; then
			case "$deb_rustc" in
			"Debian 12"*) fix="Debian 12: rustc-web and rust-web-src (from bookworm-security)" ;;
			*) fix="Debian: rustc from trixie (1.85) or newer" ;;
			esac
			missing "rustc $have is older than Linux $series needs ($min)" \
				"$fix; Ubuntu: rustc-1.85 or newer; Fedora/Arch: rust; rustup: a newer toolchain"
		fi
	fi
	if ! command -v "$BINDGEN" >/dev/null; then
		missing "no bindgen (bundled mode generates the kernel's bindings)" \
			"$deb_bindgen; Fedora: bindgen-cli; Arch: rust-bindgen; cargo install bindgen-cli"
	elif ! echo 'int x;' | "$BINDGEN" /dev/stdin -- -xc >/dev/null 2>&1; then
		missing "bindgen runs but cannot load libclang" \
			"$deb_libclang; Fedora: clang-devel; Arch: clang"
	else
		min=$(ARCH= SRCARCH= sh "$ksrc/scripts/min-tool-version.sh" bindgen 2>/dev/null)
		have=$("$BINDGEN" --version 2>/dev/null | sed -nE 's/^bindgen ([0-9.]+).*/\1/p')
		if [ -n "$min" ] && [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n1)" != "$min" ]; then
			case "$deb_bindgen" in
			"Debian 12"*) fix=$deb_bindgen ;;
			*) fix="Debian: bindgen from trixie (0.71) or newer; Ubuntu: bindgen" ;;
			esac
			missing "bindgen $have is older than Linux $series needs ($min)" \
				"$fix; Fedora: bindgen-cli; Arch: rust-bindgen; cargo install --locked bindgen-cli@$BINDGEN_CLI"
		fi
	fi
fi

if [ "${#problems[@]}" -gt 0 ]; then
	{
		echo "binfmt_ape: cannot build against $kdir:"
		for p in "${problems[@]}"; do printf '  - %s\n' "$p"; done
	} >&2
	exit 1
fi
if [ "${PREFLIGHT_VERBOSE:-0}" = 1 ]; then
	say "kernel: $kdir, Linux $version, CONFIG_RUST=$(config CONFIG_RUST)${kernel_text:+, built by $kernel_text}"
	say "rustc: ${rustc_text:-none}"
	if [ "$mode" = bundled ]; then
		say "rust-src: $($RUSTC --print sysroot)/lib/rustlib/src/rust/library"
		say "bindgen: $($BINDGEN --version 2>&1 | head -n1) ($(echo 'int x;' | $BINDGEN /dev/stdin -- -xc -v 2>&1 | sed -n 's/.*clang version \([0-9.]*\).*/libclang \1/p' | head -n1))"
		say "the series' source: $ksrc"
	fi
fi
say "Linux $version, build mode: $mode ($why)"
printf 'APE_MODE=%s' "$mode"
if [ "$mode" = bundled ]; then
	# rustc-min-version in the kernel's Makefiles reads CONFIG_RUSTC_VERSION, which describes
	# the rustc the kernel was built with (0 without Rust): describe this one instead.
	v=$(echo "$rustc_text" | sed -E 's/^rustc ([0-9]+)\.([0-9]+)\.([0-9]+).*/\1 \2 \3/' |
		awk '{ printf "%d", $1 * 100000 + $2 * 100 + $3 }')
	printf ' APE_KSRC=%s CONFIG_RUSTC_VERSION=%s' "$ksrc" "$v"
fi
echo
