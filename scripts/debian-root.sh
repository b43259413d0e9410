#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A Debian 13 (trixie) machine to build the module on, the way a user of Debian's stock
# kernels would: a root made by mmdebstrap from Debian's own packages, with the headers of
# the kernel releases asked for.
set -euo pipefail
LOG_TAG=debian-root
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

ROOT_SUITES="trixie trixie-updates trixie-security trixie-backports"
ROOT_PACKAGES="rustc rust-src bindgen libclang-dev gcc make libc6-dev bc kmod xz-utils
	gcc-aarch64-linux-gnu ca-certificates dkms debhelper dh-dkms build-essential fakeroot lintian"

usage() {
	cat <<EOF
Usage: $0 [COMMAND]
A Debian 13 root made by mmdebstrap from Debian's own packages:
  suites:   $ROOT_SUITES
  packages: $(echo $ROOT_PACKAGES | fold -s -w 80 | sed 's/ $//; 2,$s/^/            /')
then, per kernel release, that release's headers and its series' linux-source package,
installed with the root's apt. Commands:
  (none)         print the root's path (made if missing)
  release REL    also install REL's headers (e.g. 7.3.4+deb13-arm64) and linux-source-X.Y;
                 print the root's path
  source X.Y     also install linux-source-X.Y; print the root's path
  run CMD...     run CMD inside the root (/proc, /dev, this tree at /work bound)
  scratch CMD... the same in a throwaway copy (an overlay): what CMD installs or removes is
                 gone afterwards
The root is cached as
  $CACHE/debian-root/KEY
where KEY covers the suites and the versions apt would install of the packages, so a Debian
update makes a new root. Nothing here touches the host's own apt configuration: versions are
looked up with a private apt state (lib-apt.sh's apt_private), and the root's sources name
this machine's mirror.
EOF
}

root_key() {
	local versions
	# shellcheck disable=SC2086
	versions=$(apt_private trixie "$ROOT_SUITES" amd64 -qq --no-install-recommends \
		--print-uris install $ROOT_PACKAGES 2>/dev/null | awk '{ print $2 }' | sort) ||
		die "cannot resolve the root's packages in $ROOT_SUITES"
	{ echo "$ROOT_SUITES"; echo "$ROOT_PACKAGES"; echo "$versions"; } | sha256sum | cut -c1-16
}

make_root() {
	local key
	key=$(root_key)
	with_lock "$CACHE/debian-root/.lock" make_root_locked "$key"
	echo "$CACHE/debian-root/$key"
}

make_root_locked() {
	local key=$1 dir
	dir=$CACHE/debian-root/$key
	if [ ! -e "$dir/.done" ]; then
		command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/setup.sh (package mmdebstrap)"
		log "mmdebstrap: Debian trixie root with $(echo $ROOT_PACKAGES) (about 2 minutes)"
		rm -rf "$dir" && mkdir -p "$(dirname "$dir")"
		local sources=()
		mapfile -t sources < <(debian_sources "$ROOT_SUITES")
		# shellcheck disable=SC2086
		mmdebstrap --quiet --variant=minbase --components=main \
			--include="$(echo $ROOT_PACKAGES | tr ' ' ,)" \
			--aptopt='APT::Install-Recommends "false"' \
			trixie "$dir" "${sources[@]}" >&2 || { rm -rf "$dir"; die "mmdebstrap failed"; }
		touch "$dir/.done"
		# Older roots are superseded by this one.
		find "$CACHE/debian-root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
	fi
}

# Runs "$@" in the root with /proc, /dev and this work tree ($BINFMT_APE_ROOT at /work) bound;
# with SCRATCH=1, in an overlay of it that is thrown away afterwards.
in_root() {
	local dir=$1 tmp=
	shift
	mkdir -p "$dir/work"
	[ "${SCRATCH:-0}" = 0 ] || tmp=$(mktemp -d)
	local status=0
	unshare --mount --propagation private bash -c '
		set -e; d=$1; w=$2; t=$3; shift 3
		if [ -n "$t" ]; then
			mkdir -p "$t/upper" "$t/work" "$t/merged"
			mount -t overlay overlay -o "lowerdir=$d,upperdir=$t/upper,workdir=$t/work" "$t/merged"
			d=$t/merged
		fi
		mount -t proc proc "$d/proc"
		mount --rbind /dev "$d/dev"
		mount --bind "$w" "$d/work"
		cp /etc/resolv.conf "$d/etc/resolv.conf" 2>/dev/null || true
		exec chroot "$d" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
	' in-root "$dir" "$BINFMT_APE_ROOT" "$tmp" "$@" || status=$?
	[ -z "$tmp" ] || rm -rf "$tmp"
	return "$status"
}

# Installs a kernel release's headers (and its series' source) into the root. An amd64 release
# is apt-installed; another arch's headers package is unpacked next to the amd64 linux-kbuild
# of the same version (its scripts are host programs), as a cross-building user would.
install_release() {
	local dir=$1 rel=$2 ver series debarch
	debian_release "$rel"
	ver=$DEB_ABI debarch=$DEB_ARCH
	series=$(echo "$ver" | cut -d. -f1,2)
	if [ -e "$dir/usr/src/linux-headers-$rel/.config" ] && [ -e "$dir/usr/src/linux-source-$series.tar.xz" ]; then
		return 0
	fi
	# The root is Debian 13: a kernel of another Debian release is built with that release's
	# toolchain, in a root of its own, which is not made here yet.
	case "$ver" in
	*+deb13) ;;
	*) die "$rel is not a Debian 13 kernel: its module is built with its own release's toolchain, and there is only a Debian 13 root" ;;
	esac
	debian_headers_deps "$rel" "$debarch"
	log "installing headers for $rel ($DEB_HEADERS_COMMON, $DEB_KBUILD, $DEB_CC) and linux-source-$series into the Debian root"
	local pkgs=("linux-source-$series" "$DEB_HEADERS_COMMON" "$DEB_KBUILD" "$DEB_CC")
	[ "$debarch" = amd64 ] && pkgs+=("linux-headers-$rel")
	in_root "$dir" apt-get -qq update >&2
	in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2 ||
		die "apt-get install ${pkgs[*]} failed in the Debian root"
	if [ "$debarch" != amd64 ]; then
		(cd "$dir/tmp" && rm -f linux-headers-*.deb &&
			apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" -qq download "linux-headers-$rel:$debarch" >&2 &&
			dpkg-deb -x linux-headers-"$rel"_*.deb "$dir" && rm -f linux-headers-*.deb) ||
			die "cannot fetch linux-headers-$rel"
	fi
	[ -e "$dir/usr/src/linux-headers-$rel/.config" ] || die "linux-headers-$rel has no .config"
}

case "${1:-}" in
-h|--help) usage ;;
"") make_root ;;
release) dir=$(make_root); with_lock "$dir.lock" install_release "$dir" "${2:?release}"; echo "$dir" ;;
source)
	dir=$(make_root)
	if [ ! -e "$dir/usr/src/linux-source-${2:?series}.tar.xz" ]; then
		with_lock "$dir.lock" in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "linux-source-$2" >&2 ||
			die "apt-get install linux-source-$2 failed in the Debian root"
	fi
	echo "$dir" ;;
run) shift; dir=$(make_root); in_root "$dir" "$@" ;;
scratch) shift; dir=$(make_root); SCRATCH=1 in_root "$dir" "$@" ;;
*) usage >&2; exit 2 ;;
esac
