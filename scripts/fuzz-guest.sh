#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make fuzz-guest`: hostile files through the real exec path, in one guest (the debug kernel
# by default), with apeinfo as the oracle (tests/guest/src/fuzz/).
set -euo pipefail
# Before lib.sh, which defaults KVER to 6.12 and VARIANT to default: with neither asked for,
# the debug kernel.
if [ -z "${KVER:-}${VARIANT:-}" ]; then
	KVER=7.3 VARIANT=debug
fi
LOG_TAG=fuzz-guest
. "$(dirname "$0")/lib.sh"
export KVER ARCH VARIANT

usage() {
	cat <<EOF
Usage: $0
Boots one guest (scripts/guest.sh fuzz) and runs the guest fuzzer there: mutated seed files
(the real APEs, the fixtures, every corpus case), written to tmpfs and every 8th to ext2 on a
loop device read cold, each exec'd in an unprivileged child with a time limit; apeinfo --json
predicts each, and the exec's outcome, the module's counters and its log must agree. Then a
racy phase (a second task rewrites the file being exec'd), the kernel log (BUG, WARNING,
KASAN, lockdep, "Unpatched") and kmemleak. Prints the figures, saves the file of each
disagreement as build/fuzz-guest/SEED-EXEC.ape, and prints the console log's path last.
Exit status 0 when every check passed. Environment:
  KVER, ARCH, VARIANT  the guest (default: Linux 7.3, x86_64, debug: KASAN, kmemleak, lockdep,
                       panic_on_warn=1); with KVER or VARIANT given, VARIANT defaults to default
  FUZZ_SECONDS  how long to fuzz (default 60): 85% oracle execs, 15% racy execs
  FUZZ_EXECS    instead, this many oracle execs (and FUZZ_RACY racy ones, default a tenth)
  FUZZ_SEED     the run's seed (default: random, printed); with FUZZ_FROM=N FUZZ_EXECS=1 it
                makes exec N's file again (printed before its exec)
  FUZZ_TIMEOUT_MS  each program's time limit (default 3000)
  FUZZ_APEINFO  a static apeinfo for the guest's CPU to judge with instead of the one built
                from this tree (another build of the oracle, to tell its bugs from the kernel's)
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac
seed=${FUZZ_SEED:-0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}
args=(fuzz --seed "$seed" --from "${FUZZ_FROM:-0}" --timeout-ms "${FUZZ_TIMEOUT_MS:-3000}")
# The guest's hard limit: boot, setup and the leak scan, then the run itself (the debug kernel
# manages about 10 execs a second).
if [ -n "${FUZZ_EXECS:-}" ]; then
	args+=(--execs "$FUZZ_EXECS")
	[ -z "${FUZZ_RACY:-}" ] || args+=(--racy "$FUZZ_RACY")
	per=$([ "$VARIANT" = debug ] && echo 4 || echo 1)
	limit=$((900 + (FUZZ_EXECS + ${FUZZ_RACY:-$((FUZZ_EXECS / 10))}) * per / 2))
	what="$FUZZ_EXECS execs"
else
	seconds=${FUZZ_SECONDS:-60}
	args+=("$seconds")
	limit=$((900 + seconds * 11 / 10))
	what="${seconds}s"
fi
# The debug kernel panics on the first report (panic_on_warn): a trail of exec numbers on the
# console names the file it was exec'ing; FUZZ_FROM replays print the file before the exec.
[ "$VARIANT" != debug ] || args+=(--trail)
[ -z "${FUZZ_FROM:-}" ] || args+=(--dump)
if [ -n "${FUZZ_APEINFO:-}" ]; then
	[ -x "$FUZZ_APEINFO" ] || die "FUZZ_APEINFO=$FUZZ_APEINFO is not an executable"
	export APE_FILE=$FUZZ_APEINFO
	args+=(--apeinfo "/ape/user/$(basename "$FUZZ_APEINFO")")
fi
log "fuzzing Linux $KVER $ARCH $VARIANT for $what, seed $seed"
status=0
glog=$(TIMEOUT=${TIMEOUT:-$limit} "$BINFMT_APE_ROOT"/scripts/guest.sh "${args[@]}") || status=$?
[ -n "$glog" ] && [ -e "$glog" ] || die "the guest did not start (see above)"

# Each file the guest printed (a disagreement's, or a replay's), saved.
out=$BUILD/fuzz-guest
mkdir -p "$out"
saved=$(awk -v dir="$out" -v seed="$seed" '
	/^fuzz-file-begin [0-9]+ [0-9]+$/ { name = dir "/" seed "-" $2 ".ape"; b64 = name ".b64"; printf "" > b64; next }
	/^fuzz-file-end$/ { if (b64 != "") { close(b64); print name; b64 = "" }; next }
	b64 != "" && /^[A-Za-z0-9+\/=]+$/ { print > b64 }
' "$glog")
for f in $saved; do
	base64 -d "$f.b64" >"$f" && rm -f "$f.b64"
	log "saved $f ($(stat -c %s "$f") bytes)"
done
grep -E '^(# fuzz: |not ok |ok )' "$glog" >&2 || true
if ! grep -q '^binfmt-ape-guest: exit' "$glog"; then
	last=$(grep -E '^fuzz-(exec|racy) [0-9]+$' "$glog" | tail -n1 || true)
	if [ -n "$last" ]; then
		log "the guest died during ${last#fuzz-}; replay it with:"
		case "$last" in
		fuzz-exec*) log "  make fuzz-guest KVER=$KVER ARCH=$ARCH VARIANT=$VARIANT FUZZ_SEED=$seed FUZZ_FROM=${last##* } FUZZ_EXECS=1 FUZZ_RACY=0" ;;
		*) log "  (a racy exec: its files are FUZZ_SEED=$seed FUZZ_FROM=${last##* } FUZZ_EXECS=0 FUZZ_RACY=1; the race itself does not replay)" ;;
		esac
	fi
fi
echo "$glog"
[ "$status" = 0 ] || log "the fuzz run failed (console: $glog)"
exit "$status"
