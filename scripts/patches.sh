#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make patches`: the upstream series, binfmt_ape in-tree against Linux 7.3, generated from
# this repository's sources and checked as a maintainer would.
set -euo pipefail
LOG_TAG=patches
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

usage() {
	cat <<EOF
Usage: $0
Writes the upstream series, binfmt_ape in-tree against Linux 7.3, generated from this
repository's sources (scripts/intree.py does each step), as git format-patch files with a
cover letter in build/patches/. Then checks it the way a maintainer would: git am onto the
pristine tree, the result identical to what was generated, and scripts/checkpatch.pl --strict
on every patch (reports other than the ones the cover letter justifies fail).
KSRC: the pristine tree (default: Debian's linux-source-7.3), either a kernel git checkout,
whose HEAD the series is built on (its base-commit; the checkout's branches and work tree are
left alone: the series is built in a clone), or a plain source tree, which is made a git
repository once (a few minutes). Either lives under
  $CACHE/patches/
and on success the tree there has the series applied (branch applied), which is what
make check builds with BINFMT_APE=y. Prints that tree.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac

KVER=7.3
# The series' version: its subjects read [PATCH v$VERSION n/7], and the cover letter ends with
# what changed since the last one.
VERSION=2
# The commit the series is based on, when KSRC is a git checkout.
base=
if [ -n "${KSRC:-}" ]; then
	[ -e "$KSRC/Makefile" ] && [ -d "$KSRC/fs" ] || die "KSRC=$KSRC is not a kernel source tree"
	SRC=$(cd "$KSRC" && pwd -P)
	SRCVER=$(make -s -C "$SRC" kernelversion)
	name=$(printf '%s' "$SRC" | sha256sum | cut -c1-12)-$SRCVER
	if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$SRC" ] &&
		base=$(git -C "$SRC" rev-parse -q --verify 'HEAD^{commit}'); then
		# One clone per checkout, made again when its HEAD moves.
		name=$name-git
		git -C "$SRC" diff --quiet HEAD 2>/dev/null ||
			log "KSRC has uncommitted changes: the series is built on its HEAD, $base"
	else
		base=
	fi
else
	kernel_source
	name=linux-$KVER-$SRCVER
fi
out=$BUILD/patches
tree=$CACHE/patches/$name
# The series' author: GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else this repository's identity.
author_name=${GIT_AUTHOR_NAME:-$(git -C "$BINFMT_APE_ROOT" config user.name || echo binfmt_ape)}
author_email=${GIT_AUTHOR_EMAIL:-$(git -C "$BINFMT_APE_ROOT" config user.email || echo binfmt_ape@localhost)}
author="$author_name <$author_email>"
git=(git -C "$tree" -c user.name="$author_name" -c user.email="$author_email"
	-c commit.gpgsign=false -c core.autocrlf=false -c advice.detachedHead=false)

if [ -n "$base" ]; then
	# A clone (objects hard-linked, no checkout), so nothing of the user's changes.
	if [ "$("${git[@]}" rev-parse -q --verify pristine 2>/dev/null)" != "$base" ]; then
		log "cloning $SRC at $base: $tree"
		rm -rf "$tree"
		mkdir -p "$(dirname "$tree")"
		git clone -q --no-checkout "$SRC" "$tree"
		"${git[@]}" branch -f pristine "$base"
	fi
elif [ ! -e "$tree/.git/pristine-done" ]; then
	log "making the pristine tree a git repository (once): $tree"
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$SRC"/. "$tree"/
	rm -f "$tree/.extracted"
	"${git[@]}" init -q -b pristine
	# Debian's tarball ignores everything (.gitignore: /*): add by force.
	"${git[@]}" add -A -f
	"${git[@]}" commit -q -m "Linux $SRCVER (pristine)"
	touch "$tree/.git/pristine-done"
fi
"${git[@]}" rev-parse -q --verify pristine >/dev/null || die "$tree has no branch pristine"

# The series, step by step, each one commit.
"${git[@]}" checkout -q -f -B series pristine
"${git[@]}" clean -q -f -d -x
steps=(elf binfmt sysctl module docs selftest maintainers)
n=0
for step in "${steps[@]}"; do
	n=$((n + 1))
	PATCH_AUTHOR=$author python3 "$BINFMT_APE_ROOT/scripts/intree.py" \
		"$step" "$BINFMT_APE_ROOT" "$tree" || die "step $step did not apply to $name"
	"${git[@]}" add -A -f
	"${git[@]}" commit -q -s -F "$BINFMT_APE_ROOT/docs/upstream/$n-$step.txt" ||
		die "step $step changed nothing"
	# What changed since the last version, for reviewers: under the patch's ---, where git
	# am leaves it out of the commit.
	notes=$BINFMT_APE_ROOT/docs/upstream/$n-$step.notes
	[ ! -e "$notes" ] || "${git[@]}" notes add -f -F "$notes" HEAD
done
series_tree=$("${git[@]}" rev-parse 'series^{tree}')

rm -rf "$out"
mkdir -p "$out"
# With a git base, every patch names it (base-commit:), as b4 and the kernel's bots expect.
"${git[@]}" format-patch -q --cover-letter --thread=shallow --notes -v "$VERSION" \
	${base:+--base="$base"} \
	-o "$out" pristine..series
# The cover letter's text: its subject line, then its body, with format-patch's shortlog and
# diffstat kept.
cover=$(ls "$out"/v"$VERSION"-0000-*.patch)
python3 - "$cover" "$BINFMT_APE_ROOT/docs/upstream/cover.txt" <<'EOF'
import sys
path, text = sys.argv[1], open(sys.argv[2]).read()
subject, body = text.split("\n", 1)
c = open(path).read()
c = c.replace("*** SUBJECT HERE ***", subject.strip())
c = c.replace("*** BLURB HERE ***", body.strip("\n"))
open(path, "w").write(c)
EOF
mapfile -t series < <(ls "$out"/*.patch | grep -v -- '-0000-cover-letter\.patch$')
log "series: v$VERSION, ${#series[@]} patches and a cover letter in $out"

# Whom each patch goes to: scripts/get_maintainer.pl on it, as its Cc: header (sorted, no
# duplicates, not the author); the cover letter goes to all of them.
# A failure stops here, rather than sending the series to no one.
cc_of() {
	local all
	all=$(cd "$tree" && perl scripts/get_maintainer.pl --no-rolestats --no-git --no-git-fallback \
		--no-tree "$1") || die "scripts/get_maintainer.pl failed on $1"
	# The author by address, with a name ("Name <address>") or without, and nothing else.
	grep -viF -e "<$author_email>" <<<"$all" | grep -vixF -e "$author_email" | sort -u || true
}
add_cc() { # add_cc PATCH ADDRESS...
	local p=$1
	shift
	[ $# -gt 0 ] || return 0
	python3 - "$p" "$@" <<'EOF'
import sys
path, cc = sys.argv[1], sys.argv[2:]
head, sep, body = open(path).read().partition("\n\n")
open(path, "w").write(head + "\nCc: " + ",\n    ".join(cc) + sep + body)
EOF
}
all_cc=()
for p in "${series[@]}"; do
	# Not in a process substitution, whose failure would go unnoticed.
	ccs=$(cc_of "$p")
	mapfile -t cc < <(printf '%s' "$ccs")
	add_cc "$p" "${cc[@]}"
	all_cc+=("${cc[@]}")
done
[ "${#all_cc[@]}" = 0 ] || mapfile -t all_cc < <(printf '%s\n' "${all_cc[@]}" | sort -u)
add_cc "$cover" "${all_cc[@]}"

# What a maintainer does with it: git am onto the pristine tree.
"${git[@]}" checkout -q -f -B applied pristine
"${git[@]}" clean -q -f -d -x
if ! "${git[@]}" am -q "${series[@]}" >/dev/null 2>&1; then
	"${git[@]}" am --abort 2>/dev/null || true
	die "the series does not apply with git am to $name"
fi
[ "$("${git[@]}" rev-parse 'applied^{tree}')" = "$series_tree" ] ||
	die "git am gave another tree than the one generated"
log "git am: the series applies to $name"

# checkpatch --strict: the reports the cover letter justifies are listed by type; anything else
# fails.
justified="FILE_PATH_CHANGES CAMELCASE"
report=$out/checkpatch.txt
: >"$report"
bad=0
for p in "${series[@]}"; do
	# Debian's own python3 first: checkpatch runs scripts/spdxcheck.py, which needs its ply
	# (python3-ply), and a python3 of the user's (pyenv) may come first on PATH.
	(cd "$tree" && PATH=/usr/bin:$PATH perl scripts/checkpatch.pl --strict --show-types --no-summary -q "$p") \
		>>"$report" 2>&1 || true
done
while read -r _kind type; do
	case " $justified " in *" $type "*) continue ;; esac
	bad=$((bad + 1))
done < <(sed -nE 's/^(ERROR|WARNING|CHECK):([A-Z_]+):.*/\1 \2/p' "$report")
errors=$(grep -c '^ERROR:' "$report" || true)
warnings=$(grep -c '^WARNING:' "$report" || true)
checks=$(grep -c '^CHECK:' "$report" || true)
log "checkpatch --strict: $errors errors, $warnings warnings, $checks checks ($report)"
if [ "$bad" != 0 ]; then
	cat "$report" >&2
	die "checkpatch: $bad reports beyond the justified ones ($justified)"
fi
echo "$tree"
