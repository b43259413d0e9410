#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`: every test. Host side (decoder unit, differential and corpus tests, fixture
# determinism, clippy, rustfmt, a fuzz smoke run), then the guest suite on each arch in
# $ARCHES (default "x86_64 arm64"). Ends with one line: "N passed, N failed".
set -euo pipefail
LOG_TAG=check
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '3,6p' "$0"; exit 0 ;; esac

passed=0 failed=0
result() { # result NAME STATUS
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "ok - $1"
	else
		failed=$((failed + 1)); echo "not ok - $1"
	fi
}

# Adds a guest's KTAP results to the totals; a missing or short plan counts as failures.
count_ktap() {
	local log=$1 arch=$2 plan ok notok
	plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -n1)
	ok=$(grep -cE '^ok [0-9]+ ' "$log" || true)
	notok=$(grep -cE '^not ok [0-9]+ ' "$log" || true)
	grep -E '^(not ok [0-9]+ |# )' "$log" | sed "s/^/[$arch] /" || true
	echo "[$arch] $ok passed, $notok failed of ${plan:-no} planned"
	passed=$((passed + ok))
	failed=$((failed + notok))
	if [ -z "$plan" ] || [ $((ok + notok)) -ne "$plan" ]; then
		failed=$((failed + ${plan:-1} - ok - notok))
		[ -n "$plan" ] || failed=$((failed + 1))
		echo "[$arch] the guest did not finish its plan; console:"
		cat "$log"
	elif [ "$notok" != 0 ]; then
		echo "[$arch] console:"
		cat "$log"
	fi
}

"$BINFMT_APE_ROOT"/scripts/setup.sh
cd "$BINFMT_APE_ROOT"

log "fixtures (twice, to check they are deterministic)"
scripts/fixtures.sh
sum1=$(sha256sum <"$BUILD/fixtures/SHA256SUMS")
scripts/fixtures.sh 2>/dev/null
sum2=$(sha256sum <"$BUILD/fixtures/SHA256SUMS")
result "fixtures are deterministic" "$([ "$sum1" = "$sum2" ]; echo $?)"

log "host tests (cargo test)"
apes=$(scripts/fetch-apes.sh)
out=$(BINFMT_APE_REAL=$apes BINFMT_APE_FIXTURES=$BUILD/fixtures \
	cargo test --release --manifest-path tests/Cargo.toml -p apekit 2>&1) || true
echo "$out" | grep -E '^test .* FAILED|panicked|^test result' || true
read -r p f < <(echo "$out" | awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }')
passed=$((passed + p)) failed=$((failed + f))
echo "$out" | grep -q '^test result:' || result "cargo test ran" 1

log "static checks"
s=0; cargo clippy --quiet --release --manifest-path tests/Cargo.toml -p apekit --lib -- -D warnings || s=$?
result "clippy: decoder (indexing, arithmetic, unwrap, panic denied)" "$s"
s=0; rustfmt --edition 2021 --check src/*.rs rust/kernel/*.rs >/dev/null || s=$?
result "rustfmt: kernel-side sources" "$s"
s=0; cargo fmt --quiet --manifest-path tests/Cargo.toml --all --check >/dev/null || s=$?
result "rustfmt: host and guest sources" "$s"

log "fuzz smoke (${FUZZ_SECONDS:-60} s)"
s=0; FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh || s=$?
result "fuzz smoke: no crash, no differential mismatch" "$s"

for arch in ${ARCHES:-x86_64 arm64}; do
	log "guest suite on $arch (kernel $KVER, variant $VARIANT)"
	s=0
	glog=$(ARCH=$arch scripts/guest.sh check) || s=$?
	if [ -z "$glog" ] || [ ! -e "$glog" ]; then
		result "$arch guest: built and booted" 1
		continue
	fi
	count_ktap "$glog" "$arch"
	result "$arch guest: booted and exited cleanly" "$s"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
