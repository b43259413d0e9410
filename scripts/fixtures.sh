#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the test payloads for both CPUs, then the fixture APEs and the malformed corpus
# (with their manifests) into build/fixtures. Deterministic: same sources, same bytes.
set -euo pipefail
LOG_TAG=fixtures
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) echo "Usage: $0   (writes $BUILD/fixtures)"; exit 0 ;; esac

out=$BUILD/fixtures
for t in x86_64 aarch64; do
	build_payload "$t" "$out/payload/$t"
done
log "building mkfixtures"
cargo build --quiet --release --manifest-path "$BINFMT_APE_ROOT/tests/Cargo.toml" -p apekit
"$BINFMT_APE_ROOT"/tests/target/release/mkfixtures \
	--x86-exec "$out/payload/x86_64/payload-exec" --arm-exec "$out/payload/aarch64/payload-exec" \
	--x86-dyn "$out/payload/x86_64/payload-dyn" --arm-dyn "$out/payload/aarch64/payload-dyn" -o "$out"
(cd "$out" && find fix corpus payload -type f | sort | xargs sha256sum) >"$out/SHA256SUMS"
log "fixtures in $out ($(wc -l <"$out/SHA256SUMS") files)"
