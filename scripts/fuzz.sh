#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make fuzz`: the decoder under cargo-fuzz.
set -euo pipefail
LOG_TAG=fuzz
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0
Fuzzes the decoder with cargo-fuzz (libFuzzer, nightly): the decode target (no panics) and the
differential target (decoder == reference model), FUZZ_SECONDS in all (default 60), split
between them. Seeds: the fixtures, the corpus and the real APEs' first 16 KiB, recreated here
(nothing binary is checked in). Prints the executions per target. Environment:
  FUZZ_SECONDS    the whole run's length (default 60)
  FUZZ_SANITIZER  cargo fuzz's --sanitizer (default none: the decoder is safe Rust; address
                  also works)
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac
secs=${FUZZ_SECONDS:-60}
per=$(( (secs + 1) / 2 ))
fuzz=$BINFMT_APE_ROOT/tests/fuzz
rustup toolchain list | grep -q '^nightly' || { log "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
command -v cargo-fuzz >/dev/null || { log "cargo install cargo-fuzz"; cargo install --locked cargo-fuzz; }
[ -e "$BUILD/fixtures/SHA256SUMS" ] || "$BINFMT_APE_ROOT"/scripts/fixtures.sh
apes=$("$BINFMT_APE_ROOT"/scripts/fetch-apes.sh)

seeds=$fuzz/corpus/seeds
mkdir -p "$seeds"
for f in "$BUILD"/fixtures/fix/*.ape "$BUILD"/fixtures/corpus/*.ape "$apes/ent.com" "$apes/pledge"; do
	head -c 16384 "$f" >"$seeds/$(basename "$f")"
done
status=0
for target in decode differential; do
	mkdir -p "$fuzz/corpus/$target"
	log "$target for ${per}s"
	out=$(cd "$fuzz" && cargo +nightly fuzz run --release --sanitizer "${FUZZ_SANITIZER:-none}" "$target" "corpus/$target" "$seeds" -- \
		-max_total_time="$per" -max_len=20000 -print_final_stats=1 2>&1) || status=1
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' <<<"$out" | tail -n1)
	echo "fuzz $target: ${runs:-?} executions in ${per}s$([ "$status" = 0 ] || echo ', FAILED')"
	if [ "$status" != 0 ]; then
		tail -n 40 <<<"$out"
		break
	fi
done
exit "$status"
