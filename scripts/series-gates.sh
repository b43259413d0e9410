#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel's own checks on make patches' tree, as maintainers and their bots run them, in two
# parts: those of the tree alone (rustfmtcheck, htmldocs for the admin guide, spdxcheck.py),
# which make check runs as soon as the series is made, and those that need its kernel built
# (CLIPPY=1, rustdoc, W=1, patch 1 alone). Each fails on any warning in what the series adds or
# changes (rustfmtcheck: anywhere in the tree; W=1 and patch 1: in the objects they build).
# Prints one KTAP-style line per gate as it ends (make check counts them), with what failed it
# under a failing one; exits 1 if one failed.
set -euo pipefail
LOG_TAG=gates
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 tree TREE
       $0 build TREE KBUILD
TREE is make patches' tree (scripts/patches.sh: branch pristine, the series on top, nothing
uncommitted), KBUILD its kernel built with the series (scripts/build-kernel.sh
KERNEL_TREE=TREE VARIANT=builtin: BINFMT_APE=y, KUNIT=y, BINFMT_APE_KUNIT_TEST=y).
tree: make LLVM=1 rustfmtcheck, make htmldocs SPHINXDIRS=admin-guide, scripts/spdxcheck.py.
build: CLIPPY=1, make rustdoc and rustdoc on binfmt_ape, W=1, patch 1 alone. KBUILD is not
changed: the gates work in copies of it.
A clean run's results are cached under \$CACHE/series-gates, keyed by each patch's tree and
subject, the kernel build and the tools. Environment: JOBS (default: cores + 1); the builds
run at nice 10, beside a guest.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
esac
mode=${1:-}
case "$mode:$#" in
tree:2) tree=$(cd "$2" && pwd) kbuild= ;;
build:3) tree=$(cd "$2" && pwd) kbuild=$(cd "$3" && pwd) ;;
*) usage >&2; exit 2 ;;
esac
[ -z "$(git -C "$tree" status --porcelain)" ] || die "$tree has uncommitted changes"
if [ -n "$kbuild" ]; then
	[ -e "$kbuild/.done" ] || die "$kbuild is no finished kernel build (scripts/build-kernel.sh)"
	# build-kernel.sh writes "KVER SRCVER" there, SRCVER being a git tree's HEAD^{tree}.
	[ "$(cut -d' ' -f2 "$kbuild/.kver")" = "$(git -C "$tree" rev-parse 'HEAD^{tree}')" ] ||
		die "$kbuild was not built from $tree's HEAD (its .kver: $(cat "$kbuild/.kver"))"
fi

# Debian's Python for the kernel's own Python tools (spdxcheck.py needs ply and git, the
# documentation's wrapper sphinx): the one on PATH may be another.
PY=/usr/bin/python3
jobs=${JOBS:-$(($(nproc) + 1))}
base=$(git -C "$tree" rev-parse pristine)
first=$(git -C "$tree" rev-list --reverse "$base..HEAD" | head -n1 || true)
[ -n "$first" ] || die "$tree has no commit on top of pristine"

key=$({
	echo "$mode"
	git -C "$tree" rev-parse 'pristine^{tree}'
	# Each patch, not only the result: patch 1 alone is one of the gates.
	git -C "$tree" log --format='%T %s' "$base..HEAD"
	[ -z "$kbuild" ] || basename "$kbuild"
	cat "$0"
	for t in rustc rustdoc clippy-driver rustfmt; do "$t" --version; done
	gcc --version | head -n1
	"$PY" -c 'import sphinx, ply, git; print(sphinx.__version__, ply.__version__, git.__version__)'
} | sha256sum | cut -c1-16)
out=$CACHE/series-gates/$key
trap 'rm -rf "$out/work"' EXIT

