#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make fixtures`: the test payloads, fixture APEs and malformed corpus, in build/fixtures.
set -euo pipefail
LOG_TAG=fixtures
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0
Builds the test payloads for each arch ($ALL_ARCHES), then the fixture APEs and the malformed
corpus (with their manifests), into
  $BUILD/fixtures
Deterministic: same sources, same bytes.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac

# Made in a directory of their own, then moved over the old files that differ, each with one
# rename: make check's lanes may be copying fixtures into a guest meanwhile.
mkdir -p "$BUILD"
[ -n "${FIXTURES_LOCKED:-}" ] || exec env FIXTURES_LOCKED=1 flock "$BUILD/.lock-fixtures" "$0" "$@"
final=$BUILD/fixtures out=$BUILD/fixtures.new
rm -rf "$out"
for a in $ALL_ARCHES; do
	build_payload "$a" "$out/payload/$(arch_fact "$a" ELF_ARCH)"
done
log "building mkfixtures"
cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" -p apekit
"$BINFMT_APE_ROOT"/tests/target/release/mkfixtures \
	--x86-exec "$out/payload/x86_64/payload-exec" --arm-exec "$out/payload/aarch64/payload-exec" \
	--x86-dyn "$out/payload/x86_64/payload-dyn" --arm-dyn "$out/payload/aarch64/payload-dyn" -o "$out"
(cd "$out" && find fix corpus payload -type f | sort | xargs sha256sum) >"$out/SHA256SUMS"
(cd "$out" && find . -type f) | while read -r f; do
	if ! cmp -s "$out/$f" "$final/$f"; then
		mkdir -p "$(dirname "$final/$f")"
		mv "$out/$f" "$final/$f"
	fi
done
rm -rf "$out"
log "fixtures in $final ($(wc -l <"$final/SHA256SUMS") files)"
