#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`: every test, host side and guests, in three lanes side by side; ends with one
# line, "N passed, N failed".
set -euo pipefail
LOG_TAG=check
kvers=${KVER:-}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

DEFAULT_GUESTS="6.12/x86_64 7.3/arm64/64k 7.3/x86_64/debug"
DEFAULT_KVERS="6.12 7.3"

usage() {
	cat <<EOF
Usage: $0
Every test: the host side (decoder unit, differential and corpus tests, fixture determinism,
clippy, rustfmt, a fuzz smoke run), then the guest suite on every kernel of two matrices, and
one line at the end: "N passed, N failed". Environment:
  GUESTS        kernels built here, with the module in kernel-Rust mode: a list of
                KVER/ARCH[/VARIANT], or "none"; default (the 7.3 x86_64 debug kernel has
                KASAN, kmemleak, lockdep and fault injection):
                $DEFAULT_GUESTS
  KVER, ARCHES, VARIANT
                instead of GUESTS: each series of KVER (default $DEFAULT_KVERS) on each arch
                of ARCHES (default $ALL_ARCHES), variant VARIANT (default: default)
  PATCHES=0     skip the upstream series (make patches: applies, checkpatch; the kernel's own
                checks on its tree, scripts/series-gates.sh; and 7.3 x86_64 with it built in
                runs the guest suite)
  DEB_KERNELS   Debian's stock kernels, unmodified, with the module built in their release's root
                as a user would (bundled Rust): a list of releases (default: the newest
                6.12+deb13 as amd64, arm64 and arm64-16k, and 7.3.4+deb13 as amd64 and arm64;
                "none" for none)
  DKMS_KERNELS  the Debian packages' cycle (make deb, then apt-get install -> DKMS -> boot ->
                kernel update -> purge) on these releases (default: the newest 6.12+deb13 and
                7.3.4+deb13, amd64; "none" for none)
  HOST_TESTS=0  skip the host side (make distro-check, which also sets DKMS_KERNELS=none)
  FUZZ_SECONDS  the fuzz smoke run's length (default 60)
  FUZZ_GUEST=0  skip the guest fuzzer's bounded runs (10000 execs on 6.12 x86_64, 2000 on
                the debug kernel: make fuzz-guest FUZZ_EXECS=N)
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac
if [ -z "${GUESTS:-}" ]; then
	if [ -n "$kvers" ] || [ -n "${ARCHES:-}" ] || [ "$VARIANT" != default ]; then
		for k in ${kvers:-$DEFAULT_KVERS}; do
			for a in ${ARCHES:-$ALL_ARCHES}; do GUESTS+=" $k/$a/$VARIANT"; done
		done
	else
		GUESTS=$DEFAULT_GUESTS
	fi
fi

[ "$GUESTS" != none ] || GUESTS=
if [ -z "${DEB_KERNELS:-}" ]; then
	abi612=$(debian_newest_abi 6.12 deb13)
	[ -n "$abi612" ] || die "no Debian 6.12+deb13 kernel found (private apt state)"
	DEB_KERNELS="$abi612-amd64 $abi612-arm64 $abi612-arm64-16k 7.3.4+deb13-amd64 7.3.4+deb13-arm64"
fi
[ "$DEB_KERNELS" != none ] || DEB_KERNELS=
if [ -z "${DKMS_KERNELS:-}" ] && [ -n "$DEB_KERNELS" ]; then
	DKMS_KERNELS="$(debian_newest_abi 6.12 deb13)-amd64 7.3.4+deb13-amd64"
fi
[ "${DKMS_KERNELS:-none}" != none ] || DKMS_KERNELS=

# The run's own state: each lane's log, counts and phase timings.
RUN=$BUILD/check
rm -rf "$RUN" && mkdir -p "$RUN" && : >"$RUN/timing"
T0=$SECONDS

passed=0 failed=0 skipped=0
result() { # result NAME STATUS
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "ok - $1"
	else
		failed=$((failed + 1)); echo "not ok - $1"
	fi
}

