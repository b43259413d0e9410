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
# arch's facts (arch_facts) and DEB_ABI, the release without its flavour (7.3.4+deb13).
debian_release() { # debian_release REL
	local rel=$1 a f flavours=
	for a in $ALL_ARCHES; do
		arch_facts "$a"
		for f in $DEB_FLAVOURS; do
			case "$rel" in
			?*-"$f") DEB_ABI=${rel%-"$f"}; return 0 ;;
			esac
		done
		flavours+=${flavours:+, }${DEB_FLAVOURS// /, }
	done
	die "'$rel' is not a Debian kernel release of a flavour the guests boot ($flavours; e.g. 6.12.118+deb13-amd64)"
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

# The Debian mirror URI this machine's own apt configuration uses for its main archive, or
# with "security" for its security archive (deb822 .sources or one-line .list files).
# Scripts add suites on these mirrors only, so no registry host is written in this repository.
debian_mirror() {
	local codename suite uri
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release (is this a Debian machine?)"
	suite=$codename${1:+-$1}
	# The first stanza or line whose suites name $suite.
	uri=$(awk -v c="$suite" '
		function done() { if (!f && u != "" && (" " s " ") ~ (" " c " ")) { print u; f = 1; exit } u = ""; s = "" }
		FNR == 1 || /^[[:space:]]*$/ { done() }
		/^URIs:/ { u = $2 } /^Suites:/ { s = $0; sub(/^Suites:[[:space:]]*/, "", s) }
		END { done() }
	' /etc/apt/sources.list.d/*.sources 2>/dev/null)
	[ -n "$uri" ] || uri=$(awk -v c="$suite" '$1 == "deb" {
			i = 2; if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
			if ($(i + 1) == c) { print $i; exit }
		}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	if [ -z "$uri" ] && [ "${1:-}" = security ]; then
		uri=$(debian_mirror)-security
	fi
	[ -n "$uri" ] || die "no '$suite' Debian mirror in /etc/apt/sources.list{,.d/}"
	echo "${uri%/}"
}

# One-line apt sources for SUITES ("trixie trixie-security ..."), main only, on this machine's
# own mirrors (the security archive for *-security).
debian_sources() {
	local mirror security s
	mirror=$(debian_mirror) security=$(debian_mirror security)
	for s in $1; do
		case "$s" in
		*-security) printf 'deb %s %s main\n' "$security" "$s" ;;
		*) printf 'deb %s %s main\n' "$mirror" "$s" ;;
		esac
	done
}

# The Debian suites, besides the host's own, that kernels and their sources come from.
DEBIAN_SUITES=${DEBIAN_SUITES:-"trixie trixie-updates trixie-security trixie-backports bookworm-backports sid"}

# apt-get with a private state under $CACHE/apt/NAME: its own sources list (SUITES on this
# machine's mirror, main only), lists and cache. Other Debian suites (trixie-backports, sid)
# are looked up this way, never added to the host's own sources, where they would upgrade
# the host. The lists are refreshed once a day.
# Usage: apt_private NAME "SUITE..." ARCHES APT_GET_ARGS...   (ARCHES: e.g. "amd64,arm64";
#        APT_TOOL=apt-cache runs that instead of apt-get)
apt_private() {
	local name=$1 suites=$2 arches=$3 dir=$CACHE/apt/$1
	shift 3
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	local opts=(-o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache"
		-o Dir::State::status=/dev/null -o APT::Architectures="$arches"
		-o Debug::NoLocking=1 -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
	with_lock "$dir/.lock" apt_private_update "$dir" "$suites" "${opts[@]}"
	"${APT_TOOL:-apt-get}" "${opts[@]}" "$@"
}

apt_private_update() { # apt_private_update DIR SUITES APT_OPTIONS...
	local dir=$1 suites=$2
	shift 2
	debian_sources "$suites" >"$dir/sources.list.new"
	if ! cmp -s "$dir/sources.list.new" "$dir/sources.list" ||
		[ -z "$(find "$dir/.updated" -mmin -1440 2>/dev/null)" ]; then
		mv "$dir/sources.list.new" "$dir/sources.list"
		log "apt-get update (private state ${dir##*/}: $suites)"
		apt-get "$@" -qq update >&2 || die "apt-get update failed for $suites (private state $dir)"
		touch "$dir/.updated"
	fi
	rm -f "$dir/sources.list.new"
}

# The newest Debian kernel ABI of a series for a Debian release (e.g. 6.12 deb13 -> 6.12.118+deb13).
# With a third argument N, the N-th newest.
debian_newest_abi() {
	APT_TOOL=apt-cache apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" pkgnames "linux-headers-$1." |
		sed -n "s/^linux-headers-\($1\.[0-9]*+$2\)-common\$/\1/p" | sort -V | tail -n "${3:-1}" | head -n1
}

# The guest's programs (runner, benchmark) for $RUST_TARGET, and the fixtures.
build_guest_programs() {
	log "building the guest runner for $RUST_TARGET"
	# A cross target links with the cross compiler (CARGO_TARGET_<TRIPLE>_LINKER).
	local linker
	linker=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$RUST_TARGET")_LINKER
	env ${CROSS:+"$linker=${CROSS}gcc"} \
		cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" \
		-p guest --target "$RUST_TARGET" --bins
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

# Debian's linux-source-$KVER, unpacked once under $CACHE/src: sets SRC (the tree) and SRCVER
# (the package version).
kernel_source() {
	local pkg=linux-source-$KVER dir=$CACHE/src
	mkdir -p "$dir"
	with_lock "$dir/.lock-$pkg" kernel_source_unpack "$pkg" "$dir"
	local deb
	deb=$(ls "$dir"/"${pkg}"_*.deb | head -n1)
	SRCVER=$(dpkg-deb -f "$deb" Version)
	SRC=$dir/linux-$KVER-$SRCVER
}

kernel_source_unpack() { # kernel_source_unpack PKG DIR
	local pkg=$1 dir=$2 deb ver src
	deb=$(ls "$dir"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		# The host's own suites first (bookworm-security has 6.12); newer series come from
		# Debian's other suites through a private apt state.
		log "downloading $pkg"
		(cd "$dir" && apt-get download -qq "$pkg" 2>/dev/null) ||
			(cd "$dir" && apt_private debian "$DEBIAN_SUITES" amd64 download -qq "$pkg") ||
			die "$pkg is in none of: the host's apt sources, $DEBIAN_SUITES"
		deb=$(ls "$dir"/"${pkg}"_*.deb | head -n1)
	fi
	ver=$(dpkg-deb -f "$deb" Version)
	src=$dir/linux-$KVER-$ver
	if [ ! -e "$src/.extracted" ]; then
		log "extracting $pkg $ver"
		rm -rf "$src" "$src.tmp"
		mkdir -p "$src.tmp"
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$src.tmp" --wildcards '*.tar.xz'
		tar -xJf "$src.tmp"/usr/src/linux-source-"$KVER".tar.xz -C "$src.tmp"
		mv "$src.tmp/linux-source-$KVER" "$src"
		rm -rf "$src.tmp"
		touch "$src/.extracted"
	fi
}
