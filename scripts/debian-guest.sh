#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The guest suite on a Debian kernel, unmodified: Debian's own image and modules, and
# binfmt_ape.ko built the way a Debian user builds it, in a root of the kernel's own Debian
# release (scripts/debian-root.sh) with `make KDIR=/usr/src/linux-headers-REL`. Kernels built here:
# scripts/guest.sh.
set -euo pipefail
LOG_TAG=debian
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

usage() {
	cat <<EOF
Usage: $0 REL [MODE [ARGS...]]
Boots Debian's kernel release REL (e.g. 7.3.4+deb13-amd64, 6.12.118+deb13-arm64-16k) with
binfmt_ape.ko built for it in the Debian root, and runs MODE there: check [PREFIX...]
(default) or demo [PATH [ARGS...]], as scripts/guest.sh does. Prints the console log's path;
the module's build log is beside it. Debian's packages come from a private apt state
(lib-apt.sh's apt_private) and are cached under $CACHE/debian-kernel.
Environment:
  MODE=kernel|bundled  force the module's build mode (default: preflight's choice)
  APE_KO=PATH          boot this module instead of building one (scripts/dkms-cycle.sh)
  TIMEOUT              seconds before the guest counts as hung (default 600)
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
rel=$1
shift
[ $# -gt 0 ] || set -- check
debian_release "$rel"
# A release no Debian root here can build for stops here, with the reason (make check counts it
# as a skip).
reason=$(debian_unbuildable "$rel")
[ -z "$reason" ] || die "cannot build binfmt_ape for $rel: $reason"
# A release apt does not know stops here, in one line naming the nearest ones.
debian_headers_deps "$rel" "$DEB_ARCH"
# The root of REL's Debian release builds its module (scripts/debian-root.sh).
export DEBIAN_ROOT_FOR=$rel
export ARCH=$KARCH
series=$(echo "$rel" | cut -d. -f1,2)

# --- Debian's kernel image and modules ------------------------------------------------------
# 7.x ships the image in linux-binary-REL and the modules in linux-modules-REL; 6.12 both in
# linux-image-REL.
kernel_files() {
	local dir=$CACHE/debian-kernel/$rel tmp pkgs=() p
	# .done-2: with the file systems' modules (fs-modules/), which .done did not have.
	if [ ! -e "$dir/.done-2" ]; then
		tmp=$(mktemp -d)
		log "fetching Debian's kernel $rel"
		for p in "linux-binary-$rel" "linux-modules-$rel"; do
			(cd "$tmp" && apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" -qq download "$p:$DEB_ARCH" 2>/dev/null) &&
				pkgs+=("$p")
		done
		# 6.12: the image package its headers name (DEB_IMAGES, debian_headers_deps).
		if [ "${#pkgs[@]}" = 0 ]; then
			for p in $DEB_IMAGES; do
				(cd "$tmp" && apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" -qq download "$p:$DEB_ARCH" 2>/dev/null) &&
					pkgs+=("$p") && break
			done
			[ "${#pkgs[@]}" != 0 ] ||
				die "no linux-binary-$rel nor ${DEB_IMAGES:-an image its headers name} in $DEBIAN_SUITES"
		fi
		mkdir -p "$tmp/x"
		for p in "$tmp"/*.deb; do dpkg-deb -x "$p" "$tmp/x"; done
		local image misc
		image=$(ls "$tmp/x/usr/lib/modules/$rel/vmlinuz" "$tmp/x/boot/vmlinuz-$rel" 2>/dev/null | head -n1)
		[ -n "$image" ] || die "Debian's packages for $rel hold no vmlinuz"
		rm -rf "$dir" && mkdir -p "$dir"
		# QEMU boots x86's bzImage as it is, and arm64's Image only uncompressed (Debian's is
		# gzipped).
		if gzip -t "$image" 2>/dev/null; then
			gzip -dc "$image" >"$dir/Image"
		else
			cp "$image" "$dir/Image"
		fi
		misc=$(find "$tmp/x" -name 'binfmt_misc.ko*' | head -n1)
		case "$misc" in
		*.xz) xz -dc "$misc" >"$dir/binfmt_misc.ko" ;;
		*.zst) zstd -qdc "$misc" >"$dir/binfmt_misc.ko" ;;
		?*) cp "$misc" "$dir/binfmt_misc.ko" ;;
		esac
		fs_modules "$tmp/x" "$dir/fs-modules"
		rm -rf "$tmp"
		touch "$dir/.done-2"
	fi
	echo "$dir"
}

# The modules of the file systems the guest reads APEs from (ext2 through ext4, loop devices,
# overlayfs, 9p over virtio), with what they depend on, decompressed into OUT with a file
# `order` listing them in the order they load (dependencies first), from modules.dep.
fs_modules() { # fs_modules UNPACKED_PACKAGES OUT
	local out=$2 mods dep
	mods=$(find "$1" -path "*/lib/modules/$rel" -type d | head -n1)
	[ -n "$mods" ] || { log "no modules for $rel: no file-system modules"; return 0; }
	dep=$mods/modules.dep
	# The packages leave modules.dep to depmod at install time.
	[ -e "$dep" ] || depmod -b "${mods%/lib/modules/$rel}" "$rel" ||
		{ log "depmod failed for $rel: no file-system modules"; return 0; }
	mkdir -p "$out"
	: >"$out/order"
	load() { # load PATH (as modules.dep names it)
		local m=$1 d name
		grep -qx "${m##*/}" "$out/order.done" 2>/dev/null && return 0
		for d in $(sed -n "s|^$m: *||p" "$dep"); do load "$d"; done
		name=${m##*/} name=${name%.xz} name=${name%.zst}
		case "$m" in
		*.xz) xz -dc "$mods/$m" >"$out/$name" ;;
		*.zst) zstd -qdc "$mods/$m" >"$out/$name" ;;
		*) cp "$mods/$m" "$out/$name" ;;
		esac
		echo "$name" >>"$out/order"
		echo "${m##*/}" >>"$out/order.done"
	}
	local want m
	# ext4 asks the crypto API for crc32c, which is no dependency in modules.dep.
	for want in loop crc32c_generic crc32c-cryptoapi crc32c_cryptoapi ext4 overlay 9pnet_virtio 9p; do
		m=$(grep -oE "^[^:]*/$want\.ko(\.xz|\.zst)?:" "$dep" | head -n1)
		[ -z "$m" ] || load "${m%:}"
	done
	rm -f "$out/order.done"
}

# --- the module, built in the Debian root (or APE_KO: one built elsewhere, e.g. by DKMS) -----
root=$("$BINFMT_APE_ROOT"/scripts/debian-root.sh release "$rel")
kfiles=$(kernel_files)
if [ -n "${APE_KO:-}" ]; then
	ko=$APE_KO
else
	# The output directory lives in the root, so what does not change (the kernel's crates) is
	# built once per root and release, whatever the clone.
	out=/var/cache/binfmt-ape/$rel
	blog=$BUILD/debian-$rel.build.log
	mkdir -p "$BUILD"
	log "building binfmt_ape.ko in the Debian root: make KDIR=/usr/src/linux-headers-$rel"
	"$BINFMT_APE_ROOT"/scripts/debian-root.sh run sh -c "mkdir -p $out && cd /work && \
		make KDIR=/usr/src/linux-headers-$rel MO=$out ${MODE:+MODE=$MODE} modules" >"$blog" 2>&1 ||
		{ cat "$blog" >&2; die "module build failed"; }
	grep -h 'build mode' "$blog" >&2 || true
	ko=$root$out/binfmt_ape.ko
	"${CROSS}strip" --strip-debug -o "$ko.stripped" "$ko"
	log "binfmt_ape.ko: $(($(stat -c %s "$ko") / 1024)) KiB, $(($(stat -c %s "$ko.stripped") / 1024)) KiB without debug info"
	rm -f "$ko.stripped"
fi

# --- the exec selftests, from the series' source in the root -----------------------------------
st=$CACHE/debian-kernel/selftests-$series
tarball=$root/usr/src/linux-source-$series.tar.xz
if [ "$(cat "$st/.from" 2>/dev/null)" != "$(stat -c '%s %Y' "$tarball")" ]; then
	rm -rf "$st" && mkdir -p "$st"
	tar -xf "$tarball" -C "$st" --strip-components=4 --wildcards \
		'*/tools/testing/selftests/exec/*' '*/tools/testing/selftests/*.h'
	stat -c '%s %Y' "$tarball" >"$st/.from"
fi

build_guest_programs
# Debian's kernels have virtio built in and 9p as modules: the fixtures shared from the host.
export QEMU_EXTRA="${QEMU_EXTRA:-} -virtfs local,path=$BUILD/fixtures/fix,mount_tag=apefix,security_model=none,readonly=on"
KRELEASE=$rel MISC_KO=$kfiles/binfmt_misc.ko KSELFTESTS=$st FS_MODULES=$kfiles/fs-modules \
	boot_guest "debian-$rel${APE_KO:+-dkms}-$1" "$kfiles/Image" "$root/usr/src/linux-headers-$rel" "$ko" "$@"