# Adds the KTAP of the KUnit suites a kernel built with KUnit ran at boot to the totals: what
# the console shows before the guest starts ("binfmt-ape-guest: start"; scripts/guest.sh boots
# such a kernel with loglevel=7). Each test case counts, as a guest test does; a suite that did
# not finish its plan, or a plan of suites not finished, counts as a failure.
count_kunit() { # count_kunit LOG TAG
	local boot suites finished plan ok notok skip
	boot=$(sed '/binfmt-ape-guest: start$/q' "$1")
	# The suites the kernel was asked for (KUNIT_SUITES, from its config fragment) must have run:
	# a console that does not show one is a failure, not nothing to count.
	local suite
	for suite in ${KUNIT_SUITES:-}; do
		grep -qE "^(not )?ok [0-9]+ $suite\$" <<<"$boot" || {
			failed=$((failed + 1))
			echo "not ok - $2 KUnit: no result of $suite on the console"
		}
	done
	grep -qx 'KTAP version 1' <<<"$boot" || return 0
	suites=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' <<<"$boot" | head -n1)
	finished=$(grep -cE '^(not )?ok [0-9]+ ' <<<"$boot" || true)
	plan=$(sed -n 's/^    1\.\.\([0-9]*\)$/\1/p' <<<"$boot" | awk '{ n += $1 } END { print n + 0 }')
	ok=$(grep -cE '^    ok [0-9]+ ' <<<"$boot" || true)
	notok=$(grep -cE '^    not ok [0-9]+ ' <<<"$boot" || true)
	skip=$(grep -cE '^    ok [0-9]+ .* # SKIP' <<<"$boot" || true)
	grep -E '^(    )?(not ok [0-9]+ |# [a-z0-9_]+: pass:)' <<<"$boot" | sed "s/^/[$2] KUnit: /" || true
	echo "[$2] KUnit: $((ok - skip)) passed, $notok failed, $skip skipped of $plan planned," \
		"${suites:-no} suites"
	passed=$((passed + ok - skip)) skipped=$((skipped + skip)) failed=$((failed + notok))
	if [ -z "$suites" ] || [ "$finished" != "$suites" ] || [ $((ok + notok)) != "$plan" ]; then
		failed=$((failed + 1))
		echo "[$2] KUnit did not finish its plan; its console:"
	elif [ "$notok" != 0 ]; then
		echo "[$2] KUnit's console:"
	else
		return 0
	fi
	sed -n '/^KTAP version 1$/,$p' <<<"$boot"
}

# Adds a guest's KTAP results to the totals, the guest suite's (after "binfmt-ape-guest: start")
# and KUnit's (count_kunit); a missing or short plan counts as failures.
count_ktap() {
	local log=$1 arch=$2 plan ok notok skip suite
	count_kunit "$log" "$arch"
	suite=$(sed -n '/binfmt-ape-guest: start$/,$p' "$log")
	plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' <<<"$suite" | head -n1)
	ok=$(grep -cE '^ok [0-9]+ ' <<<"$suite" || true)
	notok=$(grep -cE '^not ok [0-9]+ ' <<<"$suite" || true)
	skip=$(grep -cE '^ok [0-9]+ .* # SKIP' <<<"$suite" || true)
	grep -E '^(not ok [0-9]+ |# )' <<<"$suite" | sed "s/^/[$arch] /" || true
	echo "[$arch] $((ok - skip)) passed, $notok failed, $skip skipped of ${plan:-no} planned"
	passed=$((passed + ok - skip)) skipped=$((skipped + skip))
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

# Runs one guest (COMMAND prints its console log's path) and counts its results.
guest() { # guest TAG COMMAND...
	local tag=$1 s=0 glog
	shift
	glog=$("$@") || s=$?
	if [ -z "$glog" ] || [ ! -e "$glog" ]; then
		result "$tag guest: module built and guest booted" 1
		return
	fi
	count_ktap "$glog" "$tag"
	result "$tag guest: booted and exited cleanly" "$s"
}

# Phases: each lane's work in named steps, timed for the summary at the end.
phase_name= phase_t0=
phase() { # phase NAME: ends the lane's current phase and starts NAME
	[ -z "$phase_name" ] || printf '%s\t%s\t%s\t%s\n' "$LANE" "$phase_name" \
		"$((phase_t0 - T0))" "$((SECONDS - phase_t0))" >>"$RUN/timing"
	phase_name=$1 phase_t0=$SECONDS
	[ -z "$1" ] || log "[$LANE] $1"
}

# Waits for a file another lane writes (a lane that ends writes its .end marker, so a waiter
# never outlives the lane it waits for).
await() { # await FILE LANE
	while [ ! -e "$1" ]; do
		# The lane may have written FILE just before it ended.
		[ ! -e "$RUN/$2.end" ] || { [ -e "$1" ]; return; }
		sleep 5
	done
}

# Runs a lane in the background: its output goes to the console prefixed with its name, its
# counts to $RUN/NAME.counts. A lane that stops early (set -e) counts as a failure.
lane() { # lane NAME FUNCTION
	local name=$1 fn=$2
	(
		LANE=$name
		trap 's=$?; phase ""; [ "$s" = 0 ] || { echo "not ok - lane $LANE ended early (status $s)"; failed=$((failed + 1)); }
			echo "$passed $failed $skipped" >"$RUN/$LANE.counts"; touch "$RUN/$LANE.end"' EXIT
		"$fn"
	) 2>&1 | sed -u "s/^/[$name] /" &
}

"$BINFMT_APE_ROOT"/scripts/setup.sh
cd "$BINFMT_APE_ROOT"

# The guests of GUESTS in the order their kernels are built and booted: the first, so that the
# guest lane starts early; then the debug kernels, the longest to build and to boot, while the
# Debian lane is busy; then the rest. The series' kernel comes last.
guest_order() {
	local guest first=${GUESTS%% *}
	[ -n "$first" ] || return 0
	echo "$first"
	for guest in $GUESTS; do [ "$guest" = "$first" ] || case "$guest" in */debug) echo "$guest" ;; esac; done
	for guest in $GUESTS; do [ "$guest" = "$first" ] || case "$guest" in */debug) ;; *) echo "$guest" ;; esac; done
}

