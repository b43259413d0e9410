#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make deb`: binfmt-ape-dkms_<version>_all.deb and binfmt-ape-utils_<version>_<arch>.deb,
# built with Debian's own tooling (dpkg-buildpackage, debhelper, dh-dkms) in the Debian 13 root
# (scripts/debian-root.sh) from a copy of this tree's files, then checked with lintian.
# Leaves the packages and lintian's report in build/deb/ and prints that directory.
set -euo pipefail
LOG_TAG=deb
. "$(dirname "$0")/lib.sh"

cd "$BINFMT_APE_ROOT"
out=$BINFMT_APE_ROOT/build/deb
rm -rf "$out" && mkdir -p "$out/src"
# The tracked and new files, as a fresh clone (with this work tree's changes) would have them.
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$out/src"
root=$("$BINFMT_APE_ROOT"/scripts/debian-root.sh)
log "dpkg-buildpackage in the Debian root"
"$BINFMT_APE_ROOT"/scripts/debian-root.sh run sh -c "cd /work/build/deb/src &&
	dpkg-buildpackage -us -uc -b >../build.log 2>&1 || { tail -n 40 ../build.log; exit 1; }
	cd .. && lintian --info --display-info --pedantic *.changes >lintian.log 2>&1; status=\$?
	cat lintian.log; exit \$status" >&2 || die "make deb failed (log: $out/build.log, $out/lintian.log)"
rm -rf "$out/src"
ls "$out"/*.deb >&2
echo "$out"
