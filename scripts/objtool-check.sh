#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The objtool tables of built x86_64 modules: every thunk branch listed where the kernel
# patches it when it loads the module.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: $0 [--config KERNEL_CONFIG] MODULE.ko...
       or, sourced: objtool_check [--config KERNEL_CONFIG] MODULE.ko...
Checks that in each x86_64 binfmt_ape.ko, every branch to the return thunk, every retpoline
and (with call depth tracking) every call is listed in .return_sites, .retpoline_sites or
.call_sites, so the kernel patches it when it loads the module (scripts/objtool-tables.py says
how and why). Modules of other arches pass, unchecked. Prints one line per module on stdout,
"ok - objtool tables: DIR/NAME.ko (figures)" or "not ok - objtool tables: DIR/NAME.ko", and on
stderr what is missing; returns non-zero if any module fails. KERNEL_CONFIG (the kernel's
.config) tells whether calls are checked when a module has no .call_sites at all.
EOF
}

objtool_check() { # objtool_check [--config KERNEL_CONFIG] MODULE.ko...
	local cfg=() ko name out st s=0
	if [ "${1:-}" = --config ]; then
		[ -r "${2:-}" ] || die "objtool_check: no kernel configuration at '${2:-}'"
		cfg=(--config "$2")
		shift 2
	fi
	[ $# -gt 0 ] || die "usage: objtool_check [--config KERNEL_CONFIG] MODULE.ko..."
	for ko in "$@"; do
		# The directory names the kernel: build/module/<kernel>/, .../binfmt-ape/<release>/.
		name=$(basename "$(dirname "$ko")")/$(basename "$ko")
		st=0
		out=$(python3 "$BINFMT_APE_ROOT/scripts/objtool-tables.py" "${cfg[@]}" "$ko" 2>&1) || st=$?
		if [ "$st" = 0 ]; then
			out=${out#"$ko: "}
			echo "ok - objtool tables: $name (${out//$'\n'  /; })"
		else
			echo "not ok - objtool tables: $name"
			sed 's/^/# /' <<<"$out" >&2
			s=1
		fi
	done
	return "$s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	-h|--help) usage; exit 0 ;;
	"") usage >&2; exit 2 ;;
	esac
	objtool_check "$@"
fi