series_wanted() { [ "${PATCHES:-${HOST_TESTS:-1}}" = 1 ]; }

# Lane "kernels": every kernel built here, one after another, each at -j(cores+1); the guest
# lane boots each as soon as it is ready (build-kernel.sh's lock makes it wait, never build
# twice).
lane_kernels() {
	local guest kver arch variant
	for guest in $(guest_order); do
		IFS=/ read -r kver arch variant <<<"$guest"
		phase "kernel $kver $arch ${variant:-default}"
		KVER=$kver ARCH=$arch VARIANT=${variant:-default} scripts/build-kernel.sh >/dev/null ||
			result "kernel $kver $arch ${variant:-default} builds" 1
	done
	# The tree make patches left (in the guest lane) built with BINFMT_APE=y and BINFMT_MISC=y,
	# for the guest lane.
	if series_wanted; then
		phase "waiting for make patches"
		await "$RUN/patches-tree" guests || return 0
		local ptree
		ptree=$(cat "$RUN/patches-tree")
		[ -n "$ptree" ] || return 0
		phase "kernel 7.3 x86_64 with the series built in"
		local kbuild s=0
		kbuild=$(KVER=7.3 ARCH=x86_64 VARIANT=builtin KERNEL_TREE="$ptree" scripts/build-kernel.sh) || s=$?
		[ "$s" = 0 ] || result "kernel 7.3 x86_64 with the series builds" 1
		echo "$ptree" >"$RUN/series-tree.new"
		mv "$RUN/series-tree.new" "$RUN/series-tree"
		# While the guest lane boots it: the kernel's own checks that need it built.
		if [ "$s" = 0 ]; then
			phase "the kernel's checks on the series' build: CLIPPY, rustdoc, W=1, patch 1 alone"
			series_gates 4 build "$ptree" "$kbuild"
		fi
	fi
}

# scripts/series-gates.sh MODE on the series' tree (and kernel): one result per gate, of the
# N gates MODE has. The script exits 1 when one failed, and its results say which.
series_gates() { # series_gates N MODE TREE [KBUILD]
	local want=$1 line s=0 n=0
	shift
	scripts/series-gates.sh "$@" >"$RUN/gates-$1" || s=$?
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) result "series: ${line#ok - }" 0; n=$((n + 1)) ;;
		"not ok - "*) result "series: ${line#not ok - }" 1; n=$((n + 1)) ;;
		"# "*) echo "$line" ;;
		esac
	done <"$RUN/gates-$1"
	[ "$n" = "$want" ] || result "series: the kernel's $1 checks ran to the end ($n of $want, exit $s)" 1
}

