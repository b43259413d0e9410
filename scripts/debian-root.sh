#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A Debian machine to build the module on, the way a user of Debian's stock kernels would: a
# root made by mmdebstrap from Debian's own packages, one per Debian release (a kernel's own
# release's toolchain builds its module), with the headers of the kernel releases asked for.
set -euo pipefail
LOG_TAG=debian-root
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

# The root of a Debian release, by its suite: ROOT_SUITES, ROOT_PACKAGES, ROOT_DIR (where its
# roots are cached) and ROOT_BINDGEN_CLI (a bindgen-cli version cargo installs into it, where
# the release's own bindgen is too old).
root_facts() { # root_facts SUITE
	ROOT_SUITE=$1 ROOT_BINDGEN_CLI=
	case "$1" in
	trixie)
		ROOT_SUITES="trixie trixie-updates trixie-security trixie-backports"
		ROOT_PACKAGES="rustc rust-src bindgen libclang-dev gcc make libc6-dev bc kmod xz-utils
	gcc-aarch64-linux-gnu ca-certificates dkms debhelper dh-dkms build-essential fakeroot lintian"
		ROOT_DIR=$CACHE/debian-root ;;
	bookworm)
		# Bookworm's rustc (1.63) and bindgen (0.60) are older than Linux 6.12 needs (1.78,
		# 0.65.1): rustc-web (bookworm-security) is a newer rustc, and it builds bindgen-cli, pinned
		# to Debian 13's bindgen. libclang 19 is bookworm's newest.
		ROOT_SUITES="bookworm bookworm-updates bookworm-security bookworm-backports"
		ROOT_PACKAGES="rustc-web rust-web-src cargo-web libclang-19-dev gcc make libc6-dev bc kmod
	xz-utils gcc-aarch64-linux-gnu ca-certificates"
		ROOT_BINDGEN_CLI=0.71.1
		ROOT_DIR=$CACHE/debian-root-bookworm ;;
	sid)
		ROOT_SUITES="sid"
		ROOT_PACKAGES="rustc rust-src bindgen libclang-dev gcc make libc6-dev bc kmod xz-utils
	gcc-aarch64-linux-gnu ca-certificates"
		ROOT_DIR=$CACHE/debian-root-sid ;;
	*) die "no Debian root for suite '$1' (bookworm, trixie, sid)" ;;
	esac
}

# The suite whose root builds the module of Debian kernel release REL, from its release
# (+deb12: Debian 12, whose 6.12 kernels are in bookworm-security and -backports; +deb13:
# Debian 13, trixie and its backports; +deb14: the next release, in sid).
release_suite() { # release_suite REL
	case "${1%%-*}" in
	*+deb12) echo bookworm ;;
	*+deb13) echo trixie ;;
	*+deb14) echo sid ;;
	*) die "$1 is of no Debian release with a root here (+deb12, +deb13, +deb14)" ;;
	esac
}

usage() {
	cat <<EOF
Usage: $0 [COMMAND]
A Debian root made by mmdebstrap from Debian's own packages, one per Debian release: the one
of DEBIAN_ROOT_FOR=REL's release (+deb12: bookworm, +deb13: trixie, +deb14: sid; default
trixie). This one ($ROOT_SUITE):
  suites:   $ROOT_SUITES
  packages: $(echo $ROOT_PACKAGES | fold -s -w 80 | sed 's/ $//; 2,$s/^/            /')${ROOT_BINDGEN_CLI:+
  and:      bindgen-cli $ROOT_BINDGEN_CLI (cargo install --locked; the binary is cached)}
then, per kernel release, that release's headers and its series' linux-source package,
installed with the root's apt. Commands:
  (none)         print the root's path (made if missing)
  release REL    also install REL's headers (e.g. 7.3.4+deb13-arm64) and linux-source-X.Y
                 into REL's release's root; print that root's path
  source X.Y     also install linux-source-X.Y; print the root's path
  run CMD...     run CMD inside the root (/proc, /dev, this tree at /work bound)
  scratch CMD... the same in a throwaway copy (an overlay): what CMD installs or removes is
                 gone afterwards
The root is cached as
  $ROOT_DIR/KEY
where KEY covers the suites and the versions apt would install of the packages, so a Debian
update makes a new root. Nothing here touches the host's own apt configuration: versions are
looked up with a private apt state (lib-apt.sh's apt_private), and the root's sources name
this machine's mirror.
EOF
}

root_key() {
	local versions
	# shellcheck disable=SC2086
	versions=$(apt_private "$ROOT_SUITE" "$ROOT_SUITES" amd64 -qq --no-install-recommends \
		--print-uris install $ROOT_PACKAGES 2>/dev/null | awk '{ print $2 }' | sort) ||
		die "cannot resolve the root's packages in $ROOT_SUITES"
	{
		echo "$ROOT_SUITES"; echo "$ROOT_PACKAGES"; echo "$versions"
		[ -z "$ROOT_BINDGEN_CLI" ] || echo "bindgen-cli $ROOT_BINDGEN_CLI"
	} | sha256sum | cut -c1-16
}

make_root() {
	local key
	key=$(root_key)
	with_lock "$ROOT_DIR/.lock" make_root_locked "$key"
	echo "$ROOT_DIR/$key"
}

