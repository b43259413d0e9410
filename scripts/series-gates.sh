#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel's own checks on make patches' tree, as maintainers and their bots run them, each
# limited to what the series adds or changes and failing on any warning there:
# rustfmtcheck, CLIPPY=1, rustdoc, W=1, htmldocs for the admin-guide, spdxcheck.py, and
# patch 1 built alone, with no binfmt_ape to use it. Prints one KTAP-style line per gate
# (make check counts them), with the warnings under a failing one.
set -euo pipefail
LOG_TAG=gates
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 TREE KBUILD
TREE is make patches' tree (scripts/patches.sh: branch pristine, the series on top),
KBUILD its kernel built with the series (scripts/build-kernel.sh KERNEL_TREE=TREE
VARIANT=builtin: BINFMT_APE=y, KUNIT=y, BINFMT_APE_KUNIT_TEST=y). KBUILD is not changed: the
gates that rebuild objects (CLIPPY=1, W=1, patch 1 alone) work in copies of it. Results are
cached under \$CACHE/series-gates, keyed by the tree, the kernel build and the tools.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
esac
[ $# = 2 ] || { usage >&2; exit 2; }
tree=$(cd "$1" && pwd) kbuild=$(cd "$2" && pwd)
[ -e "$kbuild/.done" ] || die "$kbuild is no finished kernel build (scripts/build-kernel.sh)"

# Debian's Python for the kernel's own Python tools (spdxcheck.py needs ply and git, the
# documentation's wrapper sphinx): the one on PATH may be another.
PY=/usr/bin/python3
rust_tools=(rustc rustdoc clippy-driver rustfmt)

key=$({
	git -C "$tree" rev-parse 'HEAD^{tree}'
	basename "$kbuild"
	cat "$0"
	for t in "${rust_tools[@]}"; do "$t" --version; done
	gcc --version | head -n1
	"$PY" -c 'import sphinx, ply, git; print(sphinx.__version__, ply.__version__, git.__version__)'
} | sha256sum | cut -c1-16)
out=$CACHE/series-gates/$key
if [ -e "$out/results" ]; then
	log "cached: $out"
	cat "$out/results"
	exit 0
fi
rm -rf "$out" && mkdir -p "$out"
work=$out/work
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

jobs=$(($(nproc) + 1))
base=$(git -C "$tree" rev-parse pristine)
# What the series adds or changes, relative to the tree.
mapfile -t changed < <(git -C "$tree" diff --name-only --diff-filter=AM "$base" HEAD)
rust_files=() doc_files=()
for f in "${changed[@]}"; do
	case "$f" in
	*.rs) rust_files+=("$f") ;;
	Documentation/*.rst) doc_files+=("$f") ;;
	esac
done

gate() { # gate NAME LOG STATUS: one result line, and LOG's warnings under a failure
	local name=$1 glog=$2 s=$3
	if [ "$s" = 0 ]; then
		echo "ok - $name" >>"$out/results.new"
	else
		echo "not ok - $name" >>"$out/results.new"
		sed 's/^/# /' "$glog" | head -n 60 >>"$out/results.new"
	fi
	log "$(tail -n1 "$out/results.new" | grep -v '^# ' || echo "not ok - $name")"
}

# Lines of LOG (rustc's and clippy's diagnostics: "warning: ..." then " --> FILE:LINE:COL")
# that point into the series' Rust files.
diagnostics_in_series() { # diagnostics_in_series LOG
	local f pat=
	for f in "${rust_files[@]}"; do pat+="${pat:+|}$f"; done
	grep -E -- "--> .*($pat):[0-9]+" "$1" || true
}

# A copy of the kernel build to rebuild objects in: the build stays as the guests boot it.
kcopy() { # kcopy NAME
	cp -a "$kbuild" "$work/$1"
	echo "$work/$1"
}

: >"$out/results.new"

# --- rustfmtcheck: every Rust file of the tree, as `make rustfmtcheck` checks it. ---------------
s=0
make -s -C "$tree" LLVM=1 rustfmtcheck >"$out/rustfmt.log" 2>&1 || s=$?
[ ! -s "$out/rustfmt.log" ] || s=1
gate "make LLVM=1 rustfmtcheck" "$out/rustfmt.log" "$s"

# --- CLIPPY=1: the kernel crate and binfmt_ape rebuilt with clippy-driver. ------------------------
obj=$(kcopy clippy)
s=0
# The command lines change (clippy-driver for rustc): kbuild rebuilds every Rust object.
make -C "$tree" O="$obj" CLIPPY=1 -j"$jobs" rust/ fs/binfmt_ape/ >"$out/clippy.log" 2>&1 || s=$?
grep -q 'CLIPPY.*fs/binfmt_ape/binfmt_ape.o' "$out/clippy.log" || s=1
diagnostics_in_series "$out/clippy.log" >"$out/clippy.series"
[ ! -s "$out/clippy.series" ] || s=1
[ "$s" = 0 ] || cat "$out/clippy.series" "$out/clippy.log" >"$out/clippy.fail"
gate "make CLIPPY=1: no warning in the series' Rust files (${#rust_files[@]} files)" \
	"$out/clippy.fail" "$s"

# --- rustdoc: make rustdoc (the kernel crate: kernel::binfmt, kernel::sysctl), and binfmt_ape ---
# the same way (make rustdoc documents rust/ only): every public item documented
# (-Wmissing_docs), no rustdoc warning.
s=0
make -C "$tree" O="$obj" -j"$jobs" rustdoc >"$out/rustdoc.log" 2>&1 || s=$?
for m in binfmt sysctl; do
	[ -e "$obj/Documentation/output/rust/rustdoc/kernel/$m/index.html" ] ||
		{ echo "no rustdoc page for kernel::$m" >>"$out/rustdoc.log"; s=1; }
done
# binfmt_ape's own crate, with the flags clippy's build above gave it (its .cmd file), as
# rust/Makefile's cmd_rustdoc turns rustc's into rustdoc's.
cmd=$(sed -n 's/^savedcmd_fs\/binfmt_ape\/binfmt_ape.o := //p' "$obj/fs/binfmt_ape/.binfmt_ape.o.cmd" |
	sed 's/ *; .*objtool.*$//')
[ -n "$cmd" ] || { echo "no rustc command for fs/binfmt_ape/binfmt_ape.o" >>"$out/rustdoc.log"; s=1; }
read -r -a argv <<<"$cmd"
doc=() skip=0
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
	{ echo "no rustdoc page for binfmt_ape" >>"$out/rustdoc.log"; s=1; }
if grep -E '^(warning|error)' "$out/rustdoc.log" >"$out/rustdoc.warnings"; then
	diagnostics_in_series "$out/rustdoc.log" | grep -q . && s=1
fi
gate "make rustdoc: kernel::binfmt, kernel::sysctl and binfmt_ape, no warning, public items documented" \
	"$out/rustdoc.log" "$s"

# --- W=1 for the C the series changes: binfmt_elf's entry point and the Rust helpers. -----------
obj=$(kcopy w1)
s=0
make -C "$tree" O="$obj" W=1 -j"$jobs" fs/binfmt_elf.o rust/helpers/helpers.o >"$out/w1.log" 2>&1 || s=$?
grep -E 'warning:|error:' "$out/w1.log" && s=1
grep -qE 'CC +fs/binfmt_elf.o' "$out/w1.log" || s=1
gate "make W=1 fs/binfmt_elf.o rust/helpers/helpers.o: no warning" "$out/w1.log" "$s"

# --- Patch 1 alone: the entry point with no binfmt_ape (BINFMT_APE=n; nor Rust) builds, W=1. ------
first=$(git -C "$tree" rev-list --reverse "$base..HEAD" | head -n1)
git -C "$tree" worktree add -q --detach "$work/patch1" "$first"
obj=$(kcopy p1)
s=0
{
	"$tree"/scripts/config --file "$obj/.config" -d RUST -d BINFMT_APE
	make -C "$work/patch1" O="$obj" olddefconfig &&
		! grep -q '^CONFIG_BINFMT_APE' "$obj/.config" &&
		make -C "$work/patch1" O="$obj" W=1 -j"$jobs" fs/binfmt_elf.o fs/exec.o
} >"$out/patch1.log" 2>&1 || s=$?
grep -E 'warning:|error:' "$out/patch1.log" && s=1
grep -qE 'CC +fs/binfmt_elf.o' "$out/patch1.log" || s=1
git -C "$tree" worktree remove --force "$work/patch1"
gate "patch 1 alone ($(git -C "$tree" log -1 --format=%s "$first")) builds with BINFMT_APE=n, W=1" \
	"$out/patch1.log" "$s"

# --- htmldocs for the admin-guide: the page builds, the index links it, no warning in the series'
# documents.
s=0
mkdir -p "$work/doc"
PATH=/usr/bin:$PATH make -C "$tree" O="$work/doc" PYTHON3="$PY" SPHINXDIRS=admin-guide htmldocs \
	>"$out/htmldocs.log" 2>&1 || s=$?
html=$work/doc/Documentation/output/admin-guide
for f in "${doc_files[@]}"; do
	grep -F -- "$f" "$out/htmldocs.log" | grep -iE 'warning|error' && s=1
done
[ -e "$html/binfmt-ape.html" ] || { echo "no admin-guide/binfmt-ape.html"; s=1; }
grep -q 'href="binfmt-ape.html"' "$html/index.html" 2>/dev/null ||
	{ echo "admin-guide/index.html does not link binfmt-ape.html"; s=1; }
gate "make htmldocs SPHINXDIRS=admin-guide: binfmt-ape.html, linked from the index, no warning in ${doc_files[*]}" \
	"$out/htmldocs.log" "$s"

# --- spdxcheck.py on every file the series adds or changes; each file it adds has a tag. ---------
s=0
(cd "$tree" && "$PY" scripts/spdxcheck.py -v "${changed[@]}") >"$out/spdx.log" 2>&1 || s=$?
# It exits 0 whatever it finds: its report says.
grep -qE '^Files with errors: +0$' "$out/spdx.log" || s=1
grep -E '^[^ ]+: [0-9]+:[0-9]+ ' "$out/spdx.log" && s=1
while read -r f; do
	# As none of the kernel's .kunitconfig files has one.
	case "$f" in */.kunitconfig) continue ;; esac
	head -n 3 "$tree/$f" | grep -q 'SPDX-License-Identifier: ' ||
		{ echo "$f: no SPDX-License-Identifier" >>"$out/spdx.log"; s=1; }
done < <(git -C "$tree" diff --name-only --diff-filter=A "$base" HEAD)
gate "scripts/spdxcheck.py: the series' ${#changed[@]} files, a tag on each it adds" "$out/spdx.log" "$s"

# Only a clean run is kept: a failure is run again next time.
if grep -q '^not ok' "$out/results.new"; then
	cat "$out/results.new"
	rm -f "$out/results.new"
else
	mv "$out/results.new" "$out/results"
	cat "$out/results"
fi