# Lane "guests": the host side while the first kernel builds, then the guest suite on every
# kernel built here as it becomes ready, and what needs the 6.12 kernel (bench smoke run).
lane_guests() {
	if [ "${HOST_TESTS:-1}" = 1 ]; then
		host_side
	fi
	# The upstream series (make patches): generated from these sources, applied with git am to
	# a pristine 7.3, checkpatch --strict; the kernels lane builds the tree it leaves, last.
	# Here, while the first kernel builds, not on the kernels lane, the longest. PATCHES=0
	# skips it.
	if series_wanted; then
		phase "upstream series: make patches (git am, checkpatch --strict)"
		local s=0 ptree
		ptree=$(scripts/patches.sh) || s=$?
		result "make patches: the series applies with git am to pristine 7.3, checkpatch --strict clean" "$s"
		# Empty when it failed: the kernels lane waits for this file either way.
		if [ "$s" = 0 ]; then echo "$ptree"; else echo; fi >"$RUN/patches-tree.new"
		mv "$RUN/patches-tree.new" "$RUN/patches-tree"
		if [ "$s" = 0 ]; then
			# While the first kernel builds: the kernel's own checks of the tree alone.
			phase "the kernel's checks on the series' tree: rustfmtcheck, htmldocs, spdxcheck"
			series_gates 3 tree "$ptree"
			patches_from_git_checkout "$ptree"
		fi
	fi
	local guest kver arch variant tag
	for guest in $(guest_order); do
		IFS=/ read -r kver arch variant <<<"$guest"
		variant=${variant:-default}
		tag=$kver-$arch
		[ "$variant" = default ] || tag+=-$variant
		phase "guest suite: Linux $kver on $arch, variant $variant"
		guest "$tag" env KVER="$kver" ARCH="$arch" VARIANT="$variant" scripts/guest.sh check
		if [ "$guest" = 6.12/x86_64 ] && [ "${HOST_TESTS:-1}" = 1 ]; then
			bench_smoke
		fi
		fuzz_guest "$guest" "$tag"
	done
	if series_wanted; then
		series_guest
	fi
}

# The guest fuzzer (make fuzz-guest), bounded by execs: mutated APEs through execve, each
# judged by apeinfo first; its KTAP (oracle, racy phase, kernel log, kmemleak) counts. 10000
# execs on 6.12 x86_64 (about 100 a second), 2000 on the debug kernel (about 10 under KASAN),
# and a tenth as many racy ones; a fixed seed, so that a failure replays (FUZZ_FROM).
fuzz_guest() { # fuzz_guest KVER/ARCH[/VARIANT] TAG
	local execs kver arch variant
	[ "${FUZZ_GUEST:-1}" = 1 ] || return 0
	IFS=/ read -r kver arch variant <<<"$1"
	variant=${variant:-default}
	case "$kver/$arch/$variant" in
	6.12/x86_64/default) execs=10000 ;;
	*/x86_64/debug) execs=2000 ;;
	*) return 0 ;;
	esac
	phase "guest fuzzer: $execs execs on Linux $kver, $arch, $variant"
	# The fixed run only: none of make fuzz-guest's other knobs from the caller's environment.
	guest "$2-fuzz" env -u FUZZ_FROM -u FUZZ_RACY -u FUZZ_APEINFO -u FUZZ_SECONDS -u TIMEOUT \
		KVER="$kver" ARCH="$arch" VARIANT="$variant" FUZZ_EXECS="$execs" FUZZ_SEED=0x23 \
		scripts/fuzz-guest.sh
}