make_root_locked() {
	local key=$1 dir
	dir=$ROOT_DIR/$key
	if [ ! -e "$dir/.done" ]; then
		command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/setup.sh (package mmdebstrap)"
		log "mmdebstrap: Debian $ROOT_SUITE root with $(echo $ROOT_PACKAGES) (about 2 minutes)"
		rm -rf "$dir" && mkdir -p "$(dirname "$dir")"
		local sources=() opts=() o
		mapfile -t sources < <(debian_sources "$ROOT_SUITES")
		# The root checks Release files' dates as this machine's apt does: a mirror that is a
		# snapshot serves sid's past its Valid-Until.
		while IFS= read -r o; do opts+=(--aptopt="$o"); done < <(apt-config dump |
			grep -E '^Acquire::Check-(Valid-Until|Date) ')
		# shellcheck disable=SC2086
		mmdebstrap --quiet --variant=minbase --components=main \
			--include="$(echo $ROOT_PACKAGES | tr ' ' ,)" \
			--aptopt='APT::Install-Recommends "false"' "${opts[@]}" \
			"$ROOT_SUITE" "$dir" "${sources[@]}" >&2 || { rm -rf "$dir"; die "mmdebstrap failed"; }
		[ -z "$ROOT_BINDGEN_CLI" ] || install_bindgen_cli "$dir"
		touch "$dir/.done"
		# Older roots are superseded by this one.
		find "$ROOT_DIR" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
	fi
}

# bindgen-cli $ROOT_BINDGEN_CLI in the root's /usr/local/bin, as a user of that release runs
# `cargo install --locked --root /usr/local bindgen-cli@VERSION` with its own cargo. The binary
# is cached under $CACHE/bindgen-cli/KEY, KEY covering the version, the suite and the rustc, so
# a new root does not build it again.
install_bindgen_cli() { # install_bindgen_cli DIR
	local dir=$1 key bin
	key=$({ echo "bindgen-cli $ROOT_BINDGEN_CLI $ROOT_SUITE"; in_root "$dir" rustc --version; } |
		sha256sum | cut -c1-16)
	bin=$CACHE/bindgen-cli/$key/bindgen
	with_lock "$CACHE/bindgen-cli/.lock" build_bindgen_cli "$dir" "$bin"
	install -D -m 755 "$bin" "$dir/usr/local/bin/bindgen"
}

build_bindgen_cli() { # build_bindgen_cli DIR BIN
	local dir=$1 bin=$2
	[ ! -x "$bin" ] || return 0
	log "cargo install --locked bindgen-cli@$ROOT_BINDGEN_CLI in the $ROOT_SUITE root (once: a few minutes)"
	# Trusting the certificate authorities this machine trusts, as a user's own cargo would.
	cp /etc/ssl/certs/ca-certificates.crt "$dir/tmp/machine-ca.crt"
	in_root "$dir" env CARGO_HTTP_CAINFO=/tmp/machine-ca.crt \
		cargo install --quiet --locked --root /tmp/bindgen-cli "bindgen-cli@$ROOT_BINDGEN_CLI" >&2 ||
		die "cargo install bindgen-cli@$ROOT_BINDGEN_CLI failed in the $ROOT_SUITE root"
	mkdir -p "$(dirname "$bin")"
	cp "$dir/tmp/bindgen-cli/bin/bindgen" "$bin.tmp" && mv "$bin.tmp" "$bin"
	rm -rf "$dir/tmp/bindgen-cli" "$dir/tmp/machine-ca.crt" "$dir/root/.cargo"
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
		exec chroot "$d" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
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
	debian_headers_deps "$rel" "$debarch"
	log "installing headers for $rel ($DEB_HEADERS_COMMON, $DEB_KBUILD, $DEB_CC) and linux-source-$series into the Debian $ROOT_SUITE root"
	local pkgs=("linux-source-$series" "$DEB_HEADERS_COMMON" "$DEB_KBUILD" "$DEB_CC")
	[ "$debarch" = amd64 ] && pkgs+=("linux-headers-$rel")
	in_root "$dir" apt-get -qq update >&2
	in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2 ||
		die "apt-get install ${pkgs[*]} failed in the Debian $ROOT_SUITE root"
	if [ "$debarch" != amd64 ]; then
		# Through tar --keep-directory-symlink: bookworm's packages still ship /lib, which must
		# land in the root's /usr/lib (merged /usr), not replace its /lib symlink.
		(cd "$dir/tmp" && rm -rf linux-headers-*.deb headers &&
			apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" -qq download "linux-headers-$rel:$debarch" >&2 &&
			dpkg-deb -x linux-headers-"$rel"_*.deb headers &&
			tar -C headers -c . | tar -C "$dir" -x --keep-directory-symlink &&
			rm -rf headers linux-headers-*.deb) ||
			die "cannot fetch linux-headers-$rel"
	fi
	[ -e "$dir/usr/src/linux-headers-$rel/.config" ] || die "linux-headers-$rel has no .config"
}

# The root: of DEBIAN_ROOT_FOR's release, of REL's with "release REL", else trixie's.
for_rel=${DEBIAN_ROOT_FOR:-}
[ "${1:-}" != release ] || for_rel=${2:?release}
suite=trixie
[ -z "$for_rel" ] || suite=$(release_suite "$for_rel")
root_facts "$suite"

case "${1:-}" in
-h|--help) usage ;;
"") make_root ;;
release) dir=$(make_root); with_lock "$dir.lock" install_release "$dir" "${2:?release}"; echo "$dir" ;;
source)
	dir=$(make_root)
	if [ ! -e "$dir/usr/src/linux-source-${2:?series}.tar.xz" ]; then
		with_lock "$dir.lock" in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "linux-source-$2" >&2 ||
			die "apt-get install linux-source-$2 failed in the Debian $ROOT_SUITE root"
	fi
	echo "$dir" ;;
run) shift; dir=$(make_root); in_root "$dir" "$@" ;;
scratch) shift; dir=$(make_root); SCRATCH=1 in_root "$dir" "$@" ;;
*) usage >&2; exit 2 ;;
esac