# What the series adds or changes, relative to the tree (a moved file counts as added).
mapfile -t changed < <(git -C "$tree" diff --no-renames --name-only --diff-filter=AM "$base" HEAD)
rust_files=() doc_files=()
for f in "${changed[@]}"; do
	case "$f" in
	*.rs) rust_files+=("$f") ;;
	Documentation/*.rst) doc_files+=("$f") ;;
	esac
done

# gate NAME STATUS FAIL [LOG]: prints and records the result. FAIL holds what failed the gate
# (warnings in its scope, missing pages, objects not rebuilt): anything there fails it too, and
# a failure shows it, then LOG's tail.
gate() {
	local line s=$2
	[ ! -s "$3" ] || s=1
	if [ "$s" = 0 ]; then line="ok - $1"; else line="not ok - $1"; fi
	echo "$line" | tee -a "$out/results.new"
	if [ "$s" != 0 ]; then
		{ { cat "$3" 2>/dev/null; [ -z "${4:-}" ] || tail -n 20 "$4"; } | head -n 60 || true; } |
			sed 's/^/# /' | tee -a "$out/results.new"
	fi
	log "$line"
}

# Lines of LOG (rustc's, clippy's and rustdoc's diagnostics: "warning: ..." then
# " --> FILE:LINE:COL", or rustdoc's "error" lines) that point into the series' Rust files.
diagnostics_in_series() { # diagnostics_in_series LOG
	local f pat=
	for f in "${rust_files[@]}"; do pat+="${pat:+|}$f"; done
	grep -E -B4 -- "--> .*($pat):[0-9]+" "$1" || true
}

# A copy of the kernel build to rebuild objects in: the build stays as the series guest boots it.
kcopy() { # kcopy NAME
	rm -rf "${work:?}/$1"
	cp -a "$kbuild" "$work/$1" || die "cannot copy $kbuild to $work/$1"
}

# The gates of the tree alone.
tree_gates() {
	local s f html
	# --- rustfmtcheck: every Rust file of the tree, as `make rustfmtcheck` checks it. -----------
	s=0
	make -s -C "$tree" LLVM=1 rustfmtcheck >"$out/rustfmt.log" 2>&1 || s=$?
	# Any output is a diff.
	gate "make LLVM=1 rustfmtcheck" "$s" "$out/rustfmt.log"

	# --- htmldocs for the admin guide: the page builds, the index links it, no warning in the
	# series' documents (7.3's own admin guide has some 180, about other pages).
	s=0
	mkdir -p "$work/doc"
	PATH=/usr/bin:$PATH nice -n 10 make -C "$tree" O="$work/doc" PYTHON3="$PY" SPHINXDIRS=admin-guide htmldocs \
		>"$out/htmldocs.log" 2>&1 || s=$?
	html=$work/doc/Documentation/output/admin-guide
	for f in "${doc_files[@]}"; do
		grep -F -- "$f" "$out/htmldocs.log" | grep -iE 'warning|error' >>"$out/htmldocs.fail" || true
	done
	[ -e "$html/binfmt-ape.html" ] || echo "no admin-guide/binfmt-ape.html" >>"$out/htmldocs.fail"
	grep -q 'href="binfmt-ape.html"' "$html/index.html" 2>/dev/null ||
		echo "admin-guide/index.html does not link binfmt-ape.html" >>"$out/htmldocs.fail"
	gate "make htmldocs SPHINXDIRS=admin-guide: binfmt-ape.html, linked from the index, no warning in ${doc_files[*]}" \
		"$s" "$out/htmldocs.fail" "$out/htmldocs.log"

	# --- spdxcheck.py on every file the series adds or changes; a tag on each file it adds. ------
	s=0
	(cd "$tree" && "$PY" scripts/spdxcheck.py -v "${changed[@]}") >"$out/spdx.log" 2>&1 || s=$?
	# It exits 0 whatever it finds: its report says.
	grep -qE '^Files with errors: +0$' "$out/spdx.log" || cat "$out/spdx.log" >>"$out/spdx.fail"
	grep -E '^[^ ]+: [0-9]+:[0-9]+ ' "$out/spdx.log" >>"$out/spdx.fail" || true
	while read -r f; do
		# As none of the kernel's .kunitconfig files has one.
		case "$f" in */.kunitconfig) continue ;; esac
		head -n 3 "$tree/$f" | grep -q 'SPDX-License-Identifier: ' ||
			echo "$f: no SPDX-License-Identifier" >>"$out/spdx.fail"
	done < <(git -C "$tree" diff --no-renames --name-only --diff-filter=A "$base" HEAD)
	gate "scripts/spdxcheck.py: the series' ${#changed[@]} files, a tag on each it adds" "$s" "$out/spdx.fail"
}