# make patches KSRC=CHECKOUT, a kernel git checkout as a maintainer has one (a clone of the
# pristine tree, on branch master): the series is built on its HEAD, which base-commit: names,
# and the checkout's refs and work tree are left as they were.
patches_from_git_checkout() {
	local ptree=$1 ksrc=$RUN/ksrc-git s=0 before after head ktree=
	phase "upstream series: make patches KSRC=a kernel git checkout"
	rm -rf "$ksrc"
	git clone -q -b pristine "$ptree" "$ksrc" && git -C "$ksrc" checkout -q -b master &&
		git -C "$ksrc" branch -q -D pristine || s=$?
	if [ "$s" = 0 ]; then
		head=$(git -C "$ksrc" rev-parse HEAD)
		# patches.sh's clone of this checkout, named as patches.sh names it (by the checkout's
		# path): only that one goes afterwards. The series tree above may be a clone
		# of the same commit (make check KSRC=a git checkout), and the kernels lane builds it.
		ktree=$CACHE/patches/$(printf '%s' "$(cd "$ksrc" && pwd -P)" | sha256sum | cut -c1-12)
		before=$(git -C "$ksrc" for-each-ref; git -C "$ksrc" status --porcelain)
		KSRC=$ksrc BUILD=$RUN/ksrc-build scripts/patches.sh >/dev/null || s=$?
		after=$(git -C "$ksrc" for-each-ref; git -C "$ksrc" status --porcelain)
		[ "$s" != 0 ] || [ "$before" = "$after" ] || { echo "# KSRC's refs or work tree changed"; s=1; }
		[ "$s" != 0 ] || grep -qx "base-commit: $head" "$RUN"/ksrc-build/patches/*0000-*.patch ||
			{ echo "# no base-commit: $head"; s=1; }
	fi
	result "make patches KSRC=git checkout: built on its HEAD (base-commit), checkout untouched" "$s"
	rm -rf "$ksrc"
	[ -z "$ktree" ] || rm -rf "$ktree"-*-git
}

# intree.py keys on cfgs and markers only: with any of them gone, it must stop and name it,
# not write a series with out-of-tree code left in.
intree_markers() {
	local name drop file step expect tmp s out
	while IFS='|' read -r name file step drop expect; do
		tmp=$(mktemp -d)
		cp -R src rust docs "$tmp/"
		mkdir -p "$tmp/tree/rust/kernel"
		printf 'edition = "2021"\n' >"$tmp/tree/.rustfmt.toml"
		printf 'pub mod alloc;\npub mod bits;\n' >"$tmp/tree/rust/kernel/lib.rs"
		grep -vF -- "$drop" "$file" >"$tmp/$file"
		s=0
		out=$(python3 scripts/intree.py "$step" "$tmp" "$tmp/tree" 2>&1) && s=1
		[ "$s" = 0 ] && grep -qF -- "$expect" <<<"$out" || { echo "# $out"; s=1; }
		result "intree.py stops when $name is missing" "$s"
		rm -rf "$tmp"
	done <<-'EOF'
	the crate doc's out-of-tree block|src/binfmt_ape_main.rs|module|//! <!-- end out-of-tree -->|out-of-tree -->
	#[cfg(CONFIG_BINFMT_APE)]|src/binfmt_ape_main.rs|module|#[cfg(CONFIG_BINFMT_APE)]|no #[cfg(CONFIG_BINFMT_APE)]
	helpers.c's #ifndef block|rust/helpers.c|binfmt|#ifndef CONFIG_BINFMT_APE|#ifndef CONFIG_BINFMT_APE
	binfmt.rs's #[cfg(not(CONFIG_BINFMT_APE))]|rust/kernel/binfmt.rs|binfmt|#[cfg(not(CONFIG_BINFMT_APE))]|no #[cfg(not(CONFIG_BINFMT_APE))]
	binfmt.rs's #[cfg(CONFIG_BINFMT_APE)]|rust/kernel/binfmt.rs|binfmt|#[cfg(CONFIG_BINFMT_APE)]|no #[cfg(CONFIG_BINFMT_APE)]
	EOF
}

# The guest suite and the series' selftest on 7.3 with the series built in, nothing loaded.
series_guest() {
	phase "waiting for the series' kernel"
	local ptree
	await "$RUN/series-tree" kernels || { result "7.3-x86_64-builtin guest: its kernel was built" 1; return 0; }
	ptree=$(cat "$RUN/series-tree")
	# The KUnit suites its kernel must run at boot: those its configuration asks for (a kernel
	# whose .config lost one, to a dependency or a rename, fails here, not silently).
	local KUNIT_SUITES=
	if grep -qx 'CONFIG_BINFMT_APE_KUNIT_TEST=y' qemu/config/variant-builtin.config; then
		KUNIT_SUITES=binfmt_ape_decoder
	fi
	phase "guest suite: Linux 7.3 with the series, BINFMT_APE=y, on x86_64"
	guest "7.3-x86_64-builtin" env KVER=7.3 ARCH=x86_64 VARIANT=builtin KERNEL_TREE="$ptree" \
		scripts/guest.sh check
}

host_side() {
	phase "fixtures (twice, to check they are deterministic)"
	scripts/fixtures.sh
	local sum1 sum2 s
	sum1=$(sha256sum <"$BUILD/fixtures/SHA256SUMS")
	scripts/fixtures.sh 2>/dev/null
	sum2=$(sha256sum <"$BUILD/fixtures/SHA256SUMS")
	result "fixtures are deterministic" "$([ "$sum1" = "$sum2" ]; echo $?)"

	# Runs `cargo test` on the host tools with ARGS and adds up its results.
	host_tests() { # host_tests LABEL CARGO_TEST_ARGS...
		local label=$1 out p f
		shift
		out=$(BINFMT_APE_REAL=$apes BINFMT_APE_FIXTURES=$BUILD/fixtures \
			cargo test --release --manifest-path tests/Cargo.toml -p apekit "$@" 2>&1) || true
		echo "$out" | grep -E '^test .* FAILED|panicked|^test result' || true
		read -r p f < <(echo "$out" | awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }')
		passed=$((passed + p)) failed=$((failed + f))
		echo "$out" | grep -q '^test result:' || result "$label ran" 1
	}
	phase "host tests (cargo test)"
	apes=$(scripts/fetch-apes.sh)
	host_tests "cargo test"
	# The decoder loads aligned words on arm64 (its kernel target is strict-align): the same
	# tests again with that build of it.
	phase "host tests of the decoder with aligned loads, as arm64 builds it"
	RUSTFLAGS="--cfg ape_aligned_loads" CARGO_TARGET_DIR=$BINFMT_APE_ROOT/tests/target/aligned-loads \
		host_tests "cargo test (aligned loads)" --test decoder --test differential

	phase "static checks"
	intree_markers
	s=0; cargo clippy --quiet --release --manifest-path tests/Cargo.toml -p apekit --lib -- -D warnings || s=$?
	result "clippy: decoder (indexing, arithmetic, unwrap, panic denied)" "$s"
	s=0; rustfmt --edition 2021 --check src/*.rs rust/kernel/*.rs >/dev/null || s=$?
	result "rustfmt: kernel-side sources" "$s"
	s=0; cargo fmt --quiet --manifest-path tests/Cargo.toml --all --check >/dev/null || s=$?
	result "rustfmt: host and guest sources" "$s"

	s=0
	for f in flake.nix nix/*.nix; do
		nix-instantiate --option build-users-group "" --parse "$f" >/dev/null || s=$?
	done
	result "nix: flake.nix and nix/*.nix parse (nix-instantiate --parse)" "$s"

	# make distro-check on a Debian kernel nothing here can build for: debian-guest.sh stops in
	# one line with the reason, before any apt or root, and the Debian lane reports a skip with it.
	local rel want out skips=$skipped
	while IFS='|' read -r rel want; do
		s=0; out=$(scripts/debian-guest.sh "$rel" 2>&1) && s=1
		[ "$out" = "[debian] error: cannot build binfmt_ape for $rel: $want" ] || { s=1; echo "# $out"; }
		debian_skip "$rel" >"$RUN/skip" || s=1
		grep -qxF "ok - debian-$rel guest # SKIP $want" "$RUN/skip" || { s=1; cat "$RUN/skip"; }
		result "distro-check $rel: a skip, saying why in one line" "$s"
	done <<-'EOF'
	6.1.0-41-amd64|Linux 6.1 is older than 6.12, the oldest series binfmt_ape supports (Debian 12 has 6.12: linux-image-6.12-amd64, from bookworm-security)
	7.3.4+deb15-arm64|no Debian release here builds for it: the roots are Debian 12's (+deb12), 13's (+deb13) and sid's (+deb14)
	EOF
	s=0; debian_skip 6.12.118+deb13-rt-amd64 >"$RUN/skip" && s=1
	[ ! -s "$RUN/skip" ] || s=1
	result "distro-check 6.12.118+deb13-rt-amd64: not a skip" "$s"
	# Those were tests, not kernels skipped.
	skipped=$skips

	phase "fuzz smoke (${FUZZ_SECONDS:-60} s)"
	s=0; FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh || s=$?
	result "fuzz smoke: no crash, no differential mismatch" "$s"
}

bench_smoke() {
	# The benchmark is not pass/fail here, but a short run on one arch keeps it from rotting.
	phase "benchmark smoke run (x86_64, Linux 6.12)"
	local s=0 kdir need out
	KVER=6.12 ARCH=x86_64 BENCH_SMOKE=1 scripts/bench.sh >"$BUILD/bench-smoke.log" 2>&1 || s=$?
	[ "$s" = 0 ] || tail -n 30 "$BUILD/bench-smoke.log"
	result "make bench: a smoke run reports every scenario" "$s"

	# A kernel without what the module needs gets one clear message, before anything compiles.
	# The kernel's configuration is loaded first, so a command-line override stands in for a
	# kernel built without the option.
	phase "builds against a kernel without what the module needs"
	kdir=$(ls -d "$CACHE"/kernel/6.12-x86_64-default-*/ 2>/dev/null | head -n1)
	if [ -n "$kdir" ] && [ -e "$kdir/.done" ]; then
		for need in CONFIG_BINFMT_ELF CONFIG_SYSCTL; do
			s=0
			out=$(make -s -C "$BINFMT_APE_ROOT" KDIR="$kdir" MO="$BUILD/module/without-$need" "$need=" modules 2>&1) && s=1
			grep -q "binfmt_ape needs .*$need=y" <<<"$out" || { s=1; echo "$out" | tail -n 5; }
			result "build without $need stops with a message naming it" "$s"
		done
	fi
}

