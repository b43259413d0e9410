#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install what binfmt_ape's build and tests need on a Debian bookworm host (make setup; the
# other make targets run it first).
set -euo pipefail
LOG_TAG=setup
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

BINDGEN_VERSION=0.73.2

usage() {
	cat <<EOF
Usage: $0
Installs everything binfmt_ape's build and tests need on a Debian bookworm host (apt needs
root; sudo is used otherwise): QEMU (bookworm-backports, on this machine's own mirror), the
kernel build toolchain, libclang 19, the cross compiler, Sphinx and the kernel's Python tools'
modules (make htmldocs, spdxcheck.py), busybox-static for each guest arch
($ALL_ARCHES), the Rust toolchain $RUST_TOOLCHAIN with rust-src, clippy, rustfmt and the musl
targets, and bindgen-cli $BINDGEN_VERSION. Idempotent: a second run only checks.
Environment: BINFMT_APE_CACHE (default ~/.cache/binfmt-ape).
EOF
}

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_sources() {
	local changed=0
	if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		log "adding the bookworm-backports apt source (for QEMU), on this machine's own mirror"
		printf 'deb %s bookworm-backports main\n' "$(debian_mirror)" |
			sudo_ tee /etc/apt/sources.list.d/binfmt-ape-backports.list >/dev/null
		changed=1
	fi
	local a deb
	for a in $ALL_ARCHES; do
		[ "$(arch_fact "$a" BUSYBOX)" != /bin/busybox ] || continue
		deb=$(arch_fact "$a" DEB_ARCH)
		if ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
			log "adding the $deb foreign architecture (for busybox-static:$deb)"
			sudo_ dpkg --add-architecture "$deb"
			changed=1
		fi
	done
	if [ "$changed" = 1 ] || [ ! -e "$CACHE/.apt-updated" ]; then
		log "apt-get update"
		sudo_ apt-get update -qq
		mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
	fi
}

apt_packages() {
	local pkgs=(build-essential bc bison flex libelf-dev libssl-dev cpio kmod xz-utils
		libclang-19-dev clang-19 llvm-19 lld-19 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
		busybox-static python3-pip python3-matplotlib python3-ply python3-git mmdebstrap nix-bin
		python3-sphinx)
	local missing=() p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		log "installing: ${missing[*]}"
		sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
	local a qemu=1
	for a in $ALL_ARCHES; do
		command -v "$(arch_fact "$a" QEMU)" >/dev/null || qemu=0
	done
	if [ "$qemu" = 0 ]; then
		log "installing QEMU from bookworm-backports"
		sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-t bookworm-backports qemu-system-x86 qemu-system-arm
	fi
}

# The static busybox of each other arch's guests (lib.sh's BUSYBOX), unpacked from Debian's
# busybox-static:DEB_ARCH; the host's own is the busybox-static package (/bin/busybox).
busybox_foreign() {
	local a busybox deb tmp
	for a in $ALL_ARCHES; do
		busybox=$(arch_fact "$a" BUSYBOX) deb=$(arch_fact "$a" DEB_ARCH)
		[ "$busybox" != /bin/busybox ] && [ ! -x "$busybox" ] || continue
		log "fetching busybox-static:$deb"
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download -qq "busybox-static:$deb")
		mkdir -p "${busybox%/bin/busybox}"
		dpkg-deb -x "$tmp"/busybox-static_*_"$deb".deb "${busybox%/bin/busybox}"
		rm -rf "$tmp"
		[ -x "$busybox" ] || die "busybox-static:$deb did not provide bin/busybox"
	done
}

rust_parts() {
	command -v rustup >/dev/null || die "rustup not found: install Rust with rustup first"
	if ! rustup toolchain list | grep -q "^$RUST_TOOLCHAIN-"; then
		log "rustup toolchain install $RUST_TOOLCHAIN (the pinned toolchain)"
		rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal
	fi
	local have
	have=$(rustup component list --installed 2>/dev/null)
	grep -q '^rust-src' <<<"$have" || { log "rustup component add rust-src"; rustup component add rust-src; }
	grep -q '^clippy' <<<"$have" || { log "rustup component add clippy"; rustup component add clippy; }
	grep -q '^rustfmt' <<<"$have" || { log "rustup component add rustfmt"; rustup component add rustfmt; }
	local targets t a
	targets=$(rustup target list --installed)
	for a in $ALL_ARCHES; do
		t=$(arch_fact "$a" RUST_TARGET)
		grep -qx "$t" <<<"$targets" || { log "rustup target add $t"; rustup target add "$t"; }
	done
	if ! bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
		log "cargo install bindgen-cli $BINDGEN_VERSION (about a minute)"
		cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION"
	fi
}

main() {
	case "${1:-}" in
	-h|--help) usage; exit 0 ;;
	?*) usage >&2; exit 2 ;;
	esac
	[ -r /etc/debian_version ] || die "this script expects Debian bookworm"
	mkdir -p "$CACHE"
	apt_sources
	apt_packages
	busybox_foreign
	rust_parts
	log "prerequisites ready"
}

main "$@"