# The gates that need the kernel built.
build_gates() {
	local s f obj cmd
	# --- CLIPPY=1: the kernel crate and binfmt_ape rebuilt with clippy-driver. -------------------
	obj=$work/clippy
	kcopy clippy
	s=0
	# The command lines change (clippy-driver for rustc): kbuild rebuilds every Rust object.
	nice -n 10 make -C "$tree" O="$obj" CLIPPY=1 -j"$jobs" rust/ fs/binfmt_ape/ >"$out/clippy.log" 2>&1 || s=$?
	grep -q 'CLIPPY.*fs/binfmt_ape/binfmt_ape.o' "$out/clippy.log" ||
		{ echo "clippy did not build fs/binfmt_ape/binfmt_ape.o"; s=1; } >>"$out/clippy.fail"
	diagnostics_in_series "$out/clippy.log" >>"$out/clippy.fail"
	gate "make CLIPPY=1 rust/ fs/binfmt_ape/: no warning in the series' ${#rust_files[@]} Rust files" \
		"$s" "$out/clippy.fail" "$out/clippy.log"

	# --- rustdoc: make rustdoc (the kernel crate: kernel::binfmt, kernel::sysctl), and binfmt_ape
	# the same way (make rustdoc documents rust/ only): every public item documented
	# (-Wmissing_docs), no warning.
	s=0
	# CLIPPY=1 as above: with other command lines, kbuild would build every Rust object again.
	nice -n 10 make -C "$tree" O="$obj" CLIPPY=1 -j"$jobs" rustdoc >"$out/rustdoc.log" 2>&1 || s=$?
	for f in binfmt sysctl; do
		[ -e "$obj/Documentation/output/rust/rustdoc/kernel/$f/index.html" ] ||
			{ echo "no rustdoc page for kernel::$f"; s=1; } >>"$out/rustdoc.fail"
	done
	# binfmt_ape's own crate, with the flags clippy's build above gave it (its .cmd file), as
	# rust/Makefile's cmd_rustdoc turns rustc's into rustdoc's.
	f=$obj/fs/binfmt_ape/.binfmt_ape.o.cmd cmd=
	[ ! -e "$f" ] || cmd=$(sed -n 's/^savedcmd_fs\/binfmt_ape\/binfmt_ape.o := //p' "$f" |
		sed 's/ *; .*objtool.*$//')
	if [ -z "$cmd" ]; then
		echo "no rustc command in $f" >>"$out/rustdoc.fail"
		s=1
	else
		local argv doc=() skip=0 a
		read -r -a argv <<<"$cmd"
		for a in "${argv[@]}"; do
			if [ "$skip" = 1 ]; then skip=0; continue; fi
			case "$a" in
			rustc|clippy-driver) doc+=(rustdoc) ;;
			-Zbinary_dep_depinfo=*|--remap-path-scope=*|--emit=*) ;;
			--out-dir) skip=1 ;;
			# The shell's quotes, as in -Zcrate-attr='feature(...)'.
			*) doc+=("${a//\'/}") ;;
			esac
		done
		(cd "$obj" && env RUSTC_BOOTSTRAP=1 "${doc[@]}" -Zunstable-options --crate-name binfmt_ape \
			--output "$work/rustdoc-binfmt_ape") >>"$out/rustdoc.log" 2>&1 || s=$?
		[ -e "$work/rustdoc-binfmt_ape/binfmt_ape/index.html" ] ||
			{ echo "no rustdoc page for binfmt_ape"; s=1; } >>"$out/rustdoc.fail"
	fi
	diagnostics_in_series "$out/rustdoc.log" >>"$out/rustdoc.fail"
	gate "make rustdoc, and rustdoc on binfmt_ape: no warning in the series, public items documented" \
		"$s" "$out/rustdoc.fail" "$out/rustdoc.log"
	rm -rf "$obj"

	# --- W=1 for the C the series changes: binfmt_elf's entry point and the Rust helpers. --------
	obj=$work/w1
	kcopy w1
	s=0
	nice -n 10 make -s -C "$tree" O="$obj" W=1 -j"$jobs" fs/binfmt_elf.o rust/helpers/helpers.o \
		>"$out/w1.log" 2>&1 || s=$?
	grep -E 'warning:|error:' "$out/w1.log" >>"$out/w1.fail" || true
	[ "$obj/fs/binfmt_elf.o" -nt "$kbuild/fs/binfmt_elf.o" ] ||
		echo "fs/binfmt_elf.o was not rebuilt" >>"$out/w1.fail"
	gate "make W=1 fs/binfmt_elf.o rust/helpers/helpers.o: no warning" "$s" "$out/w1.fail" "$out/w1.log"
	rm -rf "$obj"

	# --- Patch 1 alone: the entry point with no user. BINFMT_APE does not exist yet, nor is RUST
	# configured (so no Rust is built either); W=1.
	obj=$work/p1
	kcopy p1
	mkdir -p "$work/patch1"
	git -C "$tree" archive "$first" | tar -x -C "$work/patch1"
	s=0
	{
		"$tree"/scripts/config --file "$obj/.config" -d RUST &&
			make -s -C "$work/patch1" O="$obj" olddefconfig &&
			nice -n 10 make -s -C "$work/patch1" O="$obj" W=1 -j"$jobs" fs/binfmt_elf.o fs/exec.o
	} >"$out/patch1.log" 2>&1 || s=$?
	grep -E 'warning:|error:' "$out/patch1.log" >>"$out/patch1.fail" || true
	grep -q '^CONFIG_BINFMT_APE' "$obj/.config" && echo "BINFMT_APE is configured" >>"$out/patch1.fail"
	grep -q '^CONFIG_RUST=y' "$obj/.config" && echo "RUST is configured" >>"$out/patch1.fail"
	[ "$obj/fs/binfmt_elf.o" -nt "$kbuild/fs/binfmt_elf.o" ] ||
		echo "fs/binfmt_elf.o was not rebuilt" >>"$out/patch1.fail"
	gate "patch 1 alone ($(git -C "$tree" log -1 --format=%s "$first")), no Rust: W=1 builds fs/binfmt_elf.o, fs/exec.o" \
		"$s" "$out/patch1.fail" "$out/patch1.log"
	rm -rf "$obj" "$work/patch1"
}

run() {
	# Another run may have finished while this one waited for the lock.
	if [ -e "$out/results" ]; then
		cat "$out/results"
		return 0
	fi
	rm -rf "$out" && mkdir -p "$out"
	work=$out/work
	mkdir -p "$work"
	: >"$out/results.new"
	"${mode}_gates"

	rm -rf "$work"
	# Only a clean run is kept: a failure is run again next time.
	if grep -q '^not ok' "$out/results.new"; then
		return 1
	fi
	mv "$out/results.new" "$out/results"
}

if [ -e "$out/results" ]; then
	log "cached: $out"
	cat "$out/results"
	exit 0
fi
with_lock "$out.lock" run