# A Debian kernel binfmt_ape cannot be built for (older than 6.12, or of a Debian release with
# no root here) is a skip, with the reason: prints its line and counts it; else returns 1.
debian_skip() { # debian_skip REL
	local reason
	reason=$(debian_release "$1" 2>/dev/null && debian_unbuildable "$1") && [ -n "$reason" ] || return 1
	skipped=$((skipped + 1))
	echo "ok - debian-$1 guest # SKIP $reason"
}

# Lane "debian": Debian's stock kernels, unmodified, with the module built in the Debian root;
# then the Debian packages' cycle and the preflight messages. The root is this lane's alone.
lane_debian() {
	local rel s debdir update out want reason
	for rel in $DEB_KERNELS; do
		# A release of the DKMS cycle below boots with the module DKMS built instead.
		case " $DKMS_KERNELS " in *" $rel "*) continue ;; esac
		if debian_skip "$rel"; then continue; fi
		phase "guest suite: Debian's $rel"
		guest "debian-$rel" scripts/debian-guest.sh "$rel" check
	done

	# The Debian packages, as a user installs them: make deb (lintian), then on 6.12 and 7.3
	# (amd64) apt-get install -> DKMS build -> boot Debian's kernel with the DKMS-built module ->
	# a kernel update rebuilt by DKMS -> apt-get purge (scripts/dkms-cycle.sh). DKMS_KERNELS
	# overrides the releases ("none": skip).
	if [ -n "$DKMS_KERNELS" ]; then
		phase "Debian packages: make deb, lintian"
		s=0; debdir=$(scripts/deb.sh) || s=$?
		result "make deb: binfmt-ape-dkms and binfmt-ape-utils, lintian without errors" "$s"
		# The kernel update: the 6.12 release before the newest.
		update=$(debian_newest_abi 6.12 deb13 2)-amd64
		for rel in $DKMS_KERNELS; do
			[ "$s" = 0 ] || break
			phase "DKMS cycle: $rel, then a kernel update to $update"
			rm -f "$BUILD/dkms-$rel.results"
			guest "dkms-$rel" scripts/dkms-cycle.sh "$debdir" "$rel" "$update"
			while read -r line; do
				case "$line" in
				"ok - "*) result "dkms-$rel: ${line#ok - }" 0 ;;
				*) result "dkms-$rel: ${line#not ok - }" 1 ;;
				esac
			done <"$BUILD/dkms-$rel.results" 2>/dev/null || result "dkms-$rel: the cycle reported its results" 1
		done
	fi

	# A bad setup gets one message naming everything missing, each with its packages: tried in
	# the Debian root on the first buildable release's headers, with the pieces hidden from
	# preflight.
	local first=
	for rel in $DEB_KERNELS; do
		reason=$(debian_release "$rel" 2>/dev/null && debian_unbuildable "$rel") && [ -z "$reason" ] &&
			{ first=$rel; break; }
	done
	rel=$first
	if [ -n "$rel" ]; then
		phase "preflight messages"
		s=0
		out=$(DEBIAN_ROOT_FOR=$rel scripts/debian-root.sh run sh -c "cd /work && KSRC=/nonexistent BINDGEN=no-bindgen \
			scripts/preflight.sh /usr/src/linux-headers-$rel /tmp/preflight" 2>&1) && s=1
		# Debian 12's bindgen is too old: its fix is another.
		want=$(case "$rel" in *+deb12-*) echo "Debian 12: its bindgen 0.60 is too old: cargo install" ;;
			*) echo "Debian/Ubuntu: bindgen" ;; esac)
		for want in "KSRC=/nonexistent holds no kernel source" "no bindgen" "$want"; do
			grep -qF "$want" <<<"$out" || { s=1; echo "preflight did not say '$want':"; echo "$out"; }
		done
		result "preflight: one message lists every missing piece of a bundled build" "$s"
		s=0
		out=$(DEBIAN_ROOT_FOR=$rel scripts/debian-root.sh run sh -c "cd /work && scripts/preflight.sh /usr/src/none" 2>&1) && s=1
		grep -qF "no kernel headers at /usr/src/none" <<<"$out" && grep -qF "linux-headers-" <<<"$out" || s=1
		result "preflight: no headers is named, with the package" "$s"
	fi
}

