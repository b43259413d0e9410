#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The Debian packages' cycle on one Debian kernel, as a user runs it: install, DKMS build,
# kernel update, purge, then Debian's kernel booted with the module DKMS built.
set -euo pipefail
LOG_TAG=dkms
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 DEBDIR REL UPDATE
The cycle of make deb's packages (in DEBDIR) on Debian's kernel release REL, in a throwaway
copy of the Debian 13 root (scripts/debian-root.sh scratch) that has REL's headers:
  1. apt-get install ./binfmt-ape-dkms_*.deb ./binfmt-ape-utils_*.deb (DKMS builds for REL)
  2. dkms status says installed; the module is in /lib/modules/REL/updates/dkms, signed with
     DKMS's MOK key; apeinfo runs
  3. a kernel update: apt-get install linux-headers-UPDATE (a release whose headers the root
     does not have), and DKMS builds for it unasked
  4. apt-get purge leaves no module, no DKMS tree, no file behind
then boots Debian's unmodified REL with the DKMS-built module and runs the guest suite
(scripts/debian-guest.sh). Writes "ok - ..." and "not ok - ..." lines to
build/dkms-REL.results and prints the guest's console log path. The cycle's results are cached
by content (the packages, the root, the releases): a rerun on the same sources reports them
again, marked "(cached)", and still boots the module.
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# = 3 ] || { usage >&2; exit 2; }
debdir=$1 rel=$2 upd=$3
# The packages are Debian 13's (make deb builds them in that root), and so is the scratch copy.
for r in "$rel" "$upd"; do
	case $r in
	*+deb13-*) ;;
	*) die "the DKMS cycle runs on Debian 13 kernels only (+deb13): $r" ;;
	esac
done
root=$("$BINFMT_APE_ROOT"/scripts/debian-root.sh release "$rel")
"$BINFMT_APE_ROOT"/scripts/debian-root.sh source "$(echo "$upd" | cut -d. -f1,2)" >/dev/null
# Keyed by what the packages hold (names, contents, control), not by the .deb files, whose
# bytes differ from one build to the next.
key=$({ basename "$root"; echo "$rel $upd"; for d in "$debdir"/*.deb; do
	dpkg-deb -I "$d" control; dpkg-deb --fsys-tarfile "$d" | tar -t
	dpkg-deb --fsys-tarfile "$d" | tar -xO; done; sha256sum "$0"; } | sha256sum | cut -c1-16)
res=$CACHE/dkms-cycle/$rel-$key
work=build/dkms/$rel
debian_release "$rel"

if [ ! -e "$res/.done" ]; then
	log "apt-get install, DKMS for $rel and $upd, purge (in a scratch copy of the Debian root)"
	rm -rf "${BINFMT_APE_ROOT:?}/$work" && mkdir -p "$BINFMT_APE_ROOT/$work"
	cp "$debdir"/binfmt-ape-dkms_*_all.deb "$debdir"/binfmt-ape-utils_*_"$DEB_ARCH".deb "$BINFMT_APE_ROOT/$work/"
	start=$(date +%s)
	"$BINFMT_APE_ROOT"/scripts/debian-root.sh scratch sh -c '
		set -u; rel=$1 upd=$2 w=/work/$3; cd "$w"
		say() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }
		# A machine has the headers of the kernels it boots; the shared root also has other
		# releases (the other guests), for which DKMS would build too. Not in this copy.
		for k in /lib/modules/*; do [ "${k##*/}" = "$rel" ] || rm -rf "$k"; done
		t0=$(date +%s)
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./binfmt-ape-dkms_*.deb ./binfmt-ape-utils_*.deb \
			>install.log 2>&1
		say $? "apt-get install of binfmt-ape-dkms and binfmt-ape-utils on $rel"
		echo "DKMS build and install for $rel: $(($(date +%s) - t0)) s" >times
		dkms status -m binfmt-ape >status 2>&1
		grep -q "binfmt-ape/.*, $rel, .*: installed" status; say $? "dkms status: installed for $rel"
		ko=$(ls /lib/modules/$rel/updates/dkms/binfmt_ape.ko* 2>/dev/null | head -n1)
		[ -n "$ko" ]; say $? "DKMS put binfmt_ape.ko in /lib/modules/$rel/updates/dkms"
		case "$ko" in *.xz) xz -dc "$ko" >binfmt_ape.ko ;; *.zst) zstd -qdc "$ko" >binfmt_ape.ko ;;
			*) cp "$ko" binfmt_ape.ko ;; esac
		# DKMS signs with its MOK key (it makes one when none is configured).
		[ -e /var/lib/dkms/mok.pub ] && tail -c 28 binfmt_ape.ko | grep -q "~Module signature appended~"
		say $? "the module carries a signature by the DKMS MOK key"
		apeinfo --arch x86_64 /work/build/fixtures/fix/exec-mz-xa.ape >apeinfo.out 2>&1
		say $? "apeinfo (binfmt-ape-utils) reads an APE"
		# The update: headers the root did not have, so DKMS has not seen that kernel yet.
		[ ! -e "/usr/src/linux-headers-$upd" ]; say $? "before the update, $upd is not installed"
		t0=$(date +%s)
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "linux-headers-$upd" >update.log 2>&1
		echo "DKMS build for $upd (kernel update): $(($(date +%s) - t0)) s, with the headers install" >>times
		ls /lib/modules/$upd/updates/dkms/binfmt_ape.ko* >/dev/null 2>&1 &&
			dkms status -m binfmt-ape | grep -q ", $upd, .*: installed"
		say $? "a kernel update ($upd headers) rebuilds the module with no user action"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -q binfmt-ape-dkms binfmt-ape-utils >purge.log 2>&1
		say $? "apt-get purge"
		left=$( { ls -d /usr/src/binfmt-ape-* /var/lib/dkms/binfmt-ape /usr/bin/apeinfo \
			/usr/share/binfmt-ape /usr/share/doc/binfmt-ape-* 2>/dev/null
			find /lib/modules /usr/lib/modules -name "binfmt_ape.ko*" 2>/dev/null
			dpkg-query -W -f="\${db:Status-Abbrev} \${Package}\n" "binfmt-ape*" 2>/dev/null |
				grep -v "^[up]n" ; } )
		[ -z "$left" ]; say $? "purge leaves no module, no DKMS tree and no files"
		[ -z "$left" ] || echo "$left" >leftovers
	' dkms-cycle "$rel" "$upd" "$work" >"$BINFMT_APE_ROOT/$work/results" || true
	echo "whole cycle: $(($(date +%s) - start)) s" >>"$BINFMT_APE_ROOT/$work/times"
	rm -rf "$res" && mkdir -p "$res"
	cp "$BINFMT_APE_ROOT/$work"/{results,times,binfmt_ape.ko} "$res/" 2>/dev/null || true
	if ! grep -q '^not ok' "$res/results"; then touch "$res/.done"; fi
	cached=
else
	cached=" (cached)"
fi
mkdir -p "$BUILD"
sed "s/\$/$cached/" "$res/results" >"$BUILD/dkms-$rel.results"
sed 's/^/# /' "$res/times" >&2
[ -e "$res/binfmt_ape.ko" ] || die "DKMS built no module to boot"
APE_KO=$res/binfmt_ape.ko "$BINFMT_APE_ROOT"/scripts/debian-guest.sh "$rel" check
