# SPDX-License-Identifier: GPL-2.0
# Debian's archive, for the scripts that fetch from it: this machine's own mirrors, a private
# apt state for the other suites (never added to the host's sources), the newest kernel ABI of a
# series, and the linux-source packages the kernels are built from.
# Source it after lib.sh (log, die, with_lock, CACHE); it defines functions and variables only.

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
# Debian 12's newest 6.12 kernels are in bookworm-security (linux-image-6.12-amd64 and the like),
# older ones in bookworm-backports.
DEBIAN_SUITES=${DEBIAN_SUITES:-"trixie trixie-updates trixie-security trixie-backports bookworm-security bookworm-backports sid"}

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

# What the headers of Debian kernel release REL (for DEBARCH) depend on, from apt's own data,
# never guessed from REL: DEB_HEADERS_COMMON (linux-headers-*-common*), DEB_KBUILD
# (linux-kbuild-*), DEB_CC (the compiler the kernel was built with: gcc-N, or sid's
# gcc-N-for-host) and DEB_IMAGES (the image packages it names, 6.12's linux-image-REL or, before
# the signed one is out, linux-image-REL-unsigned; 7.x's headers name none). With a release
# apt does not know, says so in one line, with the nearest ones it knows of that flavour.
debian_headers_deps() { # debian_headers_deps REL DEBARCH
	local rel=$1 debarch=$2 deps near
	if ! deps=$(APT_TOOL=apt-cache apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" \
		depends "linux-headers-$rel:$debarch" 2>/dev/null) || [ -z "$deps" ]; then
		# Those of the flavour, sorted with REL: the two either side of it.
		near=$({ APT_TOOL=apt-cache apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" pkgnames linux-headers- |
			sed -n "s/^linux-headers-\([0-9][^-]*-${rel#*-}\)\$/\1/p"; echo "$rel"; } |
			sort -uV | grep -C2 -xF -- "$rel" | grep -vxF -- "$rel" | paste -sd' ')
		die "Debian has no kernel $rel in $DEBIAN_SUITES (nearest of that flavour: ${near:-none})"
	fi
	DEB_HEADERS_COMMON=$(sed -nE 's/^ +Depends: <?(linux-headers-[^:> ]*-common[^:> ]*).*/\1/p' <<<"$deps" | head -n1)
	DEB_KBUILD=$(sed -nE 's/^ +Depends: <?(linux-kbuild-[^:> ]*).*/\1/p' <<<"$deps" | head -n1)
	DEB_CC=$(sed -nE 's/^ +Depends: <?(gcc-[0-9]+[^:> ]*).*/\1/p' <<<"$deps" | head -n1)
	# Real packages only: apt shows a virtual one in <>.
	DEB_IMAGES=$(sed -nE 's/^ +\|?Depends: (linux-image-[^:<> ]*).*/\1/p' <<<"$deps" | paste -sd' ')
	[ -n "$DEB_HEADERS_COMMON" ] && [ -n "$DEB_KBUILD" ] ||
		die "linux-headers-$rel depends on no linux-headers-*-common or linux-kbuild-* package"
}

# The newest Debian kernel ABI of a series for a Debian release (e.g. 6.12 deb13 -> 6.12.118+deb13).
# With a third argument N, the N-th newest.
debian_newest_abi() {
	APT_TOOL=apt-cache apt_private debian "$DEBIAN_SUITES" "$DEB_ARCHES" pkgnames "linux-headers-$1." |
		sed -n "s/^linux-headers-\($1\.[0-9]*+$2\)-common\$/\1/p" | sort -V | tail -n "${3:-1}" | head -n1
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