lane kernels lane_kernels
lane guests lane_guests
[ -z "$DEB_KERNELS" ] || lane debian lane_debian
wait

# The objtool tables of every x86 module built above, in both modes: each return thunk,
# retpoline and call site in .text is listed where module_finalize() looks for it
# (rust/bundle.lds says why bundled mode keeps them). Our own kernels are built without those
# mitigations, so their modules have none to list; Debian's have hundreds. A copy of one with
# .return_sites removed must fail the check.
LANE=main
phase "objtool tables of the x86 modules"
kos=() cfgs=()
for ko in "$BUILD"/module/*-x86_64-*/binfmt_ape.ko; do
	[ -e "$ko" ] || continue
	kdir=$(basename "$(dirname "$ko")")
	kos+=("$ko") cfgs+=("$CACHE/kernel/${kdir%-bench}/.config")
done
for rel in $DEB_KERNELS; do
	case "$rel" in *-amd64) ;; *) continue ;; esac
	case " $DKMS_KERNELS " in
	*" $rel "*) ko=$(ls -t "$CACHE"/dkms-cycle/"$rel"-*/binfmt_ape.ko 2>/dev/null | head -n1 || true) ;;
	*) ko=$(ls -t "$CACHE"/debian-root*/*/var/cache/binfmt-ape/"$rel"/binfmt_ape.ko 2>/dev/null | head -n1 || true) ;;
	esac
	[ -n "$ko" ] || continue
	kos+=("$ko") cfgs+=("$(ls -d "$CACHE"/debian-root*/*/usr/src/linux-headers-"$rel"/.config 2>/dev/null | head -n1 || true)")
