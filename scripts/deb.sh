#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make deb`: the Debian packages, built with Debian's own tooling in the Debian 13 root.
set -euo pipefail
LOG_TAG=deb
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0
Builds binfmt-ape-dkms_VERSION_all.deb and binfmt-ape-utils_VERSION_ARCH.deb with Debian's
own tooling (dpkg-buildpackage, debhelper, dh-dkms) in the Debian 13 root
(scripts/debian-root.sh) from a copy of this tree's files (tracked and new), then checks them
with lintian (an error fails). Leaves the packages, the build log and lintian's report in
$BINFMT_APE_ROOT/build/deb and prints that directory.
EOF
}

case "${1:-}" in
-h|--help) usage; exit 0 ;;
?*) usage >&2; exit 2 ;;
esac

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