done
if [ "${#kos[@]}" -gt 0 ]; then
	# Each with its kernel's configuration, which says whether calls must be listed too.
	for i in "${!kos[@]}"; do
		cfg=()
		[ ! -r "${cfgs[$i]}" ] || cfg=(--config "${cfgs[$i]}")
		scripts/objtool-check.sh "${cfg[@]}" "${kos[$i]}" || true
	done >"$RUN/objtool" 2>&1
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) result "${line#ok - }" 0 ;;
		"not ok - "*) result "${line#not ok - }" 1 ;;
		"# "*) echo "$line" ;;
		esac
	done <"$RUN/objtool"
	# An if, not &&: a last module without tables must not fail the assignment (set -e), which
	# would end make check before its totals. grep reads all of readelf's output, not -q: with
	# pipefail, readelf killed by SIGPIPE after an early match would fail the test.
	with_tables=$(for ko in "${kos[@]}"; do
		if readelf -S "$ko" 2>/dev/null | grep '\.return_sites' >/dev/null; then echo "$ko"; break; fi
	done)
	if [ -n "$with_tables" ]; then
		objcopy --remove-section .return_sites --remove-section .rela.return_sites \
			"$with_tables" "$RUN/no-return-sites.ko"
		s=0; scripts/objtool-check.sh "$RUN/no-return-sites.ko" >/dev/null 2>&1 || s=1
		result "objtool tables: a module without .return_sites fails the check" "$((1 - s))"
	fi
fi
phase ""

# The totals, then where the time went.
for f in "$RUN"/*.counts; do
	read -r p f2 sk <"$f"
	passed=$((passed + p)) failed=$((failed + f2)) skipped=$((skipped + sk))
done
elapsed=$((SECONDS - T0))
echo "# where the time went (seconds from the start, and each phase's own; lanes run side by side)"
sort -t"$(printf '\t')" -k3,3n "$RUN/timing" | awk -F'\t' '{ printf "# %-8s %5d %5d  %s\n", $1, $3, $4, $2 }'
echo "# make check: $elapsed s in all"
if [ "$elapsed" -gt 3600 ]; then
	echo "# warning: make check took $((elapsed / 60)) min, past its 60-minute budget"
fi
[ "$skipped" = 0 ] || echo "($skipped skipped, each with its reason above: guest tests in their guest's KTAP)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
